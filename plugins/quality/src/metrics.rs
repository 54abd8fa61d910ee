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

use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxHashMap;

/// `null` as a discrete code.
pub const NULL_CODE: u32 = u32::MAX;

/// A cell type codes are stored in.
pub trait Code: Copy + Ord + Into<u32> {
    /// How many values the type has, when a table that long is small.
    const DOMAIN: Option<usize>;
    /// The code as an index.
    fn idx(self) -> usize;
    /// The codes as bytes, when they are bytes.
    fn bytes(codes: &[Self]) -> Option<&[u8]> {
        let _ = codes;
        None
    }
}

macro_rules! code_width {
    ($($t:ty => $domain:expr),*) => {$(
        impl Code for $t {
            const DOMAIN: Option<usize> = $domain;
            fn idx(self) -> usize {
                Into::<u32>::into(self) as usize
            }
        }
    )*};
}
code_width!(u16 => Some(1 << 16), u32 => None);

impl Code for u8 {
    const DOMAIN: Option<usize> = Some(1 << 8);
    fn idx(self) -> usize {
        usize::from(self)
    }
    fn bytes(codes: &[u8]) -> Option<&[u8]> {
        Some(codes)
    }
}

/// One column's discrete codes, each in as few bytes as the largest code
/// needs: most categorical columns have fewer than 256 categories, and a
/// byte per cell instead of four is much of what lets millions of rows fit
/// the sandbox's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codes {
    /// Every code below 256.
    U8(Vec<u8>),
    /// Every code below 65,536.
    U16(Vec<u16>),
    /// Any code.
    U32(Vec<u32>),
}

/// Run `$body` with `$v` bound to the codes' vector, whatever its width.
macro_rules! with_codes {
    ($codes:expr, $v:ident => $body:expr) => {
        match $codes {
            Codes::U8($v) => $body,
            Codes::U16($v) => $body,
            Codes::U32($v) => $body,
        }
    };
}

impl Default for Codes {
    fn default() -> Self {
        Codes::U8(Vec::new())
    }
}

/// Room for `more` values, growing by a quarter instead of doubling: a
/// table's columns are most of the sandbox's memory, and a doubled vector
/// can leave half of its allocation empty.
pub fn reserve_quarter<T>(v: &mut Vec<T>, more: usize) {
    if v.capacity() - v.len() < more {
        v.reserve_exact(more.max(v.len() / 4));
    }
}

fn width(max: u32) -> u8 {
    if max <= u32::from(u8::MAX) {
        0
    } else if max <= u32::from(u16::MAX) {
        1
    } else {
        2
    }
}

// The macro's `u32` arm converts a `u32` to itself.
#[allow(clippy::useless_conversion, reason = "one body serves every width")]
impl Codes {
    /// Codes from an iterator whose values are at most `max`.
    pub fn collect(max: u32, codes: impl Iterator<Item = u32>) -> Codes {
        match width(max) {
            0 => Codes::U8(codes.map(|c| u8::try_from(c).expect("at most max")).collect()),
            1 => Codes::U16(codes.map(|c| u16::try_from(c).expect("at most max")).collect()),
            _ => Codes::U32(codes.collect()),
        }
    }

    /// How many codes.
    pub fn len(&self) -> usize {
        with_codes!(self, v => v.len())
    }

    /// No codes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th code.
    pub fn get(&self, i: usize) -> u32 {
        with_codes!(self, v => v[i].into())
    }

    /// Widen (never narrow) so that `max` fits.
    fn fit(&mut self, max: u32) {
        let have = match self {
            Codes::U8(_) => 0,
            Codes::U16(_) => 1,
            Codes::U32(_) => 2,
        };
        let need = width(max);
        if need <= have {
            return;
        }
        *self = match (std::mem::take(self), need) {
            (Codes::U8(v), 1) => Codes::U16(v.into_iter().map(u16::from).collect()),
            (Codes::U8(v), _) => Codes::U32(v.into_iter().map(u32::from).collect()),
            (Codes::U16(v), _) => Codes::U32(v.into_iter().map(u32::from).collect()),
            (wide @ Codes::U32(_), _) => wide,
        };
    }

    /// Both at the wider of their two widths, so they can be walked together.
    pub fn unify(a: &mut Codes, b: &mut Codes) {
        let max = |c: &Codes| match c {
            Codes::U8(_) => u32::from(u8::MAX),
            Codes::U16(_) => u32::from(u16::MAX),
            Codes::U32(_) => u32::MAX,
        };
        let top = max(a).max(max(b));
        a.fit(top);
        b.fit(top);
    }

    /// Append codes.
    pub fn extend(&mut self, codes: &[u32]) {
        if let Some(top) = codes.iter().max() {
            self.fit(*top);
        }
        with_codes!(self, v => {
            reserve_quarter(v, codes.len());
            for c in codes {
                v.push(TryFrom::try_from(*c).expect("widened to fit"));
            }
        });
    }

    /// Append `n` codes made one at a time (`code(i)` for the `i`-th),
    /// widening when one does not fit: no vector of `u32`s in between.
    pub fn extend_with(&mut self, n: usize, mut code: impl FnMut(usize) -> u32) {
        let mut i = 0;
        while i < n {
            // Fill at the current width until a code needs a wider one.
            let wider = with_codes!(self, v => {
                reserve_quarter(v, n - i);
                let mut wider = None;
                while i < n {
                    let c = code(i);
                    i += 1;
                    match TryFrom::try_from(c) {
                        Ok(narrow) => v.push(narrow),
                        Err(_) => {
                            wider = Some(c);
                            break;
                        }
                    }
                }
                wider
            });
            if let Some(c) = wider {
                self.push(c);
            }
        }
    }

    /// Append one code.
    pub fn push(&mut self, code: u32) {
        self.fit(code);
        with_codes!(self, v => {
            reserve_quarter(v, 1);
            v.push(TryFrom::try_from(code).expect("widened to fit"));
        });
    }

