//! The SDMetrics formulas, on plain vectors (see
//! `../shared/research/mission-anchors.md` §2 and SDMetrics' source).
//!
//! - KSComplement: `1 − D`, D the two-sample Kolmogorov–Smirnov statistic, NaN dropped.
//! - TVComplement: `1 − ½ Σ |q_c − p_c|` over the real categories plus synthetic-only
//!   ones (real count 1e-6), NaN dropped.
//! - CorrelationSimilarity: `1 − |ρ_real − ρ_syn| / 2`, Pearson on pairwise-complete
//!   rows; NaN when either side has a constant column or `|ρ_real| ≤ threshold`.
//! - ContingencySimilarity: `1 − ½ Σ |p_real(a,b) − p_syn(a,b)|` over the union of
//!   cells, null kept as a category; NaN when the real Cramér's V ≤ threshold.
//! - Continuous columns paired with discrete ones are cut into 10 equal-width
//!   bins of their own range (`np.histogram_bin_edges` + `np.digitize`), each
//!   table with its own edges, as SDMetrics does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// `null` as a discrete code.
pub const NULL_CODE: u32 = u32::MAX;

/// 1 − KS statistic of two samples (NaN entries ignored); NaN if one is empty.
pub fn ks_complement(real: &[f64], synthetic: &[f64]) -> f64 {
    let mut a: Vec<f64> = real.iter().copied().filter(|v| !v.is_nan()).collect();
    let mut b: Vec<f64> = synthetic.iter().copied().filter(|v| !v.is_nan()).collect();
    if a.is_empty() || b.is_empty() {
        return f64::NAN;
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut d = 0.0f64;
    while i < a.len() && j < b.len() {
        // Step past every copy of the smallest value in both samples.
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let gap = (i as f64 / na - j as f64 / nb).abs();
        d = d.max(gap);
    }
    1.0 - d
}

/// 1 − total variation distance of two discrete samples (null codes ignored).
pub fn tv_complement(real: &[u32], synthetic: &[u32]) -> f64 {
    let mut r: HashMap<u32, f64> = HashMap::new();
    let mut s: HashMap<u32, f64> = HashMap::new();
    for &c in real.iter().filter(|c| **c != NULL_CODE) {
        *r.entry(c).or_default() += 1.0;
    }
    for &c in synthetic.iter().filter(|c| **c != NULL_CODE) {
        *s.entry(c).or_default() += 1.0;
    }
    if r.is_empty() || s.is_empty() {
        return f64::NAN;
    }
    for c in s.keys() {
        r.entry(*c).or_insert(1e-6);
    }
    // Sums in key order: a hash map's order changes from run to run, and
    // with it the last bits of a floating-point sum.
    let (r, s): (BTreeMap<u32, f64>, BTreeMap<u32, f64>) = (r.into_iter().collect(), s.into_iter().collect());
    let (rt, st): (f64, f64) = (r.values().sum(), s.values().sum());
    let tv: f64 = r
        .iter()
        .map(|(c, n)| (s.get(c).copied().unwrap_or(0.0) / st - n / rt).abs())
        .sum();
    1.0 - 0.5 * tv
}

/// Pearson correlation of pairwise-complete rows; NaN if undefined.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let pairs: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| !a.is_nan() && !b.is_nan())
        .map(|(a, b)| (*a, *b))
        .collect();
    if pairs.len() < 2 {
        return f64::NAN;
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let n = pairs.len() as f64;
    let mx = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in &pairs {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    let r = sxy / (sxx * syy).sqrt();
    if r.is_finite() { r.clamp(-1.0, 1.0) } else { f64::NAN }
}

/// Exactly one distinct non-NaN value.
fn is_constant(x: &[f64]) -> bool {
    let mut first = None;
    for v in x.iter().filter(|v| !v.is_nan()) {
        match first {
            None => first = Some(*v),
            Some(f) if f != *v => return false,
            Some(_) => {}
        }
    }
    first.is_some()
}

/// Outcome of a pair metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairScore {
    /// The similarity (NaN when not computable or below threshold).
    pub score: f64,
    /// Real correlation (CorrelationSimilarity).
    pub real_correlation: f64,
    /// Synthetic correlation (CorrelationSimilarity).
    pub synthetic_correlation: f64,
    /// Real Cramér's V (ContingencySimilarity).
    pub real_association: f64,
    /// Synthetic Cramér's V (ContingencySimilarity), for reports.
    pub synthetic_association: f64,
    /// Whether the pair counts towards Column Pair Trends.
    pub meets_threshold: bool,
    /// Why the score is NaN.
    pub note: Option<&'static str>,
}

/// CorrelationSimilarity of two continuous columns.
pub fn correlation_similarity(real: (&[f64], &[f64]), synthetic: (&[f64], &[f64]), threshold: f64) -> PairScore {
    let nan = PairScore {
        score: f64::NAN,
        real_correlation: f64::NAN,
        synthetic_correlation: f64::NAN,
        real_association: f64::NAN,
        synthetic_association: f64::NAN,
        meets_threshold: false,
        note: None,
    };
    if is_constant(real.0) || is_constant(real.1) || is_constant(synthetic.0) || is_constant(synthetic.1) {
        return PairScore {
            note: Some("a column is constant"),
            ..nan
        };
    }
    let rr = pearson(real.0, real.1);
    // Computed for unscored pairs too: reports draw both association matrices.
    let rs = pearson(synthetic.0, synthetic.1);
    if rr.abs() <= threshold {
        return PairScore {
            real_correlation: rr,
            synthetic_correlation: rs,
            note: Some("real correlation at or below the threshold"),
            ..nan
        };
    }
    // SDMetrics counts the pair when no threshold is set or the real
    // correlation clears it; a NaN score is skipped by the average either way.
    let meets_threshold = threshold <= 0.0 || (!rr.is_nan() && rr.abs() > threshold);
    if rr.is_nan() || rs.is_nan() {
        return PairScore {
            real_correlation: rr,
            synthetic_correlation: rs,
            note: Some("correlation undefined"),
            meets_threshold,
            ..nan
        };
    }
    PairScore {
        score: 1.0 - (rr - rs).abs() / 2.0,
        real_correlation: rr,
        synthetic_correlation: rs,
        real_association: f64::NAN,
        synthetic_association: f64::NAN,
        meets_threshold,
        note: None,
    }
}

/// Joint counts, in key order so that sums over them are reproducible.
fn joint_counts(a: &[u32], b: &[u32]) -> BTreeMap<(u32, u32), f64> {
    let mut m = HashMap::new();
    for (x, y) in a.iter().zip(b) {
        *m.entry((*x, *y)).or_insert(0.0) += 1.0;
    }
    m.into_iter().collect()
}

/// Cramér's V of a joint count table (no continuity correction), as
/// `scipy.stats.contingency.association(..., method="cramer")`.
fn cramers_v(counts: &BTreeMap<(u32, u32), f64>) -> f64 {
    let mut rows: HashMap<u32, f64> = HashMap::new();
    let mut cols: HashMap<u32, f64> = HashMap::new();
    let mut n = 0.0;
    for ((r, c), k) in counts {
        *rows.entry(*r).or_default() += k;
        *cols.entry(*c).or_default() += k;
        n += k;
    }
    let k = rows.len().min(cols.len());
    if n == 0.0 || k < 2 {
        return f64::NAN;
    }
    // Σ over all cells of (O − E)² / E = Σ over observed cells of O² / E − n,
    // since Σ O = Σ E = n: linear in the observed cells, not rows × columns.
    let chi2 = counts
        .iter()
        .map(|((r, c), o)| o * o * n / (rows[r] * cols[c]))
        .sum::<f64>()
        - n;
    let chi2 = chi2.max(0.0);
    #[allow(clippy::cast_precision_loss, reason = "category counts are small")]
    let v = (chi2 / (n * (k as f64 - 1.0))).sqrt();
    v
}

/// ContingencySimilarity of two discrete columns (null codes are categories).
pub fn contingency_similarity(real: (&[u32], &[u32]), synthetic: (&[u32], &[u32]), threshold: f64) -> PairScore {
    let rc = joint_counts(real.0, real.1);
    let sc = joint_counts(synthetic.0, synthetic.1);
    let mut out = PairScore {
        score: f64::NAN,
        real_correlation: f64::NAN,
        synthetic_correlation: f64::NAN,
        real_association: cramers_v(&rc),
        synthetic_association: cramers_v(&sc),
        meets_threshold: threshold <= 0.0,
        note: None,
    };
    if threshold > 0.0 {
        let v = out.real_association;
        if v.is_nan() || v <= threshold {
            out.note = Some(if v.is_nan() {
                "association undefined"
            } else {
                "real association at or below the threshold"
            });
            out.meets_threshold = false;
            return out;
        }
        out.meets_threshold = true;
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let (nr, ns) = (real.0.len() as f64, synthetic.0.len() as f64);
    if nr == 0.0 || ns == 0.0 {
        out.note = Some("empty table");
        return out;
    }
    let keys: BTreeSet<&(u32, u32)> = rc.keys().chain(sc.keys()).collect();
    let diff: f64 = keys
        .into_iter()
        .map(|k| (rc.get(k).copied().unwrap_or(0.0) / nr - sc.get(k).copied().unwrap_or(0.0) / ns).abs())
        .sum();
    out.score = 1.0 - diff / 2.0;
    out
}

/// `np.histogram_bin_edges(x.dropna())` (10 equal-width bins) then
/// `np.digitize(x, edges)`: bin index 1..=10 inside, 11 at the maximum, and
/// 11 for NaN (numpy sorts NaN after every edge).
pub fn discretize(x: &[f64]) -> Vec<u32> {
    let present: Vec<f64> = x.iter().copied().filter(|v| !v.is_nan()).collect();
    if present.is_empty() {
        return vec![0; x.len()];
    }
    let (mut lo, mut hi) = present
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    let edges: Vec<f64> = (0..=10).map(|i| lo + (hi - lo) * f64::from(i) / 10.0).collect();
    x.iter()
        .map(|v| {
            if v.is_nan() {
                return 11;
            }
            // searchsorted(edges, v, side="right")
            u32::try_from(edges.partition_point(|e| *e <= *v)).expect("at most 11 edges")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from scipy 1.17 / SDMetrics 0.32 (see tests in
    // plugins/quality/tests for whole-report fixtures).
    #[test]
    fn ks_matches_scipy() {
        // scipy.stats.ks_2samp([1,2,3,4], [3,4,5,6,7]).statistic == 0.6
        assert!((ks_complement(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0, 6.0, 7.0]) - 0.4).abs() < 1e-12);
        assert_eq!(ks_complement(&[1.0, 2.0], &[1.0, 2.0]), 1.0);
        assert!(ks_complement(&[], &[1.0]).is_nan());
    }

    #[test]
    fn tv_matches_sdmetrics() {
        // real a,a,b ; synthetic a,b,b,c → 1 − ½(|½−⅔| + |½−⅓| + |¼−0|)
        let score = tv_complement(&[0, 0, 1], &[0, 1, 1, 2]);
        let want =
            1.0 - 0.5 * ((0.25f64 - 2.0 / 3.0).abs() + (0.5f64 - 1.0 / 3.0).abs() + (0.25f64 - 1e-6 / 3.000001).abs());
        assert!((score - want).abs() < 1e-6, "{score} vs {want}");
    }

    #[test]
    fn digitize_matches_numpy() {
        // np.digitize([0, 5, 9.99, 10, nan], np.histogram_bin_edges([0, 10]))
        let bins = discretize(&[0.0, 5.0, 9.99, 10.0, f64::NAN]);
        assert_eq!(bins, vec![1, 6, 10, 11, 11]);
        // constant data: edges span [x − 0.5, x + 0.5]
        assert_eq!(discretize(&[3.0, 3.0]), vec![6, 6]);
    }

    #[test]
    fn cramers_v_of_perfect_association_is_one() {
        let a = [0, 0, 1, 1];
        let counts = joint_counts(&a, &a);
        assert!((cramers_v(&counts) - 1.0).abs() < 1e-12);
        let r = contingency_similarity((&a, &a), (&a, &a), 0.3);
        assert_eq!(r.score, 1.0);
        assert!(r.meets_threshold);
    }

    #[test]
    fn correlation_threshold_excludes_weak_pairs() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = [1.0, 3.0, 2.0, 4.0]; // ρ = 0.8
        let s = correlation_similarity((&x, &y), (&x, &x), 0.5);
        assert!((s.score - 0.9).abs() < 1e-12);
        assert!(s.meets_threshold);
        let weak = correlation_similarity((&x, &y), (&x, &x), 0.9);
        assert!(weak.score.is_nan() && !weak.meets_threshold);
    }
}
