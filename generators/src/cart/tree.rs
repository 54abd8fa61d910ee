//! Classification trees on binned columns, grown for donor sampling.
//!
//! Every predictor is a column of small bin numbers ([`Binning`]): quantile
//! bins for numbers (plus one for null), frequency-ranked codes for
//! categories. Every target is a column of class numbers: a category's code,
//! or a number's quantile bin. Splits maximise the Gini decrease, computed
//! from per-bin class histograms, so a node costs one pass over its rows per
//! predictor whatever the column's type. A leaf keeps the rows it holds:
//! sampling draws one of them as a donor for the target's value (synthpop's
//! CART method), which reproduces atoms, skew and multimodality exactly.

use serde::{Deserialize, Serialize};

/// Most bins a predictor gets (numbers also get a null bin after these).
pub(crate) const MAX_BINS: usize = 64;
/// Most classes a target's split criterion distinguishes: codes past this
/// share one class (their donors keep their own values).
pub(crate) const MAX_CLASSES: usize = 64;

/// How a predictor column's values become bins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Binning {
    /// Ordered bins: bin `b` holds values in `(edges[b-1], edges[b]]`, the
    /// last bin everything above the last edge; null is bin `edges.len() + 1`.
    Ordinal { edges: Vec<f64> },
    /// Unordered bins: category code `c` is bin `min(c, MAX_BINS - 1)`
    /// (codes are frequency ranks, so the rarest share the last bin).
    Nominal { bins: usize },
}

impl Binning {
    /// Quantile bins of a numeric column (NaN is null).
    pub(crate) fn ordinal(values: &[f64], max_bins: usize) -> Binning {
        Binning::Ordinal {
            edges: quantile_edges(values, max_bins),
        }
    }

    /// Number of bins, null included.
    pub(crate) fn bins(&self) -> usize {
        match self {
            Binning::Ordinal { edges } => edges.len() + 2,
            Binning::Nominal { bins } => *bins,
        }
    }

    /// The bin of a number (ordinal) or a code (nominal, passed as `f64`).
    pub(crate) fn bin(&self, x: f64) -> u8 {
        match self {
            Binning::Ordinal { edges } => {
                let b = if x.is_nan() {
                    edges.len() + 1
                } else {
                    edges.partition_point(|e| *e < x)
                };
                u8::try_from(b).unwrap_or(u8::MAX)
            }
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "codes are small non-negative integers"
            )]
            Binning::Nominal { bins } => (x as usize).min(bins - 1) as u8,
        }
    }
}

/// Upper edges of up to `max_bins` quantile bins over the non-null values:
/// one bin per distinct value when there are few.
pub(crate) fn quantile_edges(values: &[f64], max_bins: usize) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    let mut distinct = sorted.clone();
    distinct.dedup();
    if distinct.len() <= max_bins {
        distinct.pop();
        return distinct;
    }
    let n = sorted.len();
    let mut edges: Vec<f64> = (1..max_bins).map(|i| sorted[(i * n / max_bins).min(n - 1)]).collect();
    edges.dedup();
    // The largest value must not be an edge: nothing would be above it.
    if edges.last() == sorted.last() {
        edges.pop();
    }
    edges
}

/// The first number of a leaf in [`Tree::encode_nodes`].
const LEAF: u64 = u64::MAX;

/// A node of a fitted tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Node {
    /// Rows whose predictor `feature` falls in `left` (a bitset over its
    /// bins) go to node `left_child`, the others to `left_child + 1`.
    Split { feature: u16, left: u128, left_child: u32 },
    /// Donors `start..start + len` of the tree's donor list.
    Leaf { start: u32, len: u32 },
}

/// A fitted tree: its nodes (root first) and, leaf after leaf, what the
/// leaf holds — while growing, its training rows (`donors`); once
/// [`Tree::summarise`]d, the distinct target symbols of those rows with
/// running counts, so the model keeps no row.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Tree {
    pub(crate) nodes: Vec<Node>,
    pub(crate) donors: Vec<u32>,
    /// Per leaf `start..start + len`: distinct symbols, ascending.
    pub(crate) symbols: Vec<u32>,
    /// Per leaf, the running count of donors up to and including each symbol.
    pub(crate) cum: Vec<u32>,
}

