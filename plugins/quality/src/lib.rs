//! `doppel/quality`: how faithful a synthetic table is to the real one, as
//! SDMetrics' `QualityReport` scores it, computed inside the WASM sandbox.
//!
//! - **Column Shapes**: the mean over columns of KSComplement (numerical and
//!   datetime columns) or TVComplement (categorical and boolean columns).
//! - **Column Pair Trends**: the mean over column pairs of
//!   CorrelationSimilarity (two continuous columns), ContingencySimilarity (two
//!   discrete columns, or a continuous column cut into 10 bins against a
//!   discrete one). In `current` mode (SDMetrics ≥ 0.27) only pairs whose real
//!   data shows a trend count: |ρ| > 0.5, Cramér's V > 0.3. `legacy` mode
//!   averages every pair (SDMetrics ≤ 0.26).
//! - **Quality Score**: the mean of the two.
//!
//! Column roles come from the `doppel.semantic-type` field metadata the host
//! attaches; id and free-text columns are skipped, as SDMetrics skips them.
//! Unlike SDMetrics, contingency tables use every row (no random 50,000-row
//! subsample), so the score is deterministic.

pub mod metrics;

use doppel_sdk::arrow_array::cast::AsArray;
use doppel_sdk::arrow_array::{Array, StringArray};
use rustc_hash::FxHashMap;

use doppel_sdk::*;
use metrics::{Codes, PairScore};

/// How a column is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Continuous,
    Discrete,
}

/// One compared column, per table (index 0 real, 1 synthetic).
#[derive(Debug, Default)]
struct Column {
    /// A continuous column's values (NaN for null).
    numbers: [Vec<f64>; 2],
    /// A discrete column's codes: 0 is null, `c + 1` the `c`-th category.
    codes: [Codes; 2],
    /// A discrete column's categories, numbered as first seen: one
    /// dictionary per column keeps its codes dense, and most in a byte.
    dictionary: Dictionary,
}

/// Categories numbered as first seen. Text of at most 32 bytes (nearly
/// every category) is keyed by its length and four words that cover it,
/// read in place, in an open-addressing table of its own: a cell is then
/// looked up with a few multiplies and integer compares, not a string hash,
/// a `memcmp` (a byte loop in WASM) and a general map's probing — looking
/// cells up was the largest part of reading a table.
#[derive(Debug)]
struct Dictionary {
    short: ShortTable,
    long: FxHashMap<Box<[u8]>, u32>,
    /// Texts of at most 32 bytes recently looked up, with their numbers, in
    /// 64 places picked by their first word and length (one multiply):
    /// most columns have few categories, whose cells then nearly always
    /// find theirs here — a compare, not a probe of the whole table.
    recent: [Option<(ShortKey, u32)>; 64],
}

impl Default for Dictionary {
    fn default() -> Self {
        Dictionary {
            short: ShortTable::default(),
            long: FxHashMap::default(),
            recent: [None; 64],
        }
    }
}

/// Text of at most 32 bytes, exactly: four words and the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShortKey {
    words: [u64; 4],
    len: u8,
}

