//! CTGAN's data transformer: mode-specific normalisation for continuous
//! columns and one-hot vectors for discrete ones (Xu et al. 2019, §4.2).
//!
//! A continuous value becomes `[α, one-hot(mode)]`: a Gaussian mixture is fit
//! to the column, a mode is drawn from the value's responsibilities, and
//! `α = (x − μ_k) / (4σ_k)`. SDV fits a variational Bayesian mixture per
//! column, which is what stalls its preprocessing for minutes (SDV #988);
//! doppel runs plain EM on at most [`GMM_SAMPLE`] values with K ≤ 10
//! components and drops components weighing under 0.5 % (SDV's threshold),
//! which takes milliseconds per column.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, SchemaRef};
use rand::RngExt;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::copula::{as_f64, learn_decimals};
use crate::privsyn::domain::{Distinct, distinct};
use crate::saved::{ModelReader, ModelWriter};
use crate::semantic::SemanticType;
use crate::{Error, Result};

/// Values per column the mixture is fit on.
pub(crate) const GMM_SAMPLE: usize = 10_000;
const MAX_MODES: usize = 10;
const WEIGHT_THRESHOLD: f64 = 0.005;

/// How a block of the encoded row is activated by the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Activation {
    /// One scalar in (−1, 1).
    Tanh,
    /// A one-hot block.
    Softmax,
}

/// A block of the encoded row.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) width: usize,
    pub(crate) activation: Activation,
    /// Index into [`Transformer::discrete`] when this block is a discrete
    /// column's one-hot (what the conditional vector conditions on).
    pub(crate) discrete: Option<usize>,
}

/// A 1-D Gaussian mixture.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Gmm {
    pub(crate) weights: Vec<f64>,
    pub(crate) means: Vec<f64>,
    pub(crate) stds: Vec<f64>,
}

impl Gmm {
    /// EM on `values` (already subsampled), K = min(10, distinct values).
    pub(crate) fn fit(values: &[f64]) -> Gmm {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut distinct = sorted.clone();
        distinct.dedup();
        let k = distinct.len().clamp(1, MAX_MODES);
        let n = sorted.len();
        #[allow(clippy::cast_precision_loss, reason = "sample sizes are small")]
        let nf = n as f64;
        let mean = sorted.iter().sum::<f64>() / nf;
        let spread = (sorted.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / nf).sqrt();
        let floor = (spread * 1e-3).max(1e-6);
        // Means at evenly spaced quantiles of the distinct values: modes land
        // on spikes (40 hours a week) instead of between them.
        let mut means: Vec<f64> = (0..k)
            .map(|i| distinct[((2 * i + 1) * distinct.len() / (2 * k)).min(distinct.len() - 1)])
            .collect();
        #[allow(clippy::cast_precision_loss, reason = "at most ten modes")]
        let mut stds = vec![(spread / k as f64).max(floor); k];
        #[allow(clippy::cast_precision_loss, reason = "at most ten modes")]
        let mut weights = vec![1.0 / k as f64; k];
        let mut resp = vec![0.0; n * k];
        let mut last = f64::NEG_INFINITY;
        for _ in 0..200 {
            // E step, in log space for stability.
            let mut loglik = 0.0;
            for (i, &x) in sorted.iter().enumerate() {
                let row = &mut resp[i * k..(i + 1) * k];
                let mut best = f64::NEG_INFINITY;
                for j in 0..k {
                    let z = (x - means[j]) / stds[j];
                    row[j] = weights[j].max(1e-300).ln() - stds[j].ln() - 0.5 * z * z;
                    best = best.max(row[j]);
                }
                let mut total = 0.0;
                for r in row.iter_mut() {
                    *r = (*r - best).exp();
                    total += *r;
                }
                for r in row.iter_mut() {
                    *r /= total;
                }
                loglik += best + total.ln();
            }
            // M step.
            for j in 0..k {
                let nk: f64 = (0..n).map(|i| resp[i * k + j]).sum();
                if nk < 1e-9 {
                    weights[j] = 0.0;
                    continue;
                }
                let m = (0..n).map(|i| resp[i * k + j] * sorted[i]).sum::<f64>() / nk;
                let v = (0..n)
                    .map(|i| resp[i * k + j] * (sorted[i] - m) * (sorted[i] - m))
                    .sum::<f64>()
                    / nk;
                means[j] = m;
                stds[j] = v.sqrt().max(floor);
                weights[j] = nk / nf;
            }
            if (loglik - last).abs() <= 1e-6 * loglik.abs().max(1.0) {
                break;
            }
            last = loglik;
        }
        let keep: Vec<usize> = (0..k).filter(|&j| weights[j] > WEIGHT_THRESHOLD).collect();
        let total: f64 = keep.iter().map(|&j| weights[j]).sum();
        Gmm {
            weights: keep.iter().map(|&j| weights[j] / total).collect(),
            means: keep.iter().map(|&j| means[j]).collect(),
            stds: keep.iter().map(|&j| stds[j]).collect(),
        }
    }

