//! Privacy accounting in zero-concentrated differential privacy (zCDP).
//!
//! Every DP mechanism in doppel is a Gaussian mechanism, whose cost composes
//! additively in ρ (Bun & Steinke 2016). Users think in (ε, δ), so the budget
//! they give is converted to ρ once, split among the steps, and converted back
//! for reports. The conversion is the *exact* one of Canonne, Kamath & Steinke
//! (2020, Proposition 7), as private-pgm's `cdp2adp.py` and OpenDP compute it —
//! not the loose `ε = ρ + 2√(ρ ln 1/δ)`, which over-charges by 10-20 %.
//!
//! DP-SGD's subsampled Gaussian steps are not a plain Gaussian mechanism;
//! [`rdp`] accounts for them in Rényi DP and states the same (ε, δ) the
//! budget ledger charges.

pub mod rdp;

/// δ such that ρ-zCDP implies (ε, δ)-DP, minimised over the Rényi order α.
///
/// `δ = exp((α−1)(αρ−ε) + α·ln(1−1/α)) / (α−1)`; the optimal α is where the
/// exponent's derivative `(2α−1)ρ − ε + ln(1−1/α)` changes sign, found by
/// bisection.
pub fn cdp_delta(rho: f64, eps: f64) -> f64 {
    assert!(rho >= 0.0 && eps >= 0.0, "ρ and ε are non-negative");
    if rho == 0.0 {
        return 0.0;
    }
    let mut lo = 1.01_f64;
    let mut hi = (eps + 1.0) / (2.0 * rho) + 2.0;
    for _ in 0..1000 {
        let alpha = (lo + hi) / 2.0;
        let derivative = (2.0 * alpha - 1.0) * rho - eps + (-1.0 / alpha).ln_1p();
        if derivative < 0.0 {
            lo = alpha;
        } else {
            hi = alpha;
        }
        if hi - lo <= f64::EPSILON * hi {
            break;
        }
    }
    let alpha = (lo + hi) / 2.0;
    let delta = ((alpha - 1.0) * (alpha * rho - eps) + alpha * (-1.0 / alpha).ln_1p()).exp() / (alpha - 1.0);
    delta.min(1.0)
}

/// The smallest ε such that ρ-zCDP implies (ε, δ)-DP.
pub fn cdp_eps(rho: f64, delta: f64) -> f64 {
    assert!(rho >= 0.0 && delta > 0.0, "ρ ≥ 0 and δ > 0");
    if delta >= 1.0 || rho == 0.0 {
        return 0.0;
    }
    let mut lo = 0.0_f64;
    // The loose bound is always sufficient.
    let mut hi = rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt();
    for _ in 0..1000 {
        let eps = (lo + hi) / 2.0;
        if cdp_delta(rho, eps) <= delta {
            hi = eps;
        } else {
            lo = eps;
        }
        if hi - lo <= f64::EPSILON * hi {
            break;
        }
    }
    hi
}

/// The largest ρ such that ρ-zCDP implies (ε, δ)-DP.
pub fn cdp_rho(eps: f64, delta: f64) -> f64 {
    assert!(eps >= 0.0 && delta > 0.0, "ε ≥ 0 and δ > 0");
    if delta >= 1.0 {
        return f64::INFINITY;
    }
    let mut lo = 0.0_f64;
    let mut hi = eps + 1.0;
    for _ in 0..1000 {
        let rho = (lo + hi) / 2.0;
        if cdp_delta(rho, eps) <= delta {
            lo = rho;
        } else {
            hi = rho;
        }
        if hi - lo <= f64::EPSILON * hi {
            break;
        }
    }
    lo
}

/// Standard deviation of the Gaussian mechanism that costs `rho` for a query
/// of L2 sensitivity `sensitivity`: ρ = Δ²/(2σ²).
pub fn gaussian_sigma(rho: f64, sensitivity: f64) -> f64 {
    sensitivity / (2.0 * rho).sqrt()
}