/// What a tree is grown from.
pub(crate) struct Problem<'a> {
    /// Predictor columns as bins, `features[f][row]`.
    pub(crate) features: &'a [&'a [u8]],
    /// Number of bins and whether they are ordered, per feature.
    pub(crate) shapes: &'a [(usize, bool)],
    /// The target's class per row, below `classes`.
    pub(crate) target: &'a [u16],
    pub(crate) classes: usize,
}

/// How far a tree grows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Growth {
    /// Fewest rows in a leaf.
    pub(crate) min_leaf: usize,
    pub(crate) max_depth: usize,
    /// Least Gini decrease of a split, as a share of the root's impurity.
    pub(crate) min_gain: f64,
}

/// `Σ c²/n` of a class histogram (the Gini score: larger is purer).
fn purity(counts: &[u32], n: u32) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let s: f64 = counts.iter().map(|&c| f64::from(c) * f64::from(c)).sum();
    s / f64::from(n)
}

struct Best {
    gain: f64,
    feature: usize,
    left: u128,
}

/// Grow a tree over `rows` (training row numbers).
pub(crate) fn grow(problem: &Problem<'_>, rows: Vec<u32>, growth: Growth) -> Tree {
    let k = problem.classes;
    let mut tree = Tree::default();
    tree.nodes.push(Node::Leaf { start: 0, len: 0 });
    let root_counts = class_counts(problem.target, &rows, k);
    #[allow(clippy::cast_possible_truncation, reason = "row counts fit u32")]
    let n_root = rows.len() as u32;
    let root_impurity = f64::from(n_root) - purity(&root_counts, n_root);
    let min_gain = (growth.min_gain * root_impurity).max(1e-9);
    // (node index, rows, depth); children are placed next to each other.
    let mut stack = vec![(0usize, rows, 0usize)];
    let mut hist: Vec<u32> = Vec::new();
    while let Some((at, rows, depth)) = stack.pop() {
        let best = if rows.len() >= 2 * growth.min_leaf && depth < growth.max_depth {
            best_split(problem, &rows, growth.min_leaf, min_gain, &mut hist)
        } else {
            None
        };
        match best {
            Some(best) => {
                let f = problem.features[best.feature];
                let (left, right): (Vec<u32>, Vec<u32>) =
                    rows.iter().partition(|&&r| best.left >> f[r as usize] & 1 == 1);
                #[allow(clippy::cast_possible_truncation, reason = "node counts fit u32")]
                let child = tree.nodes.len() as u32;
                tree.nodes.push(Node::Leaf { start: 0, len: 0 });
                tree.nodes.push(Node::Leaf { start: 0, len: 0 });
                #[allow(clippy::cast_possible_truncation, reason = "feature counts fit u16")]
                let feature = best.feature as u16;
                tree.nodes[at] = Node::Split {
                    feature,
                    left: best.left,
                    left_child: child,
                };
                stack.push((child as usize + 1, right, depth + 1));
                stack.push((child as usize, left, depth + 1));
            }
            None => {
                #[allow(clippy::cast_possible_truncation, reason = "row counts fit u32")]
                let (start, len) = (tree.donors.len() as u32, rows.len() as u32);
                tree.donors.extend_from_slice(&rows);
                tree.nodes[at] = Node::Leaf { start, len };
            }
        }
    }
    tree
}

fn class_counts(target: &[u16], rows: &[u32], k: usize) -> Vec<u32> {
    let mut c = vec![0u32; k];
    for &r in rows {
        c[target[r as usize] as usize] += 1;
    }
    c
}

