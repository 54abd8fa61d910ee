//! `builtin:sample`: load a model a generator stage saved (`save_model =
//! true`) and sample it — no real data, no fit, and no privacy spent
//! (sampling a DP model is post-processing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::generator::GenProgress;
use super::{Builtin, Kind, MAX_ROWS, seed_field};
use crate::config::{ConfigField, ConfigValue, ValueType, field, get};
use crate::model::{ModelSummary, Output, Provenance};
use crate::stage::StageContext;
use crate::table::Table;
use crate::{Error, Result};

/// `builtin:sample`.
#[derive(Debug, Clone, Copy)]
pub struct Sample;

impl Builtin for Sample {
    fn name(&self) -> &str {
        "sample"
    }

    fn summary(&self) -> &str {
        "Sample rows from a model a generator stage saved (`save_model = true`); no training."
    }

    fn kind(&self) -> Kind {
        Kind::Generator
    }

    /// The model file, and how many rows with which seed.
    fn schema(&self) -> Vec<ConfigField> {
        let mut model = field(
            "model",
            ValueType::String,
            "Saved model file (`model-<stage>.safetensors` from a run with `save_model = true`); `--input` sets it.",
        );
        model.required = true;
        let mut rows = field(
            "rows",
            ValueType::Integer,
            "Rows to sample (default: as many as the table the model learned from).",
        );
        rows.minimum = Some(1.0);
        rows.maximum = Some(MAX_ROWS);
        vec![model, rows, seed_field()]
    }

    fn user_settable(&self) -> Vec<&'static str> {
        vec!["rows", "seed"]
    }

    fn file_setting(&self) -> Option<&'static str> {
        Some("model")
    }

    fn run(&self, ctx: &StageContext) -> Result<Output> {
        let path = match get(ctx.settings(), "model") {
            Some(ConfigValue::String(p)) => ctx.resolve(std::path::PathBuf::from(p)),
            _ => return Err(ctx.error("`model` names no file")),
        };
        let bytes = std::fs::read(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        // Name the file, not its directory: a server's work directory is its own business.
        let file_name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let generator = doppel_generators::saved_generator(&bytes).unwrap_or_else(|_| "saved model".to_owned());
        let gen_err = |source| Error::Generator {
            stage: ctx.id().to_owned(),
            generator: format!("{generator} from {file_name}"),
            source,
        };
        let model = doppel_generators::load_model(&bytes).map_err(gen_err)?;
        let seed = ctx.seed();
        let rows = match ctx.int("rows") {
            Some(r) => usize::try_from(r).unwrap_or(0),
            None => model
                .suggested_rows()
                .ok_or_else(|| ctx.error("the model does not know its table's size; set `rows`"))?,
        };
        let started = Instant::now();
        let synthetic = model
            .sample(rows, seed, &GenProgress { ctx, phase_offset: 500 })
            .map_err(gen_err)?;
        // The model learned markers where its table had identifiers and rare
        // values (crate::release): they become generated values here too.
        let synthetic = crate::release::after_sample(&synthetic, None, seed)?;
        let sample = started.elapsed();
        let columns = model.columns();
        let semantics: Vec<_> = columns.iter().map(|c| c.semantic).collect();
        if semantics.len() != synthetic.num_columns() {
            return Err(Error::Internal(format!(
                "{} column models for {} columns",
                semantics.len(),
                synthetic.num_columns()
            )));
        }
        let out = Table {
            schema: synthetic.schema(),
            batches: vec![synthetic],
            semantics: Arc::new(semantics),
            population_rows: None,
        };
        let summary = ModelSummary {
            generator,
            columns,
            notes: model.notes(),
            fit: Duration::ZERO,
            sample,
            seed,
            privacy: model.privacy(),
            saved_model: None,
            loaded_from: Some(file_name),
        };
        Ok(Output::Table(Arc::new(out), Provenance::Generated(Arc::new(summary))))
    }
}
