//! Univariate marginals for numeric and datetime columns.
//!
//! A marginal is a mixture of **atoms** (values repeated often enough to be
//! modelled exactly, e.g. the 92 % zeros of Adult's `capital_gain`) and a
//! **continuous part** fitted to the remaining values. The continuous family is
//! chosen among candidates by the Kolmogorov–Smirnov statistic, as SDV's
//! `GaussianCopulaSynthesizer` selects among its distributions; every
//! candidate is truncated to the observed range, so synthetic values never
//! leave `[min, max]` (SDV's `enforce_min_max_values`).
//!
//! The chosen CDF is tabulated on a grid of knots; the CDF and its inverse are
//! then piecewise linear between knots with vertical jumps at atoms, which
//! makes both directions O(log knots) and exactly inverse to each other.

use rand::RngExt;
use statrs::function::beta::beta_reg;
use statrs::function::gamma::gamma_lr;

use crate::stats::{mean_var, normal_cdf, quantile_sorted};

/// Continuous families tried, in tie-breaking order.
pub(crate) const CANDIDATES: &[&str] = &["uniform", "normal", "lognormal", "gamma", "beta", "kde"];

/// Columns with at most this many distinct values are modelled exactly.
const MAX_EXACT_DISTINCT: usize = 32;
/// A continuous part needs this many values to be worth fitting.
const MIN_CONTINUOUS: usize = 20;
/// Order statistics used to score candidates (KS on a regular subsample).
const KS_POINTS: usize = 2000;

#[derive(Debug, Clone, Copy)]
struct Knot {
    x: f64,
    /// F(x⁻): mass strictly below x.
    left: f64,
    /// F(x): mass at or below x.
    right: f64,
}

/// A fitted marginal distribution.
#[derive(Debug, Clone)]
pub(crate) struct Marginal {
    knots: Vec<Knot>,
    /// Chosen continuous family (`None` when every value is an atom).
    pub(crate) family: Option<&'static str>,
    /// KS statistic of the continuous fit against its data.
    pub(crate) ks: f64,
    /// Number of atoms.
    pub(crate) atoms: usize,
}

impl Marginal {
    /// Fit to finite values (nulls removed by the caller). `values` must not be empty.
    pub(crate) fn fit(values: &[f64], atom_threshold: f64, candidates: &[String]) -> Marginal {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let n = sorted.len() as f64;

        // Run-length encode the sorted values.
        let mut runs: Vec<(f64, usize)> = Vec::new();
        for &v in &sorted {
            match runs.last_mut() {
                Some((x, c)) if *x == v => *c += 1,
                _ => runs.push((v, 1)),
            }
        }
        let exact = runs.len() <= MAX_EXACT_DISTINCT;
        #[allow(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
        let is_atom = |count: usize| exact || count as f64 / n >= atom_threshold;
        let mut atoms: Vec<(f64, f64)> = Vec::new();
        let mut continuous: Vec<f64> = Vec::new();
        for &(v, c) in &runs {
            if is_atom(c) {
                #[allow(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
                atoms.push((v, c as f64 / n));
            } else {
                continuous.extend(std::iter::repeat_n(v, c));
            }
        }
        // Too few leftovers to fit a shape: keep them exact as well.
        let distinct_cont = continuous.windows(2).filter(|w| w[0] != w[1]).count() + 1;
        if !continuous.is_empty() && (continuous.len() < MIN_CONTINUOUS || distinct_cont < 3) {
            for &(v, c) in &runs {
                if !is_atom(c) {
                    #[allow(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
                    atoms.push((v, c as f64 / n));
                }
            }
            atoms.sort_by(|a, b| a.0.total_cmp(&b.0));
            continuous.clear();
        }
        #[allow(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
        let weight = continuous.len() as f64 / n;

        let (grid, family, ks) = if continuous.is_empty() {
            (Vec::new(), None, f64::NAN)
        } else {
            let fit = fit_continuous(&continuous, candidates);
            (fit.table, Some(fit.family), fit.ks)
        };
        Marginal {
            knots: merge(&atoms, &grid, weight),
            family,
            ks,
            atoms: atoms.len(),
        }
    }

    /// F(x).
    pub(crate) fn cdf(&self, x: f64) -> f64 {
        let k = self.knots.partition_point(|kn| kn.x <= x);
        if k == 0 {
            return 0.0;
        }
        let a = self.knots[k - 1];
        if a.x == x || k == self.knots.len() {
            return a.right;
        }
        let b = self.knots[k];
        a.right + (b.left - a.right) * (x - a.x) / (b.x - a.x)
    }

