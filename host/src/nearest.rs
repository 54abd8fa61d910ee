//! Exact distance to the closest record on mixed tables, without a cross join.
//!
//! The distance is SDMetrics' DCR, summed rather than averaged: per column a
//! number differs by `min(|x − y|, 1)` (values already scaled by a range),
//! a category by 0 or 1, one null by 1 and two nulls by 0. Each column's term
//! is a metric and the sum of metrics is one, so a k-d tree with exact
//! per-node boxes prunes soundly: a node is skipped only when the sum of the
//! query's distances to the node's box, column by column, already reaches the
//! best distance found. The box of a categorical column is the set of codes
//! in the node (a bitset for small codes): a code outside it mismatches
//! every row there.
//!
//! The answer is the brute-force minimum bit for bit: a row's distance is
//! summed in the same order (mismatch count, then each number in column
//! order), and a box bound adds, in that same order, terms that are each no
//! larger than the row's, so with correctly rounded (monotone) arithmetic the
//! bound never exceeds a row's computed distance.
//!
//! Why not a crate: the metric mixes capped L1, 0/1 mismatches and a null
//! rule, and must match SDMetrics' to the last bit; the kd-tree crates
//! (kiddo, kdtree) take Euclidean-style metrics over one float type, and a
//! generic metric tree (vpsearch) cannot use per-column box bounds, which is
//! what makes pruning work on categorical columns.

/// Rows per leaf: small enough to prune well, large enough that the box
/// checks do not dominate.
const LEAF: usize = 24;
/// Rows a node looks at to choose its split column.
const PROBE: usize = 256;

/// The reference rows as the index reads them while building: `n` rows of
/// `kc` category codes (null is a code of its own) and `kn` scaled numbers
/// (NaN for null), read by position so the caller need not copy its
/// columns into rows first.
pub(crate) trait Source: Sync {
    /// Rows.
    fn len(&self) -> usize;
    /// Categorical columns.
    fn kc(&self) -> usize;
    /// Numeric columns.
    fn kn(&self) -> usize;
    /// Code of row `r`, categorical column `c`.
    fn cat(&self, r: usize, c: usize) -> u32;
    /// Scaled number of row `r`, numeric column `c`.
    fn num(&self, r: usize, c: usize) -> f64;
}

/// Rows encoded row-major: `cats[r·kc..]`, `nums[r·kn..]` (the tests' form).
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub(crate) cats: &'a [u32],
    pub(crate) nums: &'a [f64],
    pub(crate) kc: usize,
    pub(crate) kn: usize,
}

#[cfg(test)]
impl Source for Rows<'_> {
    fn len(&self) -> usize {
        self.cats
            .len()
            .checked_div(self.kc)
            .or_else(|| self.nums.len().checked_div(self.kn))
            .unwrap_or(0)
    }
    fn kc(&self) -> usize {
        self.kc
    }
    fn kn(&self) -> usize {
        self.kn
    }
    fn cat(&self, r: usize, c: usize) -> u32 {
        self.cats[r * self.kc + c]
    }
    fn num(&self, r: usize, c: usize) -> f64 {
        self.nums[r * self.kn + c]
    }
}

/// The distance of two rows, summed over columns; `f64::INFINITY` as soon as
/// it reaches `limit` (the caller only wants rows nearer than that).
pub(crate) fn distance(qc: &[u32], qn: &[f64], rc: &[u32], rn: &[f64], limit: f64) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
    let mut sum = qc.iter().zip(rc).filter(|(a, b)| a != b).count() as f64;
    if sum >= limit {
        return f64::INFINITY;
    }
    for (x, y) in qn.iter().zip(rn) {
        sum += if x.is_nan() || y.is_nan() {
            if x.is_nan() && y.is_nan() { 0.0 } else { 1.0 }
        } else {
            (x - y).abs().min(1.0)
        };
        if sum >= limit {
            return f64::INFINITY;
        }
    }
    sum
}

/// One node: rows `start..end` of the index's order, children or a leaf.
#[derive(Debug, Clone, Copy)]
struct Node {
    start: usize,
    end: usize,
    /// Children (`0` for a leaf: the root is never a child).
    left: usize,
    right: usize,
}

