//! Marginal tables: InDif scoring, DenseMarg selection, measurement and
//! consistency post-processing (PrivSyn §4–5).

use super::noise::Noise;
use crate::accountant::gaussian_sigma;

/// The exact 1- and 2-way contingency tables of the discretised table, as a
/// [`crate::counts::CountSource`] computed them.
pub(crate) struct Discrete {
    /// Tables by attribute set (`[a]` or `[a, b]` with `a < b`).
    pub(crate) tables: std::collections::HashMap<Vec<usize>, Vec<f64>>,
    pub(crate) sizes: Vec<usize>,
    pub(crate) rows: usize,
}

/// A noisy marginal over one or two attributes.
#[derive(Debug, Clone)]
pub(crate) struct Marginal {
    /// Attributes, in table order; cells are row-major over them.
    pub(crate) attrs: Vec<usize>,
    /// Cell counts (noisy, later consistent and non-negative).
    pub(crate) counts: Vec<f64>,
    /// Noise standard deviation per cell (weights the consistency step).
    pub(crate) sigma: f64,
}

impl Discrete {
    /// Exact contingency table of `attrs` (one or two).
    pub(crate) fn table(&self, attrs: &[usize]) -> Vec<f64> {
        self.tables
            .get(attrs)
            .cloned()
            .unwrap_or_else(|| unreachable!("every 1- and 2-way table is counted before selection"))
    }

    /// Measure `attrs` with the Gaussian mechanism at cost `rho` (each row
    /// adds one to one cell: L2 sensitivity 1).
    pub(crate) fn measure(&self, attrs: &[usize], rho: f64, noise: &mut Noise) -> Marginal {
        let mut counts = self.table(attrs);
        let sigma = gaussian_sigma(rho, 1.0);
        noise.gaussian(&mut counts, sigma);
        Marginal {
            attrs: attrs.to_vec(),
            counts,
            sigma,
        }
    }
}

/// Noisy InDif of every pair `(a, b)`, `a < b`: `Σ |n_ab − n_a·n_b / n|`,
/// how far the pair is from independent. Its sensitivity is 4 (PrivSyn
/// Lemma 1), so the m pair scores together cost `rho` with σ = √(8m/ρ).
pub(crate) fn indif(data: &Discrete, ones: &[Vec<f64>], rho: f64, noise: &mut Noise) -> Vec<((usize, usize), f64)> {
    let d = data.sizes.len();
    let pairs: Vec<(usize, usize)> = (0..d).flat_map(|a| (a + 1..d).map(move |b| (a, b))).collect();
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let n = data.rows as f64;
    let mut scores: Vec<f64> = pairs
        .iter()
        .map(|&(a, b)| {
            let t = data.table(&[a, b]);
            let nb = data.sizes[b];
            t.iter()
                .enumerate()
                .map(|(cell, &count)| (count - ones[a][cell / nb] * ones[b][cell % nb] / n).abs())
                .sum()
        })
        .collect();
    if !pairs.is_empty() {
        #[allow(clippy::cast_precision_loss, reason = "pair counts are small")]
        let m = pairs.len() as f64;
        let sigma = (8.0 * m / rho).sqrt();
        noise.gaussian(&mut scores, sigma);
    }
    pairs.into_iter().zip(scores).collect()
}

/// DenseMarg: greedily choose the pairs whose measurement removes more
/// dependence error (their InDif) than the noise it adds, with the pairs'
/// budget `rho` split ∝ cells^(2/3) (which minimises total expected L1 noise).
/// Pairs with more than `max_cells` cells are not candidates.
pub(crate) fn select(
    scores: &[((usize, usize), f64)],
    sizes: &[usize],
    rho: f64,
    max_cells: usize,
) -> Vec<(usize, usize)> {
    // Expected L1 noise of the chosen set: with weights w = c^(2/3) and
    // T = Σw, marginal j gets ρ_j = ρ·w_j/T, σ_j = √(T/(2ρ w_j)), and its
    // expected L1 error c_j·σ_j·√(2/π) = w_j·√(T/(πρ)); summed, T^(3/2)/√(πρ).
    let noise_err = |t: f64| t.powf(1.5) / (std::f64::consts::PI * rho).sqrt();
    #[allow(clippy::cast_precision_loss, reason = "cell counts are far below 2^52")]
    let weight = |(a, b): (usize, usize)| ((sizes[a] * sizes[b]) as f64).powf(2.0 / 3.0);
    let mut chosen: Vec<(usize, usize)> = Vec::new();
    let mut used = vec![false; scores.len()];
    let mut t = 0.0;
    let mut remaining: f64 = scores.iter().map(|(_, s)| s).sum();
    let mut error = noise_err(t) + remaining;
    loop {
        let mut best: Option<(usize, f64)> = None;
        for (i, &(pair, score)) in scores.iter().enumerate() {
            if used[i] || sizes[pair.0] * sizes[pair.1] > max_cells {
                continue;
            }
            let e = noise_err(t + weight(pair)) + remaining - score;
            if best.is_none_or(|(_, b)| e < b) {
                best = Some((i, e));
            }
        }
        match best {
            Some((i, e)) if e < error => {
                used[i] = true;
                t += weight(scores[i].0);
                remaining -= scores[i].1;
                error = e;
                chosen.push(scores[i].0);
            }
            _ => break,
        }
    }
    chosen
}