    /// A uniform score for `x`: F(x) for continuous values, uniform within the
    /// jump for atoms, so that scores are exactly U(0, 1) distributed.
    pub(crate) fn to_uniform<R: rand::Rng + ?Sized>(&self, x: f64, rng: &mut R) -> f64 {
        let k = self.knots.partition_point(|kn| kn.x < x);
        if let Some(kn) = self.knots.get(k)
            && kn.x == x
            && kn.right > kn.left
        {
            return kn.left + rng.random::<f64>() * (kn.right - kn.left);
        }
        self.cdf(x)
    }

    /// F⁻¹(u).
    pub(crate) fn ppf(&self, u: f64) -> f64 {
        let k = self.knots.partition_point(|kn| kn.right < u);
        let Some(&b) = self.knots.get(k) else {
            return self.knots.last().map_or(f64::NAN, |kn| kn.x);
        };
        if k == 0 || b.left <= u {
            return b.x;
        }
        let a = self.knots[k - 1];
        let span = b.left - a.right;
        if span <= 0.0 {
            return b.x;
        }
        a.x + (u - a.right) / span * (b.x - a.x)
    }
}

/// Combine atoms (value, mass) and a continuous CDF tabulated as (x, C(x)) with
/// total weight `weight` into knots.
fn merge(atoms: &[(f64, f64)], grid: &[(f64, f64)], weight: f64) -> Vec<Knot> {
    let cont = |x: f64| -> f64 {
        if grid.is_empty() {
            return 0.0;
        }
        let k = grid.partition_point(|g| g.0 <= x);
        if k == 0 {
            return 0.0;
        }
        if k == grid.len() {
            return 1.0;
        }
        let (x0, c0) = grid[k - 1];
        let (x1, c1) = grid[k];
        c0 + (c1 - c0) * (x - x0) / (x1 - x0)
    };
    let mut xs: Vec<f64> = atoms.iter().map(|a| a.0).chain(grid.iter().map(|g| g.0)).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let mut knots = Vec::with_capacity(xs.len());
    let mut ai = 0;
    let mut atom_mass_below = 0.0;
    for x in xs {
        while ai < atoms.len() && atoms[ai].0 < x {
            atom_mass_below += atoms[ai].1;
            ai += 1;
        }
        let left = atom_mass_below + weight * cont(x);
        let at = if ai < atoms.len() && atoms[ai].0 == x {
            atoms[ai].1
        } else {
            0.0
        };
        knots.push(Knot {
            x,
            left: left.min(1.0),
            right: (left + at).min(1.0),
        });
    }
    // Guard against rounding: monotone, ending at exactly 1.
    let mut run = 0.0f64;
    for kn in &mut knots {
        kn.left = kn.left.max(run);
        kn.right = kn.right.max(kn.left);
        run = kn.right;
    }
    if let Some(last) = knots.last_mut() {
        last.right = 1.0;
    }
    knots
}

/// A fitted continuous part.
struct ContinuousFit {
    /// Tabulated CDF: (x, C(x)).
    table: Vec<(f64, f64)>,
    family: &'static str,
    ks: f64,
}

/// Fit the continuous part: the best candidate by KS statistic.
fn fit_continuous(sorted: &[f64], candidates: &[String]) -> ContinuousFit {
    let lo = sorted[0];
    let hi = sorted[sorted.len() - 1];
    let grid_x = grid_points(sorted, lo, hi);
    let mut best: Option<ContinuousFit> = None;
    for &family in CANDIDATES {
        if !candidates.iter().any(|c| c == family) {
            continue;
        }
        let Some(raw) = raw_cdf(family, sorted, lo, hi) else {
            continue;
        };
        let Some(tab) = tabulate(&grid_x, lo, hi, &raw) else {
            continue;
        };
        let ks = ks_statistic(sorted, &tab);
        if best.as_ref().is_none_or(|b| ks < b.ks) {
            best = Some(ContinuousFit { table: tab, family, ks });
        }
    }
    // Uniform always succeeds on a non-degenerate range; it is the fallback
    // when the caller's candidate list rules everything else out.
    best.unwrap_or_else(|| {
        let raw = raw_cdf("uniform", sorted, lo, hi).expect("uniform");
        let tab = tabulate(&grid_x, lo, hi, &raw).expect("uniform tabulates");
        let ks = ks_statistic(sorted, &tab);
        ContinuousFit {
            table: tab,
            family: "uniform",
            ks,
        }
    })
}

