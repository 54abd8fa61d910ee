//! Detector stages: read one table, report which columns hold what.

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::{ColumnFinding, Config, Plugin, RecordBatch, StageError, ipc};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "doppel:plugin/detector-plugin@0.1.0",
        with: {
            "doppel:plugin/types@0.1.0": crate::shared::doppel::plugin::types,
            "doppel:plugin/host@0.1.0": crate::shared::doppel::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "__export_detector_world",
        default_bindings_module: "::doppel_sdk::detector::bindings",
        runtime_path: "::doppel_sdk::__wit_bindgen::rt",
    });
}

use bindings::exports::doppel::plugin::detector as wit;

/// What one `scan` call returns.
pub use wit::ScanOutcome;

/// A detector stage. One value is created per stage run and sees every batch
/// of the table (until it answers `needs_more: false`), then `finish` gives one
/// verdict per column.
pub trait Detector: Plugin + Sized + 'static {
    /// Build the scanner: compile patterns, read the config.
    fn create(config: &Config) -> Result<Self, StageError>;

    /// Look at one batch. `row_offset` is the table row of the batch's first row,
    /// for cell-level findings.
    fn scan(&mut self, batch: &RecordBatch, row_offset: u64) -> Result<ScanOutcome, StageError>;

    /// One verdict per column seen.
    fn finish(&mut self) -> Result<Vec<ColumnFinding>, StageError>;
}

/// Glue between the generated bindings and a [`Detector`]; used by
/// [`crate::export_detector!`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Export<T>(PhantomData<T>);

/// The resource the host holds for one stage run.
#[doc(hidden)]
#[derive(Debug)]
pub struct ScannerState<T>(RefCell<T>);

impl<T: Detector> wit::Guest for Export<T> {
    type Scanner = ScannerState<T>;

    fn describe() -> crate::PluginInfo {
        T::info()
    }

    fn check(config: Vec<(String, crate::ConfigValue)>, schemas: Vec<Vec<u8>>) -> Result<(), StageError> {
        let schemas = crate::__decode_schemas(schemas)?;
        T::check(&Config::from(config), &schemas)
    }
}

impl<T: Detector> wit::GuestScanner for ScannerState<T> {
    fn create(config: Vec<(String, crate::ConfigValue)>) -> Result<wit::Scanner, StageError> {
        let inner = T::create(&Config::from(config))?;
        Ok(wit::Scanner::new(ScannerState(RefCell::new(inner))))
    }

    fn scan(&self, input: crate::Batch) -> Result<ScanOutcome, StageError> {
        let batch = ipc::decode_batch(input.ipc)?;
        self.0.borrow_mut().scan(&batch, input.row_offset)
    }

    fn finish(&self) -> Result<Vec<ColumnFinding>, StageError> {
        self.0.borrow_mut().finish()
    }
}

/// Export a [`Detector`] as the component's `doppel:plugin/detector` world.
///
/// Expands to the component's ABI functions when building for `wasm32`, and to
/// nothing natively, so the same crate builds and unit-tests on the host.
#[macro_export]
macro_rules! export_detector {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __DoppelDetectorExport = $crate::detector::Export<$plugin>;
            $crate::detector::bindings::__export_detector_world!(__DoppelDetectorExport with_types_in $crate::detector::bindings);
        };
        // Natively: check the type implements the trait, and keep it used.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(&$crate::Config) -> ::core::result::Result<$plugin, $crate::StageError> =
            <$plugin as $crate::Detector>::create;
    };
}
