//! The Gaussian copula generator.
//!
//! 1. Each column gets a marginal model: numeric and datetime columns a
//!    [`marginal::Marginal`] (atoms + best-of continuous families), categorical,
//!    boolean and text columns frequency-ordered [`categorical::Categories`]
//!    (null is a category), ids a format-preserving key generator. Columns of
//!    personal data a protect stage replaced (semantic type `pii`) are
//!    resampled from their protected values, which keeps the fakes valid.
//! 2. Every modelled value becomes a uniform score `u` through its marginal, and
//!    a normal score `z = Φ⁻¹(u)`. Numeric columns with nulls get an extra
//!    "is null" dimension, so missingness correlates with the other columns.
//! 3. The correlation matrix of the normal scores is the copula.
//! 4. Sampling draws correlated normals through the Cholesky factor and maps
//!    them back through each marginal's inverse.
//!
//! Everything random flows from the caller's seed through ChaCha8 streams in a
//! fixed order, so a seed always gives the same table.

pub(crate) mod categorical;
pub(crate) mod ids;
pub(crate) mod marginal;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::linalg::{cholesky_shrunk, correlation};
use crate::params::{ParamSpec, ParamType, ParamValue, Params};
use crate::semantic::SemanticType;
use crate::stats::{NormalSampler, normal_cdf, normal_ppf};
use crate::{ColumnModel, Error, Generator, Model, Progress, Result, TrainingData};

use categorical::Categories;
use ids::IdModel;
use marginal::{CANDIDATES, Marginal};

const NAME: &str = "copula";
/// Stream separators, so fitting, sampling and id generation never share draws.
const FIT_STREAM: u64 = 0x6669_745f_7374_7265;
const SAMPLE_STREAM: u64 = 0x7361_6d70_6c65_5f73;

/// A Gaussian copula synthesizer (SDV `GaussianCopulaSynthesizer`'s model,
/// with exact atoms for repeated values and best-of marginal selection).
#[derive(Debug, Default, Clone, Copy)]
pub struct GaussianCopula;

/// How a numeric column maps to and from `f64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Repr {
    /// Floats: keep the learned number of decimals.
    Float { decimals: Option<u32> },
    /// Integers, dates and timestamps: round to whole units.
    Whole,
}

impl Repr {
    /// The representation of a numeric column of `data_type` with these values.
    pub(crate) fn of(data_type: &DataType, present: &[f64]) -> Repr {
        match data_type {
            DataType::Float16 | DataType::Float32 | DataType::Float64 => Repr::Float {
                decimals: learn_decimals(present),
            },
            // A decimal keeps its scale's digits (rounding 99.99 to a whole
            // number would write 100.00).
            DataType::Decimal32(_, scale)
            | DataType::Decimal64(_, scale)
            | DataType::Decimal128(_, scale)
            | DataType::Decimal256(_, scale) => Repr::Float {
                decimals: Some(u32::try_from(*scale).unwrap_or(0)),
            },
            _ => Repr::Whole,
        }
    }

    /// Round `x` as the column's values are written.
    pub(crate) fn round(self, x: f64) -> f64 {
        match self {
            Repr::Whole => x.round(),
            Repr::Float { decimals: Some(d) } => {
                let p = 10f64.powi(i32::try_from(d).unwrap_or(10));
                (x * p).round() / p
            }
            Repr::Float { decimals: None } => x,
        }
    }
}

/// Numbers back into a column of `data_type` (dates and timestamps through
/// their integer units).
pub(crate) fn from_f64(values: Float64Array, data_type: &DataType) -> Result<ArrayRef> {
    let values: ArrayRef = Arc::new(values);
    Ok(match data_type {
        DataType::Date32 => cast(&cast(&values, &DataType::Int32)?, data_type)?,
        DataType::Date64 | DataType::Timestamp(_, _) => cast(&cast(&values, &DataType::Int64)?, data_type)?,
        _ => cast(&values, data_type)?,
    })
}

#[derive(Debug)]
enum Plan {
    Continuous {
        dim: usize,
        /// Dimension and share of the "is null" indicator.
        null: Option<(usize, f64)>,
        marginal: Marginal,
        repr: Repr,
    },
    Categorical {
        dim: usize,
        categories: Categories,
    },
    Id(IdModel),
    AllNull,
}

/// A fitted copula.
#[derive(Debug)]
pub struct CopulaModel {
    schema: SchemaRef,
    semantics: Vec<SemanticType>,
    plans: Vec<Plan>,
    dims: usize,
    /// Lower-triangular Cholesky factor of the (shrunk) correlation, row-major.
    chol: Vec<f64>,
    /// Shrinkage towards the identity that made the correlation positive definite.
    shrinkage: f64,
}

