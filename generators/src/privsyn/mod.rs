//! `builtin:privsyn`: differentially private synthesis from noisy marginals
//! (PrivSyn, Zhang et al., USENIX Security 2021), accounted in zCDP.
//!
//! 1. Budget: (ε, δ) → ρ with the exact conversion ([`crate::accountant`]).
//!    5 % of ρ finds bounds for numeric columns without declared ones; of the
//!    rest 10 % measures the 1-way marginals, 10 % scores pairs (InDif) and
//!    80 % measures the chosen pairs, each ∝ its cells^(2/3).
//! 2. Domains ([`domain`]): numeric columns become bins between their
//!    bounds; categories are released by Gaussian partition selection on the
//!    1-way measurement (half of δ), the rest fall into a "missing or rare"
//!    bin that decodes to null.
//! 3. Selection and measurement ([`marginals`]): InDif + DenseMarg, then the
//!    Gaussian mechanism on each chosen pair; consistency post-processing
//!    makes all marginals agree and non-negative.
//! 4. Synthesis ([`gum`]): GUM moves records towards every marginal. The
//!    row count defaults to the noisy total, not the real one.
//!
//! Rows are read only through [`crate::counts::CountSource`] (bounds
//! histograms, category counts, then every 1- and 2-way table in one
//! request), so the counting may run on an engine; the noise is added here.
//!
//! Every step's ρ is recorded in the model's [`PrivacySpend`]. Neighbouring
//! tables differ by adding or removing one row. Keys (`id` columns) are not
//! modelled: the twin gets fresh sequential keys.

pub(crate) mod domain;
mod gum;
mod marginals;
pub(crate) mod noise;

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, UInt64Array, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::accountant::{PrivacyCost, PrivacySpend, cdp_eps, cdp_rho, gaussian_sigma};
use crate::counts::{CountSource, LocalCounts};
use crate::params::{ParamSpec, ParamType, ParamValue, Params};
use crate::semantic::SemanticType;
use crate::{ColumnModel, Error, Generator, Model, Progress, Result, TrainingData};

use domain::Codec;
use marginals::{Discrete, Marginal};
use noise::Noise;

const NAME: &str = "privsyn";
const SAMPLE_STREAM: u64 = 0x7072_6976_7379_6e5f;

/// Budget shares (PrivSyn's defaults, plus the bounds step).
const BOUNDS_SHARE: f64 = 0.05;
const ONE_WAY_SHARE: f64 = 0.1;
const INDIF_SHARE: f64 = 0.1;
/// Cells below this many noise standard deviations count as empty.
const SPARSE_SIGMAS: f64 = 2.0;

/// The PrivSyn generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrivSyn;

/// Parsed parameters.
struct Settings {
    epsilon: f64,
    delta: f64,
    max_cells: usize,
    domain: DomainParams,
    iterations: usize,
    reproducible_noise: bool,
}

/// What a DP generator is told about its columns' domains: bins per numeric
/// column, and what is public knowledge (bounds, value sets) and so costs no
/// budget. PrivSyn's, and DP-SGD generators' that train on its domain.
#[derive(Debug, Clone)]
pub(crate) struct DomainParams {
    /// Bins per numeric column.
    pub(crate) bins: usize,
    /// Declared bounds: `(column, low, high)`.
    pub(crate) bounds: Vec<(String, f64, f64)>,
    /// Columns whose value sets are public.
    pub(crate) public_categories: Vec<String>,
}