    /// Draw a mode for `x` from its responsibilities (as SDV does), and α.
    fn encode<R: rand::Rng>(&self, x: f64, rng: &mut R) -> (usize, f64) {
        let logp: Vec<f64> = (0..self.means.len())
            .map(|j| {
                let z = (x - self.means[j]) / self.stds[j];
                self.weights[j].ln() - self.stds[j].ln() - 0.5 * z * z
            })
            .collect();
        let best = logp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let p: Vec<f64> = logp.iter().map(|l| (l - best).exp()).collect();
        let total: f64 = p.iter().sum();
        let mut u = rng.random::<f64>() * total;
        let mut mode = p.len() - 1;
        for (j, pj) in p.iter().enumerate() {
            if u < *pj {
                mode = j;
                break;
            }
            u -= pj;
        }
        let alpha = ((x - self.means[mode]) / (4.0 * self.stds[mode])).clamp(-0.99, 0.99);
        (mode, alpha)
    }
}

/// How a numeric column is encoded: all of it is plain data, so a saved
/// model keeps it as it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ContinuousPlan {
    gmm: Gmm,
    /// Span of α (its mode one-hot follows).
    alpha: usize,
    /// Span of the [present, null] one-hot, when the column has nulls.
    null: Option<usize>,
    min: f64,
    max: f64,
    decimals: Option<u32>,
}

/// How one column is encoded.
#[derive(Debug, Clone)]
enum Plan {
    Continuous(ContinuousPlan),
    Discrete {
        values: ArrayRef,
        span: usize,
    },
    /// Too many distinct values to one-hot (SDV's memory blow-up, #1433):
    /// resampled independently from the column's values.
    Resampled {
        values: ArrayRef,
        cum: Vec<f64>,
    },
    Key,
}

/// Category frequencies of one discrete column, for the conditional vector.
#[derive(Debug, Clone)]
pub(crate) struct DiscreteColumn {
    /// Its span in the encoded row.
    pub(crate) span: usize,
    /// Rows per category.
    pub(crate) counts: Vec<f64>,
    /// Each row's category.
    pub(crate) codes: Vec<u32>,
}

/// The fitted transformer.
#[derive(Debug, Clone)]
pub(crate) struct Transformer {
    schema: SchemaRef,
    plans: Vec<Plan>,
    pub(crate) spans: Vec<Span>,
    pub(crate) width: usize,
    pub(crate) discrete: Vec<DiscreteColumn>,
}