/// Budget share of each chosen pair: ρ_j = ρ·c_j^(2/3) / Σ c^(2/3).
pub(crate) fn pair_budgets(pairs: &[(usize, usize)], sizes: &[usize], rho: f64) -> Vec<f64> {
    #[allow(clippy::cast_precision_loss, reason = "cell counts are far below 2^52")]
    let w: Vec<f64> = pairs
        .iter()
        .map(|&(a, b)| ((sizes[a] * sizes[b]) as f64).powf(2.0 / 3.0))
        .collect();
    let total: f64 = w.iter().sum();
    w.iter().map(|x| rho * x / total).collect()
}

/// Combine two noisy measurements of the same 1-way marginal by inverse
/// variance.
pub(crate) fn combine(a: &mut Marginal, b: &Marginal) {
    let (wa, wb) = (1.0 / (a.sigma * a.sigma), 1.0 / (b.sigma * b.sigma));
    for (x, y) in a.counts.iter_mut().zip(&b.counts) {
        *x = (*x * wa + y * wb) / (wa + wb);
    }
    a.sigma = (1.0 / (wa + wb)).sqrt();
}

/// Make all marginals agree on one total and on every shared attribute's
/// 1-way distribution, and be non-negative (PrivSyn §5.1: weighted averages
/// by inverse variance, then "norm_sub"), alternating until nothing moves.
/// Returns the common total.
pub(crate) fn make_consistent(marginals: &mut [Marginal], sizes: &[usize], rounds: usize) -> f64 {
    let mut total = 0.0;
    for _ in 0..rounds {
        // One total: inverse-variance average of each marginal's total (the
        // variance of a sum of c cells is c·σ²).
        #[allow(clippy::cast_precision_loss, reason = "cell counts are far below 2^52")]
        let weights: Vec<f64> = marginals
            .iter()
            .map(|m| 1.0 / (m.sigma * m.sigma * m.counts.len() as f64))
            .collect();
        let wsum: f64 = weights.iter().sum();
        total = marginals
            .iter()
            .zip(&weights)
            .map(|(m, w)| m.counts.iter().sum::<f64>() * w)
            .sum::<f64>()
            / wsum;
        total = total.max(1.0);
        let mut moved = 0.0_f64;
        for (attr, &size) in sizes.iter().enumerate() {
            let holders: Vec<usize> = (0..marginals.len())
                .filter(|&i| marginals[i].attrs.contains(&attr))
                .collect();
            if holders.is_empty() {
                continue;
            }
            let mut consensus = vec![0.0; size];
            let mut wsum = 0.0;
            let projections: Vec<Vec<f64>> = holders.iter().map(|&i| project(&marginals[i], attr, sizes)).collect();
            for (&i, p) in holders.iter().zip(&projections) {
                let m = &marginals[i];
                #[allow(clippy::cast_precision_loss, reason = "cell counts are far below 2^52")]
                let other = (m.counts.len() / size) as f64;
                let w = 1.0 / (m.sigma * m.sigma * other);
                // Each estimate is first scaled to the common total.
                let s: f64 = p.iter().sum();
                #[allow(clippy::cast_precision_loss, reason = "domain sizes are small")]
                let shift = (total - s) / size as f64;
                for (c, x) in consensus.iter_mut().zip(p) {
                    *c += w * (x + shift);
                }
                wsum += w;
            }
            for c in &mut consensus {
                *c /= wsum;
            }
            for (&i, p) in holders.iter().zip(&projections) {
                let m = &mut marginals[i];
                let other = m.counts.len() / size;
                for v in 0..size {
                    #[allow(clippy::cast_precision_loss, reason = "domain sizes are small")]
                    let diff = (consensus[v] - p[v]) / other as f64;
                    moved = moved.max(diff.abs());
                    for_slice(m, attr, v, sizes, |x| *x += diff);
                }
            }
        }
        for m in marginals.iter_mut() {
            norm_sub(&mut m.counts, total);
        }
        if moved < 1e-3 {
            break;
        }
    }
    total
}