impl DomainParams {
    /// The parameters' declarations (`bins`, `bounds`, `public_categories`).
    pub(crate) fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec::integer("bins", "Bins per numeric column.", 32, 2.0, 1000.0),
            ParamSpec {
                name: "bounds",
                description: "Public bounds `column=low..high` for numeric columns (saves the budget of \
                              finding them privately; values outside are clipped).",
                ty: ParamType::Strings,
                default: None,
                allowed: &[],
                minimum: None,
                maximum: None,
                user_settable: true,
            },
            ParamSpec {
                name: "public_categories",
                description: "Columns whose set of values is public knowledge: every observed value is \
                              kept instead of being released by partition selection.",
                ty: ParamType::Strings,
                default: None,
                allowed: &[],
                minimum: None,
                maximum: None,
                user_settable: true,
            },
        ]
    }

    /// Parse them.
    pub(crate) fn parse(params: &Params) -> Result<DomainParams> {
        let bins = usize::try_from(params.integer("bins", 32)?)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| invalid("bins", "must be a positive integer"))?;
        let mut bounds = Vec::new();
        for spec in params.strings("bounds")?.unwrap_or_default() {
            let parsed = spec.split_once('=').and_then(|(col, range)| {
                let (lo, hi) = range.split_once("..")?;
                let (lo, hi) = (lo.trim().parse::<f64>().ok()?, hi.trim().parse::<f64>().ok()?);
                (lo.is_finite() && hi.is_finite() && lo <= hi).then(|| (col.trim().to_owned(), lo, hi))
            });
            bounds.push(
                parsed
                    .ok_or_else(|| invalid("bounds", format!("`{spec}` is not `column=low..high` with low ≤ high")))?,
            );
        }
        Ok(DomainParams {
            bins,
            bounds,
            public_categories: params.strings("public_categories")?.unwrap_or_default().to_vec(),
        })
    }

    /// Each column's treatment, decided from the schema and these
    /// parameters only, so that the budget split never depends on values.
    /// Errors name a declared column the table lacks.
    pub(crate) fn kinds(&self, schema: &SchemaRef, semantics: &[SemanticType]) -> Result<Vec<Kind>> {
        crate::check_semantics(schema.fields().len(), semantics.len())?;
        for (col, _, _) in &self.bounds {
            if schema.index_of(col).is_err() {
                return Err(invalid("bounds", format!("no column `{col}`")));
            }
        }
        for col in &self.public_categories {
            if schema.index_of(col).is_err() {
                return Err(invalid("public_categories", format!("no column `{col}`")));
            }
        }
        Ok(schema
            .fields()
            .iter()
            .zip(semantics)
            .map(|(f, sem)| {
                let numeric_type = f.data_type().is_numeric()
                    || matches!(
                        f.data_type(),
                        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
                    );
                match sem {
                    SemanticType::Id => Kind::Key,
                    SemanticType::Numerical | SemanticType::Datetime if numeric_type => Kind::Numeric {
                        public: self.bounds.iter().any(|(c, _, _)| c == f.name()),
                    },
                    _ if f.data_type() == &DataType::Boolean => Kind::Boolean,
                    _ => Kind::Categories {
                        public: self.public_categories.iter().any(|c| c == f.name()),
                    },
                }
            })
            .collect())
    }

    /// What the spend's notes say was declared public.
    pub(crate) fn public_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.bounds.is_empty() {
            let cols: Vec<&str> = self.bounds.iter().map(|(c, _, _)| c.as_str()).collect();
            notes.push(format!("bounds declared public for {}", cols.join(", ")));
        }
        if !self.public_categories.is_empty() {
            notes.push(format!(
                "value sets declared public for {}",
                self.public_categories.join(", ")
            ));
        }
        notes
    }
}

/// How a column is treated by a DP generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// An id: not modelled, fresh keys in the twin.
    Key,
    /// Binned between bounds (declared when `public`).
    Numeric { public: bool },
    /// True / false / null.
    Boolean,
    /// Categories: every observed value when `public`, else those partition
    /// selection releases.
    Categories { public: bool },
}

/// The budget of a private domain: ρ per numeric column whose bounds are
/// found privately, the Gaussian noise (σ) on each category count of
/// partition selection, and δ per column that selects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DomainBudget {
    pub(crate) rho_bound_each: f64,
    pub(crate) sigma_select: f64,
    pub(crate) delta_each: f64,
}

/// A released domain: each column's plan and codec, the noisy 1-way counts
/// partition selection measured on the way (`None` for other columns), and
/// notes on what was merged or lost.
pub(crate) struct Domain {
    pub(crate) plans: Vec<Plan>,
    pub(crate) codecs: Vec<Codec>,
    pub(crate) measured: Vec<Option<Vec<f64>>>,
    pub(crate) notes: Vec<String>,
}

