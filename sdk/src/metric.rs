//! Metric stages: compare tables (real, synthetic, holdout) and return scores.

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::{Config, MetricValue, Plugin, RecordBatch, StageError, TableRole, ipc};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "doppel:plugin/metric-plugin@0.1.0",
        with: {
            "doppel:plugin/types@0.1.0": crate::shared::doppel::plugin::types,
            "doppel:plugin/host@0.1.0": crate::shared::doppel::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "__export_metric_world",
        default_bindings_module: "::doppel_sdk::metric::bindings",
        runtime_path: "::doppel_sdk::__wit_bindgen::rt",
    });
}

use bindings::exports::doppel::plugin::metric as wit;

/// A metric stage. One value is created per stage run; it sees every batch of
/// every input table, tagged with the table's role, then `finish` scores.
pub trait Metric: Plugin + Sized + 'static {
    /// Build the accumulator from the config.
    fn create(config: &Config) -> Result<Self, StageError>;

    /// Take in one batch of the table playing `role`.
    fn update(&mut self, role: TableRole, batch: &RecordBatch) -> Result<(), StageError>;

    /// Compute the scores once every batch was seen.
    fn finish(&mut self) -> Result<Vec<MetricValue>, StageError>;
}

/// Glue between the generated bindings and a [`Metric`]; used by
/// [`crate::export_metric!`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Export<T>(PhantomData<T>);

/// The resource the host holds for one stage run.
#[doc(hidden)]
#[derive(Debug)]
pub struct AccumulatorState<T>(RefCell<T>);

impl<T: Metric> wit::Guest for Export<T> {
    type Accumulator = AccumulatorState<T>;

    fn describe() -> crate::PluginInfo {
        T::info()
    }

    fn check(config: Vec<(String, crate::ConfigValue)>, schemas: Vec<Vec<u8>>) -> Result<(), StageError> {
        let schemas = crate::__decode_schemas(schemas)?;
        T::check(&Config::from(config), &schemas)
    }
}

impl<T: Metric> wit::GuestAccumulator for AccumulatorState<T> {
    fn create(config: Vec<(String, crate::ConfigValue)>) -> Result<wit::Accumulator, StageError> {
        let inner = T::create(&Config::from(config))?;
        Ok(wit::Accumulator::new(AccumulatorState(RefCell::new(inner))))
    }

    fn update(&self, role: TableRole, input: crate::Batch) -> Result<(), StageError> {
        let batch = ipc::decode_batch(input.ipc)?;
        self.0.borrow_mut().update(role, &batch)
    }

    fn finish(&self) -> Result<Vec<MetricValue>, StageError> {
        self.0.borrow_mut().finish()
    }
}

/// Export a [`Metric`] as the component's `doppel:plugin/metric` world.
///
/// Expands to the component's ABI functions when building for `wasm32`, and to
/// nothing natively, so the same crate builds and unit-tests on the host.
#[macro_export]
macro_rules! export_metric {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __DoppelMetricExport = $crate::metric::Export<$plugin>;
            $crate::metric::bindings::__export_metric_world!(__DoppelMetricExport with_types_in $crate::metric::bindings);
        };
        // Natively: check the type implements the trait, and keep it used.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(&$crate::Config) -> ::core::result::Result<$plugin, $crate::StageError> =
            <$plugin as $crate::Metric>::create;
    };
}