impl Transformer {
    /// Fit on `batch` and encode it: returns the transformer and the rows,
    /// row-major, `rows × width`.
    pub(crate) fn fit<R: rand::Rng>(
        batch: &arrow::record_batch::RecordBatch,
        semantics: &[SemanticType],
        max_categories: usize,
        rng: &mut R,
    ) -> Result<(Transformer, Vec<f32>)> {
        let n = batch.num_rows();
        if n == 0 {
            return Err(Error::EmptyTable);
        }
        let schema = batch.schema();
        let mut plans = Vec::new();
        let mut spans: Vec<Span> = Vec::new();
        let mut discrete = Vec::new();
        let mut width = 0;
        let mut encoders: Vec<Encoder> = Vec::new();
        let push_span = |spans: &mut Vec<Span>, w: usize, a: Activation, d: Option<usize>, width: &mut usize| {
            spans.push(Span {
                start: *width,
                width: w,
                activation: a,
                discrete: d,
            });
            *width += w;
            spans.len() - 1
        };
        for ((field, column), semantic) in schema.fields().iter().zip(batch.columns()).zip(semantics) {
            let numeric = match semantic {
                SemanticType::Numerical | SemanticType::Datetime => as_f64(column)?,
                _ => None,
            };
            if *semantic == SemanticType::Id {
                plans.push(Plan::Key);
                continue;
            }
            if let Some(values) = numeric.filter(|v| v.null_count() < v.len()) {
                let present: Vec<f64> = values.iter().flatten().filter(|v| v.is_finite()).collect();
                if !present.is_empty() {
                    let mut sample = present.clone();
                    sample.shuffle(rng);
                    sample.truncate(GMM_SAMPLE);
                    let gmm = Gmm::fit(&sample);
                    let modes = gmm.means.len();
                    let alpha = push_span(&mut spans, 1, Activation::Tanh, None, &mut width);
                    push_span(&mut spans, modes, Activation::Softmax, None, &mut width);
                    let has_nulls = present.len() < n;
                    let null = has_nulls.then(|| push_span(&mut spans, 2, Activation::Softmax, None, &mut width));
                    let whole = !matches!(
                        field.data_type(),
                        DataType::Float16 | DataType::Float32 | DataType::Float64
                    );
                    let min = present.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    encoders.push(Encoder::Continuous {
                        values: values.clone(),
                        gmm: gmm.clone(),
                        start: spans[alpha].start,
                        has_nulls,
                    });
                    plans.push(Plan::Continuous(ContinuousPlan {
                        gmm,
                        alpha,
                        null,
                        min,
                        max,
                        decimals: if whole { Some(0) } else { learn_decimals(&present) },
                    }));
                    continue;
                }
            }
            let Distinct {
                values, counts, codes, ..
            } = distinct(column)?;
            if values.len() > max_categories {
                let total: f64 = counts.iter().sum();
                let mut acc = 0.0;
                let cum = counts
                    .iter()
                    .map(|c| {
                        acc += c / total;
                        acc
                    })
                    .collect();
                plans.push(Plan::Resampled { values, cum });
                continue;
            }
            let k = values.len();
            let span = push_span(&mut spans, k, Activation::Softmax, Some(discrete.len()), &mut width);
            spans[span].discrete = Some(discrete.len());
            encoders.push(Encoder::Discrete {
                codes: codes.clone(),
                start: spans[span].start,
            });
            discrete.push(DiscreteColumn { span, counts, codes });
            plans.push(Plan::Discrete { values, span });
        }
        let mut data = vec![0f32; n * width];
        for (r, row) in data.chunks_mut(width.max(1)).enumerate().take(n) {
            for e in &encoders {
                e.encode(r, row, rng);
            }
        }
        Ok((
            Transformer {
                schema,
                plans,
                spans,
                width,
                discrete,
            },
            data,
        ))
    }

    /// Rows from activated generator output (`rows × width`, row-major):
    /// argmax of each one-hot block, α scaled back through the chosen mode.
    pub(crate) fn decode<R: rand::Rng>(
        &self,
        encoded: &[f32],
        rows: usize,
        rng: &mut R,
    ) -> Result<arrow::record_batch::RecordBatch> {
        let argmax = |row: &[f32], span: &Span| -> usize {
            let block = &row[span.start..span.start + span.width];
            let mut best = 0;
            for (i, v) in block.iter().enumerate() {
                if *v > block[best] {
                    best = i;
                }
            }
            best
        };
        let row = |r: usize| &encoded[r * self.width..(r + 1) * self.width];
        let mut columns = Vec::with_capacity(self.plans.len());
        for (plan, field) in self.plans.iter().zip(self.schema.fields()) {
            let array: ArrayRef = match plan {
                Plan::Key => crate::privsyn::keys(rows, field.data_type())?,
                Plan::Discrete { values, span } => {
                    let idx: UInt32Array = (0..rows)
                        .map(|r| u32::try_from(argmax(row(r), &self.spans[*span])).expect("small"))
                        .collect();
                    take(values.as_ref(), &idx, None)?
                }
                Plan::Resampled { values, cum } => {
                    let idx: UInt32Array = (0..rows)
                        .map(|_| {
                            let u: f64 = rng.random();
                            u32::try_from(cum.partition_point(|c| *c < u).min(values.len() - 1)).expect("small")
                        })
                        .collect();
                    take(values.as_ref(), &idx, None)?
                }
                Plan::Continuous(ContinuousPlan {
                    gmm,
                    alpha,
                    null,
                    min,
                    max,
                    decimals,
                }) => {
                    let a = &self.spans[*alpha];
                    let modes = Span {
                        start: a.start + 1,
                        width: gmm.means.len(),
                        activation: Activation::Softmax,
                        discrete: None,
                    };
                    let values: Float64Array = (0..rows)
                        .map(|r| {
                            let row = row(r);
                            if let Some(ns) = null
                                && argmax(row, &self.spans[*ns]) == 1
                            {
                                return None;
                            }
                            let k = argmax(row, &modes);
                            let x = (f64::from(row[a.start]).clamp(-1.0, 1.0) * 4.0 * gmm.stds[k] + gmm.means[k])
                                .clamp(*min, *max);
                            Some(match decimals {
                                Some(0) => x.round(),
                                Some(d) => {
                                    let p = 10f64.powi(i32::try_from(*d).unwrap_or(10));
                                    (x * p).round() / p
                                }
                                None => x,
                            })
                        })
                        .collect();
                    let values: ArrayRef = Arc::new(values);
                    match field.data_type() {
                        DataType::Date32 => cast(&cast(&values, &DataType::Int32)?, field.data_type())?,
                        DataType::Date64 | DataType::Timestamp(_, _) => {
                            cast(&cast(&values, &DataType::Int64)?, field.data_type())?
                        }
                        d => cast(&values, d)?,
                    }
                }
            };
            columns.push(array);
        }
        Ok(arrow::record_batch::RecordBatch::try_new(
            std::sync::Arc::clone(&self.schema),
            columns,
        )?)
    }