impl Domain {
    /// Each modelled column (by schema index) with how its rows map to bins.
    pub(crate) fn binned(&self) -> Vec<(usize, crate::counts::Binning)> {
        self.plans
            .iter()
            .enumerate()
            .filter_map(|(ci, p)| match p {
                Plan::Attr(a) => Some((ci, self.codecs[*a].binning())),
                Plan::Key => None,
            })
            .collect()
    }
}

/// Release each column's domain under `budget`: numeric columns become bins
/// between their declared or privately found bounds (one bucket-count
/// request for all of them), categories are released by Gaussian partition
/// selection or, when public, kept whole. Progress advances one step per
/// column, out of `total_steps`.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site per generator; each argument is one decision"
)]
pub(crate) fn private_domain(
    source: &dyn CountSource,
    kinds: &[Kind],
    declared: &DomainParams,
    budget: DomainBudget,
    noise: &mut Noise,
    progress: &dyn Progress,
    total_steps: u64,
) -> Result<Domain> {
    let schema = source.schema();
    let unbounded: Vec<usize> = (0..kinds.len())
        .filter(|&c| matches!(kinds[c], Kind::Numeric { public: false }))
        .collect();
    let buckets = source.bucket_counts(&unbounded)?;
    let categorical: Vec<usize> = (0..kinds.len())
        .filter(|&c| matches!(kinds[c], Kind::Categories { .. }))
        .collect();
    let mut values = source.value_counts(&categorical)?.into_iter();
    let mut plans = Vec::with_capacity(kinds.len());
    let mut codecs = Vec::new();
    let mut measured: Vec<Option<Vec<f64>>> = Vec::new();
    let mut notes = Vec::new();
    for (ci, field) in schema.fields().iter().enumerate() {
        if progress.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let (codec, one) = match kinds[ci] {
            Kind::Key => {
                plans.push(Plan::Key);
                continue;
            }
            Kind::Numeric { public } => {
                let whole = !matches!(
                    field.data_type(),
                    DataType::Float16 | DataType::Float32 | DataType::Float64
                );
                let bounds = if public {
                    declared
                        .bounds
                        .iter()
                        .find(|(c, _, _)| c == field.name())
                        .map(|(_, lo, hi)| (*lo, *hi))
                } else {
                    let at = unbounded.iter().position(|&c| c == ci).expect("counted above");
                    domain::private_bounds(&buckets[at], budget.rho_bound_each, noise)
                };
                let (lo, hi) = bounds.unwrap_or_else(|| {
                    notes.push(format!(
                        "`{}`: too few rows to find bounds privately at this budget; modelled as zero \
                         or null (declare `bounds` to keep it)",
                        field.name()
                    ));
                    (0.0, 0.0)
                });
                (Codec::Numeric(domain::numeric_bins(lo, hi, declared.bins, whole)), None)
            }
            Kind::Boolean => (
                Codec::Categorical {
                    values: domain::boolean_values(field.data_type())?,
                },
                None,
            ),
            Kind::Categories { public } => {
                let d = values.next().expect("one per categorical column");
                if public {
                    // Every observed non-null value is a bin; null (and
                    // anything unseen) is the last.
                    let null = d.null_index();
                    let keep: Vec<u32> = (0..d.counts.len())
                        .filter(|&v| Some(v) != null)
                        .map(|v| u32::try_from(v).expect("small"))
                        .collect();
                    let values = arrow::compute::take(d.values.as_ref(), &arrow::array::UInt32Array::from(keep), None)?;
                    (Codec::Categorical { values }, None)
                } else {
                    let (codec, one) = domain::select_categories(&d, budget.sigma_select, budget.delta_each, noise)?;
                    let kept = codec.size() - 1;
                    let dropped = d.counts.len() - kept - usize::from(d.null_index().is_some());
                    if dropped > 0 {
                        notes.push(format!(
                            "`{}`: {kept} values released, {dropped} rare values merged into null",
                            field.name()
                        ));
                    }
                    (codec, Some(one))
                }
            }
        };
        plans.push(Plan::Attr(codecs.len()));
        measured.push(one);
        codecs.push(codec);
        progress.advance(ci as u64 + 1, total_steps);
    }
    Ok(Domain {
        plans,
        codecs,
        measured,
        notes,
    })
}

