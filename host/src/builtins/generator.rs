//! `builtin:<generator>`: one stage per [`Generator`] compiled in (cart,
//! copula, privsyn, ctgan, tvae). The stage fits the generator on its input table and
//! samples a twin; every non-DP fit goes through the release rule
//! ([`crate::release`]).

use std::sync::Arc;
use std::time::Instant;

use doppel_generators::{Generator, ParamType, Params, Progress, TrainingData};

use super::{Builtin, Kind, MAX_ROWS, convert, seed_field, to_param};
use crate::config::{ConfigField, ConfigValue, Settings, ValueType, field, get};
use crate::model::{Document, ModelSummary, Output, Provenance};
use crate::stage::StageContext;
use crate::table::Table;
use crate::{Error, Result};

/// Settings every generator stage takes besides its own parameters.
pub(crate) const HOST_SETTINGS: &[&str] = &["rows", "seed", "save_model"];

/// A generator as a stage.
#[derive(Debug, Clone)]
pub struct GeneratorStage(pub Arc<dyn Generator>);

impl Builtin for GeneratorStage {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn summary(&self) -> &str {
        self.0.summary()
    }

    fn kind(&self) -> Kind {
        Kind::Generator
    }

    /// Every generator stage takes `rows` and `seed` (and `save_model` where
    /// the generator can save), then its own parameters.
    fn schema(&self) -> Vec<ConfigField> {
        let g = self.0.as_ref();
        let mut rows = field(
            "rows",
            ValueType::Integer,
            "Rows to sample (default: as many as the real table, counting rows a split set aside).",
        );
        rows.minimum = Some(1.0);
        rows.maximum = Some(MAX_ROWS);
        let mut out = vec![rows, seed_field()];
        if g.saves_models() {
            let mut save = field(
                "save_model",
                ValueType::Boolean,
                "Also write the fitted model (`model-<stage>.safetensors`) for `builtin:sample` to reuse.",
            );
            save.default = Some(ConfigValue::Boolean(false));
            out.push(save);
        }
        for p in g.params() {
            let ty = match p.ty {
                ParamType::String => ValueType::String,
                ParamType::Integer => ValueType::Integer,
                ParamType::Float => ValueType::Float,
                ParamType::Boolean => ValueType::Boolean,
                ParamType::Strings => ValueType::Strings,
            };
            let mut f = field(p.name, ty, p.description);
            f.default = p.default.as_ref().map(convert);
            f.allowed = p.allowed.iter().map(|s| (*s).to_owned()).collect();
            f.minimum = p.minimum;
            f.maximum = p.maximum;
            out.push(f);
        }
        out
    }

    fn user_settable(&self) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = HOST_SETTINGS.to_vec();
        keys.extend(self.0.params().iter().filter(|p| p.user_settable).map(|p| p.name));
        keys
    }

    fn generator(&self) -> Option<&Arc<dyn Generator>> {
        Some(&self.0)
    }

    fn run(&self, ctx: &StageContext) -> Result<Output> {
        run(ctx, self.0.as_ref())
    }
}

/// Bridges generator progress to events and cancellation.
pub(crate) struct GenProgress<'a> {
    pub(crate) ctx: &'a StageContext,
    /// 0 while fitting, 500 while sampling.
    pub(crate) phase_offset: u64,
}

impl Progress for GenProgress<'_> {
    fn advance(&self, done: u64, total: u64) {
        // Two phases (fit, sample) shown as one 0-200 % bar would confuse:
        // report fit as the first half and sampling as the second.
        let scaled = self.phase_offset + (done * 500).checked_div(total).unwrap_or(0);
        self.ctx.progress(scaled, 1000, "‰");
    }
    fn is_cancelled(&self) -> bool {
        self.ctx.cancelled()
    }
}

/// A generator stage's own parameters (everything but `rows`, `seed` and
/// `save_model`).
pub(crate) fn params(settings: &Settings) -> Params {
    let mut params = Params::new();
    for (k, v) in settings {
        if !HOST_SETTINGS.contains(&k.as_str()) {
            params = params.set(k, to_param(v));
        }
    }
    params
}

/// The file a generator stage saves its model to.
pub fn saved_model_name(stage: &str) -> String {
    format!("model-{stage}.safetensors")
}