impl Generator for GaussianCopula {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        "Gaussian copula: per-column marginals (best of several families by KS, exact atoms for \
         repeated values, frequency intervals for categories) joined by the correlation of normal \
         scores."
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec {
                name: "marginals",
                description: "Continuous families to choose from, by Kolmogorov-Smirnov statistic.",
                ty: ParamType::Strings,
                default: Some(ParamValue::Strings(
                    CANDIDATES.iter().map(|s| (*s).to_owned()).collect(),
                )),
                allowed: CANDIDATES,
                minimum: None,
                maximum: None,
                user_settable: true,
            },
            ParamSpec {
                name: "atom_threshold",
                description: "Share of rows above which a repeated numeric value is modelled exactly.",
                ty: ParamType::Float,
                default: Some(ParamValue::Float(0.01)),
                allowed: &[],
                minimum: Some(0.0),
                maximum: Some(1.0),
                user_settable: true,
            },
        ]
    }

    fn fit(
        &self,
        data: &TrainingData<'_>,
        params: &Params,
        seed: u64,
        progress: &dyn Progress,
    ) -> Result<Box<dyn Model>> {
        Ok(Box::new(CopulaModel::fit(data, params, seed, progress)?))
    }
}

/// Numeric view of a numeric or temporal column (`None` for other types).
pub(crate) fn as_f64(array: &ArrayRef) -> Result<Option<Float64Array>> {
    let dt = array.data_type();
    let widened = match dt {
        DataType::Date32 => cast(array, &DataType::Int32)?,
        DataType::Date64 | DataType::Timestamp(_, _) => cast(array, &DataType::Int64)?,
        d if d.is_numeric() => Arc::clone(array),
        _ => return Ok(None),
    };
    Ok(Some(
        cast(&widened, &DataType::Float64)?
            .as_primitive::<Float64Type>()
            .clone(),
    ))
}

/// The number of decimals that represent every value exactly (up to 10),
/// learned on up to 1000 values like SDV's `learn_rounding_scheme`.
pub(crate) fn learn_decimals(values: &[f64]) -> Option<u32> {
    let mut best = 0;
    for &v in values.iter().take(1000) {
        let mut k = 0;
        while k <= 10 {
            let scaled = v * 10f64.powi(k);
            if (scaled - scaled.round()).abs() <= 1e-9 * scaled.abs().max(1.0) {
                break;
            }
            k += 1;
        }
        if k > 10 {
            return None;
        }
        best = best.max(k);
    }
    u32::try_from(best).ok()
}

