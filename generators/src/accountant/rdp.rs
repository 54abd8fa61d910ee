//! Rényi-DP accounting for DP-SGD: the Poisson-subsampled Gaussian mechanism.
//!
//! DP-SGD (Abadi et al. 2016, as Opacus runs it) takes each training row into
//! a batch independently with probability `q`, clips every row's gradient to
//! norm `C` and adds Gaussian noise of standard deviation `σ·C` to the batch's
//! sum. One step is the Poisson-subsampled Gaussian mechanism; its Rényi
//! divergence at order α has the closed form of Mironov, Talwar & Zhang
//! (2019, §3.3): a finite binomial sum for integer α, a convergent series of
//! `erfc` terms for fractional α. Steps compose by adding RDP order by order
//! (Mironov 2017), and the total converts to (ε, δ) by Balle et al.'s bound
//! (2020, Theorem 21), minimised over the orders.
//!
//! The arithmetic is Google's dp_accounting 0.6 (`RdpAccountant` with a
//! `PoissonSampledDpEvent` of a `GaussianDpEvent`) term for term, and its
//! default orders; `generators/tests/golden/rdp.py` prints its numbers and
//! Opacus 1.6's for the tests below. The two agree wherever the best order is
//! an integer; at fractional orders dp_accounting sums the series' terms by
//! magnitude, an upper bound, where Opacus subtracts the negative ones, so
//! its ε is up to 0.4 % higher there (31.82 against 31.69 at σ 0.8, 300
//! epochs of CTGAN's batches on Adult). doppel charges the higher number: a
//! budget is a promise, and the upper bound cannot under-report it.
//!
//! # Example
//! ```
//! use doppel_generators::accountant::rdp::{RdpAccountant, noise_multiplier, steps_for_epochs};
//!
//! // Batches of 500 expected rows out of 26,049, for 300 epochs.
//! let q = 500.0 / 26_049.0;
//! let steps = steps_for_epochs(q, 300.0);
//! let sigma = noise_multiplier(4.0, 1e-5, q, steps)?;
//! let mut accountant = RdpAccountant::default();
//! accountant.compose_poisson_gaussian(q, sigma, steps);
//! let (eps, _order) = accountant.epsilon(1e-5);
//! assert!(eps <= 4.0 && eps > 4.0 - 1e-6);
//! # Ok::<(), doppel_generators::Error>(())
//! ```

use std::f64::consts::{PI, SQRT_2};

use statrs::function::erf::erfc;
use statrs::function::gamma::ln_gamma;

use crate::{Error, Result};

/// Terms the fractional-order series may take before the order is left out
/// (dp_accounting's `_MAX_STEPS_LOG_A_FRAC`).
const MAX_SERIES_TERMS: usize = 1000;
/// Largest noise multiplier [`noise_multiplier`] tries before it says the
/// budget cannot be met (Opacus's `MAX_SIGMA` is 1e6; past 1e4 the model
/// learns nothing).
const MAX_SIGMA: f64 = 1e4;

/// The orders dp_accounting's `RdpAccountant` tracks by default: 1.1 to 10.9
/// in tenths, 11 to 63, and 128, 256, 512, 1024 (small budgets are tightest
/// at high orders, loose ones near 1).
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
    orders.extend((11..64).map(f64::from));
    orders.extend([128.0, 256.0, 512.0, 1024.0]);
    orders
}

/// RDP (ε at order `order`) of one step of the Gaussian mechanism with noise
/// multiplier `sigma` applied to a Poisson sample of rate `q`. Infinite
/// without noise, or when the series does not converge.
pub fn poisson_gaussian(q: f64, sigma: f64, order: f64) -> f64 {
    debug_assert!((0.0..=1.0).contains(&q) && sigma >= 0.0 && order > 1.0);
    if q == 0.0 {
        return 0.0;
    }
    if order.is_infinite() || sigma == 0.0 {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return order / (2.0 * sigma * sigma);
    }
    let log_a = if order.fract() == 0.0 {
        log_a_int(q, sigma, order)
    } else {
        log_a_frac(q, sigma, order)
    };
    log_a / (order - 1.0)
}