    /// Replace the `i`-th code.
    pub fn set(&mut self, i: usize, code: u32) {
        self.fit(code);
        with_codes!(self, v => v[i] = TryFrom::try_from(code).expect("widened to fit"));
    }
}

/// 1 − KS statistic of two samples (NaN entries ignored); NaN if one is empty.
pub fn ks_complement(real: &[f64], synthetic: &[f64]) -> f64 {
    // Each value as an integer that sorts as the number does (−0 taken as
    // +0, so equal numbers are equal keys): integers sort faster than
    // floats compared with `total_cmp`, and compare alike in the walk below.
    let key = |v: &f64| {
        let bits = (v + 0.0).to_bits();
        if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
    };
    let mut a: Vec<u64> = real.iter().filter(|v| !v.is_nan()).map(key).collect();
    let mut b: Vec<u64> = synthetic.iter().filter(|v| !v.is_nan()).map(key).collect();
    if a.is_empty() || b.is_empty() {
        return f64::NAN;
    }
    a.sort_unstable();
    b.sort_unstable();
    1.0 - ks_statistic(&a, &b)
}

/// The two-sample Kolmogorov–Smirnov statistic of two sorted, non-empty
/// samples of any ordered type.
fn ks_statistic<T: PartialOrd + Copy>(a: &[T], b: &[T]) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut d = 0.0f64;
    while i < a.len() && j < b.len() {
        // Step past every copy of the smallest value in both samples.
        let x = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let gap = (i as f64 / na - j as f64 / nb).abs();
        // A comparison, not `f64::max`: WASM has no IEEE maxNum, so `max`
        // is a libm call there (neither number is NaN).
        if gap > d {
            d = gap;
        }
    }
    d
}