    /// Column names, in schema order.
    pub(crate) fn column_names(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    /// How each column is encoded, for reports.
    pub(crate) fn describe(&self) -> Vec<String> {
        self.plans
            .iter()
            .map(|p| match p {
                Plan::Key => "key: fresh sequential values".to_owned(),
                Plan::Discrete { values, .. } => format!("{} categories, one-hot", values.len()),
                Plan::Resampled { values, .. } => {
                    format!(
                        "{} distinct values (over max_categories), resampled independently",
                        values.len()
                    )
                }
                Plan::Continuous(ContinuousPlan { gmm, null, .. }) => format!(
                    "mode-specific normalisation, {} modes{}",
                    gmm.means.len(),
                    if null.is_some() { ", null indicator" } else { "" }
                ),
            })
            .collect()
    }
}

/// What a saved model keeps of a [`Transformer`] besides its value lists
/// (`arrow.values.<column>`) and schema (`arrow.schema`). Per-row category
/// codes are training data and are not kept: sampling needs only counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TransformerState {
    plans: Vec<PlanState>,
    spans: Vec<Span>,
    width: usize,
    /// `(span, rows per category)` of each discrete column.
    discrete: Vec<(usize, Vec<f64>)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum PlanState {
    // Internally tagged: the plan's fields sit beside `"kind": "continuous"`.
    Continuous(ContinuousPlan),
    Discrete { span: usize },
    Resampled { cum: Vec<f64> },
    Key,
}

impl Transformer {
    /// Write the value lists and schema to `w`; the rest is returned for the
    /// model's JSON state.
    pub(crate) fn save(&self, w: &mut ModelWriter) -> Result<TransformerState> {
        w.schema("arrow.schema", &self.schema)?;
        let mut plans = Vec::with_capacity(self.plans.len());
        for (i, plan) in self.plans.iter().enumerate() {
            plans.push(match plan {
                Plan::Continuous(c) => PlanState::Continuous(c.clone()),
                Plan::Discrete { values, span } => {
                    w.array(format!("arrow.values.{i}"), values)?;
                    PlanState::Discrete { span: *span }
                }
                Plan::Resampled { values, cum } => {
                    w.array(format!("arrow.values.{i}"), values)?;
                    PlanState::Resampled { cum: cum.clone() }
                }
                Plan::Key => PlanState::Key,
            });
        }
        Ok(TransformerState {
            plans,
            spans: self.spans.clone(),
            width: self.width,
            discrete: self.discrete.iter().map(|d| (d.span, d.counts.clone())).collect(),
        })
    }

