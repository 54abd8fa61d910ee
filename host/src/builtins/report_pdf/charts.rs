//! Charts drawn as filled shapes: real-vs-synthetic distributions per
//! column (bars), and association heatmaps (real, synthetic, difference).

use super::layout::*;
use super::*;

/// Share of values per bar: numeric columns in 16 bins over both tables'
/// range, other columns their 8 most frequent real categories.
pub(super) fn distribution(
    real: &ArrayRef,
    synthetic: &ArrayRef,
    numeric: bool,
) -> Result<(Vec<String>, Vec<f64>, Vec<f64>)> {
    if numeric {
        let as_f64 = |a: &ArrayRef| -> Result<Vec<f64>> {
            let widened = match a.data_type() {
                DataType::Date32 => arrow::compute::cast(a, &DataType::Int32)?,
                DataType::Date64 | DataType::Timestamp(_, _) => arrow::compute::cast(a, &DataType::Int64)?,
                _ => ArrayRef::clone(a),
            };
            let f = arrow::compute::cast(&widened, &DataType::Float64)?;
            Ok(f.as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .filter(|x| x.is_finite())
                .collect())
        };
        let (r, s) = (as_f64(real)?, as_f64(synthetic)?);
        let (lo, hi) = r
            .iter()
            .chain(&s)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
        const BINS: usize = 16;
        let hist = |v: &[f64]| -> Vec<f64> {
            let mut h = [0.0; BINS];
            for x in v {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "clamped to the bins"
                )]
                let b = if hi > lo {
                    (((x - lo) / (hi - lo)) * BINS as f64) as usize
                } else {
                    0
                };
                h[b.min(BINS - 1)] += 1.0;
            }
            let n = v.len().max(1) as f64;
            h.iter().map(|c| c / n).collect()
        };
        let labels = if lo.is_finite() {
            vec![compact(lo), compact(hi)]
        } else {
            vec![]
        };
        return Ok((labels, hist(&r), hist(&s)));
    }
    let counts = |a: &ArrayRef| -> Result<HashMap<String, f64>> {
        let text = arrow::compute::cast(a, &DataType::Utf8)?;
        let mut m: HashMap<String, f64> = HashMap::new();
        for v in text.as_string::<i32>().iter() {
            *m.entry(v.unwrap_or("(null)").to_owned()).or_default() += 1.0;
        }
        Ok(m)
    };
    let (rc, sc) = (counts(real)?, counts(synthetic)?);
    let mut top: Vec<(&String, &f64)> = rc.iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
    top.truncate(8);
    let (rn, sn) = (real.len().max(1) as f64, synthetic.len().max(1) as f64);
    let labels: Vec<String> = top.iter().map(|(k, _)| (*k).clone()).collect();
    let r: Vec<f64> = top.iter().map(|(_, v)| *v / rn).collect();
    let s: Vec<f64> = labels.iter().map(|k| sc.get(k).copied().unwrap_or(0.0) / sn).collect();
    Ok((labels, r, s))
}

/// A box on the page, in mm from its bottom-left corner.
#[derive(Debug, Clone, Copy)]
pub(super) struct Area {
    pub(super) x: f32,
    pub(super) y: f32,
    pub(super) width: f32,
    pub(super) height: f32,
}

/// A small paired bar chart in `area`.
pub(super) fn chart(w: &mut Writer, area: Area, d: &Distribution) {
    let Area { x, y, width, height } = area;
    let (title, labels, r, s, numeric) = (&d.column, &d.labels, &d.real, &d.synthetic, d.numeric);
    w.text_at(
        x,
        y + height + 2.0,
        8.0,
        true,
        INK,
        &title.chars().take(40).collect::<String>(),
    );
    w.line(x, y, x + width, y, MUTED);
    let max = r.iter().chain(s).copied().fold(0.0f64, f64::max).max(1e-12);
    let n = r.len().max(1) as f32;
    let slot = width / n;
    for (i, (a, b)) in r.iter().zip(s).enumerate() {
        let x0 = x + i as f32 * slot;
        let bar = slot * 0.42;
        #[allow(clippy::cast_possible_truncation, reason = "chart heights")]
        let (ha, hb) = ((a / max) as f32 * (height - 2.0), (b / max) as f32 * (height - 2.0));
        w.rect(x0 + slot * 0.06, y, bar, ha.max(0.2), REAL);
        w.rect(x0 + slot * 0.06 + bar, y, bar, hb.max(0.2), SYNTH);
        if !numeric {
            let label: String = labels.get(i).map(|l| l.chars().take(9).collect()).unwrap_or_default();
            w.text_at(x0 + 0.5, y - 3.0, 5.0, false, MUTED, &label);
        }
    }
    if numeric && labels.len() == 2 {
        w.text_at(x, y - 3.0, 5.5, false, MUTED, &labels[0]);
        let right = &labels[1];
        w.text_at(
            x + width - text_width(right, 5.5, false),
            y - 3.0,
            5.5,
            false,
            MUTED,
            right,
        );
    }
}