/// [`tv_complement`] of a renumbered column: counts in a table as long as
/// its codes, walked in code order, so the sums are the map version's.
pub fn tv_complement_local(col: &LocalCodes) -> f64 {
    let mut r = vec![0u32; col.k];
    let mut s = vec![0u32; col.k];
    with_codes!(&col.real, v => v.iter().for_each(|c| r[c.idx()] += 1));
    with_codes!(&col.synthetic, v => v.iter().for_each(|c| s[c.idx()] += 1));
    if let Some(null) = col.null {
        r[null as usize] = 0;
        s[null as usize] = 0;
    }
    if r.iter().all(|c| *c == 0) || s.iter().all(|c| *c == 0) {
        return f64::NAN;
    }
    // A synthetic-only category counts 1e-6 real rows (SDMetrics).
    let real_of = |i: usize| if r[i] > 0 { f64::from(r[i]) } else { 1e-6 };
    let occupied = || (0..col.k).filter(|&i| r[i] > 0 || s[i] > 0);
    let rt: f64 = occupied().map(real_of).sum();
    let st: f64 = occupied().filter(|&i| s[i] > 0).map(|i| f64::from(s[i])).sum();
    let tv: f64 = occupied().map(|i| (f64::from(s[i]) / st - real_of(i) / rt).abs()).sum();
    1.0 - 0.5 * tv
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
    // Walked three times rather than copied: a copy of the pairs would be
    // 16 bytes a row, on top of the columns themselves.
    let pairs = || {
        x.iter()
            .zip(y)
            .filter(|(a, b)| !a.is_nan() && !b.is_nan())
            .map(|(a, b)| (*a, *b))
    };
    let count = pairs().count();
    if count < 2 {
        return f64::NAN;
    }
    #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
    let n = count as f64;
    let mx = pairs().map(|p| p.0).sum::<f64>() / n;
    let my = pairs().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in pairs() {
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

/// One table's continuous column with what every pair it is in reads of it
/// alone, worked out once instead of once per pair: whether it is constant
/// and, when it has no NaN, its mean and `Σ (x − mean)²`.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    values: &'a [f64],
    constant: bool,
    /// Mean and sum of squared deviations, when every value is present.
    complete: Option<(f64, f64)>,
}

impl<'a> Series<'a> {
    /// Read a column once.
    pub fn new(values: &'a [f64]) -> Self {
        let complete = (!values.iter().any(|v| v.is_nan())).then(|| {
            // The same sums, in the same order, as [`pearson`] takes over
            // pairwise-complete rows, so the result is its bit for bit.
            #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let mut squares = 0.0;
            for v in values {
                squares += (v - mean) * (v - mean);
            }
            (mean, squares)
        });
        Series {
            values,
            constant: is_constant(values),
            complete,
        }
    }
}

/// [`pearson`] of two read columns: one pass over the rows when neither
/// has a NaN (each column's mean and squares are its own), else the
/// pairwise-complete definition.
pub fn pearson_series(x: &Series<'_>, y: &Series<'_>) -> f64 {
    match (x.complete, y.complete) {
        (Some((mx, sxx)), Some((my, syy))) if x.values.len() == y.values.len() => {
            if x.values.len() < 2 {
                return f64::NAN;
            }
            let mut sxy = 0.0;
            for (a, b) in x.values.iter().zip(y.values) {
                sxy += (a - mx) * (b - my);
            }
            let r = sxy / (sxx * syy).sqrt();
            if r.is_finite() { r.clamp(-1.0, 1.0) } else { f64::NAN }
        }
        _ => pearson(x.values, y.values),
    }
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
    correlation_similarity_series(
        (&Series::new(real.0), &Series::new(real.1)),
        (&Series::new(synthetic.0), &Series::new(synthetic.1)),
        threshold,
    )
}

/// [`correlation_similarity`] of columns read once for all their pairs.
pub fn correlation_similarity_series(
    real: (&Series<'_>, &Series<'_>),
    synthetic: (&Series<'_>, &Series<'_>),
    threshold: f64,
) -> PairScore {
    let nan = PairScore {
        score: f64::NAN,
        real_correlation: f64::NAN,
        synthetic_correlation: f64::NAN,
        real_association: f64::NAN,
        synthetic_association: f64::NAN,
        meets_threshold: false,
        note: None,
    };
    if real.0.constant || real.1.constant || synthetic.0.constant || synthetic.1.constant {
        return PairScore {
            note: Some("a column is constant"),
            ..nan
        };
    }
    let rr = pearson_series(real.0, real.1);
    // Computed for unscored pairs too: reports draw both association matrices.
    let rs = pearson_series(synthetic.0, synthetic.1);
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

/// Codes of one discrete column renumbered `0..k` in the order of the
/// original codes (null last), both tables alike: the joint counts of two
/// such columns fit a dense `k_a × k_b` table, and walking it row-major
/// visits cells in the order a map keyed by the original code pairs would,
/// so every sum adds the same terms in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCodes {
    /// The real table's codes.
    pub real: Codes,
    /// The synthetic table's codes.
    pub synthetic: Codes,
    /// How many distinct codes the two hold.
    pub k: usize,
    /// The local code of null, when either table has one (always `k − 1`).
    pub null: Option<u32>,
}

/// Renumber a column's codes, `NULL_CODE` as null (see [`LocalCodes`]).
pub fn local_codes(real: &[u32], synthetic: &[u32]) -> LocalCodes {
    renumber(real, synthetic, NULL_CODE)
}

/// Renumber a column's codes whatever their width, `null` as null; the
/// codes are taken so that their memory is freed as the new ones are made.
pub fn renumber_codes(mut a: Codes, mut b: Codes, null: u32) -> LocalCodes {
    Codes::unify(&mut a, &mut b);
    match (&a, &b) {
        (Codes::U8(x), Codes::U8(y)) => renumber(x, y, u8::try_from(null).unwrap_or(u8::MAX)),
        (Codes::U16(x), Codes::U16(y)) => renumber(x, y, u16::try_from(null).unwrap_or(u16::MAX)),
        (Codes::U32(x), Codes::U32(y)) => renumber(x, y, null),
        _ => unreachable!("unified to one width"),
    }
}

/// [`LocalCodes`] of two code slices, `null` as null.
pub fn renumber<T: Code>(real: &[T], synthetic: &[T], null: T) -> LocalCodes {
    if let Some(domain) = T::DOMAIN {
        return renumber_narrow(real, synthetic, null, domain);
    }
    let all = || real.iter().chain(synthetic).copied();
    // Codes from a dictionary are small (null aside): mark which occur in a
    // table as long as the largest, rather than sort them all.
    let top = all().filter(|c| *c != null).max();
    let has_null = all().any(|c| c == null);
    let n = real.len() + synthetic.len();
    let (table, k) = match top {
        Some(m) if m.idx() <= 4 * n + 64 => {
            let mut seen = vec![false; m.idx() + 1];
            for c in all().filter(|c| *c != null) {
                seen[c.idx()] = true;
            }
            let mut table = vec![u32::MAX; m.idx() + 1];
            let mut k = 0u32;
            for (code, present) in seen.iter().enumerate() {
                if *present {
                    table[code] = k;
                    k += 1;
                }
            }
            (Some(table), k as usize)
        }
        _ => (None, 0),
    };
    // Without a lookup table: the sorted distinct codes, searched.
    let distinct: Vec<T> = if table.is_some() {
        Vec::new()
    } else {
        let mut d: Vec<T> = all().filter(|c| *c != null).collect();
        d.sort_unstable();
        d.dedup();
        d
    };
    let k = if table.is_some() { k } else { distinct.len() };
    let null_local = u32::try_from(k).unwrap_or(u32::MAX);
    let map = |codes: &[T]| -> Codes {
        Codes::collect(
            null_local,
            codes.iter().map(|c| {
                if *c == null {
                    null_local
                } else if let Some(t) = &table {
                    t[c.idx()]
                } else {
                    u32::try_from(distinct.partition_point(|d| d < c)).unwrap_or(u32::MAX)
                }
            }),
        )
    };
    LocalCodes {
        real: map(real),
        synthetic: map(synthetic),
        k: k + usize::from(has_null),
        null: has_null.then_some(null_local),
    }
}

/// [`renumber`] of codes whose type has at most `domain` values: one pass
/// marks the codes that occur, one maps every cell through a table as long
/// as the type's range (null included), with no branch per cell.
fn renumber_narrow<T: Code>(real: &[T], synthetic: &[T], null: T, domain: usize) -> LocalCodes {
    if let (Some(real), Some(synthetic)) = (T::bytes(real), T::bytes(synthetic)) {
        return renumber_bytes(real, synthetic, null.idx());
    }
    let mut seen = vec![false; domain];
    for c in real.iter().chain(synthetic) {
        seen[c.idx()] = true;
    }
    let has_null = std::mem::replace(&mut seen[null.idx()], false);
    let mut table = vec![u32::MAX; domain];
    let mut k = 0u32;
    for (code, present) in seen.iter().enumerate() {
        if *present {
            table[code] = k;
            k += 1;
        }
    }
    table[null.idx()] = k;
    let map = |codes: &[T]| Codes::collect(k, codes.iter().map(|c| table[c.idx()]));
    LocalCodes {
        real: map(real),
        synthetic: map(synthetic),
        k: k as usize + usize::from(has_null),
        null: has_null.then_some(k),
    }
}

/// [`renumber_narrow`] of byte codes: tables of 256 entries indexed by a
/// byte, so no index is checked, and byte codes out (every byte column
/// has at most 256 codes, null included).
fn renumber_bytes(real: &[u8], synthetic: &[u8], null: usize) -> LocalCodes {
    let mut seen = [false; 256];
    for codes in [real, synthetic] {
        for c in codes {
            seen[usize::from(*c)] = true;
        }
    }
    let has_null = std::mem::replace(&mut seen[null], false);
    let mut table = [0u8; 256];
    let mut k = 0u8;
    for (code, present) in seen.iter().enumerate() {
        if *present {
            table[code] = k;
            // At most 255 codes besides null: the last one leaves k at 255.
            k = k.saturating_add(1);
        }
    }
    table[null] = k;
    let map = |codes: &[u8]| Codes::U8(codes.iter().map(|c| table[usize::from(*c)]).collect());
    LocalCodes {
        real: map(real),
        synthetic: map(synthetic),
        k: usize::from(k) + usize::from(has_null),
        null: has_null.then_some(u32::from(k)),
    }
}

/// Most cells a dense joint table may have; past it a sorted map holds only
/// the cells that occur (two columns of thousands of categories each).
const DENSE_CELLS: usize = 1 << 20;

/// Most cells a joint table counted in four lanes may have (256 KiB of
/// lanes): past it rows seldom repeat a cell back to back.
const LANED_CELLS: usize = 1 << 14;

/// Counts of cells numbered by a byte, in four tables a row each in turn:
/// consecutive rows often hit the same cell, and one table would make each
/// increment wait for the store before it; tables indexed by a byte need no
/// bounds checks, which in the sandbox's compiled code cost more than the
/// counting.
struct ByteLanes([[u32; 256]; 4]);

impl ByteLanes {
    /// Count the cells of every row: `quads` gives those of four rows at a
    /// time, `rest` those of the rows left over.
    #[inline(always)]
    fn count(quads: impl Iterator<Item = [u8; 4]>, rest: impl Iterator<Item = u8>) -> ByteLanes {
        let mut lanes = [[0u32; 256]; 4];
        for quad in quads {
            for (counts, cell) in lanes.iter_mut().zip(quad) {
                counts[usize::from(cell)] += 1;
            }
        }
        for cell in rest {
            lanes[0][usize::from(cell)] += 1;
        }
        ByteLanes(lanes)
    }

    /// The count of cell `c`.
    fn total(&self, c: usize) -> u32 {
        self.0.iter().map(|lane| lane[c]).sum()
    }
}

/// Joint counts of two renumbered columns; cells iterate in `(a, b)` order,
/// non-zero ones only.
#[derive(Debug)]
enum Joint {
    Dense { counts: Vec<u32>, kb: usize },
    Sparse(BTreeMap<(u32, u32), u32>),
}

impl Joint {
    fn count(a: &Codes, b: &Codes, ka: usize, kb: usize) -> Joint {
        with_codes!(a, x => with_codes!(b, y => Joint::count_slices(x, y, ka, kb)))
    }

    fn count_slices<A: Code, B: Code>(a: &[A], b: &[B], ka: usize, kb: usize) -> Joint {
        let cells = ka.saturating_mul(kb);
        if cells <= 256 {
            // Most pairs: fixed tables indexed by a byte, so no index is
            // bounds-checked — in the sandbox's compiled code the checks
            // cost more than the counting. Every code is below its column's
            // `k`, so `x·kb + y < ka·kb ≤ 256` and the byte is exact.
            let cell = |x: &A, y: &B| {
                debug_assert!(x.idx() < ka && y.idx() < kb);
                #[allow(clippy::cast_possible_truncation, reason = "below 256, see above")]
                let byte = (x.idx() * kb + y.idx()) as u8;
                byte
            };
            let ((head_a, rest_a), (head_b, rest_b)) = (a.as_chunks::<4>(), b.as_chunks::<4>());
            let lanes = ByteLanes::count(
                head_a
                    .iter()
                    .zip(head_b)
                    .map(|(x, y)| std::array::from_fn(|l| cell(&x[l], &y[l]))),
                rest_a.iter().zip(rest_b).map(|(x, y)| cell(x, y)),
            );
            Joint::Dense {
                counts: (0..cells).map(|c| lanes.total(c)).collect(),
                kb,
            }
        } else if cells <= LANED_CELLS {
            // Four tables, a row each in turn, summed at the end: with few
            // cells, consecutive rows often hit the same one, and each
            // increment would wait for the store of the one before.
            let mut lanes = vec![0u32; 4 * cells];
            let ((head_a, rest_a), (head_b, rest_b)) = (a.as_chunks::<4>(), b.as_chunks::<4>());
            for (x, y) in head_a.iter().zip(head_b) {
                for lane in 0..4 {
                    lanes[lane * cells + x[lane].idx() * kb + y[lane].idx()] += 1;
                }
            }
            for (x, y) in rest_a.iter().zip(rest_b) {
                lanes[x.idx() * kb + y.idx()] += 1;
            }
            let (first, others) = lanes.split_at_mut(cells);
            for lane in others.chunks_exact(cells) {
                for (c, o) in first.iter_mut().zip(lane) {
                    *c += o;
                }
            }
            lanes.truncate(cells);
            Joint::Dense { counts: lanes, kb }
        } else if cells <= DENSE_CELLS {
            let mut counts = vec![0u32; cells];
            for (x, y) in a.iter().zip(b) {
                counts[x.idx() * kb + y.idx()] += 1;
            }
            Joint::Dense { counts, kb }
        } else {
            let mut m = HashMap::new();
            for (x, y) in a.iter().zip(b) {
                *m.entry((Into::<u32>::into(*x), Into::<u32>::into(*y))).or_insert(0u32) += 1;
            }
            Joint::Sparse(m.into_iter().collect())
        }
    }

    /// The joint counts of the pairs `(a, b)`, `(a, c)`, `(b, c)` of three
    /// byte columns whose cells together fit a byte (`None` otherwise), from
    /// one pass over the rows: their three-way table, summed out.
    fn count_three(a: &Codes, b: &Codes, c: &Codes, ka: usize, kb: usize, kc: usize) -> Option<[Joint; 3]> {
        let (Codes::U8(a), Codes::U8(b), Codes::U8(c)) = (a, b, c) else {
            return None;
        };
        let cells = ka.checked_mul(kb)?.checked_mul(kc)?;
        if cells > 256 {
            return None;
        }
        let cell = |x: u8, y: u8, z: u8| {
            let (x, y, z) = (usize::from(x), usize::from(y), usize::from(z));
            debug_assert!(x < ka && y < kb && z < kc);
            #[allow(clippy::cast_possible_truncation, reason = "below 256, see above")]
            let byte = ((x * kb + y) * kc + z) as u8;
            byte
        };
        let ((head_a, rest_a), (head_b, rest_b), (head_c, rest_c)) =
            (a.as_chunks::<4>(), b.as_chunks::<4>(), c.as_chunks::<4>());
        let lanes = ByteLanes::count(
            head_a
                .iter()
                .zip(head_b)
                .zip(head_c)
                .map(|((x, y), z)| std::array::from_fn(|l| cell(x[l], y[l], z[l]))),
            rest_a
                .iter()
                .zip(rest_b)
                .zip(rest_c)
                .map(|((x, y), z)| cell(*x, *y, *z)),
        );
        let (mut ab, mut ac, mut bc) = (vec![0u32; ka * kb], vec![0u32; ka * kc], vec![0u32; kb * kc]);
        for x in 0..ka {
            for y in 0..kb {
                for z in 0..kc {
                    let i = (x * kb + y) * kc + z;
                    let n = lanes.total(i);
                    ab[x * kb + y] += n;
                    ac[x * kc + z] += n;
                    bc[y * kc + z] += n;
                }
            }
        }
        Some([
            Joint::Dense { counts: ab, kb },
            Joint::Dense { counts: ac, kb: kc },
            Joint::Dense { counts: bc, kb: kc },
        ])
    }

    /// `(a, b, count)` of every occupied cell, in `(a, b)` order.
    fn cells(&self) -> Box<dyn Iterator<Item = (u32, u32, f64)> + '_> {
        match self {
            Joint::Dense { counts, kb } => {
                Box::new(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(move |(i, c)| {
                    (
                        u32::try_from(i / kb).unwrap_or(u32::MAX),
                        u32::try_from(i % kb).unwrap_or(u32::MAX),
                        f64::from(*c),
                    )
                }))
            }
            Joint::Sparse(m) => Box::new(m.iter().map(|((a, b), c)| (*a, *b, f64::from(*c)))),
        }
    }
}