fn run(ctx: &StageContext, generator: &dyn Generator) -> Result<Output> {
    let table = ctx.table(0)?;
    let params = params(ctx.settings());
    let gen_err = |source| Error::Generator {
        stage: ctx.id().to_owned(),
        generator: generator.name().to_owned(),
        source,
    };
    // The release rule (crate::release): a non-DP generator learns from a
    // copy whose identifier-like columns and rare values are markers, and
    // what it samples is finished so that no rare real value is released.
    // A DP generator's guarantee covers what it releases; rewriting its
    // input or output by exact counts would void it.
    let dp = generator.privacy_cost(&params).map_err(gen_err)?.is_some();
    let guarded = if dp {
        None
    } else {
        Some(crate::release::before_fit(&table)?)
    };
    let learn: &Table = guarded.as_ref().map_or(table.as_ref(), |g| &g.table);
    let batch = learn.concat()?;
    // Default size: the whole real table, also when the generator was trained
    // on a split-off part of it.
    let default_rows = table.population_rows.unwrap_or(batch.num_rows());
    let rows_setting = ctx.int("rows");
    let seed = ctx.seed();
    let data = TrainingData {
        batch: &batch,
        semantics: &learn.semantics,
    };
    let save = matches!(get(ctx.settings(), "save_model"), Some(ConfigValue::Boolean(true)));
    if save {
        generator.check_save(&params).map_err(gen_err)?;
    }
    let fit_started = Instant::now();
    let engine = &ctx.engine.engine;
    let mut engine_notes = Vec::new();
    let model = if engine.is_distributed() && generator.fits_from_counts() {
        // The rows go to the cluster as partitioned Parquet; only exact
        // counts come back, and the fit adds its noise here, once.
        let staged =
            doppel_engine::StagedTable::write(std::slice::from_ref(&batch), &ctx.engine.scratch, ctx.engine.part_rows)
                .map_err(|e| ctx.error(e.to_string()))?;
        let counts = doppel_engine::EngineCounts::open(engine, &staged, learn.semantics.to_vec())
            .map_err(|e| ctx.error(e.to_string()))?;
        // No row or part count: a DP fit's report states only noisy counts.
        engine_notes.push(format!("counted on {engine}; the noise was added here, once"));
        generator
            .fit_counts(&counts, &params, seed, &GenProgress { ctx, phase_offset: 0 })
            .map_err(gen_err)?
    } else {
        if engine.is_distributed() {
            engine_notes.push(format!(
                "learned on this machine: builtin:{} does not learn from counts alone, so {engine} was not used",
                generator.name()
            ));
        }
        generator
            .fit(&data, &params, seed, &GenProgress { ctx, phase_offset: 0 })
            .map_err(gen_err)?
    };
    let fit = fit_started.elapsed();
    // A DP model answers its noisy row count of the rows it learned from: the
    // real count is private too. It is not scaled up for rows a split set
    // aside, because that ratio comes from exact counts.
    let rows = rows_setting.map_or_else(
        || model.suggested_rows().unwrap_or(default_rows),
        |r| usize::try_from(r).unwrap_or(0),
    );
    let sample_started = Instant::now();
    let synthetic = model
        .sample(rows, seed, &GenProgress { ctx, phase_offset: 500 })
        .map_err(gen_err)?;
    let synthetic = match &guarded {
        Some(g) => crate::release::after_sample(&synthetic, Some(&g.forbidden), seed)?,
        None => synthetic,
    };
    let sample = sample_started.elapsed();
    let out = Table {
        schema: synthetic.schema(),
        batches: vec![synthetic],
        // The twin has the same columns with the same meaning; keeping the real
        // table's semantic types lets metrics compare like with like.
        semantics: Arc::clone(&table.semantics),
        population_rows: None,
    };
    let saved_model = if save {
        let bytes = model
            .save()
            .ok_or_else(|| ctx.error(format!("builtin:{} cannot save its models", generator.name())))?
            .map_err(gen_err)?;
        Some(Arc::new(Document {
            file_name: saved_model_name(ctx.id()),
            bytes,
            pages: 0,
            charts: None,
        }))
    } else {
        None
    };
    let mut notes = model.notes();
    notes.extend(engine_notes);
    notes.extend(
        guarded
            .iter()
            .flat_map(|g| g.columns.iter().map(crate::release::ColumnGuard::note)),
    );
    let summary = ModelSummary {
        generator: generator.name().to_owned(),
        columns: model.columns(),
        notes,
        fit,
        sample,
        seed,
        privacy: model.privacy(),
        saved_model,
        loaded_from: None,
    };
    Ok(Output::Table(Arc::new(out), Provenance::Generated(Arc::new(summary))))
}