impl CopulaModel {
    fn fit(data: &TrainingData<'_>, params: &Params, seed: u64, progress: &dyn Progress) -> Result<Self> {
        let batch = data.batch;
        let schema = batch.schema();
        data.check_semantics()?;
        let n = batch.num_rows();
        if n == 0 {
            return Err(Error::EmptyTable);
        }
        let atom_threshold = params.float("atom_threshold", 0.01)?;
        let candidates: Vec<String> = params.strings("marginals")?.map_or_else(
            || CANDIDATES.iter().map(|s| (*s).to_owned()).collect(),
            <[String]>::to_vec,
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ FIT_STREAM);
        let mut plans = Vec::with_capacity(batch.num_columns());
        let mut scores: Vec<Vec<f64>> = Vec::new();
        // (plan index, category code of every row) of each categorical column.
        let mut categorical_codes: Vec<(usize, Vec<u32>)> = Vec::new();
        let total = batch.num_columns() as u64 + 1;

        for (ci, (field, column)) in schema.fields().iter().zip(batch.columns()).enumerate() {
            if progress.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let semantic = data.semantics[ci];
            if column.null_count() == n {
                plans.push(Plan::AllNull);
                continue;
            }
            let numeric = match semantic {
                SemanticType::Numerical | SemanticType::Datetime => as_f64(column)?,
                _ => None,
            };
            if semantic == SemanticType::Id
                && let Some(model) = IdModel::fit(column)?
            {
                plans.push(Plan::Id(model));
                continue;
            }
            if let Some(values) = numeric {
                let present: Vec<f64> = values.iter().flatten().filter(|v| v.is_finite()).collect();
                if !present.is_empty() {
                    let marginal = Marginal::fit(&present, atom_threshold, &candidates);
                    let repr = Repr::of(field.data_type(), &present);
                    let dim = scores.len();
                    let mut u = Vec::with_capacity(n);
                    let mut is_null = Vec::with_capacity(n);
                    for v in values.iter() {
                        match v.filter(|x| x.is_finite()) {
                            Some(x) => {
                                u.push(marginal.to_uniform(x, &mut rng));
                                is_null.push(false);
                            }
                            // A missing value carries no information about the
                            // column's own score: draw it independently.
                            None => {
                                u.push(rand::RngExt::random::<f64>(&mut rng));
                                is_null.push(true);
                            }
                        }
                    }
                    scores.push(u);
                    let nulls = is_null.iter().filter(|b| **b).count();
                    let null = if nulls > 0 {
                        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
                        let share = nulls as f64 / n as f64;
                        let present_cut = 1.0 - share;
                        let u: Vec<f64> = is_null
                            .iter()
                            .map(|&missing| {
                                let r: f64 = rand::RngExt::random(&mut rng);
                                if missing {
                                    present_cut + r * share
                                } else {
                                    r * present_cut
                                }
                            })
                            .collect();
                        scores.push(u);
                        Some((dim + 1, share))
                    } else {
                        None
                    };
                    plans.push(Plan::Continuous {
                        dim,
                        null,
                        marginal,
                        repr,
                    });
                    progress.advance(ci as u64 + 1, total);
                    continue;
                }
            }
            // Categorical, boolean, text, and anything numeric that could not be
            // read as numbers: model the distinct values.
            let (categories, codes) = Categories::fit(column)?;
            let dim = scores.len();
            scores.push(codes.iter().map(|&c| categories.to_uniform(c, &mut rng)).collect());
            categorical_codes.push((plans.len(), codes));
            plans.push(Plan::Categorical { dim, categories });
            progress.advance(ci as u64 + 1, total);
        }

        let dims = scores.len();
        let mut normal: Vec<Vec<f64>> = scores
            .into_iter()
            .map(|u| u.into_iter().map(normal_ppf).collect())
            .collect();
        align_categories(&mut plans, &mut categorical_codes, &mut normal, &mut rng)?;
        let r = correlation(&normal);
        let (chol, shrinkage) = cholesky_shrunk(&r, dims);
        progress.advance(total, total);
        Ok(CopulaModel {
            schema,
            semantics: data.semantics.to_vec(),
            plans,
            dims,
            chol,
            shrinkage,
        })
    }

    fn decode_continuous(
        &self,
        u: &[f64],
        null: Option<&[f64]>,
        null_share: f64,
        marginal: &Marginal,
        repr: Repr,
        data_type: &DataType,
    ) -> Result<ArrayRef> {
        let present_cut = 1.0 - null_share;
        let values: Float64Array = u
            .iter()
            .enumerate()
            .map(|(r, &ui)| {
                if let Some(nu) = null
                    && nu[r] >= present_cut
                {
                    return None;
                }
                Some(repr.round(marginal.ppf(ui)))
            })
            .collect();
        from_f64(values, data_type)
    }
}

/// Correlation ratio η² of `z` grouped by `codes`: the share of z's variance
/// that the categories explain.
fn correlation_ratio(z: &[f64], codes: &[u32], k: usize) -> (f64, Vec<f64>) {
    let mut sums = vec![0.0; k];
    let mut counts = vec![0usize; k];
    for (&v, &c) in z.iter().zip(codes) {
        sums[c as usize] += v;
        counts[c as usize] += 1;
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let mean = z.iter().sum::<f64>() / z.len().max(1) as f64;
    let total: f64 = z.iter().map(|v| (v - mean) * (v - mean)).sum();
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let means: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &c)| if c > 0 { s / c as f64 } else { 0.0 })
        .collect();
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let between: f64 = means
        .iter()
        .zip(&counts)
        .map(|(m, &c)| c as f64 * (m - mean) * (m - mean))
        .sum();
    (if total > 0.0 { between / total } else { 0.0 }, means)
}