/// Per node and categorical column: which of the codes below
/// [`SMALL_CODES`] occur (a bit each), whether a larger one does (null is
/// `u32::MAX`), and the interval of all codes. A query's code mismatches
/// every row of the node when its bit is clear, or, for a large code, when
/// no large code occurs or it falls outside the interval. An interval alone
/// is weak: a node holding codes 0 and 15 would contain every code between.
#[derive(Debug, Clone, Copy)]
struct CatBox {
    small: u128,
    large: bool,
    lo: u32,
    hi: u32,
}

/// Codes with a bit of their own in [`CatBox`].
const SMALL_CODES: u32 = 128;

impl CatBox {
    fn excludes(&self, q: u32) -> bool {
        if q < SMALL_CODES {
            self.small & (1u128 << q) == 0
        } else {
            !self.large || q < self.lo || q > self.hi
        }
    }
}

/// Per node and numeric column, the box: numbers `lo..=hi` among the
/// present values, whether any is present and whether any is null.
#[derive(Debug, Clone, Copy)]
struct NumBox {
    lo: f64,
    hi: f64,
    present: bool,
    null: bool,
}

/// A k-d tree over reference rows.
#[derive(Debug)]
pub(crate) struct Index {
    kc: usize,
    kn: usize,
    /// Reference rows in tree order, row-major.
    cats: Vec<u32>,
    nums: Vec<f64>,
    nodes: Vec<Node>,
    /// `nodes.len() × kc` code sets.
    cat_box: Vec<CatBox>,
    /// `nodes.len() × kn` number boxes.
    num_box: Vec<NumBox>,
}

impl Index {
    /// Build the tree over `rows` (copied into tree order).
    #[cfg(test)]
    pub(crate) fn new(rows: &impl Source) -> Index {
        Index::build(rows, &|_| {})
    }

    /// [`Index::new`], telling `placed` how many rows each finished leaf
    /// holds (they add up to every row). Leaves finish throughout the
    /// build (depth first), so a caller can show its progress.
    pub(crate) fn build(rows: &impl Source, placed: &(dyn Fn(usize) + Sync)) -> Index {
        let n = rows.len();
        let mut order: Vec<usize> = (0..n).collect();
        let mut index = Index {
            kc: rows.kc(),
            kn: rows.kn(),
            cats: Vec::new(),
            nums: Vec::new(),
            nodes: Vec::with_capacity(2 * n / LEAF + 1),
            cat_box: Vec::new(),
            num_box: Vec::new(),
        };
        if n > 0 {
            // Iterative, so a degenerate table cannot overflow the stack.
            index.push_node(rows, &order, 0, n);
            let mut todo = vec![0usize];
            while let Some(id) = todo.pop() {
                let Node { start, end, .. } = index.nodes[id];
                if end - start <= LEAF {
                    placed(end - start);
                    continue;
                }
                let Some(split) = index.split_column(rows, &order[start..end], id) else {
                    placed(end - start);
                    continue; // every row alike: one leaf
                };
                let mid = start + (end - start) / 2;
                let part = &mut order[start..end];
                match split {
                    Split::Cat(c) => {
                        part.select_nth_unstable_by_key(mid - start, |&r| rows.cat(r, c));
                    }
                    Split::Num(c) => {
                        part.select_nth_unstable_by(mid - start, |&a, &b| rows.num(a, c).total_cmp(&rows.num(b, c)));
                    }
                    Split::Null(c) => {
                        // Present numbers first, nulls after; the boxes are
                        // exact whatever the cut, so the cut need not fall on
                        // the boundary.
                        part.sort_unstable_by_key(|&r| rows.num(r, c).is_nan());
                    }
                }
                let left = index.push_node(rows, &order, start, mid);
                let right = index.push_node(rows, &order, mid, end);
                index.nodes[id].left = left;
                index.nodes[id].right = right;
                todo.push(left);
                todo.push(right);
            }
        }
        let (kc, kn) = (index.kc, index.kn);
        index.cats = order
            .iter()
            .flat_map(|&r| (0..kc).map(move |c| rows.cat(r, c)))
            .collect();
        index.nums = order
            .iter()
            .flat_map(|&r| (0..kn).map(move |c| rows.num(r, c)))
            .collect();
        index
    }