/// Cramér's V of a joint count table (no continuity correction), as
/// `scipy.stats.contingency.association(..., method="cramer")`.
fn cramers_v(joint: &Joint, ka: usize, kb: usize) -> f64 {
    let mut rows = vec![0.0f64; ka];
    let mut cols = vec![0.0f64; kb];
    let mut n = 0.0;
    for (r, c, k) in joint.cells() {
        rows[r as usize] += k;
        cols[c as usize] += k;
        n += k;
    }
    let k = rows
        .iter()
        .filter(|v| **v > 0.0)
        .count()
        .min(cols.iter().filter(|v| **v > 0.0).count());
    if n == 0.0 || k < 2 {
        return f64::NAN;
    }
    // Σ over all cells of (O − E)² / E = Σ over observed cells of O² / E − n,
    // since Σ O = Σ E = n: linear in the observed cells, not rows × columns.
    let chi2 = joint
        .cells()
        .map(|(r, c, o)| o * o * n / (rows[r as usize] * cols[c as usize]))
        .sum::<f64>()
        - n;
    let chi2 = chi2.max(0.0);
    #[allow(clippy::cast_precision_loss, reason = "category counts are small")]
    let v = (chi2 / (n * (k as f64 - 1.0))).sqrt();
    v
}

/// ContingencySimilarity of two discrete columns (null codes are categories).
pub fn contingency_similarity(real: (&[u32], &[u32]), synthetic: (&[u32], &[u32]), threshold: f64) -> PairScore {
    let (a, b) = (local_codes(real.0, synthetic.0), local_codes(real.1, synthetic.1));
    contingency_similarity_local(&a, &b, threshold)
}