/// Heatmap of a symmetric matrix of values in [0, 1] (`red`: a red scale,
/// for differences); returns the height used below `y_top`.
pub(super) fn heatmap(
    w: &mut Writer,
    title: &str,
    names: &[String],
    m: &[Vec<f64>],
    top_left: (f32, f32),
    size: f32,
    red: bool,
) -> f32 {
    let (x, y_top) = top_left;
    let n = names.len().max(1);
    let label_w = 22.0;
    let header = 5.0;
    let cell = (size - label_w) / n as f32;
    w.text_at(x, y_top + 2.0, 9.0, true, INK, title);
    // Column labels on top, abbreviated.
    for (j, name) in names.iter().enumerate() {
        let short: String = name.chars().take(4).collect();
        w.text_at(
            x + label_w + j as f32 * cell,
            y_top - header + 1.5,
            4.5,
            false,
            MUTED,
            &short,
        );
    }
    for (i, name) in names.iter().enumerate() {
        let yy = y_top - header - (i + 1) as f32 * cell;
        let short: String = name.chars().take(14).collect();
        w.text_at(x, yy + cell * 0.3, 5.0, false, MUTED, &short);
        for (j, v) in m[i].iter().enumerate() {
            let xx = x + label_w + j as f32 * cell;
            #[allow(clippy::cast_possible_truncation, reason = "a colour")]
            let t = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) as f32 };
            let color = if v.is_nan() {
                (0.95, 0.95, 0.95)
            } else if red {
                (1.0, 1.0 - 0.8 * t, 1.0 - 0.8 * t)
            } else {
                (1.0 - 0.84 * t, 1.0 - 0.6 * t, 1.0 - 0.28 * t)
            };
            w.rect(xx, yy, cell * 0.96, cell * 0.96, color);
        }
    }
    header + n as f32 * cell
}

/// Association matrices (real, synthetic) from the quality stage's pair
/// metrics: |ρ| for two continuous columns, Cramér's V otherwise.
pub(super) fn associations(quality: &[MetricValue]) -> (Vec<String>, Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let mut names: Vec<String> = quality
        .iter()
        .filter(|m| m.columns.len() == 1)
        .map(|m| m.columns[0].clone())
        .collect();
    names.truncate(16);
    let n = names.len();
    let mut real = vec![vec![f64::NAN; n]; n];
    let mut synth = vec![vec![f64::NAN; n]; n];
    for i in 0..n {
        real[i][i] = 1.0;
        synth[i][i] = 1.0;
    }
    let extra = |m: &MetricValue, k: &str| m.extra.iter().find(|e| e.0 == k).map(|e| e.1);
    for m in quality.iter().filter(|m| m.columns.len() == 2) {
        let (Some(i), Some(j)) = (
            names.iter().position(|c| *c == m.columns[0]),
            names.iter().position(|c| *c == m.columns[1]),
        ) else {
            continue;
        };
        let (a, b) = if m.name == "CorrelationSimilarity" {
            (
                extra(m, "real_correlation").map(f64::abs),
                extra(m, "synthetic_correlation").map(f64::abs),
            )
        } else {
            (extra(m, "real_association"), extra(m, "synthetic_association"))
        };
        let (a, b) = (a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN));
        real[i][j] = a;
        real[j][i] = a;
        synth[i][j] = b;
        synth[j][i] = b;
    }
    (names, real, synth)
}
