//! Small numerical helpers: the standard normal, sampling, moments.

use rand::RngExt;
use statrs::function::erf::{erfc, erfc_inv};

/// Smallest probability fed to [`normal_ppf`]; keeps normal scores finite (±6.1σ).
pub(crate) const U_EPS: f64 = 1e-9;

/// Standard normal CDF Φ(z).
pub(crate) fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Standard normal quantile Φ⁻¹(u), with `u` clamped to `[U_EPS, 1 − U_EPS]`.
pub(crate) fn normal_ppf(u: f64) -> f64 {
    let u = u.clamp(U_EPS, 1.0 - U_EPS);
    -std::f64::consts::SQRT_2 * erfc_inv(2.0 * u)
}

/// Draws standard normals by Box–Muller, keeping the spare value so every
/// uniform pair yields two normals. Deterministic for a given RNG stream.
#[derive(Debug, Default)]
pub(crate) struct NormalSampler {
    spare: Option<f64>,
}

impl NormalSampler {
    pub(crate) fn sample<R: rand::Rng + ?Sized>(&mut self, rng: &mut R) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 1 − U keeps the argument of ln strictly positive.
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

/// Mean and (population) variance.
pub(crate) fn mean_var(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var)
}

/// Linear-interpolated quantile of sorted data (numpy's default method).
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "pos is in [0, len)"
    )]
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = pos - pos.floor();
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn normal_reference_values() {
        // scipy.stats.norm.cdf / ppf
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-15);
        assert!(
            (normal_cdf(1.959_963_984_540_054) - 0.975).abs() < 1e-10,
            "{}",
            normal_cdf(1.959_963_984_540_054)
        );
        assert!((normal_ppf(0.975) - 1.959_963_984_540_054).abs() < 1e-9);
        assert!((normal_ppf(0.001) + 3.090_232_306_167_813_5).abs() < 1e-9);
        assert!(normal_ppf(0.0).is_finite() && normal_ppf(1.0).is_finite());
    }

    proptest! {
        #[test]
        fn ppf_inverts_cdf(u in 1e-8f64..(1.0 - 1e-8)) {
            prop_assert!((normal_cdf(normal_ppf(u)) - u).abs() < 1e-9);
        }

        #[test]
        fn quantile_is_monotone(mut xs in proptest::collection::vec(-1e6f64..1e6, 1..200), a in 0.0f64..1.0, b in 0.0f64..1.0) {
            xs.sort_by(f64::total_cmp);
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(quantile_sorted(&xs, lo) <= quantile_sorted(&xs, hi));
            prop_assert_eq!(quantile_sorted(&xs, 0.0), xs[0]);
            prop_assert_eq!(quantile_sorted(&xs, 1.0), xs[xs.len() - 1]);
        }
    }

    #[test]
    fn box_muller_moments() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut s = NormalSampler::default();
        let xs: Vec<f64> = (0..200_000).map(|_| s.sample(&mut rng)).collect();
        let (m, v) = mean_var(&xs);
        assert!(m.abs() < 0.01, "mean {m}");
        assert!((v - 1.0).abs() < 0.01, "variance {v}");
    }
}