/// What one DP fit spent, as reports and the budget ledger show it.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacySpend {
    /// The ε of the (ε, δ)-DP guarantee.
    pub epsilon: f64,
    /// The δ of the guarantee.
    pub delta: f64,
    /// The zCDP ρ of all Gaussian measurements together.
    pub rho: f64,
    /// ρ spent per step, in the order the steps ran (`"1-way marginals"`, …).
    pub steps: Vec<(String, f64)>,
    /// The neighbouring relation and anything that qualifies the guarantee.
    pub notes: Vec<String>,
    /// DP-SGD training, when the fit trained a network: composed with the
    /// measurements above in Rényi DP ([`rdp`]) and converted to (ε, δ) once.
    pub sgd: Option<SgdSpend>,
}

/// What DP-SGD training spent: Poisson-sampled steps of the Gaussian
/// mechanism on clipped per-row gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdSpend {
    /// Training steps.
    pub steps: u64,
    /// Probability that a row is in a step's batch (`q`).
    pub sampling_rate: f64,
    /// Noise standard deviation over the clipping norm (`σ`).
    pub noise_multiplier: f64,
    /// Each row's gradient is clipped to this L2 norm.
    pub clip: f64,
}

/// The (ε, δ) a generator will charge for given parameters, known before it
/// reads a row, so a budget ledger can refuse an overspend up front.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacyCost {
    /// ε to charge.
    pub epsilon: f64,
    /// δ to charge.
    pub delta: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ε for (ρ, δ) from OpenDP 0.14.2's exact conversion
    /// (`tests/golden/accountant.py`).
    const OPENDP: [(f64, f64, f64); 12] = [
        (0.001, 1e-05, 0.157_335_393_161_215_53),
        (0.001, 1e-09, 0.245_119_253_871_951_4),
        (0.01, 1e-05, 0.545_725_548_274_002_5),
        (0.01, 1e-09, 0.810_174_467_867_534_3),
        (0.1, 1e-05, 1.914_238_832_003_598),
        (0.1, 1e-09, 2.715_481_886_730_502_4),
        (0.5, 1e-05, 4.728_386_984_943_315),
        (0.5, 1e-09, 6.474_070_020_726_487),
        (1.0, 1e-05, 7.077_196_695_806_34),
        (1.0, 1e-09, 9.521_463_671_792_235),
        (2.5, 1e-05, 12.299_654_914_693_834),
        (2.5, 1e-09, 16.118_797_108_679_93),
    ];

    #[test]
    fn accountant_matches_opendp() {
        for (rho, delta, eps) in OPENDP {
            let ours = cdp_eps(rho, delta);
            assert!(
                (ours - eps).abs() < 1e-6 * eps,
                "ρ={rho} δ={delta}: {ours} vs OpenDP {eps}"
            );
            let back = cdp_rho(eps, delta);
            assert!((back - rho).abs() < 1e-6 * rho, "ε={eps} δ={delta}: ρ {back} vs {rho}");
        }
    }

    #[test]
    fn loose_bound_is_an_upper_bound() {
        for &(rho, delta) in &[(0.01, 1e-9), (0.1, 1e-6), (1.0, 1e-5)] {
            let loose: f64 = rho + 2.0 * (rho * (1.0_f64 / delta).ln()).sqrt();
            assert!(cdp_eps(rho, delta) < loose);
        }
    }

    proptest! {
        #[test]
        fn rho_and_eps_are_inverse(eps in 0.05f64..20.0, exp in 3i32..12) {
            let delta = 10f64.powi(-exp);
            let rho = cdp_rho(eps, delta);
            prop_assert!(rho > 0.0);
            let back = cdp_eps(rho, delta);
            prop_assert!((back - eps).abs() <= 1e-9 * eps.max(1.0), "{eps} → ρ {rho} → {back}");
            // The conversion is sound: ρ yields at most δ at ε.
            prop_assert!(cdp_delta(rho, eps) <= delta * (1.0 + 1e-9));
        }

        #[test]
        fn more_rho_costs_more_eps(rho in 1e-4f64..5.0, extra in 1e-4f64..1.0) {
            prop_assert!(cdp_eps(rho + extra, 1e-9) > cdp_eps(rho, 1e-9));
        }
    }
}