/// Zero the cells no larger than their noise could make them, then rescale
/// every pair marginal slice by slice (iterative proportional fitting) to the
/// attribute's 1-way marginal.
///
/// Additive consistency spreads mass evenly over a slice, so a sparse pair
/// (education × education_num has 16 occupied cells of 400) ends up with
/// every empty cell holding a little. Cells below `sigmas`·σ are
/// indistinguishable from noise; dropping them and fitting multiplicatively
/// keeps empty cells empty. Post-processing only: it costs no privacy.
pub(crate) fn sparsify(marginals: &mut [Marginal], sizes: &[usize], total: f64, sigmas: f64, rounds: usize) {
    for m in marginals.iter_mut() {
        let floor = sigmas * m.sigma;
        let before: f64 = m.counts.iter().sum();
        m.counts.iter_mut().filter(|c| **c < floor).for_each(|c| *c = 0.0);
        let after: f64 = m.counts.iter().sum();
        if after > 0.0 {
            m.counts.iter_mut().for_each(|c| *c *= before / after);
        } else {
            // Everything was noise: keep the consistent estimate as it was.
            #[allow(clippy::cast_precision_loss, reason = "domain sizes are small")]
            let even = total / m.counts.len() as f64;
            m.counts.iter_mut().for_each(|c| *c = even);
        }
    }
    let ones: Vec<Option<Vec<f64>>> = (0..sizes.len())
        .map(|a| marginals.iter().find(|m| m.attrs == [a]).map(|m| m.counts.clone()))
        .collect();
    for _ in 0..rounds {
        for m in marginals.iter_mut().filter(|m| m.attrs.len() == 2) {
            for &attr in &m.attrs.clone() {
                let Some(target) = &ones[attr] else { continue };
                let p = project(m, attr, sizes);
                for (v, (&want, &have)) in target.iter().zip(&p).enumerate() {
                    if have > 0.0 {
                        let f = want / have;
                        for_slice(m, attr, v, sizes, |x| *x *= f);
                    } else if want > 0.0 {
                        #[allow(clippy::cast_precision_loss, reason = "domain sizes are small")]
                        let even = want / (m.counts.len() / sizes[attr]) as f64;
                        for_slice(m, attr, v, sizes, |x| *x = even);
                    }
                }
            }
        }
    }
}

/// Remove a bin of `attr` from every marginal holding it (a non-nullable
/// column can't take its null bin), rescaling each to `total`. Returns false
/// when nothing else is left.
pub(crate) fn forbid(marginals: &mut [Marginal], attr: usize, bin: usize, sizes: &[usize], total: f64) -> bool {
    let mut ok = true;
    for m in marginals.iter_mut().filter(|m| m.attrs.contains(&attr)) {
        for_slice(m, attr, bin, sizes, |x| *x = 0.0);
        let sum: f64 = m.counts.iter().sum();
        if sum > 0.0 {
            m.counts.iter_mut().for_each(|x| *x *= total / sum);
        } else {
            ok = false;
        }
    }
    ok
}

/// The 1-way projection of `m` on `attr`.
fn project(m: &Marginal, attr: usize, sizes: &[usize]) -> Vec<f64> {
    match *m.attrs.as_slice() {
        [_] => m.counts.clone(),
        [a, b] => {
            let nb = sizes[b];
            let mut p = vec![0.0; sizes[attr]];
            for (cell, &x) in m.counts.iter().enumerate() {
                let v = if attr == a { cell / nb } else { cell % nb };
                p[v] += x;
            }
            p
        }
        _ => unreachable!("marginals are over one or two attributes"),
    }
}