/// Order each categorical column's intervals along the column it is most
/// associated with.
///
/// Frequency order (SDV's) is arbitrary with respect to other columns, so a
/// Gaussian correlation captures little of, say, `relationship` vs `sex`.
/// Sorting the categories by the mean normal score of their strongest partner
/// makes that dependence monotone, which a correlation represents well. Two
/// passes let categorical pairs settle on each other.
fn align_categories(
    plans: &mut [Plan],
    categorical_codes: &mut [(usize, Vec<u32>)],
    normal: &mut [Vec<f64>],
    rng: &mut ChaCha8Rng,
) -> Result<()> {
    for _pass in 0..2 {
        for (plan_index, codes) in categorical_codes.iter_mut() {
            let Plan::Categorical { dim, categories } = &mut plans[*plan_index] else {
                continue;
            };
            let k = categories.len();
            if k < 3 {
                // With two categories every order is equivalent up to sign.
                continue;
            }
            let mut best: Option<(f64, Vec<f64>)> = None;
            for (other, z) in normal.iter().enumerate() {
                if other == *dim {
                    continue;
                }
                let (eta2, means) = correlation_ratio(z, codes, k);
                if eta2 > best.as_ref().map_or(0.01, |b| b.0) {
                    best = Some((eta2, means));
                }
            }
            let Some((_, keys)) = best else { continue };
            let remap = categories.reorder_by(&keys)?;
            for c in codes.iter_mut() {
                *c = remap[*c as usize];
            }
            normal[*dim] = codes
                .iter()
                .map(|&c| normal_ppf(categories.to_uniform(c, rng)))
                .collect();
        }
    }
    Ok(())
}

impl Model for CopulaModel {
    fn sample(&self, rows: usize, seed: u64, progress: &dyn Progress) -> Result<RecordBatch> {
        let d = self.dims;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SAMPLE_STREAM);
        let mut normals = NormalSampler::default();
        let mut u: Vec<Vec<f64>> = vec![Vec::with_capacity(rows); d];
        let mut e = vec![0.0; d];
        let total = rows as u64;
        for r in 0..rows {
            if r % 8192 == 0 {
                if progress.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                progress.advance(r as u64, total);
            }
            for x in &mut e {
                *x = normals.sample(&mut rng);
            }
            for (i, ui) in u.iter_mut().enumerate() {
                let row = &self.chol[i * d..i * d + i + 1];
                let z: f64 = row.iter().zip(&e).map(|(l, x)| l * x).sum();
                ui.push(normal_cdf(z));
            }
        }
        let mut columns = Vec::with_capacity(self.plans.len());
        for (ci, (plan, field)) in self.plans.iter().zip(self.schema.fields()).enumerate() {
            let array = match plan {
                Plan::AllNull => new_null_array(field.data_type(), rows),
                Plan::Categorical { dim, categories } => {
                    let codes: Vec<u32> = u[*dim].iter().map(|&x| categories.category(x)).collect();
                    categories.materialize(&codes)?
                }
                Plan::Continuous {
                    dim,
                    null,
                    marginal,
                    repr,
                } => self.decode_continuous(
                    &u[*dim],
                    null.map(|(nd, _)| u[nd].as_slice()),
                    null.map_or(0.0, |(_, s)| s),
                    marginal,
                    *repr,
                    field.data_type(),
                )?,
                Plan::Id(model) => {
                    let mut id_rng = ChaCha8Rng::seed_from_u64(
                        seed ^ SAMPLE_STREAM ^ (ci as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    model.sample(rows, &mut id_rng)?
                }
            };
            columns.push(array);
        }
        progress.advance(total, total);
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    fn columns(&self) -> Vec<ColumnModel> {
        self.plans
            .iter()
            .zip(self.schema.fields())
            .zip(&self.semantics)
            .map(|((plan, field), semantic)| {
                let model = match plan {
                    Plan::AllNull => "all null".to_owned(),
                    Plan::Id(m) => m.describe(),
                    Plan::Categorical { categories, .. } => {
                        if *semantic == SemanticType::Text {
                            format!("{} distinct texts, resampled", categories.len())
                        } else if *semantic == SemanticType::Pii {
                            format!("{} protected values, resampled", categories.len())
                        } else {
                            format!("{} categories (frequency intervals)", categories.len())
                        }
                    }
                    Plan::Continuous { marginal, null, .. } => {
                        let mut s = match (marginal.family, marginal.atoms) {
                            (Some(f), 0) => format!("{f} (KS {:.4})", marginal.ks),
                            (Some(f), n) => format!("{f} (KS {:.4}) + {n} exact values", marginal.ks),
                            (None, n) => format!("{n} exact values"),
                        };
                        if let Some((_, share)) = null {
                            s.push_str(&format!(", {:.1}% null", share * 100.0));
                        }
                        s
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
        let mut notes = Vec::new();
        if self.shrinkage > 0.0 {
            notes.push(format!(
                "correlation matrix was singular; shrunk towards identity by {:.2e}",
                self.shrinkage
            ));
        }
        notes
    }
}