/// [`contingency_similarity`] of two columns already renumbered, so a
/// column's renumbering is done once for all its pairs.
pub fn contingency_similarity_local(a: &LocalCodes, b: &LocalCodes, threshold: f64) -> PairScore {
    let rc = Joint::count(&a.real, &b.real, a.k, b.k);
    let sc = Joint::count(&a.synthetic, &b.synthetic, a.k, b.k);
    contingency_score(a, b, &rc, &sc, threshold)
}

/// [`contingency_similarity_local`] of each of `pairs` of `columns`, the
/// same numbers, with fewer passes over the rows: three columns whose
/// cells together fit a byte-indexed table (`k_a·k_b·k_c ≤ 256`) are
/// counted once, and two or three of the pairs wanted read off that count
/// by summing out the third column; the other pairs are counted alone.
/// Each pair `(i, j)` scores as `contingency_similarity_local(&columns[i],
/// &columns[j], threshold)` with `i < j`.
pub fn contingency_similarities(columns: &[LocalCodes], pairs: &[(usize, usize)], threshold: f64) -> Vec<PairScore> {
    debug_assert!(pairs.iter().all(|(i, j)| i < j));
    // Wanted pairs: `None` until counted with a third column.
    let mut todo: FxHashMap<(usize, usize), Option<[Joint; 2]>> = pairs.iter().map(|&p| (p, None)).collect();
    let open =
        |todo: &FxHashMap<(usize, usize), Option<[Joint; 2]>>, p: &(usize, usize)| matches!(todo.get(p), Some(None));
    // Columns of more than 128 codes seldom fit a triple (only with
    // constant columns) and are left out of the search; past a few hundred
    // columns the search would cost more than it saves, and every pair is
    // counted alone.
    let small: Vec<usize> = (0..columns.len()).filter(|&c| columns[c].k <= 128).collect();
    let small = if small.len() <= MAX_TRIPLE_COLUMNS {
        small
    } else {
        Vec::new()
    };
    for (x, &a) in small.iter().enumerate() {
        for (y, &b) in small.iter().enumerate().skip(x + 1) {
            for &c in &small[y + 1..] {
                let (ka, kb, kc) = (columns[a].k, columns[b].k, columns[c].k);
                let sides = [(a, b), (a, c), (b, c)];
                if ka * kb * kc > 256 || sides.iter().filter(|p| open(&todo, p)).count() < 2 {
                    continue;
                }
                let count = |pick: fn(&LocalCodes) -> &Codes| {
                    Joint::count_three(pick(&columns[a]), pick(&columns[b]), pick(&columns[c]), ka, kb, kc)
                };
                let (Some(real), Some(synthetic)) = (count(|l| &l.real), count(|l| &l.synthetic)) else {
                    continue;
                };
                for ((side, r), s) in sides.iter().zip(real).zip(synthetic) {
                    if open(&todo, side) {
                        todo.insert(*side, Some([r, s]));
                    }
                }
            }
        }
    }
    pairs
        .iter()
        .map(|&(i, j)| {
            let (a, b) = (&columns[i], &columns[j]);
            let counted = todo.get_mut(&(i, j)).and_then(Option::take);
            let [rc, sc] = counted.unwrap_or_else(|| {
                [
                    Joint::count(&a.real, &b.real, a.k, b.k),
                    Joint::count(&a.synthetic, &b.synthetic, a.k, b.k),
                ]
            });
            contingency_score(a, b, &rc, &sc, threshold)
        })
        .collect()
}

