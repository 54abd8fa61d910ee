//! Native synthetic-data generators for doppel.
//!
//! A generator learns a table and samples a synthetic twin with the same
//! columns, types and row count (or any row count asked for). Generators run
//! natively, not in the WASM sandbox: they are first-party code and the heavy
//! part of a pipeline.
//!
//! # Overview
//! - [`Generator`]: a named model family with declared parameters
//!   ([`ParamSpec`]); [`Generator::fit`] returns a fitted [`Model`].
//! - [`Model::sample`]: draw rows, deterministically for a seed.
//! - [`Cart`]: sequential CART synthesis, the high-fidelity default
//!   (every column drawn from a donor in a tree's leaf; minimum leaf sizes,
//!   smoothing, no copied rows; conditional sampling by visit order).
//! - [`GaussianCopula`]: the built-in Gaussian copula.
//! - [`PrivSyn`]: differentially private marginal synthesis, with the zCDP
//!   [`accountant`] reporting what each fit spent ([`PrivacySpend`]); it
//!   reads rows only through [`counts::CountSource`], so its counting can
//!   run on an engine ([`Generator::fit_counts`]).
//! - [`accountant::rdp`]: the Rényi-DP accountant of DP-SGD (Poisson-sampled
//!   Gaussian steps), with the noise multiplier solved from (ε, δ) and the
//!   number of steps; its numbers are Google's dp_accounting's.
//! - [`semantic`]: the column roles (id, categorical, numerical, datetime,
//!   boolean, text) that every doppel component shares.
//! - `Ctgan` and `Tvae` (feature `torch`): CTGAN and TVAE on libtorch,
//!   CUDA when available; `DpTvae`: TVAE trained with DP-SGD (per-row
//!   clipping and noise, Poisson batches) on PrivSyn's private domain, its
//!   whole (ε, δ) accounted in Rényi DP.
//! - [`Model::save`] and [`load_model`]: fit once, sample many — a fitted
//!   CART, CTGAN or TVAE model as one safetensors file (trees and leaf
//!   distributions or weights, encoding plan, schema).
//! - [`fake`]: format-preserving fake values for personal data (valid
//!   checksums, reserved ranges), and keyed pseudonyms.
//! - [`builtin`]: every generator compiled in, by name.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Float64Array, RecordBatch, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use doppel_generators::{GaussianCopula, Generator, NoProgress, Params, TrainingData, semantic};
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("plan", DataType::Utf8, false),
//!     Field::new("spend", DataType::Float64, false),
//! ]));
//! let batch = RecordBatch::try_new(schema, vec![
//!     Arc::new(StringArray::from_iter_values((0..100).map(|i| ["free", "pro"][i % 2]))),
//!     Arc::new(Float64Array::from_iter_values((0..100).map(|i| i as f64 * 1.5))),
//! ])?;
//! let semantics = semantic::infer_batch(&batch);
//! let data = TrainingData { batch: &batch, semantics: &semantics };
//! let model = GaussianCopula.fit(&data, &Params::new(), 42, &NoProgress)?;
//! let synthetic = model.sample(500, 42, &NoProgress)?;
//! assert_eq!(synthetic.num_rows(), 500);
//! assert_eq!(synthetic.schema(), batch.schema());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

pub mod accountant;
mod cart;
mod copula;
pub mod counts;
mod error;
pub mod fake;
mod linalg;
#[cfg(feature = "torch")]
mod neural;
mod params;
mod privsyn;
mod saved;
pub mod semantic;
mod stats;

pub use accountant::{PrivacyCost, PrivacySpend, SgdSpend};
pub use cart::{Cart, CartModel};
pub use copula::{CopulaModel, GaussianCopula};
pub use error::{Error, Result};
#[cfg(feature = "torch")]
pub use neural::{Ctgan, CtganModel, DpTvae, DpTvaeModel, Tvae, TvaeModel};
pub use params::{ParamSpec, ParamType, ParamValue, Params};
pub use privsyn::{PrivSyn, PrivSynModel};
pub use saved::{FORMAT as SAVED_MODEL_FORMAT, load_model, saved_generator};
pub use semantic::SemanticType;

/// The table a generator learns from.
#[derive(Debug, Clone, Copy)]
pub struct TrainingData<'a> {
    /// All rows, in one batch.
    pub batch: &'a RecordBatch,
    /// The semantic type of each column, in schema order.
    pub semantics: &'a [SemanticType],
}

impl TrainingData<'_> {
    /// One semantic type per column, or the error every generator's fit
    /// answers before reading a row.
    pub fn check_semantics(&self) -> Result<()> {
        check_semantics(self.batch.num_columns(), self.semantics.len())
    }
}