/// Knot positions: a regular grid plus quantiles, so both flat and dense
/// regions are resolved.
fn grid_points(sorted: &[f64], lo: f64, hi: f64) -> Vec<f64> {
    let mut xs = Vec::with_capacity(800);
    for i in 0..=256 {
        xs.push(lo + (hi - lo) * f64::from(i) / 256.0);
    }
    for i in 0..=512 {
        xs.push(quantile_sorted(sorted, f64::from(i) / 512.0));
    }
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs
}

type RawCdf = Box<dyn Fn(f64) -> f64>;

/// The untruncated CDF of `family` fitted to `sorted` (method of moments, as
/// SDV's `copulas` does for most families), or `None` if it does not apply.
fn raw_cdf(family: &str, sorted: &[f64], lo: f64, hi: f64) -> Option<RawCdf> {
    let (mean, var) = mean_var(sorted);
    let sd = var.sqrt();
    let span = hi - lo;
    if span <= 0.0 || !span.is_finite() {
        return None;
    }
    // Shift for families on (0, ∞): keeps the minimum strictly positive.
    let shift = span * 1e-3;
    match family {
        "uniform" => Some(Box::new(move |x| (x - lo) / span)),
        "normal" => (sd > 0.0).then(|| -> RawCdf { Box::new(move |x| normal_cdf((x - mean) / sd)) }),
        "lognormal" => {
            let logs: Vec<f64> = sorted.iter().map(|x| (x - lo + shift).ln()).collect();
            let (m, v) = mean_var(&logs);
            let s = v.sqrt();
            (s > 0.0).then(|| -> RawCdf {
                Box::new(move |x| {
                    let y = x - lo + shift;
                    if y <= 0.0 { 0.0 } else { normal_cdf((y.ln() - m) / s) }
                })
            })
        }
        "gamma" => {
            let m = mean - lo + shift;
            if var <= 0.0 || m <= 0.0 {
                return None;
            }
            let k = m * m / var;
            let theta = var / m;
            (k > 1e-3 && k < 1e6).then(|| -> RawCdf {
                Box::new(move |x| {
                    let y = x - lo + shift;
                    if y <= 0.0 { 0.0 } else { gamma_lr(k, y / theta) }
                })
            })
        }
        "beta" => {
            let m = (mean - lo) / span;
            let v = var / (span * span);
            if v <= 0.0 || m <= 0.0 || m >= 1.0 || v >= m * (1.0 - m) {
                return None;
            }
            let common = m * (1.0 - m) / v - 1.0;
            let (a, b) = (m * common, (1.0 - m) * common);
            (a > 1e-3 && b > 1e-3 && a < 1e6 && b < 1e6)
                .then(|| -> RawCdf { Box::new(move |x| beta_reg(a, b, ((x - lo) / span).clamp(0.0, 1.0))) })
        }
        "kde" => kde_cdf(sorted, lo, hi, sd),
        _ => None,
    }
}

/// Gaussian KDE with Silverman's bandwidth, on binned data (512 bins) so that
/// evaluating the CDF costs O(bins) rather than O(rows).
fn kde_cdf(sorted: &[f64], lo: f64, hi: f64, sd: f64) -> Option<RawCdf> {
    const BINS: usize = 512;
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let n = sorted.len() as f64;
    let iqr = quantile_sorted(sorted, 0.75) - quantile_sorted(sorted, 0.25);
    let spread = if iqr > 0.0 { sd.min(iqr / 1.34) } else { sd };
    let h = 0.9 * spread * n.powf(-0.2);
    if h <= 0.0 || !h.is_finite() {
        return None;
    }
    let width = (hi - lo) / BINS as f64;
    let mut counts = vec![0usize; BINS];
    for &x in sorted {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped to the bin range"
        )]
        let b = (((x - lo) / width) as usize).min(BINS - 1);
        counts[b] += 1;
    }
    let centers: Vec<(f64, f64)> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| {
            #[allow(clippy::cast_precision_loss, reason = "small integers")]
            (lo + (i as f64 + 0.5) * width, *c as f64 / n)
        })
        .collect();
    Some(Box::new(move |x| {
        centers.iter().map(|(c, w)| w * normal_cdf((x - c) / h)).sum()
    }))
}