    /// Rebuild a saved transformer, checking that its parts agree (a damaged
    /// file is an error here, not a panic while decoding).
    pub(crate) fn load(r: &ModelReader<'_>, state: TransformerState) -> Result<Transformer> {
        let bad = |m: String| Error::InvalidModel(format!("transformer: {m}"));
        let schema = r.schema("arrow.schema")?;
        if state.plans.len() != schema.fields().len() {
            return Err(bad(format!(
                "{} encodings for {} columns",
                state.plans.len(),
                schema.fields().len()
            )));
        }
        let mut next = 0;
        for (i, s) in state.spans.iter().enumerate() {
            if s.start != next || s.width == 0 || (s.activation == Activation::Tanh && s.width != 1) {
                return Err(bad(format!("span {i} does not follow the one before it")));
            }
            next += s.width;
        }
        if next != state.width {
            return Err(bad(format!("spans cover {next} values, the row has {}", state.width)));
        }
        let span = |i: usize, width: usize, activation: Activation| -> Result<()> {
            match state.spans.get(i) {
                Some(s) if s.width == width && s.activation == activation => Ok(()),
                _ => Err(bad(format!("span {i} does not fit its column"))),
            }
        };
        let mut plans = Vec::with_capacity(state.plans.len());
        for (i, (plan, field)) in state.plans.into_iter().zip(schema.fields()).enumerate() {
            plans.push(match plan {
                PlanState::Continuous(c) => {
                    let k = c.gmm.means.len();
                    if k == 0 || c.gmm.stds.len() != k || c.gmm.weights.len() != k {
                        return Err(bad(format!("column `{}`: mixture sizes disagree", field.name())));
                    }
                    span(c.alpha, 1, Activation::Tanh)?;
                    span(c.alpha + 1, k, Activation::Softmax)?;
                    if let Some(n) = c.null {
                        span(n, 2, Activation::Softmax)?;
                    }
                    Plan::Continuous(c)
                }
                PlanState::Discrete { span: s } => {
                    let values = r.array(&format!("arrow.values.{i}"))?;
                    span(s, values.len(), Activation::Softmax)?;
                    Plan::Discrete { values, span: s }
                }
                PlanState::Resampled { cum } => {
                    let values = r.array(&format!("arrow.values.{i}"))?;
                    if values.is_empty() || cum.len() != values.len() {
                        return Err(bad(format!(
                            "column `{}`: frequencies do not match its values",
                            field.name()
                        )));
                    }
                    Plan::Resampled { values, cum }
                }
                PlanState::Key => Plan::Key,
            });
        }
        let mut discrete = Vec::with_capacity(state.discrete.len());
        for (s, counts) in state.discrete {
            span(s, counts.len(), Activation::Softmax)?;
            discrete.push(DiscreteColumn {
                span: s,
                counts,
                codes: Vec::new(),
            });
        }
        Ok(Transformer {
            schema,
            plans,
            spans: state.spans,
            width: state.width,
            discrete,
        })
    }
}

/// Per-row encoding of one column.
enum Encoder {
    Continuous {
        values: Float64Array,
        gmm: Gmm,
        start: usize,
        has_nulls: bool,
    },
    Discrete {
        codes: Vec<u32>,
        start: usize,
    },
}

impl Encoder {
    fn encode<R: rand::Rng>(&self, r: usize, row: &mut [f32], rng: &mut R) {
        match self {
            Encoder::Continuous {
                values,
                gmm,
                start,
                has_nulls,
            } => {
                let x = values.is_valid(r).then(|| values.value(r)).filter(|x| x.is_finite());
                let (mode, a) = x.map_or((0, 0.0), |x| gmm.encode(x, rng));
                #[allow(clippy::cast_possible_truncation, reason = "α is in (−1, 1)")]
                {
                    row[*start] = a as f32;
                }
                row[start + 1 + mode] = 1.0;
                if *has_nulls {
                    row[start + 1 + gmm.means.len() + usize::from(x.is_none())] = 1.0;
                }
            }
            Encoder::Discrete { codes, start } => row[start + codes[r] as usize] = 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Saved models written before `ContinuousPlan` existed keep loading:
    /// the plan's fields still sit flat beside `"kind"`.
    #[test]
    fn continuous_plans_keep_their_saved_shape() {
        let saved = serde_json::json!({"kind": "continuous", "alpha": 3, "null": null, "min": 0.0, "max": 9.0,
                                       "decimals": 0, "gmm": {"weights": [1.0], "means": [4.5], "stds": [1.0]}});
        let plan: PlanState = serde_json::from_value(saved.clone()).unwrap();
        let PlanState::Continuous(c) = &plan else {
            panic!("{plan:?}")
        };
        assert_eq!((c.alpha, c.null, c.decimals), (3, None, Some(0)));
        assert_eq!(serde_json::to_value(&plan).unwrap(), saved);
    }

    #[test]
    fn gmm_finds_two_separated_modes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let values: Vec<f64> = (0..4000)
            .map(|i| {
                let u: f64 = rng.random::<f64>() - 0.5;
                if i % 4 == 0 { 100.0 + u } else { -20.0 + 2.0 * u }
            })
            .collect();
        let g = Gmm::fit(&values);
        let mut means = g.means.clone();
        means.sort_by(f64::total_cmp);
        assert!(means.iter().any(|m| (m + 20.0).abs() < 1.0), "{means:?}");
        assert!(means.iter().any(|m| (m - 100.0).abs() < 1.0), "{means:?}");
        assert!((g.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
