//! Rule stages: judge the facts upstream stages produced (findings, scores,
//! column facts, pipeline attributes) and return verdicts.

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::{Config, Facts, Plugin, StageError, Verdict};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "doppel:plugin/rule-plugin@0.1.0",
        with: {
            "doppel:plugin/types@0.1.0": crate::shared::doppel::plugin::types,
            "doppel:plugin/host@0.1.0": crate::shared::doppel::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "__export_rule_world",
        default_bindings_module: "::doppel_sdk::rule::bindings",
        runtime_path: "::doppel_sdk::__wit_bindgen::rt",
    });
}

use bindings::exports::doppel::plugin::rule as wit;

/// A rule stage: one value per stage run, one `evaluate` call with all facts.
pub trait Rule: Plugin + Sized + 'static {
    /// Build the evaluator from the config.
    fn create(config: &Config) -> Result<Self, StageError>;

    /// Judge the facts.
    fn evaluate(&mut self, facts: &Facts) -> Result<Vec<Verdict>, StageError>;
}

/// Glue between the generated bindings and a [`Rule`]; used by
/// [`crate::export_rule!`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Export<T>(PhantomData<T>);

/// The resource the host holds for one stage run.
#[doc(hidden)]
#[derive(Debug)]
pub struct EvaluatorState<T>(RefCell<T>);

impl<T: Rule> wit::Guest for Export<T> {
    type Evaluator = EvaluatorState<T>;

    fn describe() -> crate::PluginInfo {
        T::info()
    }

    fn check(config: Vec<(String, crate::ConfigValue)>, schemas: Vec<Vec<u8>>) -> Result<(), StageError> {
        let schemas = crate::__decode_schemas(schemas)?;
        T::check(&Config::from(config), &schemas)
    }
}

impl<T: Rule> wit::GuestEvaluator for EvaluatorState<T> {
    fn create(config: Vec<(String, crate::ConfigValue)>) -> Result<wit::Evaluator, StageError> {
        let inner = T::create(&Config::from(config))?;
        Ok(wit::Evaluator::new(EvaluatorState(RefCell::new(inner))))
    }

    fn evaluate(&self, facts: Facts) -> Result<Vec<Verdict>, StageError> {
        self.0.borrow_mut().evaluate(&facts)
    }
}

/// Export a [`Rule`] as the component's `doppel:plugin/rule` world.
///
/// Expands to the component's ABI functions when building for `wasm32`, and to
/// nothing natively, so the same crate builds and unit-tests on the host.
#[macro_export]
macro_rules! export_rule {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __DoppelRuleExport = $crate::rule::Export<$plugin>;
    $crate::rule::bindings::__export_rule_world!(__DoppelRuleExport with_types_in $crate::rule::bindings);
        };
        // Natively: check the type implements the trait, and keep it used.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(&$crate::Config) -> ::core::result::Result<$plugin, $crate::StageError> =
            <$plugin as $crate::Rule>::create;
    };
}