/// Apply `f` to every cell of `m` whose `attr` is `v`.
fn for_slice(m: &mut Marginal, attr: usize, v: usize, sizes: &[usize], mut f: impl FnMut(&mut f64)) {
    match *m.attrs.as_slice() {
        [_] => f(&mut m.counts[v]),
        [a, b] => {
            let nb = sizes[b];
            if attr == a {
                m.counts[v * nb..(v + 1) * nb].iter_mut().for_each(f);
            } else {
                m.counts.iter_mut().skip(v).step_by(nb).for_each(f);
            }
        }
        _ => unreachable!("marginals are over one or two attributes"),
    }
}

/// Non-negative counts with the given total that stay close to the input:
/// zero the negatives and take the excess off the positive cells evenly,
/// repeating while that creates new negatives ("norm_sub").
pub(crate) fn norm_sub(counts: &mut [f64], total: f64) {
    for _ in 0..counts.len() + 1 {
        for c in counts.iter_mut() {
            if *c < 0.0 {
                *c = 0.0;
            }
        }
        let positive = counts.iter().filter(|c| **c > 0.0).count();
        if positive == 0 {
            #[allow(clippy::cast_precision_loss, reason = "domain sizes are small")]
            let even = total / counts.len() as f64;
            counts.iter_mut().for_each(|c| *c = even);
            return;
        }
        let excess = counts.iter().sum::<f64>() - total;
        #[allow(clippy::cast_precision_loss, reason = "domain sizes are small")]
        let per = excess / positive as f64;
        if per.abs() < 1e-9 {
            return;
        }
        let mut negative = false;
        for c in counts.iter_mut().filter(|c| **c > 0.0) {
            *c -= per;
            negative |= *c < 0.0;
        }
        if !negative {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn norm_sub_is_non_negative_with_the_total(
            counts in proptest::collection::vec(-50.0f64..200.0, 1..40), total in 1.0f64..5000.0
        ) {
            let mut c = counts.clone();
            norm_sub(&mut c, total);
            prop_assert!(c.iter().all(|x| *x >= 0.0));
            prop_assert!((c.iter().sum::<f64>() - total).abs() < 1e-6 * total.max(1.0));
        }
    }

    #[test]
    fn consistent_marginals_agree_on_shared_attributes() {
        let sizes = vec![3, 2, 4];
        let m = |attrs: Vec<usize>, counts: Vec<f64>| Marginal {
            attrs,
            counts,
            sigma: 2.0,
        };
        let mut ms = vec![
            m(vec![0, 1], vec![10.0, 5.0, -3.0, 7.0, 20.0, 1.0]),
            m(vec![1, 2], vec![4.0, 9.0, 11.0, 2.0, 6.0, 3.0, 8.0, 1.0]),
            m(vec![0], vec![14.0, 5.0, 22.0]),
            m(vec![2], vec![9.0, 12.0, 19.0, 4.0]),
        ];
        let total = make_consistent(&mut ms, &sizes, 200);
        for m in &ms {
            assert!(m.counts.iter().all(|x| *x >= 0.0));
            assert!((m.counts.iter().sum::<f64>() - total).abs() < 1e-6);
        }
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 0.05);
        assert!(close(&project(&ms[0], 0, &sizes), &ms[2].counts));
        assert!(close(&project(&ms[0], 1, &sizes), &project(&ms[1], 1, &sizes)));
        assert!(close(&project(&ms[1], 2, &sizes), &ms[3].counts));
    }

    #[test]
    fn selection_prefers_dependent_pairs_and_respects_max_cells() {
        let sizes = vec![10, 10, 10, 200];
        let scores = vec![
            ((0, 1), 9000.0),
            ((0, 2), 5.0),
            ((1, 2), 4000.0),
            ((0, 3), 50_000.0),
            ((1, 3), 1.0),
            ((2, 3), 1.0),
        ];
        let chosen = select(&scores, &sizes, 0.5, 1000);
        assert!(chosen.contains(&(0, 1)) && chosen.contains(&(1, 2)), "{chosen:?}");
        assert!(!chosen.contains(&(0, 3)), "2000 cells exceed max_cells");
        assert!(!chosen.contains(&(0, 2)), "an independent pair only adds noise");
        // With almost no budget, measuring anything costs more than it explains.
        assert!(select(&scores, &sizes, 1e-9, 1000).is_empty());
    }
}