    /// Append a node over `order[start..end]` with its exact box.
    fn push_node(&mut self, rows: &impl Source, order: &[usize], start: usize, end: usize) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Node {
            start,
            end,
            left: 0,
            right: 0,
        });
        let part = &order[start..end];
        for c in 0..self.kc {
            let mut b = CatBox {
                small: 0,
                large: false,
                lo: u32::MAX,
                hi: 0,
            };
            for &r in part {
                let v = rows.cat(r, c);
                if v < SMALL_CODES {
                    b.small |= 1u128 << v;
                } else {
                    b.large = true;
                }
                b.lo = b.lo.min(v);
                b.hi = b.hi.max(v);
            }
            self.cat_box.push(b);
        }
        for c in 0..self.kn {
            let mut b = NumBox {
                lo: f64::INFINITY,
                hi: f64::NEG_INFINITY,
                present: false,
                null: false,
            };
            for &r in part {
                let x = rows.num(r, c);
                if x.is_nan() {
                    b.null = true;
                } else {
                    b.present = true;
                    b.lo = b.lo.min(x);
                    b.hi = b.hi.max(x);
                }
            }
            self.num_box.push(b);
        }
        id
    }

    /// The column whose values differ most between two rows of the node
    /// (expected per-column distance of two rows, estimated on a strided
    /// probe), or `None` when no column varies.
    fn split_column(&self, rows: &impl Source, part: &[usize], id: usize) -> Option<Split> {
        let step = part.len().div_ceil(PROBE).max(1);
        let probe: Vec<usize> = part.iter().step_by(step).copied().collect();
        #[allow(clippy::cast_precision_loss, reason = "probe sizes are small")]
        let n = probe.len() as f64;
        let mut best: Option<(f64, Split)> = None;
        let mut consider = |spread: f64, split: Split| {
            if spread > 0.0 && best.is_none_or(|(s, _)| spread > s) {
                best = Some((spread, split));
            }
        };
        for c in 0..self.kc {
            let b = self.cat_box[id * self.kc + c];
            if b.lo == b.hi {
                continue;
            }
            let mut codes: Vec<u32> = probe.iter().map(|&r| rows.cat(r, c)).collect();
            codes.sort_unstable();
            // Gini impurity: the chance two rows differ here.
            let mut same = 0.0;
            let mut run = 0.0f64;
            for (i, v) in codes.iter().enumerate() {
                run += 1.0;
                if codes.get(i + 1) != Some(v) {
                    same += run * run;
                    run = 0.0;
                }
            }
            // A varying column the probe missed still splits a little.
            consider((1.0 - same / (n * n)).max(1e-9), Split::Cat(c));
        }
        for c in 0..self.kn {
            let b = self.num_box[id * self.kn + c];
            if b.present && b.null {
                // Null against a number is the full 1: separate them first.
                consider(1.0, Split::Null(c));
                continue;
            }
            if !b.present || b.hi <= b.lo {
                continue;
            }
            let xs: Vec<f64> = probe.iter().map(|&r| rows.num(r, c)).collect();
            let mean = xs.iter().sum::<f64>() / n;
            let sd = (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
            // E|X − Y| of two draws is about 1.13 σ (exactly 2σ/√π for a normal).
            // (An infinite value makes σ NaN: counted as the widest spread.)
            let spread = 1.128 * sd;
            consider(
                if spread.is_nan() { 1.0 } else { spread.clamp(1e-9, 1.0) },
                Split::Num(c),
            );
        }
        best.map(|(_, s)| s)
    }

    /// Lower bound of the distance from the query to any row of node `id`,
    /// summed in the order [`distance`] sums.
    fn bound(&self, id: usize, qc: &[u32], qn: &[f64]) -> f64 {
        let boxes = &self.cat_box[id * self.kc..(id + 1) * self.kc];
        #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
        let mut sum = qc.iter().zip(boxes).filter(|(q, b)| b.excludes(**q)).count() as f64;
        for (x, b) in qn.iter().zip(&self.num_box[id * self.kn..(id + 1) * self.kn]) {
            sum += if x.is_nan() {
                if b.null { 0.0 } else { 1.0 }
            } else if !b.present {
                1.0
            } else if *x < b.lo {
                (b.lo - x).min(1.0)
            } else if *x > b.hi {
                (x - b.hi).min(1.0)
            } else {
                0.0
            };
        }
        sum
    }

    /// The smallest summed distance from the query to a reference row
    /// (`f64::INFINITY` without reference rows).
    pub(crate) fn nearest(&self, qc: &[u32], qn: &[f64]) -> f64 {
        let mut best = f64::INFINITY;
        if self.nodes.is_empty() {
            return best;
        }
        let mut stack: Vec<(usize, f64)> = vec![(0, self.bound(0, qc, qn))];
        while let Some((id, lower)) = stack.pop() {
            if lower >= best {
                continue;
            }
            let node = self.nodes[id];
            if node.left == 0 {
                for r in node.start..node.end {
                    let d = distance(
                        qc,
                        qn,
                        &self.cats[r * self.kc..(r + 1) * self.kc],
                        &self.nums[r * self.kn..(r + 1) * self.kn],
                        best,
                    );
                    if d < best {
                        best = d;
                        if best == 0.0 {
                            return 0.0;
                        }
                    }
                }
                continue;
            }
            let (l, r) = (self.bound(node.left, qc, qn), self.bound(node.right, qc, qn));
            // Nearer child on top of the stack: it tightens `best` first.
            if l <= r {
                stack.push((node.right, r));
                stack.push((node.left, l));
            } else {
                stack.push((node.left, l));
                stack.push((node.right, r));
            }
        }
        best
    }
}