/// Most columns searched for triples to count together (`C(n, 3)` checks).
const MAX_TRIPLE_COLUMNS: usize = 200;

/// ContingencySimilarity of two columns from their joint counts.
fn contingency_score(a: &LocalCodes, b: &LocalCodes, rc: &Joint, sc: &Joint, threshold: f64) -> PairScore {
    let mut out = PairScore {
        score: f64::NAN,
        real_correlation: f64::NAN,
        synthetic_correlation: f64::NAN,
        real_association: cramers_v(rc, a.k, b.k),
        synthetic_association: cramers_v(sc, a.k, b.k),
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
    let (nr, ns) = (a.real.len() as f64, a.synthetic.len() as f64);
    if nr == 0.0 || ns == 0.0 {
        out.note = Some("empty table");
        return out;
    }
    // The union of occupied cells, in order: a merge of the two walks.
    let (mut r, mut s) = (rc.cells().peekable(), sc.cells().peekable());
    let mut diff = 0.0;
    loop {
        let term = match (r.peek(), s.peek()) {
            (None, None) => break,
            (Some(x), Some(y)) if (x.0, x.1) == (y.0, y.1) => {
                let t = (x.2 / nr - y.2 / ns).abs();
                r.next();
                s.next();
                t
            }
            (Some(x), Some(y)) if (x.0, x.1) < (y.0, y.1) => {
                let t = (x.2 / nr - 0.0).abs();
                r.next();
                t
            }
            (Some(x), None) => {
                let t = (x.2 / nr - 0.0).abs();
                r.next();
                t
            }
            (_, Some(y)) => {
                let t = (0.0 / nr - y.2 / ns).abs();
                s.next();
                t
            }
        };
        diff += term;
    }
    out.score = 1.0 - diff / 2.0;
    out
}

/// `np.histogram_bin_edges(x.dropna())` (10 equal-width bins) then
/// `np.digitize(x, edges)`: bin index 1..=10 inside, 11 at the maximum, and
/// 11 for NaN (numpy sorts NaN after every edge).
pub fn discretize(x: &[f64]) -> Vec<u8> {
    // Comparisons, not `f64::min`/`max` (libm calls in WASM); a zero's sign
    // cannot change an edge or a bin.
    let (mut lo, mut hi) = x
        .iter()
        .filter(|v| !v.is_nan())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (if v < l { v } else { l }, if v > h { v } else { h })
        });
    if lo > hi {
        // No value present.
        return vec![0; x.len()];
    }
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    let edges: [f64; 11] = std::array::from_fn(|i| {
        #[allow(clippy::cast_precision_loss, reason = "i ≤ 10")]
        let i = i as f64;
        lo + (hi - lo) * i / 10.0
    });
    let scale = 10.0 / (hi - lo);
    x.iter()
        .map(|&v| {
            if v.is_nan() {
                return 11;
            }
            // searchsorted(edges, v, side="right"): how many edges are ≤ v.
            // The bin's arithmetic guess is off by at most a rounding, and
            // the two walks correct it against the edges themselves.
            // `v ≥ lo`, so the guess is in 0..=11 (NaN, from an infinite
            // scale, is taken as 11 and walked back).
            // The guess's integer part read from the bits of `floor + 2^52`
            // (its low mantissa bits), not by a float-to-integer cast:
            // the sandbox's saturating cast is a long branchy sequence.
            let guess = (v - lo) * scale;
            let guess = if guess < 11.0 { guess } else { 11.0 };
            #[allow(clippy::cast_possible_truncation, reason = "masked to 4 bits")]
            let whole = ((guess.floor() + 4_503_599_627_370_496.0).to_bits() & 0xF) as usize;
            let mut bin = (whole + 1).min(11);
            while bin < 11 && edges[bin] <= v {
                bin += 1;
            }
            while bin > 0 && edges[bin - 1] > v {
                bin -= 1;
            }
            u8::try_from(bin).expect("at most 11 edges")
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
        let a = [0u32, 0, 1, 1];
        let counts = Joint::count_slices(&a, &a, 2, 2);
        assert!((cramers_v(&counts, 2, 2) - 1.0).abs() < 1e-12);
        let r = contingency_similarity((&a, &a), (&a, &a), 0.3);
        assert_eq!(r.score, 1.0);
        assert!(r.meets_threshold);
    }

    /// The definition: sorted maps of the original code pairs.
    fn contingency_by_maps(real: (&[u32], &[u32]), synthetic: (&[u32], &[u32])) -> (f64, f64) {
        let counts = |a: &[u32], b: &[u32]| {
            let mut m: BTreeMap<(u32, u32), f64> = BTreeMap::new();
            for (x, y) in a.iter().zip(b) {
                *m.entry((*x, *y)).or_insert(0.0) += 1.0;
            }
            m
        };
        let (rc, sc) = (counts(real.0, real.1), counts(synthetic.0, synthetic.1));
        let mut rows: HashMap<u32, f64> = HashMap::new();
        let mut cols: HashMap<u32, f64> = HashMap::new();
        let mut n = 0.0;
        for ((r, c), k) in &rc {
            *rows.entry(*r).or_default() += k;
            *cols.entry(*c).or_default() += k;
            n += k;
        }
        let chi2: f64 = rc
            .iter()
            .map(|((r, c), o)| o * o * n / (rows[r] * cols[c]))
            .sum::<f64>()
            - n;
        #[allow(clippy::cast_precision_loss, reason = "tiny tables")]
        let v = (chi2.max(0.0) / (n * (rows.len().min(cols.len()) as f64 - 1.0))).sqrt();
        #[allow(clippy::cast_precision_loss, reason = "tiny tables")]
        let (nr, ns) = (real.0.len() as f64, synthetic.0.len() as f64);
        let keys: std::collections::BTreeSet<&(u32, u32)> = rc.keys().chain(sc.keys()).collect();
        let diff: f64 = keys
            .into_iter()
            .map(|k| (rc.get(k).copied().unwrap_or(0.0) / nr - sc.get(k).copied().unwrap_or(0.0) / ns).abs())
            .sum();
        (v, 1.0 - diff / 2.0)
    }

    /// Draws below `k` from a small LCG seeded with `seed`: deterministic
    /// columns of codes without a dev-dependency.
    fn draws(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut state = seed;
        move |k| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % k
        }
    }

    #[test]
    fn dense_and_sparse_counts_give_the_maps_numbers_bit_for_bit() {
        let mut next = draws(12_345u64);
        // Laned (≤ 2^14 cells), dense, and sparse joint tables.
        for (ka, kb, wide) in [(3, 4, false), (12, 40, false), (300, 200, false), (2_000, 1_500, true)] {
            let code = |v: u64, wide: bool| -> u32 {
                // Every 17th value null; wide dictionaries far apart.
                if v % 17 == 16 {
                    NULL_CODE
                } else {
                    u32::try_from(v * if wide { 1_000 } else { 1 }).unwrap()
                }
            };
            let (mut ra, mut rb, mut sa, mut sb) = (vec![], vec![], vec![], vec![]);
            for _ in 0..3_000 {
                ra.push(code(next(ka), wide));
                rb.push(code(next(kb), false));
                sa.push(code(next(ka), wide));
                sb.push(code(next(kb), false));
            }
            let got = contingency_similarity((&ra, &rb), (&sa, &sb), 0.0);
            let (v, score) = contingency_by_maps((&ra, &rb), (&sa, &sb));
            assert_eq!(got.real_association.to_bits(), v.to_bits(), "{ka}×{kb}");
            assert_eq!(got.score.to_bits(), score.to_bits(), "{ka}×{kb}");
        }
    }

    #[test]
    fn pairs_counted_three_columns_at_a_time_score_as_counted_alone() {
        let mut next = draws(7u64);
        // Categories from 2 to 300 (a column too wide for any triple), every
        // 13th cell of some columns null, tables of different lengths, and
        // a row count that is not a multiple of the four lanes.
        let ks = [2u64, 3, 2, 7, 11, 5, 300, 4, 13, 2];
        let columns: Vec<LocalCodes> = ks
            .iter()
            .enumerate()
            .map(|(c, &k)| {
                let mut draw = |rows: usize| -> Vec<u32> {
                    (0..rows)
                        .map(|_| {
                            let v = next(k + 1);
                            if c % 3 == 0 && v == k {
                                NULL_CODE
                            } else {
                                u32::try_from(v % k).unwrap()
                            }
                        })
                        .collect()
                };
                let (real, synthetic) = (draw(2_003), draw(1_501));
                local_codes(&real, &synthetic)
            })
            .collect();
        let pairs: Vec<(usize, usize)> = (0..ks.len())
            .flat_map(|i| (i + 1..ks.len()).map(move |j| (i, j)))
            .filter(|&(i, j)| (i + j) % 5 != 0)
            .collect();
        for threshold in [0.0, 0.3] {
            let together = contingency_similarities(&columns, &pairs, threshold);
            for (&(i, j), got) in pairs.iter().zip(&together) {
                let alone = contingency_similarity_local(&columns[i], &columns[j], threshold);
                assert_eq!(format!("{got:?}"), format!("{alone:?}"), "pair ({i}, {j})");
            }
        }
    }

    #[test]
    fn tv_by_counts_is_tv_by_maps_bit_for_bit() {
        let mut next = draws(99u64);
        for (k, wide) in [(2u64, false), (9, false), (300, true)] {
            let code = |v: u64| -> u32 {
                if v % 13 == 12 {
                    NULL_CODE
                } else {
                    u32::try_from(v * if wide { 100_000 } else { 1 }).unwrap()
                }
            };
            let real: Vec<u32> = (0..2_000).map(|_| code(next(k))).collect();
            // The synthetic side draws from more categories: synthetic-only ones.
            let synthetic: Vec<u32> = (0..1_500).map(|_| code(next(k + 3))).collect();
            let local = local_codes(&real, &synthetic);
            assert_eq!(
                tv_complement_local(&local).to_bits(),
                tv_complement(&real, &synthetic).to_bits(),
                "{k}"
            );
        }
        assert!(tv_complement_local(&local_codes(&[NULL_CODE], &[1])).is_nan());
    }

    #[test]
    fn codes_widen_as_values_grow_and_renumber_alike_at_any_width() {
        let mut c = Codes::default();
        c.extend(&[3, 0, 7]);
        assert!(matches!(c, Codes::U8(_)));
        c.push(300);
        assert!(matches!(c, Codes::U16(_)));
        // One at a time, widening mid-run, as extending with the same codes.
        let run = [1u32, 200, 70_000, 5, 300];
        let mut one_by_one = Codes::default();
        one_by_one.extend_with(run.len(), |i| run[i]);
        let mut at_once = Codes::default();
        at_once.extend(&run);
        assert_eq!(one_by_one, at_once);
        assert!(matches!(one_by_one, Codes::U32(_)));
        c.set(1, 70_000);
        assert!(matches!(c, Codes::U32(_)));
        assert_eq!((0..c.len()).map(|i| c.get(i)).collect::<Vec<_>>(), [3, 70_000, 7, 300]);
        // The same codes, narrow or wide, renumber to the same local codes
        // (null, here 0, last), and those to the u32 definition's.
        let real = [0u32, 5, 9, 5, 0];
        let synthetic = [9u32, 9, 2];
        let mut wide_real = Codes::default();
        wide_real.extend(&real);
        wide_real.push(100_000);
        let mut narrow_synthetic = Codes::default();
        narrow_synthetic.extend(&synthetic);
        let narrow = renumber_codes(Codes::collect(9, real.iter().copied()), narrow_synthetic.clone(), 0);
        let remap = |c: u32| if c == 0 { NULL_CODE } else { c };
        let by_definition = local_codes(
            &real.iter().copied().map(remap).collect::<Vec<_>>(),
            &synthetic.iter().copied().map(remap).collect::<Vec<_>>(),
        );
        assert_eq!(narrow, by_definition);
        assert_eq!((narrow.k, narrow.null), (4, Some(3)));
        // A wide table with one more code: the shared codes keep their order.
        let wide = renumber_codes(wide_real, narrow_synthetic, 0);
        assert_eq!(wide.k, 5);
        assert_eq!(wide.real.get(5), 3);
        assert_eq!(wide.real.get(0), 4);
    }

    /// Numbers with many ties, both zeros, and NaN: what columns hold.
    fn column() -> impl proptest::strategy::Strategy<Value = Vec<f64>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                4 => (-20i32..20).prop_map(f64::from),
                2 => -1e6f64..1e6,
                1 => Just(-0.0),
                1 => Just(f64::NAN),
            ],
            0..300,
        )
    }

    /// The definitions the fast paths replaced, verbatim.
    fn ks_by_floats(real: &[f64], synthetic: &[f64]) -> f64 {
        let mut a: Vec<f64> = real.iter().copied().filter(|v| !v.is_nan()).collect();
        let mut b: Vec<f64> = synthetic.iter().copied().filter(|v| !v.is_nan()).collect();
        if a.is_empty() || b.is_empty() {
            return f64::NAN;
        }
        // Floats sorted under total_cmp, walked as the keys are.
        a.sort_unstable_by(f64::total_cmp);
        b.sort_unstable_by(f64::total_cmp);
        1.0 - ks_statistic(&a, &b)
    }

    fn digitize_by_search(x: &[f64]) -> Vec<u8> {
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
                    11
                } else {
                    u8::try_from(edges.partition_point(|e| *e <= *v)).unwrap()
                }
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn fast_paths_give_the_definitions_numbers_bit_for_bit(
            x in column(),
            y in column(),
            codes in proptest::collection::vec(0u8..12, 0..300),
            other in proptest::collection::vec(0u8..12, 0..300),
        ) {
            // KSComplement on order keys = on floats under total_cmp.
            proptest::prop_assert_eq!(ks_complement(&x, &y).to_bits(), ks_by_floats(&x, &y).to_bits());
            // Bins by arithmetic and correction = by binary search, edges
            // included (every edge itself is a value of the second column).
            proptest::prop_assert_eq!(discretize(&x), digitize_by_search(&x));
            let (lo, hi) = x.iter().filter(|v| !v.is_nan()).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
            if lo < hi {
                let mut at_edges: Vec<f64> = (0..=10).map(|i| lo + (hi - lo) * f64::from(i) / 10.0).collect();
                at_edges.extend(&x);
                proptest::prop_assert_eq!(discretize(&at_edges), digitize_by_search(&at_edges));
            }
            // Pearson of read columns = pairwise-complete Pearson.
            let n = x.len().min(y.len());
            let (a, b) = (&x[..n], &y[..n]);
            proptest::prop_assert_eq!(pearson_series(&Series::new(a), &Series::new(b)).to_bits(), pearson(a, b).to_bits());
            let complete: Vec<f64> = a.iter().map(|v| if v.is_nan() { 1.5 } else { *v }).collect();
            let shifted: Vec<f64> = complete.iter().rev().map(|v| v * 3.0 - 1.0).collect();
            proptest::prop_assert_eq!(
                pearson_series(&Series::new(&complete), &Series::new(&shifted)).to_bits(),
                pearson(&complete, &shifted).to_bits()
            );
            // Byte codes renumber as their u32 widening does (null 11 or 0).
            for null in [11u8, 0] {
                let wide = |c: &[u8]| c.iter().map(|v| u32::from(*v)).collect::<Vec<_>>();
                proptest::prop_assert_eq!(
                    renumber(&codes, &other, null),
                    renumber(&wide(&codes), &wide(&other), u32::from(null))
                );
            }
        }
    }

    #[test]
    fn pearson_matches_numpy() {
        // np.corrcoef([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])[0, 1] == 0.8 (NaN pairs dropped)
        let x = [1.0, 2.0, f64::NAN, 3.0, 4.0, 5.0];
        let y = [2.0, 1.0, 7.0, 4.0, 3.0, 5.0];
        assert!((pearson(&x, &y) - 0.8).abs() < 1e-12);
        assert!(pearson(&[1.0], &[2.0]).is_nan());
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