/// One semantic type per column: the check every fit makes before reading a
/// row, whether it reads a batch or a [`counts::CountSource`].
pub(crate) fn check_semantics(columns: usize, semantics: usize) -> Result<()> {
    if columns != semantics {
        return Err(Error::SemanticsMismatch { columns, semantics });
    }
    Ok(())
}

/// Where long work reports progress and learns about cancellation.
pub trait Progress: Sync {
    /// `done` of `total` units finished.
    fn advance(&self, done: u64, total: u64);
    /// Whether the caller asked to stop; checked between units of work.
    fn is_cancelled(&self) -> bool;
}

/// A [`Progress`] that reports nowhere and never cancels.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _done: u64, _total: u64) {}
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// A model family that learns tables.
pub trait Generator: Send + Sync + std::fmt::Debug {
    /// Name used in pipelines: `uses = "builtin:<name>"`.
    fn name(&self) -> &'static str;
    /// One-line description.
    fn summary(&self) -> &'static str;
    /// Parameters accepted in the stage's `with` table (besides `rows` and
    /// `seed`, which every generator stage takes).
    fn params(&self) -> Vec<ParamSpec>;
    /// Learn the table. `seed` drives any randomness in fitting.
    fn fit(
        &self,
        data: &TrainingData<'_>,
        params: &Params,
        seed: u64,
        progress: &dyn Progress,
    ) -> Result<Box<dyn Model>>;
    /// What a fit with these parameters will charge against a privacy budget,
    /// known before any row is read; `None` for generators without a DP
    /// guarantee.
    fn privacy_cost(&self, _params: &Params) -> Result<Option<PrivacyCost>> {
        Ok(None)
    }
    /// Whether this family's fitted models can be saved ([`Model::save`]),
    /// so a pipeline asking for it is refused before anything runs.
    fn saves_models(&self) -> bool {
        false
    }
    /// Whether a fit with these parameters can be saved; a stage that sets
    /// `save_model` asks before fitting, so a refusal costs no fit.
    fn check_save(&self, _params: &Params) -> Result<()> {
        Ok(())
    }
    /// Whether [`Generator::fit_counts`] is implemented: the family learns
    /// from exact counts alone, so an engine may do the counting.
    fn fits_from_counts(&self) -> bool {
        false
    }
    /// Learn from exact counts computed by `source` (rows in memory, or
    /// aggregate plans on an engine). Only families that answer
    /// [`Generator::fits_from_counts`] implement it; the others refuse.
    fn fit_counts(
        &self,
        _source: &dyn counts::CountSource,
        _params: &Params,
        _seed: u64,
        _progress: &dyn Progress,
    ) -> Result<Box<dyn Model>> {
        Err(Error::InvalidParam {
            name: "engine".to_owned(),
            message: format!("builtin:{} does not learn from counts alone", self.name()),
        })
    }
}

/// How one column was modelled, for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnModel {
    /// Column name.
    pub column: String,
    /// Its semantic type.
    pub semantic: SemanticType,
    /// Human-readable description of the model.
    pub model: String,
}

/// A fitted generator.
pub trait Model: Send + Sync + std::fmt::Debug {
    /// Sample `rows` rows with the training schema. Same seed, same rows.
    fn sample(&self, rows: usize, seed: u64, progress: &dyn Progress) -> Result<RecordBatch>;
    /// How each column was modelled.
    fn columns(&self) -> Vec<ColumnModel>;
    /// Anything a user should know about the fit.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// The privacy this fit spent, for DP generators.
    fn privacy(&self) -> Option<PrivacySpend> {
        None
    }
    /// Rows to sample when the stage does not say (DP models answer their
    /// noisy total: the real row count is itself private).
    fn suggested_rows(&self) -> Option<usize> {
        None
    }
    /// The fitted model as a self-contained file for [`load_model`]
    /// (safetensors; see [`SAVED_MODEL_FORMAT`]), or `None` for families that
    /// cannot be saved. The file holds no training row but does hold real
    /// category values and ranges: treat it like the synthetic data.
    fn save(&self) -> Option<Result<Vec<u8>>> {
        None
    }
}

/// Every generator compiled into this build, for `builtin:<name>` lookup.
pub fn builtin() -> Vec<Arc<dyn Generator>> {
    #[allow(unused_mut, reason = "the torch feature adds to it")]
    let mut all: Vec<Arc<dyn Generator>> = vec![Arc::new(Cart), Arc::new(GaussianCopula), Arc::new(PrivSyn)];
    #[cfg(feature = "torch")]
    all.extend([Arc::new(Ctgan) as Arc<dyn Generator>, Arc::new(Tvae), Arc::new(DpTvae)]);
    all
}