#[derive(Debug, Clone, Copy)]
enum Split {
    Cat(usize),
    Num(usize),
    Null(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row<'a>(rows: &Rows<'a>, r: usize) -> (&'a [u32], &'a [f64]) {
        (
            &rows.cats[r * rows.kc..(r + 1) * rows.kc],
            &rows.nums[r * rows.kn..(r + 1) * rows.kn],
        )
    }

    fn brute(q: Rows<'_>, r: Rows<'_>) -> Vec<f64> {
        (0..q.len())
            .map(|i| {
                let (qc, qn) = row(&q, i);
                (0..r.len()).fold(f64::INFINITY, |best, j| {
                    let (rc, rn) = row(&r, j);
                    best.min(distance(qc, qn, rc, rn, best))
                })
            })
            .collect()
    }

    /// Rows with few category codes, numbers on a coarse grid (ties), some
    /// nulls and values beyond the unit range (the cap at 1).
    fn table(kc: usize, kn: usize, max_rows: usize) -> impl Strategy<Value = (Vec<u32>, Vec<f64>)> {
        (0..=max_rows).prop_flat_map(move |n| {
            (
                proptest::collection::vec(
                    prop_oneof![8 => 0u32..4, 2 => 125u32..131, 1 => 1000u32..1003, 1 => Just(u32::MAX)],
                    n * kc,
                ),
                proptest::collection::vec(
                    prop_oneof![6 => (-4i32..24).prop_map(|v| f64::from(v) / 16.0), 1 => Just(f64::NAN)],
                    n * kn,
                ),
            )
        })
    }

    /// Row-major categorical codes and numbers of one table.
    type Columns = (Vec<u32>, Vec<f64>);

    fn case() -> impl Strategy<Value = (usize, usize, Columns, Columns)> {
        (0usize..4, 0usize..4)
            .prop_filter("a column", |(c, n)| c + n > 0)
            .prop_flat_map(|(kc, kn)| (Just(kc), Just(kn), table(kc, kn, 300), table(kc, kn, 40)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn the_index_finds_the_brute_force_minimum_bit_for_bit((kc, kn, (rc, rn), (qc, qn)) in case()) {
            let reference = Rows { cats: &rc, nums: &rn, kc, kn };
            let queries = Rows { cats: &qc, nums: &qn, kc, kn };
            let placed = std::sync::atomic::AtomicUsize::new(0);
            let index = Index::build(&reference, &|n| {
                placed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            });
            // Progress: every row is placed in exactly one leaf.
            prop_assert_eq!(placed.into_inner(), reference.len());
            let want = brute(queries, reference);
            for (i, w) in want.iter().enumerate() {
                let (qc, qn) = row(&queries, i);
                let got = index.nearest(qc, qn);
                prop_assert_eq!(got.to_bits(), w.to_bits(), "query {}", i);
            }
        }
    }

    #[test]
    fn an_empty_reference_is_infinitely_far() {
        let index = Index::new(&Rows {
            cats: &[],
            nums: &[],
            kc: 1,
            kn: 1,
        });
        assert_eq!(index.nearest(&[0], &[0.5]), f64::INFINITY);
    }

    #[test]
    fn identical_rows_make_one_leaf_and_distance_zero() {
        let cats = vec![3u32; 1000];
        let nums = vec![0.25f64; 1000];
        let index = Index::new(&Rows {
            cats: &cats,
            nums: &nums,
            kc: 1,
            kn: 1,
        });
        assert_eq!(index.nodes.len(), 1);
        assert_eq!(index.nearest(&[3], &[0.25]), 0.0);
        assert_eq!(index.nearest(&[4], &[f64::NAN]), 2.0);
    }
}