/// The best split of a node over every feature, if one gains enough and
/// leaves `min_leaf` rows on each side.
fn best_split(
    problem: &Problem<'_>,
    rows: &[u32],
    min_leaf: usize,
    min_gain: f64,
    hist: &mut Vec<u32>,
) -> Option<Best> {
    let k = problem.classes;
    let parent = class_counts(problem.target, rows, k);
    #[allow(clippy::cast_possible_truncation, reason = "row counts fit u32")]
    let n = rows.len() as u32;
    let parent_purity = purity(&parent, n);
    if parent.contains(&n) {
        return None; // pure
    }
    #[allow(clippy::cast_possible_truncation, reason = "min_leaf is small")]
    let min_leaf = min_leaf as u32;
    let mut best: Option<Best> = None;
    for (f, (&column, &(bins, ordered))) in problem.features.iter().zip(problem.shapes).enumerate() {
        hist.clear();
        hist.resize(bins * k, 0);
        for &r in rows {
            let r = r as usize;
            hist[column[r] as usize * k + problem.target[r] as usize] += 1;
        }
        let totals: Vec<u32> = (0..bins).map(|b| hist[b * k..(b + 1) * k].iter().sum()).collect();
        if totals.iter().filter(|&&t| t > 0).count() < 2 {
            continue;
        }
        let mut consider = |order: &[usize], null_bin: Option<usize>| {
            // Prefix scan: bins order[..=i] go left (plus the null bin when
            // `null_left`), the rest right.
            let null_options: &[bool] = if null_bin.is_some_and(|b| totals[b] > 0) {
                &[false, true]
            } else {
                &[false]
            };
            for &null_left in null_options {
                let mut left = vec![0u32; k];
                let mut nl = 0u32;
                let mut set: u128 = 0;
                if let (true, Some(b)) = (null_left, null_bin) {
                    for c in 0..k {
                        left[c] += hist[b * k + c];
                    }
                    nl += totals[b];
                    set |= 1 << b;
                }
                for (i, &b) in order.iter().enumerate() {
                    if i + 1 == order.len() {
                        break;
                    }
                    if totals[b] == 0 {
                        continue;
                    }
                    for c in 0..k {
                        left[c] += hist[b * k + c];
                    }
                    nl += totals[b];
                    set |= 1 << b;
                    let nr = n - nl;
                    if nl < min_leaf || nr < min_leaf {
                        continue;
                    }
                    let right: Vec<u32> = parent.iter().zip(&left).map(|(p, l)| p - l).collect();
                    let gain = purity(&left, nl) + purity(&right, nr) - parent_purity;
                    if gain > min_gain && best.as_ref().is_none_or(|b| gain > b.gain) {
                        best = Some(Best {
                            gain,
                            feature: f,
                            left: set,
                        });
                    }
                }
            }
        };
        if ordered {
            let null_bin = bins - 1;
            let order: Vec<usize> = (0..null_bin).collect();
            consider(&order, Some(null_bin));
            // Null alone against every value.
            if totals[null_bin] > 0 {
                // Values then null: the longest prefix splits values from nulls.
                let all: Vec<usize> = (0..=null_bin).collect();
                consider(&all, None);
            }
        } else {
            // Order the bins by the share of one class, for the node's most
            // frequent classes (exact for two classes, a good heuristic past).
            let mut top: Vec<usize> = (0..k).filter(|&c| parent[c] > 0).collect();
            top.sort_by(|&a, &b| parent[b].cmp(&parent[a]).then(a.cmp(&b)));
            top.truncate(if k == 2 { 1 } else { 3 });
            for c in top {
                let mut order: Vec<usize> = (0..bins).filter(|&b| totals[b] > 0).collect();
                order.sort_by(|&a, &b| {
                    let (pa, pb) = (
                        f64::from(hist[a * k + c]) / f64::from(totals[a]),
                        f64::from(hist[b * k + c]) / f64::from(totals[b]),
                    );
                    pa.total_cmp(&pb).then(a.cmp(&b))
                });
                consider(&order, None);
            }
        }
    }
    best
}

impl Tree {
    /// The leaf a row of predictor bins falls in: its node index and donor range.
    pub(crate) fn leaf(&self, bins: impl Fn(usize) -> u8) -> (usize, usize, usize) {
        let mut at = 0usize;
        loop {
            match &self.nodes[at] {
                Node::Leaf { start, len } => return (at, *start as usize, *len as usize),
                Node::Split {
                    feature,
                    left,
                    left_child,
                } => {
                    let b = bins(*feature as usize);
                    at = *left_child as usize + usize::from(left >> b & 1 == 0);
                }
            }
        }
    }