pub(crate) fn invalid(name: &str, message: impl Into<String>) -> Error {
    Error::InvalidParam {
        name: name.to_owned(),
        message: message.into(),
    }
}

/// A DP fit's `(epsilon, delta)`, checked (δ defaults to 1e-9).
pub(crate) fn budget(params: &Params, default_epsilon: f64) -> Result<(f64, f64)> {
    let epsilon = params.float("epsilon", default_epsilon)?;
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(invalid("epsilon", "must be a positive number"));
    }
    let delta = params.float("delta", 1e-9)?;
    if !(delta > 0.0 && delta < 1.0) {
        return Err(invalid("delta", "must be in (0, 1)"));
    }
    Ok((epsilon, delta))
}

/// How many columns a DP fit models, finds bounds for and selects
/// categories of; and δ split between partition selection (half, when a
/// column selects) and the Gaussian measurements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns {
    pub(crate) modelled: usize,
    pub(crate) need_bounds: usize,
    pub(crate) selecting: usize,
    pub(crate) delta_gauss: f64,
    pub(crate) delta_select: f64,
}

impl Columns {
    pub(crate) fn of(kinds: &[Kind], delta: f64) -> Columns {
        let selecting = kinds
            .iter()
            .filter(|k| matches!(k, Kind::Categories { public: false }))
            .count();
        let (delta_gauss, delta_select) = if selecting > 0 {
            (delta / 2.0, delta / 2.0)
        } else {
            (delta, 0.0)
        };
        Columns {
            modelled: kinds.iter().filter(|k| **k != Kind::Key).count(),
            need_bounds: kinds
                .iter()
                .filter(|k| matches!(k, Kind::Numeric { public: false }))
                .count(),
            selecting,
            delta_gauss,
            delta_select,
        }
    }
}

impl Settings {
    fn parse(params: &Params) -> Result<Settings> {
        let (epsilon, delta) = budget(params, 1.0)?;
        let positive = |name: &str, default: i64| -> Result<usize> {
            let v = params.integer(name, default)?;
            usize::try_from(v)
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| invalid(name, "must be a positive integer"))
        };
        Ok(Settings {
            epsilon,
            delta,
            max_cells: positive("max_cells", 10_000)?,
            domain: DomainParams::parse(params)?,
            iterations: positive("iterations", 50)?,
            reproducible_noise: params.boolean("reproducible_noise", false)?,
        })
    }
}

/// `reproducible_noise`: for tests, never a job's to set.
pub(crate) fn reproducible_noise() -> ParamSpec {
    ParamSpec {
        name: "reproducible_noise",
        description: "Derive the DP noise from `seed` (for tests). Anyone who knows the seed can \
                      remove the noise, so this voids the guarantee.",
        ty: ParamType::Boolean,
        default: Some(ParamValue::Boolean(false)),
        allowed: &[],
        minimum: None,
        maximum: None,
        user_settable: false,
    }
}

impl Generator for PrivSyn {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        "Differentially private synthesis (PrivSyn): noisy 1-way and selected 2-way marginals \
         under zCDP, made consistent, then GUM record synthesis. The report states the ε, δ spent."
    }

    fn params(&self) -> Vec<ParamSpec> {
        let mut specs = vec![
            ParamSpec::float("epsilon", "Privacy budget ε of the whole fit.", 1.0, 0.001, 100.0),
            ParamSpec::float(
                "delta",
                "Privacy budget δ (keep it well below 1/rows).",
                1e-9,
                1e-15,
                1e-3,
            ),
            ParamSpec::integer(
                "max_cells",
                "Largest pair marginal (cells) that may be selected.",
                10_000,
                4.0,
                1e7,
            ),
        ];
        specs.extend(DomainParams::specs());
        specs.extend([
            ParamSpec::integer("iterations", "GUM update rounds.", 50, 1.0, 1000.0),
            reproducible_noise(),
        ]);
        specs
    }

    fn privacy_cost(&self, params: &Params) -> Result<Option<PrivacyCost>> {
        let s = Settings::parse(params)?;
        Ok(Some(PrivacyCost {
            epsilon: s.epsilon,
            delta: s.delta,
        }))
    }

    fn fit(
        &self,
        data: &TrainingData<'_>,
        params: &Params,
        seed: u64,
        progress: &dyn Progress,
    ) -> Result<Box<dyn Model>> {
        Ok(Box::new(PrivSynModel::fit(data, params, seed, progress)?))
    }

    fn fits_from_counts(&self) -> bool {
        true
    }

    fn fit_counts(
        &self,
        source: &dyn CountSource,
        params: &Params,
        seed: u64,
        progress: &dyn Progress,
    ) -> Result<Box<dyn Model>> {
        Ok(Box::new(PrivSynModel::fit_counts(source, params, seed, progress)?))
    }
}

