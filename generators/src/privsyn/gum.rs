//! GUM, PrivSyn's gradually-update method: start from records drawn from the
//! 1-way marginals and repeatedly nudge them towards every noisy marginal.
//!
//! For one marginal, cells holding more records than the target give up a
//! share α of their surplus; each freed record goes to a cell short of its
//! target, either by copying a record already in that cell (which carries
//! its other attributes along and so keeps higher-order structure) or by
//! rewriting just the marginal's attributes. α decays in steps
//! (α₀·0.84^⌊iteration/20⌋, the paper's "U4") so late iterations only polish.
//! This is post-processing of the noisy marginals: it costs no privacy.

use rand::RngExt;
use rand::seq::SliceRandom;

use super::marginals::Marginal;
use crate::{Error, Progress, Result};

/// Share of moved records that copy an existing record of the target cell.
const DUPLICATE_SHARE: f64 = 0.5;

/// Integer counts summing to `rows`, proportional to `weights` (largest
/// remainder), so the starting records match the 1-ways exactly.
fn apportion(weights: &[f64], rows: usize) -> Vec<usize> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || rows == 0 {
        let mut out = vec![0; weights.len()];
        if let Some(first) = out.first_mut() {
            *first = rows;
        }
        return out;
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let exact: Vec<f64> = weights.iter().map(|w| w / total * rows as f64).collect();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "non-negative and at most rows"
    )]
    let mut out: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut short = rows - out.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for &i in order.iter().cycle() {
        if short == 0 {
            break;
        }
        out[i] += 1;
        short -= 1;
    }
    out
}

/// Records (column-major bins) whose marginals approach `marginals`.
pub(crate) fn synthesize<R: rand::Rng>(
    marginals: &[Marginal],
    sizes: &[usize],
    rows: usize,
    iterations: usize,
    alpha0: f64,
    rng: &mut R,
    progress: &dyn Progress,
) -> Result<Vec<Vec<u32>>> {
    let mut records: Vec<Vec<u32>> = sizes
        .iter()
        .enumerate()
        .map(|(attr, &size)| {
            let one = marginals
                .iter()
                .find(|m| m.attrs == [attr])
                .map_or_else(|| vec![1.0; size], |m| m.counts.clone());
            let mut column: Vec<u32> = apportion(&one, rows)
                .into_iter()
                .enumerate()
                .flat_map(|(bin, k)| std::iter::repeat_n(u32::try_from(bin).expect("small"), k))
                .collect();
            column.shuffle(rng);
            column
        })
        .collect();
    if rows == 0 {
        return Ok(records);
    }
    // Pairs carry the dependence; 1-ways last so every column ends on its own
    // marginal.
    let mut order: Vec<&Marginal> = marginals.iter().filter(|m| m.attrs.len() == 2).collect();
    order.extend(marginals.iter().filter(|m| m.attrs.len() == 1));
    let total_steps = (iterations as u64).max(1);
    for it in 0..iterations {
        if progress.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let alpha = alpha0 * 0.84f64.powi(i32::try_from(it / 20).unwrap_or(i32::MAX));
        for m in &order {
            update(&mut records, m, sizes, rows, alpha, rng);
        }
        progress.advance(it as u64 + 1, total_steps);
    }
    Ok(records)
}

fn cell_of(records: &[Vec<u32>], attrs: &[usize], sizes: &[usize], r: usize) -> usize {
    match *attrs {
        [a] => records[a][r] as usize,
        [a, b] => records[a][r] as usize * sizes[b] + records[b][r] as usize,
        _ => unreachable!("marginals are over one or two attributes"),
    }
}

fn set_cell(records: &mut [Vec<u32>], attrs: &[usize], sizes: &[usize], r: usize, cell: usize) {
    match *attrs {
        [a] => records[a][r] = u32::try_from(cell).expect("small"),
        [a, b] => {
            records[a][r] = u32::try_from(cell / sizes[b]).expect("small");
            records[b][r] = u32::try_from(cell % sizes[b]).expect("small");
        }
        _ => unreachable!("marginals are over one or two attributes"),
    }
}