/// The RDP of a sequence of DP-SGD steps, order by order.
#[derive(Debug, Clone, PartialEq)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        RdpAccountant::with_orders(default_orders())
    }
}

impl RdpAccountant {
    /// An accountant that tracks these orders (each above 1).
    pub fn with_orders(orders: Vec<f64>) -> Self {
        let rdp = vec![0.0; orders.len()];
        RdpAccountant { orders, rdp }
    }

    /// Add `steps` steps of the Poisson-subsampled Gaussian mechanism.
    pub fn compose_poisson_gaussian(&mut self, q: f64, sigma: f64, steps: u64) {
        #[allow(clippy::cast_precision_loss, reason = "step counts are far below 2^52")]
        let steps = steps as f64;
        for (order, rdp) in self.orders.iter().zip(&mut self.rdp) {
            *rdp += steps * poisson_gaussian(q, sigma, *order);
        }
    }

    /// Add a ρ-zCDP mechanism (Bun & Steinke 2016: RDP ρ·α at every order
    /// α), such as the Gaussian measurements a DP generator makes of its
    /// domain before training, so that they and DP-SGD convert to one (ε, δ).
    pub fn compose_zcdp(&mut self, rho: f64) {
        for (order, rdp) in self.orders.iter().zip(&mut self.rdp) {
            *rdp += rho * order;
        }
    }

    /// The smallest ε, over the tracked orders, such that everything composed
    /// so far is (ε, δ)-DP, and the order that gives it.
    pub fn epsilon(&self, delta: f64) -> (f64, f64) {
        let mut best = (f64::INFINITY, self.orders.first().copied().unwrap_or(f64::NAN));
        for (&order, &rdp) in self.orders.iter().zip(&self.rdp) {
            let eps = epsilon_at(order, rdp, delta);
            if eps < best.0 {
                best = (eps, order);
            }
        }
        (best.0.max(0.0), best.1)
    }
}

/// ε of (order, rdp) at δ (dp_accounting's `compute_epsilon`, one order).
fn epsilon_at(order: f64, rdp: f64, delta: f64) -> f64 {
    if delta <= 0.0 {
        return if rdp == 0.0 { 0.0 } else { f64::INFINITY };
    }
    // dp_accounting reads a negative divergence (numerical trouble in an
    // extreme setting) as ε = 0; here the order is left out instead, so a
    // rounding error can never make a run look free.
    if rdp.is_nan() || rdp < 0.0 {
        return f64::INFINITY;
    }
    if delta * delta + (-rdp).exp_m1() > 0.0 {
        // δ ≥ √(1 − e^(−KL)): the divergence is small enough that ε = 0.
        return 0.0;
    }
    if order > 1.01 {
        // Balle et al. 2020, Theorem 21; unstable as the order nears 1.
        rdp + (-1.0 / order).ln_1p() - (delta * order).ln() / (order - 1.0)
    } else {
        f64::INFINITY
    }
}

/// Training steps in `epochs` passes over the data at sampling rate `q`
/// (Opacus: `int(epochs / q)`).
pub fn steps_for_epochs(q: f64, epochs: f64) -> u64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "floored like Opacus; epochs / q is positive and far below 2^64"
    )]
    let steps = (epochs / q).floor() as u64;
    steps
}

/// ε of `steps` DP-SGD steps at sampling rate `q` and noise multiplier
/// `sigma`, at δ, over the default orders.
pub fn epsilon(q: f64, sigma: f64, steps: u64, delta: f64) -> f64 {
    let mut accountant = RdpAccountant::default();
    accountant.compose_poisson_gaussian(q, sigma, steps);
    accountant.epsilon(delta).0
}