/// How a column is handled.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// Modelled: attribute index into the discrete table.
    Attr(usize),
    /// A key: fresh sequential values.
    Key,
}

/// A fitted PrivSyn model: consistent noisy marginals and how to decode them.
#[derive(Debug)]
pub struct PrivSynModel {
    schema: SchemaRef,
    semantics: Vec<SemanticType>,
    plans: Vec<Plan>,
    codecs: Vec<Codec>,
    sizes: Vec<usize>,
    marginals: Vec<Marginal>,
    total: f64,
    iterations: usize,
    spend: PrivacySpend,
    notes: Vec<String>,
}

impl PrivSynModel {
    fn fit(data: &TrainingData<'_>, params: &Params, seed: u64, progress: &dyn Progress) -> Result<Self> {
        Self::fit_counts(&LocalCounts::new(data.batch, data.semantics), params, seed, progress)
    }

    /// Fit from exact counts, wherever they were computed: the noise is
    /// added here, once, so a fit on an engine spends exactly what the same
    /// fit on rows in memory spends.
    #[allow(clippy::too_many_lines, reason = "one pass through the algorithm's steps, in order")]
    pub(crate) fn fit_counts(
        source: &dyn CountSource,
        params: &Params,
        seed: u64,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let s = Settings::parse(params)?;
        let schema = source.schema();
        let semantics = source.semantics().to_vec();
        let kinds = s.domain.kinds(&schema, &semantics)?;
        let mut noise = Noise::for_fit(s.reproducible_noise, seed)?;

        // Each column's treatment is decided before touching values, so the
        // budget split depends on the schema and parameters only.
        let Columns {
            modelled,
            need_bounds,
            selecting,
            delta_gauss,
            delta_select,
        } = Columns::of(&kinds, s.delta);
        let rho = cdp_rho(s.epsilon, delta_gauss);
        let rho_bounds = if need_bounds > 0 { BOUNDS_SHARE * rho } else { 0.0 };
        let rest = rho - rho_bounds;
        let (rho_one, rho_indif, rho_pairs) = if modelled >= 2 {
            (
                ONE_WAY_SHARE * rest,
                INDIF_SHARE * rest,
                (1.0 - ONE_WAY_SHARE - INDIF_SHARE) * rest,
            )
        } else {
            (rest, 0.0, 0.0)
        };
        #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
        let rho_one_each = rho_one / modelled.max(1) as f64;
        #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
        let rho_bound_each = rho_bounds / need_bounds.max(1) as f64;
        #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
        let delta_each = delta_select / selecting.max(1) as f64;
        let sigma_one = gaussian_sigma(rho_one_each, 1.0);

        // Pass 1, per column: its domain. Partition selection measures the
        // categories' 1-way marginals on the way, at the 1-way noise.
        let total_steps = schema.fields().len() as u64 + 2;
        let domain = private_domain(
            source,
            &kinds,
            &s.domain,
            DomainBudget {
                rho_bound_each,
                sigma_select: sigma_one,
                delta_each,
            },
            &mut noise,
            progress,
            total_steps,
        )?;
        let binned = domain.binned();
        let Domain {
            plans,
            codecs,
            measured,
            mut notes,
        } = domain;
        let sizes: Vec<usize> = codecs.iter().map(Codec::size).collect();

        // Pass 2: every 1-way table and, when there are pairs to score,
        // every 2-way table, in one request.
        let attrs = codecs.len();
        let mut sets: Vec<Vec<usize>> = (0..attrs).map(|a| vec![a]).collect();
        if attrs >= 2 {
            sets.extend((0..attrs).flat_map(|a| (a + 1..attrs).map(move |b| vec![a, b])));
        }
        let counted = source.tables(&binned, &sets)?;
        // Every 1-way table counts every row once.
        let rows = counted.first().map_or(0, |t| t.iter().sum::<u64>());
        if progress.is_cancelled() {
            return Err(Error::Cancelled);
        }
        progress.advance(schema.fields().len() as u64 + 1, total_steps);
        let discrete = Discrete {
            #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
            tables: sets
                .into_iter()
                .zip(counted)
                .map(|(set, t)| (set, t.into_iter().map(|c| c as f64).collect()))
                .collect(),
            sizes: sizes.clone(),
            rows: usize::try_from(rows).unwrap_or(usize::MAX),
        };
        // Numeric and boolean columns, and categories whose values are
        // public, measure their 1-way marginal from the exact table.
        let ones: Vec<Marginal> = measured
            .into_iter()
            .enumerate()
            .map(|(a, one)| Marginal {
                attrs: vec![a],
                counts: one.unwrap_or_else(|| discrete.measure(&[a], rho_one_each, &mut noise).counts),
                sigma: sigma_one,
            })
            .collect();

        let mut steps = Vec::new();
        if rho_bounds > 0.0 {
            steps.push((format!("bounds of {need_bounds} numeric columns"), rho_bounds));
        }
        steps.push((format!("1-way marginals of {modelled} columns"), rho_one));
        let mut marginals = ones;
        if modelled >= 2 {
            let one_counts: Vec<Vec<f64>> = discrete
                .sizes
                .iter()
                .enumerate()
                .map(|(a, _)| discrete.table(&[a]))
                .collect();
            let scores = marginals::indif(&discrete, &one_counts, rho_indif, &mut noise);
            steps.push((format!("InDif scores of {} pairs", scores.len()), rho_indif));
            let chosen = marginals::select(&scores, &sizes, rho_pairs, s.max_cells);
            if chosen.is_empty() {
                // Nothing pays for its noise: spend the pairs' share on the
                // 1-ways instead of leaving it unused.
                #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
                let each = rho_pairs / modelled as f64;
                for m in &mut marginals {
                    let again = discrete.measure(&m.attrs, each, &mut noise);
                    marginals::combine(m, &again);
                }
                steps.push(("1-way marginals again (no pair selected)".to_owned(), rho_pairs));
                notes.push("no pair marginal was worth its noise at this budget: columns are independent".into());
            } else {
                let budgets = marginals::pair_budgets(&chosen, &sizes, rho_pairs);
                for (&(a, b), &r) in chosen.iter().zip(&budgets) {
                    marginals.push(discrete.measure(&[a, b], r, &mut noise));
                }
                steps.push((format!("{} selected pair marginals", chosen.len()), rho_pairs));
            }
        }
        drop(discrete);
        let total = marginals::make_consistent(&mut marginals, &sizes, 100);
        progress.advance(total_steps, total_steps);
        marginals::sparsify(&mut marginals, &sizes, total, SPARSE_SIGMAS, 20);
        // Columns declared non-nullable can't take the null (missing or rare)
        // bin: give its mass to the released values.
        for (plan, field) in plans.iter().zip(schema.fields()) {
            if let Plan::Attr(a) = plan
                && !field.is_nullable()
            {
                let missing = match &codecs[*a] {
                    Codec::Categorical { .. } => sizes[*a] - 1,
                    Codec::Numeric(_) => 0,
                };
                if !marginals::forbid(&mut marginals, *a, missing, &sizes, total) {
                    return Err(Error::NothingReleased {
                        column: field.name().clone(),
                    });
                }
            }
        }

        let spent: f64 = steps.iter().map(|(_, r)| r).sum();
        let mut spend_notes = vec!["neighbouring tables differ by one added or removed row".to_owned()];
        if selecting > 0 {
            spend_notes.push(format!(
                "categories released by Gaussian partition selection; δ = {delta_select:.1e} of it, the rest \
                 from the zCDP conversion"
            ));
        }
        spend_notes.extend(s.domain.public_notes());
        if s.reproducible_noise {
            spend_notes.push(
                "noise derived from the seed (reproducible_noise): not private against anyone who knows it".into(),
            );
        }
        let spend = PrivacySpend {
            epsilon: cdp_eps(spent, delta_gauss),
            delta: delta_gauss + delta_select,
            rho: spent,
            steps,
            notes: spend_notes,
            sgd: None,
        };
        Ok(PrivSynModel {
            schema,
            semantics,
            plans,
            codecs,
            sizes,
            marginals,
            total,
            iterations: s.iterations,
            spend,
            notes,
        })
    }
}