    /// Replace each leaf's donors by the distribution of their target
    /// symbols (`symbol(row)`): drawing a symbol from it is drawing a donor
    /// and reading its symbol, without keeping which rows they were.
    pub(crate) fn summarise(&mut self, symbol: impl Fn(u32) -> u32) {
        let donors = std::mem::take(&mut self.donors);
        let mut symbols = Vec::new();
        let mut cum = Vec::new();
        let mut leaf: Vec<u32> = Vec::new();
        for node in &mut self.nodes {
            if let Node::Leaf { start, len } = node {
                leaf.clear();
                leaf.extend(
                    donors[*start as usize..(*start + *len) as usize]
                        .iter()
                        .map(|&r| symbol(r)),
                );
                leaf.sort_unstable();
                #[allow(clippy::cast_possible_truncation, reason = "symbol counts fit u32")]
                let first = symbols.len() as u32;
                let mut count = 0u32;
                for (i, &s) in leaf.iter().enumerate() {
                    count += 1;
                    if leaf.get(i + 1) != Some(&s) {
                        symbols.push(s);
                        cum.push(count);
                    }
                }
                *start = first;
                #[allow(clippy::cast_possible_truncation, reason = "symbol counts fit u32")]
                let distinct = symbols.len() as u32 - first;
                *len = distinct;
            }
        }
        self.symbols = symbols;
        self.cum = cum;
    }

    /// A symbol drawn from a summarised leaf's distribution.
    pub(crate) fn draw(&self, start: usize, len: usize, rng: &mut impl rand::Rng) -> u32 {
        use rand::RngExt;
        let cum = &self.cum[start..start + len];
        let t = rng.random_range(0..cum[len - 1]);
        self.symbols[start + cum.partition_point(|&c| c <= t)]
    }

    /// The nodes as four numbers each, for a saved model: a split is
    /// `[feature, left bits 0..64, left bits 64..128, left child]`, a leaf
    /// `[LEAF, start, len, 0]`.
    pub(crate) fn encode_nodes(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .flat_map(|n| match n {
                #[allow(clippy::cast_possible_truncation, reason = "the halves of a u128")]
                Node::Split {
                    feature,
                    left,
                    left_child,
                } => [
                    u64::from(*feature),
                    *left as u64,
                    (*left >> 64) as u64,
                    u64::from(*left_child),
                ],
                Node::Leaf { start, len } => [LEAF, u64::from(*start), u64::from(*len), 0],
            })
            .collect()
    }

    /// A summarised tree read back from a file, checked so that walking and
    /// drawing from it cannot panic or loop: `features` predictors with at
    /// most `bins[f]` bins each, symbols below `symbol_count`.
    pub(crate) fn decode(
        nodes: &[u64],
        symbols: Vec<u32>,
        cum: Vec<u32>,
        bins: &[usize],
        symbol_count: usize,
    ) -> Result<Tree, String> {
        if nodes.is_empty() || !nodes.len().is_multiple_of(4) {
            return Err(format!("{} node numbers, not a positive multiple of 4", nodes.len()));
        }
        if symbols.len() != cum.len() {
            return Err(format!("{} symbols with {} counts", symbols.len(), cum.len()));
        }
        let count = nodes.len() / 4;
        let mut out = Vec::with_capacity(count);
        for (i, n) in nodes.chunks_exact(4).enumerate() {
            if n[0] == LEAF {
                let (start, len) = (n[1], n[2]);
                let end = start.saturating_add(len);
                if len == 0 || end > symbols.len() as u64 {
                    return Err(format!("leaf {i} points outside its symbols"));
                }
                #[allow(clippy::cast_possible_truncation, reason = "checked against a Vec's length")]
                let (s, e) = (start as usize, end as usize);
                let increasing = cum[s..e].windows(2).all(|w| w[0] < w[1]) && cum[s] > 0;
                let ordered = symbols[s..e].windows(2).all(|w| w[0] < w[1]);
                if !increasing || !ordered || symbols[e - 1] as usize >= symbol_count {
                    return Err(format!("leaf {i} holds a damaged distribution"));
                }
                #[allow(clippy::cast_possible_truncation, reason = "below symbols.len()")]
                out.push(Node::Leaf {
                    start: start as u32,
                    len: len as u32,
                });
            } else {
                let feature = usize::try_from(n[0]).unwrap_or(usize::MAX);
                let child = usize::try_from(n[3]).unwrap_or(usize::MAX);
                // Children after their parent: every walk ends.
                if feature >= bins.len() || child <= i || child + 1 >= count {
                    return Err(format!("split {i} names a predictor or child that is not there"));
                }
                let left = u128::from(n[1]) | u128::from(n[2]) << 64;
                if bins[feature] < 128 && left >> bins[feature] != 0 {
                    return Err(format!("split {i} sends bins its predictor does not have"));
                }
                #[allow(clippy::cast_possible_truncation, reason = "checked: below bins.len()")]
                out.push(Node::Split {
                    feature: feature as u16,
                    left,
                    left_child: child as u32,
                });
            }
        }
        Ok(Tree {
            nodes: out,
            donors: Vec::new(),
            symbols,
            cum,
        })
    }