/// The smallest noise multiplier (to a relative 1e-10) whose `steps` steps at
/// sampling rate `q` are (`target_epsilon`, `delta`)-DP; the ε it gives is at
/// most the target. Opacus's `get_noise_multiplier` answers the same question
/// to within 0.01 of ε, rounding up.
pub fn noise_multiplier(target_epsilon: f64, delta: f64, q: f64, steps: u64) -> Result<f64> {
    noise_multiplier_after(&RdpAccountant::default(), target_epsilon, delta, q, steps)
}

/// [`noise_multiplier`] for training that follows what `spent` already
/// holds: the smallest noise multiplier whose steps, composed with `spent`,
/// are (`target_epsilon`, `delta`)-DP in total.
pub fn noise_multiplier_after(
    spent: &RdpAccountant,
    target_epsilon: f64,
    delta: f64,
    q: f64,
    steps: u64,
) -> Result<f64> {
    let invalid = |name: &str, message: String| Error::InvalidParam {
        name: name.to_owned(),
        message,
    };
    if !(target_epsilon.is_finite() && target_epsilon > 0.0) {
        return Err(invalid("epsilon", format!("{target_epsilon} is not a positive number")));
    }
    if !(delta > 0.0 && delta < 1.0) {
        return Err(invalid("delta", format!("{delta} is not between 0 and 1")));
    }
    if !(q > 0.0 && q <= 1.0) {
        return Err(invalid("sampling rate", format!("{q} is not in (0, 1]")));
    }
    if spent.epsilon(delta).0 > target_epsilon {
        return Err(invalid(
            "epsilon",
            format!("ε = {target_epsilon} at δ = {delta} is spent before training starts: allow a larger ε"),
        ));
    }
    let meets = |sigma: f64| {
        let mut total = spent.clone();
        total.compose_poisson_gaussian(q, sigma, steps);
        total.epsilon(delta).0 <= target_epsilon
    };
    // Bracket: `hi` meets the target, `lo` does not.
    let mut hi = 1.0;
    while !meets(hi) {
        hi *= 2.0;
        if hi > MAX_SIGMA {
            return Err(invalid(
                "epsilon",
                format!(
                    "ε = {target_epsilon} at δ = {delta} cannot be met in {steps} steps at sampling rate {q} \
                     (noise above {MAX_SIGMA} times the clipping norm would be needed): train fewer epochs, \
                     use smaller batches or allow a larger ε"
                ),
            ));
        }
    }
    let mut lo = hi / 2.0;
    while meets(lo) {
        hi = lo;
        lo /= 2.0;
        if lo < 1e-3 {
            // So little noise already meets the target that less is moot.
            return Ok(hi);
        }
    }
    while hi - lo > 1e-10 * hi {
        let mid = (lo + hi) / 2.0;
        if meets(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// log(A_α) for integer α: a binomial sum.
fn log_a_int(q: f64, sigma: f64, alpha: f64) -> f64 {
    let log1mq = (-q).ln_1p();
    let mut log_a = f64::NEG_INFINITY;
    let mut i = 0.0;
    while i <= alpha {
        let log_coef = log_comb(alpha, i) + i * q.ln() + (alpha - i) * log1mq;
        log_a = log_add(log_a, log_coef + (i * i - i) / (2.0 * sigma * sigma));
        i += 1.0;
    }
    log_a
}

/// log(A_α) for fractional α: two tails of a series of `erfc` terms, summed
/// by magnitude until both are falling and 30 nats below the total.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let log1mq = (-q).ln_1p();
    let (mut last_s0, mut last_s1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for step in 0..MAX_SERIES_TERMS {
        #[allow(clippy::cast_precision_loss, reason = "at most 1000")]
        let i = step as f64;
        let log_coef = log_comb(alpha, i);
        let j = alpha - i;
        let log_t0 = log_coef + i * q.ln() + j * log1mq;
        let log_t1 = log_coef + j * q.ln() + i * log1mq;
        let log_e0 = 0.5_f64.ln() + log_erfc((i - z0) / (SQRT_2 * sigma));
        let log_e1 = 0.5_f64.ln() + log_erfc((z0 - j) / (SQRT_2 * sigma));
        let log_s0 = log_t0 + (i * i - i) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        log_a0 = log_add(log_a0, log_s0);
        log_a1 = log_add(log_a1, log_s1);
        let total = log_add(log_a0, log_a1);
        if log_s0 < last_s0 && log_s1 < last_s1 && log_s0.max(log_s1) < total - 30.0 {
            return total;
        }
        last_s0 = log_s0;
        last_s1 = log_s1;
    }
    f64::INFINITY
}

/// log(e^x + e^y).
fn log_add(x: f64, y: f64) -> f64 {
    let (a, b) = if x < y { (x, y) } else { (y, x) };
    if a == f64::NEG_INFINITY {
        return b;
    }
    (a - b).exp().ln_1p() + b
}

/// log |C(n, k)| for real n and k, through log |Γ| (scipy's `gammaln`).
fn log_comb(n: f64, k: f64) -> f64 {
    ln_abs_gamma(n + 1.0) - ln_abs_gamma(k + 1.0) - ln_abs_gamma(n - k + 1.0)
}

/// log |Γ(x)|, also for negative non-integer x (by reflection; statrs's
/// `ln_gamma` takes the log of a negative number there).
fn ln_abs_gamma(x: f64) -> f64 {
    if x >= 0.5 {
        return ln_gamma(x);
    }
    // Γ(x)Γ(1−x) = π / sin(πx); sin taken of x's distance to the nearest
    // integer, so a large |x| loses no digits to the multiplication by π.
    let r = x - x.round();
    PI.ln() - (PI * r).sin().abs().ln() - ln_gamma(1.0 - x)
}

/// log(erfc(x)), accurate where erfc underflows.
fn log_erfc(x: f64) -> f64 {
    if x < 21.0 {
        return erfc(x).ln();
    }
    log_erfc_series(x)
}

/// The asymptotic (Laurent) series of log erfc at infinity, which
/// dp_accounting falls back on; past 21 its next term is below 1e-13.
fn log_erfc_series(x: f64) -> f64 {
    let x2 = x * x;
    -PI.ln() / 2.0 - x.ln() - x2 - 0.5 / x2 + 0.625 / (x2 * x2) - 37.0 / 24.0 / (x2 * x2 * x2)
        + 353.0 / 64.0 / (x2 * x2 * x2 * x2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (q, σ, steps, δ, dp_accounting ε, Opacus ε, Opacus's best order) from
    /// `generators/tests/golden/rdp.py` (dp_accounting 0.6.0 on its default
    /// orders — the same ε on Opacus's; Opacus 1.6.0's `RDPAccountant`).
    #[rustfmt::skip] // one reference setting per line
    const GOLDEN: [(f64, f64, u64, f64, f64, f64, f64); 9] = [
        (0.004_266_666_666_666_667, 1.1, 14062, 1e-05, 2.596_555_869_794_303_6, 2.596_555_868_960_748_6, 8.1),
        (0.01, 1.0, 1000, 1e-05, 2.101_366_525_420_273, 2.101_365_271_643_056_4, 7.8),
        (0.004, 1.5, 10000, 1e-06, 1.416_054_860_565_944_2, 1.416_054_860_565_901_8, 16.0),
        (0.019_194_594_802_103_726, 0.8, 15629, 1e-05, 31.824_315_678_941_2, 31.694_151_021_211_695, 1.9),
        (0.019_194_594_802_103_726, 2.0, 15629, 1e-05, 6.341_652_934_878_622, 6.341_652_596_994_804_5, 4.4),
        (0.1, 0.8, 50, 1e-05, 9.256_821_061_764_695, 9.233_989_368_735_447, 2.7),
        (0.25, 3.0, 200, 1e-07, 7.327_474_012_390_798, 7.327_356_455_005_877, 5.1),
        (1.0, 2.0, 10, 1e-05, 8.079_406_222_420_491, 8.079_406_222_420_491, 3.9),
        (0.001, 0.6, 5000, 1e-05, 2.980_729_069_609_397_5, 2.980_696_081_847_180_6, 4.5),
    ];

    #[test]
    fn epsilon_matches_dp_accounting_and_never_undercuts_opacus() {
        for (q, sigma, steps, delta, google, opacus, opacus_order) in GOLDEN {
            let ours = epsilon(q, sigma, steps, delta);
            assert!(
                (ours - google).abs() <= 1e-9 * google,
                "q={q} σ={sigma} steps={steps}: {ours} vs dp_accounting {google}"
            );
            // Same ε as Opacus where its best order is an integer (the sums
            // are the same there), never less where it is fractional.
            if opacus_order.fract() == 0.0 {
                assert!((ours - opacus).abs() <= 1e-9 * opacus, "{ours} vs Opacus {opacus}");
            }
            assert!(ours >= opacus * (1.0 - 1e-9), "{ours} below Opacus's {opacus}");
            assert!(ours <= opacus * 1.005, "{ours} more than 0.5 % above Opacus's {opacus}");
        }
    }

    #[test]
    fn opacus_orders_give_opacus_numbers_at_integer_optima() {
        // Opacus tracks 1.1..10.9 and 12..63; on those orders ε is Opacus's
        // wherever its optimum is an integer order.
        let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
        orders.extend((12..64).map(f64::from));
        let (q, sigma, steps, delta, _, opacus, order) = GOLDEN[2];
        let mut accountant = RdpAccountant::with_orders(orders);
        accountant.compose_poisson_gaussian(q, sigma, steps);
        let (eps, best) = accountant.epsilon(delta);
        assert_eq!(best, order);
        assert!((eps - opacus).abs() <= 1e-9 * opacus, "{eps} vs {opacus}");
    }

    /// (target ε, δ, q, epochs, σ by bisection on dp_accounting to 1e-12)
    /// from `generators/tests/golden/rdp.py`: CTGAN's batches on Adult.
    #[rustfmt::skip]
    const NOISE: [(f64, f64, f64, f64, f64); 3] = [
        (1.0, 1e-05, 0.019_194_594_802_103_726, 300.0, 9.748_628_192_331_589),
        (4.0, 1e-05, 0.019_194_594_802_103_726, 300.0, 2.878_570_493_801_249),
        (10.0, 1e-05, 0.019_194_594_802_103_726, 300.0, 1.451_522_121_220_041_3),
    ];

    #[test]
    fn noise_multiplier_is_the_smallest_that_meets_the_target() {
        for (target, delta, q, epochs, google) in NOISE {
            let steps = steps_for_epochs(q, epochs);
            assert_eq!(steps, 15629, "Opacus's int(epochs / q)");
            let sigma = noise_multiplier(target, delta, q, steps).unwrap();
            assert!(
                (sigma - google).abs() <= 1e-8 * google,
                "ε={target}: σ {sigma} vs {google}"
            );
            let eps = epsilon(q, sigma, steps, delta);
            assert!(eps <= target && eps > target - 1e-6, "σ {sigma} gives ε {eps}");
            // A hair less noise overspends.
            assert!(epsilon(q, sigma * (1.0 - 1e-6), steps, delta) > target);
        }
    }

    #[test]
    fn an_unreachable_budget_is_refused_with_what_to_change() {
        // A million full-batch steps at ε = 0.01: no noise level meets it.
        let err = noise_multiplier(0.01, 1e-9, 1.0, 1_000_000).unwrap_err().to_string();
        assert!(err.contains("cannot be met") && err.contains("fewer epochs"), "{err}");
        assert!(noise_multiplier(1.0, 0.0, 0.01, 10).is_err());
        assert!(noise_multiplier(-1.0, 1e-5, 0.01, 10).is_err());
        assert!(noise_multiplier(1.0, 1e-5, 0.0, 10).is_err());
    }

    #[test]
    fn full_batches_are_the_plain_gaussian_mechanism() {
        // q = 1: ε at order α is α/(2σ²) per step, a ρ = 1/(2σ²) zCDP
        // mechanism; the RDP conversion can only be looser than the exact
        // zCDP one of the crate's accountant, and not by much.
        let (sigma, steps, delta) = (4.0, 20, 1e-6);
        let eps = epsilon(1.0, sigma, steps, delta);
        #[allow(clippy::cast_precision_loss, reason = "small")]
        let rho = steps as f64 / (2.0 * sigma * sigma);
        let exact = crate::accountant::cdp_eps(rho, delta);
        assert!(eps >= exact * (1.0 - 1e-9) && eps <= exact * 1.05, "{eps} vs {exact}");
    }

    #[test]
    fn zcdp_spent_first_composes_with_training() {
        // A ρ-zCDP measurement is the full-batch Gaussian mechanism with
        // ρ = 1/(2σ²): composing it is composing one such step.
        let (rho, delta) = (0.02_f64, 1e-6);
        let sigma = (1.0 / (2.0 * rho)).sqrt();
        let mut zcdp = RdpAccountant::default();
        zcdp.compose_zcdp(rho);
        let mut step = RdpAccountant::default();
        step.compose_poisson_gaussian(1.0, sigma, 1);
        let (a, b) = (zcdp.epsilon(delta).0, step.epsilon(delta).0);
        assert!((a - b).abs() <= 1e-12 * b, "{a} vs {b}");

        // Training after it needs more noise for the same total, and the
        // total is then the target.
        let (q, steps, target) = (0.02, 5000, 4.0);
        let alone = noise_multiplier(target, delta, q, steps).unwrap();
        let after = noise_multiplier_after(&zcdp, target, delta, q, steps).unwrap();
        assert!(after > alone, "{after} vs {alone}");
        let mut total = zcdp.clone();
        total.compose_poisson_gaussian(q, after, steps);
        let eps = total.epsilon(delta).0;
        assert!(eps <= target && eps > target - 1e-6, "{eps}");
        assert_eq!(
            noise_multiplier_after(&RdpAccountant::default(), target, delta, q, steps).unwrap(),
            alone
        );
        // Spent already: refused, saying so.
        let mut all = RdpAccountant::default();
        all.compose_zcdp(10.0);
        let err = noise_multiplier_after(&all, 1.0, delta, q, steps)
            .unwrap_err()
            .to_string();
        assert!(err.contains("spent before training"), "{err}");
    }

    #[test]
    fn log_erfc_joins_its_series_smoothly() {
        // Either side of the switch at 21 the two forms agree.
        let direct = erfc(20.999).ln();
        let series = log_erfc_series(20.999);
        assert!((direct - series).abs() <= 1e-12 * direct.abs(), "{direct} vs {series}");
        assert!(log_erfc(40.0).is_finite() && log_erfc(40.0) < log_erfc(30.0));
    }

    proptest! {
        // Each case composes ~160 orders four times; a few dozen cases cover
        // the ranges without slowing the suite.
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn more_noise_or_fewer_steps_never_cost_more(
            q in 0.001f64..0.5, sigma in 0.5f64..5.0, steps in 1u64..5000, more in 0.01f64..2.0,
        ) {
            let base = epsilon(q, sigma, steps, 1e-5);
            prop_assert!(base.is_finite() && base >= 0.0);
            prop_assert!(epsilon(q, sigma + more, steps, 1e-5) <= base * (1.0 + 1e-12));
            prop_assert!(epsilon(q, sigma, steps / 2, 1e-5) <= base * (1.0 + 1e-12));
            prop_assert!(epsilon((q * 2.0).min(1.0), sigma, steps, 1e-5) >= base * (1.0 - 1e-12));
        }

        #[test]
        fn reflection_matches_the_recurrence(x in -50.0f64..0.49) {
            prop_assume!((x - x.round()).abs() > 1e-3);
            // |Γ(x)| = |Γ(x + 1)| / |x|.
            let lhs = ln_abs_gamma(x);
            let rhs = ln_abs_gamma(x + 1.0) - x.abs().ln();
            prop_assert!((lhs - rhs).abs() <= 1e-9 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
        }
    }
}