/// Round `x` up with probability equal to its fractional part.
fn stochastic_round<R: rand::Rng>(x: f64, rng: &mut R) -> usize {
    let f = x.floor();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "non-negative counts"
    )]
    let base = f.max(0.0) as usize;
    base + usize::from(rng.random::<f64>() < x - f)
}

fn update<R: rand::Rng>(records: &mut [Vec<u32>], m: &Marginal, sizes: &[usize], rows: usize, alpha: f64, rng: &mut R) {
    let cells = m.counts.len();
    let total: f64 = m.counts.iter().sum();
    if total <= 0.0 {
        return;
    }
    let mut by_cell: Vec<Vec<u32>> = vec![Vec::new(); cells];
    for r in 0..rows {
        by_cell[cell_of(records, &m.attrs, sizes, r)].push(u32::try_from(r).expect("fewer than 2^32 rows"));
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let scale = rows as f64 / total;
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let diff: Vec<f64> = (0..cells)
        .map(|c| m.counts[c] * scale - by_cell[c].len() as f64)
        .collect();
    let deficit: f64 = diff.iter().filter(|d| **d > 0.0).sum();
    let surplus: f64 = -diff.iter().filter(|d| **d < 0.0).sum::<f64>();
    let moves = alpha * deficit.min(surplus);
    if moves < 1.0 {
        return;
    }
    // Records leaving over-full cells.
    let mut freed: Vec<u32> = Vec::new();
    for (c, &d) in diff.iter().enumerate() {
        if d < 0.0 {
            let k = stochastic_round(moves * -d / surplus, rng).min(by_cell[c].len());
            let (picked, _) = by_cell[c].partial_shuffle(rng, k);
            freed.extend_from_slice(picked);
        }
    }
    freed.shuffle(rng);
    // Where they go: each short cell gets its share of the moves.
    let mut freed = freed.into_iter();
    for (c, &d) in diff.iter().enumerate() {
        if d <= 0.0 {
            continue;
        }
        let k = stochastic_round(moves * d / deficit, rng);
        for _ in 0..k {
            let Some(r) = freed.next() else { return };
            let r = r as usize;
            if !by_cell[c].is_empty() && rng.random::<f64>() < DUPLICATE_SHARE {
                let source = by_cell[c][rng.random_range(0..by_cell[c].len())] as usize;
                for column in records.iter_mut() {
                    column[r] = column[source];
                }
            } else {
                set_cell(records, &m.attrs, sizes, r, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;
    use rand::SeedableRng;

    #[test]
    fn apportion_is_exact() {
        assert_eq!(apportion(&[1.0, 1.0, 2.0], 8), vec![2, 2, 4]);
        assert_eq!(apportion(&[1.0, 1.0, 1.0], 10).iter().sum::<usize>(), 10);
        assert_eq!(apportion(&[0.0, 0.0], 5), vec![5, 0]);
    }

    #[test]
    fn records_follow_a_pair_marginal() {
        // Two perfectly dependent binary attributes (only 00 and 11).
        let sizes = vec![2, 2];
        let ms = vec![
            Marginal {
                attrs: vec![0, 1],
                counts: vec![300.0, 0.0, 0.0, 700.0],
                sigma: 1.0,
            },
            Marginal {
                attrs: vec![0],
                counts: vec![300.0, 700.0],
                sigma: 1.0,
            },
            Marginal {
                attrs: vec![1],
                counts: vec![300.0, 700.0],
                sigma: 1.0,
            },
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let rec = synthesize(&ms, &sizes, 1000, 30, 1.0, &mut rng, &NoProgress).unwrap();
        let agree = rec[0].iter().zip(&rec[1]).filter(|(a, b)| a == b).count();
        assert!(agree > 980, "only {agree} of 1000 records agree");
        let ones = rec[0].iter().filter(|&&x| x == 1).count();
        assert!((650..=750).contains(&ones), "{ones}");
    }
}