    /// Leaves and their donor ranges.
    pub(crate) fn leaves(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.nodes.iter().filter_map(|n| match n {
            Node::Leaf { start, len } => Some((*start as usize, *len as usize)),
            Node::Split { .. } => None,
        })
    }

    /// Training rows behind each leaf of a summarised tree.
    #[cfg(test)]
    pub(crate) fn leaf_sizes(&self) -> Vec<u32> {
        self.leaves().map(|(start, len)| self.cum[start + len - 1]).collect()
    }

    /// Number of leaves.
    pub(crate) fn leaf_count(&self) -> usize {
        self.leaves().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_edges_give_one_bin_per_distinct_value_when_few() {
        assert_eq!(quantile_edges(&[3.0, 1.0, 2.0, 2.0, f64::NAN], 64), vec![1.0, 2.0]);
        let b = Binning::ordinal(&[3.0, 1.0, 2.0], 64);
        assert_eq!((b.bin(1.0), b.bin(2.0), b.bin(3.0), b.bin(f64::NAN)), (0, 1, 2, 3));
        assert_eq!(b.bins(), 4);
        let many: Vec<f64> = (0..1000).map(f64::from).collect();
        let e = quantile_edges(&many, 4);
        assert_eq!(e, vec![250.0, 500.0, 750.0]);
    }

    #[test]
    fn a_tree_separates_what_a_predictor_explains_and_keeps_min_leaf() {
        // Target = (x in {1, 3}) with x nominal over 4 bins; y unrelated.
        let n = 400usize;
        #[allow(clippy::cast_possible_truncation, reason = "small")]
        let x: Vec<u8> = (0..n).map(|i| (i % 4) as u8).collect();
        #[allow(clippy::cast_possible_truncation, reason = "small")]
        let y: Vec<u8> = (0..n).map(|i| ((i / 7) % 3) as u8).collect();
        let target: Vec<u16> = x.iter().map(|&v| u16::from(v == 1 || v == 3)).collect();
        let features: Vec<&[u8]> = vec![&y, &x];
        let problem = Problem {
            features: &features,
            shapes: &[(3, true), (4, false)],
            target: &target,
            classes: 2,
        };
        let rows: Vec<u32> = (0..400).collect();
        let growth = Growth {
            min_leaf: 10,
            max_depth: 10,
            min_gain: 1e-4,
        };
        let tree = grow(&problem, rows, growth);
        // One split on x makes both sides pure.
        assert_eq!(tree.leaves().count(), 2);
        for (start, len) in tree.leaves() {
            assert!(len >= 10);
            let classes: std::collections::HashSet<u16> = tree.donors[start..start + len]
                .iter()
                .map(|&r| target[r as usize])
                .collect();
            assert_eq!(classes.len(), 1);
        }
        let (_, s, l) = tree.leaf(|f| if f == 1 { 3 } else { 0 });
        assert!(tree.donors[s..s + l].iter().all(|&r| target[r as usize] == 1));
        assert_eq!(tree.donors.len(), 400);
    }

    #[test]
    fn nulls_get_their_own_side_when_that_is_what_matters() {
        // Ordinal predictor: 3 value bins + a null bin; the target is "null".
        let n = 300usize;
        #[allow(clippy::cast_possible_truncation, reason = "small")]
        let x: Vec<u8> = (0..n).map(|i| if i % 3 == 0 { 3 } else { (i % 3) as u8 }).collect();
        let target: Vec<u16> = x.iter().map(|&b| u16::from(b == 3)).collect();
        let features: Vec<&[u8]> = vec![&x];
        let problem = Problem {
            features: &features,
            shapes: &[(4, true)],
            target: &target,
            classes: 2,
        };
        #[allow(clippy::cast_possible_truncation, reason = "small")]
        let tree = grow(
            &problem,
            (0..n as u32).collect(),
            Growth {
                min_leaf: 5,
                max_depth: 5,
                min_gain: 0.0,
            },
        );
        let (_, s, l) = tree.leaf(|_| 3);
        assert!(tree.donors[s..s + l].iter().all(|&r| target[r as usize] == 1));
        let (_, s, l) = tree.leaf(|_| 1);
        assert!(tree.donors[s..s + l].iter().all(|&r| target[r as usize] == 0));
    }
}