/// Tabulate `raw` on `xs`, truncated to [lo, hi] and normalised to [0, 1].
fn tabulate(xs: &[f64], lo: f64, hi: f64, raw: &RawCdf) -> Option<Vec<(f64, f64)>> {
    let (f_lo, f_hi) = (raw(lo), raw(hi));
    let mass = f_hi - f_lo;
    if mass.is_nan() || mass <= 1e-12 {
        return None;
    }
    let mut run = 0.0f64;
    let mut tab = Vec::with_capacity(xs.len());
    for &x in xs {
        let c = ((raw(x) - f_lo) / mass).clamp(0.0, 1.0);
        if !c.is_finite() {
            return None;
        }
        run = run.max(c);
        tab.push((x, run));
    }
    if let Some(first) = tab.first_mut() {
        first.1 = 0.0;
    }
    if let Some(last) = tab.last_mut() {
        last.1 = 1.0;
    }
    Some(tab)
}

/// KS statistic between the data and a tabulated CDF, on a regular subsample
/// of order statistics.
fn ks_statistic(sorted: &[f64], tab: &[(f64, f64)]) -> f64 {
    let n = sorted.len();
    let m = n.min(KS_POINTS);
    let interp = |x: f64| -> f64 {
        let k = tab.partition_point(|g| g.0 <= x);
        if k == 0 {
            return 0.0;
        }
        if k == tab.len() {
            return 1.0;
        }
        let (x0, c0) = tab[k - 1];
        let (x1, c1) = tab[k];
        c0 + (c1 - c0) * (x - x0) / (x1 - x0)
    };
    let mut d = 0.0f64;
    for i in 0..m {
        let j = if m == 1 { 0 } else { i * (n - 1) / (m - 1) };
        let c = interp(sorted[j]);
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let (below, at) = (j as f64 / n as f64, (j + 1) as f64 / n as f64);
        d = d.max((c - below).abs()).max((c - at).abs());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn all() -> Vec<String> {
        CANDIDATES.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn zero_inflated_column_keeps_its_spike() {
        // 90 % zeros, the rest spread out: the zero must be an exact atom.
        let mut v = vec![0.0; 900];
        v.extend((0..100).map(|i| 1000.0 + f64::from(i) * 37.0));
        let m = Marginal::fit(&v, 0.01, &all());
        assert!((m.cdf(0.0) - 0.9).abs() < 1e-9);
        assert_eq!(m.ppf(0.45), 0.0);
        assert!(m.ppf(0.95) > 1000.0);
    }

    #[test]
    fn few_distinct_values_are_exact() {
        let v: Vec<f64> = (0..1000).map(|i| f64::from(i % 5)).collect();
        let m = Marginal::fit(&v, 0.01, &all());
        assert_eq!(m.family, None);
        assert_eq!(m.atoms, 5);
        for (u, want) in [(0.1, 0.0), (0.3, 1.0), (0.5, 2.0), (0.7, 3.0), (0.99, 4.0)] {
            assert_eq!(m.ppf(u), want, "u={u}");
        }
    }

    #[test]
    fn normal_data_picks_a_good_fit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut s = crate::stats::NormalSampler::default();
        let v: Vec<f64> = (0..5000).map(|_| 50.0 + 10.0 * s.sample(&mut rng)).collect();
        let m = Marginal::fit(&v, 0.01, &all());
        assert!(m.ks < 0.03, "ks {}", m.ks);
        assert!((m.ppf(0.5) - 50.0).abs() < 1.0);
    }

    proptest! {
        #[test]
        fn ppf_stays_in_range_and_is_monotone(
            v in proptest::collection::vec(-1e4f64..1e4, 1..300),
            a in 0.0f64..=1.0, b in 0.0f64..=1.0,
        ) {
            let m = Marginal::fit(&v, 0.01, &all());
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let (x, y) = (m.ppf(a.min(b)), m.ppf(a.max(b)));
            prop_assert!(x <= y);
            prop_assert!(x >= lo && y <= hi);
        }

        #[test]
        fn cdf_of_ppf_round_trips(v in proptest::collection::vec(0f64..1e3, 50..300), u in 0.001f64..0.999) {
            let m = Marginal::fit(&v, 0.01, &all());
            let x = m.ppf(u);
            // u lies in [F(x⁻), F(x)]: within the jump at an atom, or equal to F(x).
            let k = m.knots.partition_point(|kn| kn.x < x);
            let left = m.knots.get(k).filter(|kn| kn.x == x).map_or(m.cdf(x), |kn| kn.left);
            prop_assert!(left - 1e-9 <= u && u <= m.cdf(x) + 1e-9);
        }
    }
}