/// Fresh keys `1..=rows` in the column's type (strings for text keys).
pub(crate) fn keys(rows: usize, data_type: &DataType) -> Result<ArrayRef> {
    let ids: ArrayRef = Arc::new(UInt64Array::from_iter_values(1..=rows as u64));
    Ok(match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s: ArrayRef = Arc::new(StringArray::from_iter_values((1..=rows).map(|i| format!("{i:06}"))));
            cast(&s, data_type)?
        }
        d if d.is_integer() => cast(&ids, d)?,
        d => new_null_array(d, rows),
    })
}

impl Model for PrivSynModel {
    fn sample(&self, rows: usize, seed: u64, progress: &dyn Progress) -> Result<RecordBatch> {
        // Sampling is post-processing of released marginals: a seeded stream
        // is fine here (and makes the twin reproducible).
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SAMPLE_STREAM);
        let records = gum::synthesize(
            &self.marginals,
            &self.sizes,
            rows,
            self.iterations,
            1.0,
            &mut rng,
            progress,
        )?;
        let mut columns = Vec::with_capacity(self.plans.len());
        for (plan, field) in self.plans.iter().zip(self.schema.fields()) {
            columns.push(match plan {
                Plan::Attr(a) => self.codecs[*a].decode(&records[*a], field.data_type(), &mut rng)?,
                Plan::Key => keys(rows, field.data_type())?,
            });
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    fn columns(&self) -> Vec<ColumnModel> {
        self.plans
            .iter()
            .zip(self.schema.fields())
            .zip(&self.semantics)
            .map(|((plan, field), semantic)| {
                let model = match plan {
                    Plan::Key => "key: fresh sequential values".to_owned(),
                    Plan::Attr(a) => {
                        let pairs: Vec<&str> = self
                            .marginals
                            .iter()
                            .filter(|m| m.attrs.len() == 2 && m.attrs.contains(a))
                            .filter_map(|m| m.attrs.iter().find(|x| *x != a))
                            .filter_map(|other| {
                                self.plans
                                    .iter()
                                    .position(|p| matches!(p, Plan::Attr(x) if x == other))
                                    .map(|ci| self.schema.field(ci).name().as_str())
                            })
                            .collect();
                        let with = if pairs.is_empty() {
                            String::new()
                        } else {
                            format!("; measured with {}", pairs.join(", "))
                        };
                        format!("{}{with}", self.codecs[*a].describe())
                    }
                };
                ColumnModel {
                    column: field.name().clone(),
                    semantic: *semantic,
                    model,
                }
            })
            .collect()
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        notes.push(format!(
            "(ε = {:.3}, δ = {:.1e})-DP: ρ = {:.5} in zCDP over {}",
            self.spend.epsilon,
            self.spend.delta,
            self.spend.rho,
            self.spend
                .steps
                .iter()
                .map(|(step, rho)| format!("{step} ({rho:.5})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        notes
    }

    fn privacy(&self) -> Option<PrivacySpend> {
        Some(self.spend.clone())
    }

    fn suggested_rows(&self) -> Option<usize> {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a positive row count"
        )]
        Some(self.total.round().max(1.0) as usize)
    }
}