/// Text of at most 32 bytes as its key. Words overlap when the text is
/// shorter than they are long; with the length in the key the bytes are
/// still told apart exactly (the words cover every byte).
#[inline(always)]
fn short_key(bytes: &[u8]) -> Option<ShortKey> {
    let len = bytes.len();
    let at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let w4 = |i: usize| u64::from(u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes")));
    let words = match len {
        0..4 => [bytes.iter().fold(0u64, |w, b| (w << 8) | u64::from(*b)), 0, 0, 0],
        4..8 => [w4(0) | (w4(len - 4) << 32), 0, 0, 0],
        8..=16 => [at(0), at(len - 8), 0, 0],
        17..=32 => [at(0), at(8), at(len - 16), at(len - 8)],
        _ => return None,
    };
    #[allow(clippy::cast_possible_truncation, reason = "at most 32")]
    Some(ShortKey { words, len: len as u8 })
}

/// Short keys and their numbers: linear probing in a power-of-two table at
/// most half full, slots holding an entry's index + 1 (0 is empty).
#[derive(Debug, Default)]
struct ShortTable {
    slots: Vec<u32>,
    entries: Vec<(ShortKey, u32)>,
}

impl ShortTable {
    #[inline(always)]
    fn hash(key: &ShortKey) -> u64 {
        // Multiply-rotate mixing (FxHash's step) over the words; the top
        // bits, the best mixed, pick the slot.
        const K: u64 = 0xF135_7AEA_2E62_A9C5;
        let mix = |h: u64, w: u64| (h.rotate_left(26) ^ w).wrapping_mul(K);
        let h = mix(mix(u64::from(key.len), key.words[0]), key.words[1]);
        if key.len > 16 {
            mix(mix(h, key.words[2]), key.words[3])
        } else {
            h
        }
    }

    /// The first slot to probe for `key`.
    #[inline(always)]
    #[allow(clippy::cast_possible_truncation, reason = "below the table's length")]
    fn slot(&self, key: &ShortKey) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (Self::hash(key) >> (64 - bits)) as usize
    }

    /// The number of `key`, or `None` when it is not in the table.
    #[inline(always)]
    fn get(&self, key: &ShortKey) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.slot(key);
        loop {
            let entry = self.slots[i];
            if entry == 0 {
                return None;
            }
            let (k, number) = &self.entries[entry as usize - 1];
            if k == key {
                return Some(*number);
            }
            i = (i + 1) & mask;
        }
    }

    /// Add a key not in the table.
    #[cold]
    fn insert(&mut self, key: ShortKey, number: u32) {
        self.entries.push((key, number));
        if self.entries.len() * 2 > self.slots.len() {
            let size = (self.entries.len() * 4).next_power_of_two().max(16);
            self.slots = vec![0; size];
            for e in 0..self.entries.len() {
                self.place(e);
            }
        } else {
            self.place(self.entries.len() - 1);
        }
    }

    fn place(&mut self, e: usize) {
        let mask = self.slots.len() - 1;
        let mut i = self.slot(&self.entries[e].0);
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = u32::try_from(e + 1).expect("fewer entries than slots");
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

impl Dictionary {
    /// The stored code of a cell: 0 for null, else its category's number + 1.
    fn code(&mut self, value: Option<&str>) -> u32 {
        value.map_or(0, |v| self.code_bytes(v.as_bytes()))
    }

    /// The stored code of a present cell's bytes: its category's number + 1.
    #[inline(always)]
    fn code_bytes(&mut self, bytes: &[u8]) -> u32 {
        let number = if let Some(key) = short_key(bytes) {
            // The place in `recent`: the top six bits of a Fibonacci hash.
            #[allow(clippy::cast_possible_truncation, reason = "six bits")]
            let at = (((key.words[0] ^ u64::from(key.len)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize) & 63;
            match self.recent[at] {
                Some((seen, number)) if seen == key => number,
                _ => {
                    let number = match self.short.get(&key) {
                        Some(number) => number,
                        None => {
                            let next = self.next();
                            self.short.insert(key, next);
                            next
                        }
                    };
                    self.recent[at] = Some((key, number));
                    number
                }
            }
        } else {
            // Look up before inserting: an owned key is allocated only for a
            // value not seen yet, not for every cell.
            match self.long.get(bytes) {
                Some(number) => *number,
                None => {
                    let next = self.next();
                    self.long.insert(bytes.into(), next);
                    next
                }
            }
        };
        number + 1
    }

    /// The codes of every cell of a text array, appended to `target`: the
    /// offsets and bytes walked directly, nulls checked only where the
    /// array has some — the loop every categorical cell goes through. While
    /// the codes fit a byte (nearly always) one loop writes them with the
    /// lookup inlined into it.
    fn code_text(&mut self, text: &StringArray, target: &mut Codes) {
        let (offsets, data) = (text.value_offsets(), text.value_data());
        // Offsets are validated non-negative when the batch is decoded.
        let at = |row: usize| offsets[row].unsigned_abs() as usize;
        let nulls = text.nulls().filter(|n| n.null_count() > 0);
        let mut code = |row: usize| {
            if nulls.is_some_and(|n| n.is_null(row)) {
                0
            } else {
                self.code_bytes(&data[at(row)..at(row + 1)])
            }
        };
        let n = text.len();
        let mut row = 0;
        if let Codes::U8(bytes) = target {
            metrics::reserve_quarter(bytes, n);
            while row < n {
                let Ok(byte) = u8::try_from(code(row)) else { break };
                bytes.push(byte);
                row += 1;
            }
        }
        // A code past a byte (the column widens), or a wider column.
        target.extend_with(n - row, |i| code(row + i));
    }

    fn next(&self) -> u32 {
        u32::try_from(self.short.len() + self.long.len()).unwrap_or(u32::MAX - 1)
    }
}

/// A uniform sample of at most `cap` rows of one table, kept as the rows
/// stream past (Vitter's algorithm R), from a fixed seed: the same tables
/// give the same sample and the same scores.
#[derive(Debug)]
struct Reservoir {
    cap: usize,
    /// Rows seen so far.
    seen: u64,
    state: u64,
}

/// Where a row of a batch goes.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Append,
    Replace(usize),
}

impl Reservoir {
    fn new(cap: usize, seed: u64) -> Self {
        Reservoir {
            cap,
            seen: 0,
            state: seed,
        }
    }

    /// SplitMix64.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The slots of a batch's rows, `None` when every row is appended (the
    /// table still fits whole). Skipped rows are left out.
    fn plan(&mut self, rows: usize) -> Option<Vec<(usize, Slot)>> {
        let kept = usize::try_from(self.seen).unwrap_or(usize::MAX);
        if kept.saturating_add(rows) <= self.cap {
            self.seen += rows as u64;
            return None;
        }
        let mut plan = Vec::new();
        for row in 0..rows {
            let t = self.seen;
            self.seen += 1;
            if t < self.cap as u64 {
                plan.push((row, Slot::Append));
            } else {
                // Uniform in 0..=t (Lemire's multiply-shift; the bias is
                // below 2^-40 for any table that fits a disk).
                let j = ((u128::from(self.next()) * u128::from(t + 1)) >> 64) as u64;
                if j < self.cap as u64 {
                    plan.push((row, Slot::Replace(usize::try_from(j).unwrap_or(usize::MAX))));
                }
            }
        }
        Some(plan)
    }

    fn sampled(&self) -> bool {
        self.seen > self.cap as u64
    }

    /// Rows the scores are computed on.
    fn kept(&self) -> u64 {
        self.seen.min(self.cap as u64)
    }
}

/// How far a sampled table's empirical distribution may be from the whole
/// table's, with 97.5 % confidence: Dvoretzky–Kiefer–Wolfowitz for a CDF
/// (KSComplement), Weissman et al. (2003) for the L1 distance of `k`
/// category shares (TVComplement moves by at most half of it). 0 when the
/// table was scored whole.
fn sample_error(r: &Reservoir, k: Option<usize>) -> f64 {
    if !r.sampled() {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss, reason = "row and category counts are far below 2^52")]
    let (n, ln) = (r.kept() as f64, (1.0f64 / 0.025).ln());
    match k {
        None => ((2.0 / 0.025f64).ln() / (2.0 * n)).sqrt(),
        #[allow(clippy::cast_precision_loss, reason = "category counts are small")]
        Some(k) => 0.5 * (2.0 * (k as f64 * 2f64.ln() + ln) / n).sqrt(),
    }
}

/// The plugin: accumulates both tables (or a uniform sample of each past
/// `max_rows`), scores in `finish`.
#[derive(Debug)]
pub struct Quality {
    correlation_threshold: f64,
    association_threshold: f64,
    /// Column names with their shape, in the real table's order.
    columns: Vec<(String, Shape)>,
    data: Vec<Column>,
    /// Per table (real, synthetic).
    reservoirs: [Reservoir; 2],
}

fn shape_of(field: &Field) -> Option<Shape> {
    match semantic_type(field) {
        Some("numerical" | "datetime") => Some(Shape::Continuous),
        Some("categorical" | "boolean") => Some(Shape::Discrete),
        // ids, free text and unknown roles are not compared (as in SDMetrics).
        Some(_) => None,
        None => {
            let dt = field.data_type();
            if dt.is_numeric() || dt.is_temporal() {
                Some(Shape::Continuous)
            } else {
                Some(Shape::Discrete)
            }
        }
    }
}

impl Plugin for Quality {
    fn info() -> PluginInfo {
        PluginInfo::new("doppel/quality", "0.1.0", StageKind::Metric)
            .summary("SDMetrics-compatible quality report: Column Shapes, Column Pair Trends, overall score.")
            .tables(&[TableRole::Real, TableRole::Synthetic])
            .field(
                ConfigField::string(
                    "mode",
                    "`current`: only pairs with a real trend count (SDMetrics ≥ 0.27); `legacy`: every pair.",
                )
                .allowed(&["current", "legacy"])
                .default(ConfigValue::String("current".into())),
            )
            .field(
                ConfigField::integer(
                    "max_rows",
                    "Rows of each table scored; a larger table is scored on a uniform sample of this many, \
                     stated in the report with each score's sampling error.",
                )
                .range(Some(1_000.0), Some(20_000_000.0))
                .default(ConfigValue::Integer(DEFAULT_MAX_ROWS)),
            )
            .field(
                ConfigField::integer("seed", "Seed of the sample drawn past `max_rows`.")
                    .default(ConfigValue::Integer(0)),
            )
            .field(
                ConfigField::float(
                    "correlation_threshold",
                    "Override: |ρ_real| a continuous pair must exceed to count.",
                )
                .range(Some(0.0), Some(1.0)),
            )
            .field(
                ConfigField::float(
                    "association_threshold",
                    "Override: Cramér's V a discrete pair must exceed to count.",
                )
                .range(Some(0.0), Some(1.0)),
            )
    }

    fn check(_config: &Config, schemas: &[SchemaRef]) -> Result<(), StageError> {
        let [real, synthetic] = schemas else {
            return Err(StageError::InvalidInput(format!(
                "expected two tables (real, synthetic), got {}",
                schemas.len()
            )));
        };
        for field in real.fields() {
            if synthetic.field_with_name(field.name()).is_err() {
                return Err(StageError::UnsupportedSchema(format!(
                    "the synthetic table has no column `{}`",
                    field.name()
                )));
            }
        }
        Ok(())
    }
}

/// Default of `max_rows`: two tables of this many rows of Adult's shape
/// (six numeric and nine categorical columns) take about 400 MiB in the
/// sandbox, well inside the plugin's 1 GiB.
const DEFAULT_MAX_ROWS: i64 = 2_000_000;

impl Metric for Quality {
    fn create(config: &Config) -> Result<Self, StageError> {
        let legacy = config.string("mode")? == Some("legacy");
        let (c, a) = if legacy { (0.0, 0.0) } else { (0.5, 0.3) };
        let max_rows = config.integer("max_rows")?.unwrap_or(DEFAULT_MAX_ROWS);
        let max_rows = usize::try_from(max_rows)
            .ok()
            .filter(|m| *m >= 1_000)
            .ok_or_else(|| StageError::InvalidConfig(format!("max_rows = {max_rows}: must be at least 1000")))?;
        let seed = config.integer("seed")?.unwrap_or(0).cast_unsigned();
        Ok(Quality {
            correlation_threshold: config.float("correlation_threshold")?.unwrap_or(c),
            association_threshold: config.float("association_threshold")?.unwrap_or(a),
            columns: Vec::new(),
            data: Vec::new(),
            // Different streams for the two tables, so that equal tables are
            // not sampled at the very same rows.
            reservoirs: [
                Reservoir::new(max_rows, seed),
                Reservoir::new(max_rows, seed ^ 0x5EED_5A4D_0F5A_A7E5),
            ],
        })
    }

    fn update(&mut self, role: TableRole, batch: &RecordBatch) -> Result<(), StageError> {
        let schema = batch.schema();
        if role == TableRole::Real && self.columns.is_empty() {
            self.columns = schema
                .fields()
                .iter()
                .filter_map(|f| shape_of(f).map(|s| (f.name().clone(), s)))
                .collect();
            self.data = self.columns.iter().map(|_| Column::default()).collect();
        }
        let side = match role {
            TableRole::Real => 0,
            TableRole::Synthetic => 1,
            TableRole::Holdout => return Ok(()),
        };
        // Which rows are kept, decided once for every column of the batch.
        let plan = self.reservoirs[side].plan(batch.num_rows());
        for ((name, shape), col) in self.columns.iter().zip(&mut self.data) {
            let Ok(index) = schema.index_of(name) else {
                return Err(StageError::InvalidInput(format!("a batch has no column `{name}`")));
            };
            let array = batch.column(index);
            match shape {
                Shape::Continuous => {
                    let Some(values) = values::numbers_or_nan(array.as_ref()) else {
                        return Err(StageError::UnsupportedSchema(format!(
                            "column `{name}` is {} but marked numerical",
                            array.data_type()
                        )));
                    };
                    let target = &mut col.numbers[side];
                    let value = |row: usize| values[row];
                    match &plan {
                        None => {
                            metrics::reserve_quarter(target, values.len());
                            target.extend_from_slice(&values);
                        }
                        Some(plan) => {
                            for (row, slot) in plan {
                                match slot {
                                    Slot::Append => target.push(value(*row)),
                                    Slot::Replace(i) => target[*i] = value(*row),
                                }
                            }
                        }
                    }
                }
                Shape::Discrete => {
                    // Text, the common case, read straight from the array:
                    // the generic accessor re-checks the type for every cell.
                    let text = array.as_string_opt::<i32>();
                    let cell = |row: usize| match text {
                        Some(t) if t.is_null(row) => None,
                        Some(t) => Some(std::borrow::Cow::Borrowed(t.value(row))),
                        None => values::text(array.as_ref(), row),
                    };
                    let code = |dictionary: &mut Dictionary, row: usize| dictionary.code(cell(row).as_deref());
                    let (dictionary, target) = (&mut col.dictionary, &mut col.codes[side]);
                    match &plan {
                        None => match text {
                            Some(text) => dictionary.code_text(text, target),
                            None => target.extend_with(array.len(), |row| code(dictionary, row)),
                        },
                        Some(plan) => {
                            for (row, slot) in plan {
                                let c = code(dictionary, *row);
                                match slot {
                                    Slot::Append => target.push(c),
                                    Slot::Replace(i) => target.set(*i, c),
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<MetricValue>, StageError> {
        // Every column as renumbered discrete codes, once for all its pairs:
        // categories as they are (their codes freed as the new ones are
        // made), continuous columns cut into bins (each table with its own
        // edges).
        let local: Vec<metrics::LocalCodes> = self
            .columns
            .iter()
            .zip(&mut self.data)
            .map(|((_, shape), col)| match shape {
                Shape::Discrete => {
                    let [real, synthetic] = std::mem::take(&mut col.codes);
                    metrics::renumber_codes(real, synthetic, 0)
                }
                Shape::Continuous => metrics::renumber(
                    &metrics::discretize(&col.numbers[0]),
                    &metrics::discretize(&col.numbers[1]),
                    u8::MAX,
                ),
            })
            .collect();
        let mut out = Vec::new();
        let mut shape_scores = Vec::new();
        let [real_rows, synthetic_rows] = &self.reservoirs;
        for (((name, shape), col), codes) in self.columns.iter().zip(&self.data).zip(&local) {
            let (metric, score, error) = match shape {
                Shape::Continuous => (
                    "KSComplement",
                    metrics::ks_complement(&col.numbers[0], &col.numbers[1]),
                    sample_error(real_rows, None) + sample_error(synthetic_rows, None),
                ),
                Shape::Discrete => (
                    "TVComplement",
                    metrics::tv_complement_local(codes),
                    sample_error(real_rows, Some(codes.k)) + sample_error(synthetic_rows, Some(codes.k)),
                ),
            };
            if !score.is_nan() {
                shape_scores.push(score);
            }
            let mut v = MetricValue::new(metric, &[name], score);
            if error > 0.0 {
                v = v.extra("sample_error", error);
            }
            out.push(v);
        }
        // Each continuous column read once for all its correlations.
        let series: Vec<Option<[metrics::Series<'_>; 2]>> = self
            .columns
            .iter()
            .zip(&self.data)
            .map(|((_, shape), col)| {
                (*shape == Shape::Continuous).then(|| {
                    [
                        metrics::Series::new(&col.numbers[0]),
                        metrics::Series::new(&col.numbers[1]),
                    ]
                })
            })
            .collect();
        // Every pair but two continuous columns is a contingency table:
        // counted together, so that columns of few categories share passes.
        let n = self.columns.len();
        let discrete: Vec<(usize, usize)> = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .filter(|&(i, j)| series[i].is_none() || series[j].is_none())
            .collect();
        let mut contingency = discrete.iter().zip(metrics::contingency_similarities(
            &local,
            &discrete,
            self.association_threshold,
        ));
        let mut pair_scores = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                let ((a, _), (b, _)) = (&self.columns[i], &self.columns[j]);
                let (metric, r): (&str, PairScore) = if let (Some(x), Some(y)) = (&series[i], &series[j]) {
                    (
                        "CorrelationSimilarity",
                        metrics::correlation_similarity_series(
                            (&x[0], &y[0]),
                            (&x[1], &y[1]),
                            self.correlation_threshold,
                        ),
                    )
                } else {
                    let (pair, score) = contingency.next().expect("one score per discrete pair, in order");
                    debug_assert_eq!(*pair, (i, j));
                    ("ContingencySimilarity", score)
                };
                if r.meets_threshold && !r.score.is_nan() {
                    pair_scores.push(r.score);
                }
                let mut v = MetricValue::new(metric, &[a, b], r.score)
                    .extra("meets_threshold", if r.meets_threshold { 1.0 } else { 0.0 });
                if metric == "CorrelationSimilarity" {
                    v = v
                        .extra("real_correlation", r.real_correlation)
                        .extra("synthetic_correlation", r.synthetic_correlation);
                } else {
                    v = v
                        .extra("real_association", r.real_association)
                        .extra("synthetic_association", r.synthetic_association);
                }
                if let Some(note) = r.note {
                    v = v.note(note);
                } else if !r.meets_threshold {
                    v = v.note("no real trend: excluded from Column Pair Trends");
                }
                out.push(v);
            }
        }
        let mean = |xs: &[f64]| {
            #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
            if xs.is_empty() {
                f64::NAN
            } else {
                xs.iter().sum::<f64>() / xs.len() as f64
            }
        };
        let shapes = mean(&shape_scores);
        let trends = mean(&pair_scores);
        let properties: Vec<f64> = [shapes, trends].into_iter().filter(|v| !v.is_nan()).collect();
        let overall = mean(&properties);
        log(
            LogLevel::Debug,
            &format!("{} columns, {} pairs counted", shape_scores.len(), pair_scores.len()),
        );
        let mut score = MetricValue::new("Quality Score", &[], overall);
        if real_rows.sampled() || synthetic_rows.sampled() {
            // A sample is said next to the number it made, with how far
            // each column's score may be from the whole tables'.
            #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
            let rows = |r: &Reservoir| (r.kept() as f64, r.seen as f64);
            let ((rk, rn), (sk, sn)) = (rows(real_rows), rows(synthetic_rows));
            score = score
                .extra("real_rows", rn)
                .extra("real_rows_scored", rk)
                .extra("synthetic_rows", sn)
                .extra("synthetic_rows_scored", sk)
                .note(format!(
                    "scored on a uniform sample (seeded) of {rk} of {rn} real and {sk} of {sn} synthetic rows \
                     (max_rows); each column's sample_error bounds how far its score may be from the whole \
                     tables' (95 % confidence)"
                ));
        }
        let mut head = vec![
            score,
            MetricValue::new("Column Shapes", &[], shapes),
            MetricValue::new("Column Pair Trends", &[], trends)
                .extra("pairs_counted", pair_scores.len() as f64)
                .extra("correlation_threshold", self.correlation_threshold)
                .extra("association_threshold", self.association_threshold),
        ];
        head.append(&mut out);
        Ok(head)
    }
}

export_metric!(Quality);

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_sdk::arrow_array::{ArrayRef, Float64Array, StringArray};
    use std::sync::Arc;

    /// `rows` rows in batches of 1,000: a long-tailed number and a category
    /// of 40 values, both drawn from an LCG seeded with `seed`.
    fn table(rows: usize, seed: u64, shift: f64) -> Vec<RecordBatch> {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            #[allow(clippy::cast_precision_loss, reason = "53 random bits")]
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            u
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("amount", DataType::Float64, true),
            Field::new("kind", DataType::Utf8, true),
        ]));
        (0..rows.div_ceil(1_000))
            .map(|b| {
                let n = 1_000.min(rows - b * 1_000);
                let (mut x, mut c) = (Vec::new(), Vec::new());
                for _ in 0..n {
                    let u = next();
                    x.push((-u.max(1e-12).ln()) * 100.0 + shift);
                    // Kinds correlate with the amount, so the pair has a trend.
                    #[allow(clippy::cast_possible_truncation, reason = "at most 39")]
                    let k = ((u * 30.0) as u32 + (next() * 10.0) as u32).min(39);
                    c.push((k != 7).then(|| format!("k{k}")));
                }
                let columns: Vec<ArrayRef> = vec![Arc::new(Float64Array::from(x)), Arc::new(StringArray::from(c))];
                RecordBatch::try_new(Arc::clone(&schema), columns).unwrap()
            })
            .collect()
    }

    fn score(max_rows: Option<i64>, real: &[RecordBatch], synthetic: &[RecordBatch]) -> Vec<MetricValue> {
        let mut config = Config::new();
        if let Some(m) = max_rows {
            config = config.with("max_rows", ConfigValue::Integer(m));
        }
        let mut q = Quality::create(&config).unwrap();
        for b in real {
            q.update(TableRole::Real, b).unwrap();
        }
        for b in synthetic {
            q.update(TableRole::Synthetic, b).unwrap();
        }
        q.finish().unwrap()
    }

    fn find<'a>(values: &'a [MetricValue], name: &str) -> &'a MetricValue {
        values.iter().find(|v| v.name == name).unwrap()
    }

    fn extra(v: &MetricValue, name: &str) -> Option<f64> {
        v.extra.iter().find(|(k, _)| k == name).map(|(_, x)| *x)
    }

    #[test]
    fn a_sample_past_max_rows_is_stated_and_within_its_error_of_the_whole() {
        let (real, synthetic) = (table(20_000, 1, 0.0), table(20_000, 2, 15.0));
        let whole = score(None, &real, &synthetic);
        let sampled = score(Some(2_000), &real, &synthetic);
        // The whole tables: no note, no error.
        let head = find(&whole, "Quality Score");
        assert!(head.note.is_none() && extra(head, "real_rows").is_none());
        assert!(extra(find(&whole, "KSComplement"), "sample_error").is_none());
        // The sample says what it is.
        let head = find(&sampled, "Quality Score");
        assert!(head.note.as_deref().unwrap().contains("2000 of 20000 real"));
        assert_eq!(extra(head, "real_rows"), Some(20_000.0));
        assert_eq!(extra(head, "real_rows_scored"), Some(2_000.0));
        // Each column's sampled score lies within its stated error of the
        // whole tables' score.
        for name in ["KSComplement", "TVComplement"] {
            let (w, s) = (find(&whole, name), find(&sampled, name));
            let error = extra(s, "sample_error").unwrap();
            assert!(error > 0.0 && error < 0.2, "{name}: {error}");
            assert!(
                (w.value - s.value).abs() <= error,
                "{name}: {} vs {} ± {error}",
                w.value,
                s.value
            );
        }
        // The same seed draws the same sample.
        assert_eq!(
            format!("{sampled:?}"),
            format!("{:?}", score(Some(2_000), &real, &synthetic))
        );
    }

    #[test]
    fn identical_tables_score_one_and_widths_do_not_change_scores() {
        let real = table(5_000, 3, 0.0);
        let values = score(None, &real, &real);
        assert_eq!(find(&values, "KSComplement").value, 1.0);
        assert_eq!(find(&values, "TVComplement").value, 1.0);
        // A cap above the row count changes nothing.
        assert_eq!(format!("{values:?}"), format!("{:?}", score(Some(5_000), &real, &real)));
    }

    #[test]
    fn the_dictionary_tells_every_text_apart_and_numbers_as_first_seen() {
        // Texts of every length up to 40 that share heads, tails and zero
        // bytes: the packed keys must still tell them apart.
        let mut texts: Vec<String> = Vec::new();
        for len in 0..=40 {
            texts.push("a".repeat(len));
            texts.push(format!("{}b", "a".repeat(len)));
            texts.push(format!("b{}", "a".repeat(len)));
            texts.push(format!("{}\0", "a".repeat(len)));
        }
        texts.push("Married-civ-spouse".into());
        texts.push("Married-AF-spouse".into());
        texts.dedup();
        let mut d = Dictionary::default();
        let first: Vec<u32> = texts.iter().map(|t| d.code(Some(t))).collect();
        let want: Vec<u32> = (1..=u32::try_from(texts.len()).unwrap()).collect();
        assert_eq!(first, want, "numbered 1, 2, … as first seen");
        // Each twice in a row (found in the recent texts), then again in
        // another order: the same codes.
        for (t, c) in texts.iter().zip(&first) {
            assert_eq!((d.code(Some(t)), d.code(Some(t))), (*c, *c), "{t:?}");
        }
        for (t, c) in texts.iter().zip(&first).rev() {
            assert_eq!(d.code(Some(t)), *c, "{t:?}");
        }
        assert_eq!(d.code(None), 0);
    }

    #[test]
    fn text_arrays_are_coded_as_cell_by_cell_with_nulls_widening_and_slices() {
        // 300 categories of lengths 0–40 (past a byte's 255 codes: the
        // column widens mid-batch), every seventh cell null, and a slice
        // that starts mid-array (offsets and null bits not at 0).
        let cells: Vec<Option<String>> = (0..2_000usize)
            .map(|i| (i % 7 != 3).then(|| format!("{}{}", "x".repeat(i % 41), (i * 7919) % 300)))
            .collect();
        let array = StringArray::from(cells.clone());
        for (offset, len) in [(0, cells.len()), (13, 700), (1_000, 1_000)] {
            let slice = array.slice(offset, len);
            let (mut fast, mut slow) = (Dictionary::default(), Dictionary::default());
            let mut got = Codes::default();
            // Two batches into one column, as the stream delivers them.
            fast.code_text(&slice.slice(0, len / 2), &mut got);
            fast.code_text(&slice.slice(len / 2, len - len / 2), &mut got);
            let want = Codes::collect(
                u32::MAX,
                cells[offset..offset + len].iter().map(|c| slow.code(c.as_deref())),
            );
            let widen = |c: &Codes| (0..c.len()).map(|i| c.get(i)).collect::<Vec<_>>();
            assert_eq!(widen(&got), widen(&want), "slice at {offset}");
        }
    }

    #[test]
    fn max_rows_below_the_floor_is_refused() {
        let err = Quality::create(&Config::new().with("max_rows", ConfigValue::Integer(10))).unwrap_err();
        assert!(format!("{err:?}").contains("max_rows"));
    }
}
