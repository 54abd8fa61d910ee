//! `{{id}}`: flags columns of ACME member numbers — `ACM-`, six digits and a
//! check digit (the digit sum mod 10) — an identifier no generic PII detector
//! knows. Replace the rules below with your own; the shape stays the same.
//!
//! ```text
//! cargo test                                            # natively, no WASM
//! doppel plugin build                                   # dist/plugin.toml + .wasm
//! doppel plugin test . --input testdata/sample.csv      # in the real sandbox
//! ```

use doppel_sdk::*;

/// What one text column has shown so far.
#[derive(Debug, Default)]
struct Tally {
    column: String,
    /// Non-empty values looked at.
    scanned: u64,
    /// Values that are valid member numbers.
    matched: u64,
}

/// The detector: one value per stage run, fed every batch of the table.
#[derive(Debug)]
pub struct {{type}} {
    prefix: String,
    min_share: f64,
    tallies: Vec<Tally>,
}

impl {{type}} {
    /// `ACM-` + 6 digits + a check digit equal to their digit sum mod 10.
    pub fn is_member_number(&self, value: &str) -> bool {
        let Some(digits) = value.trim().strip_prefix(self.prefix.as_str()) else {
            return false;
        };
        let bytes = digits.as_bytes();
        if bytes.len() != 7 || !bytes.iter().all(u8::is_ascii_digit) {
            return false;
        }
        let sum: u32 = bytes[..6].iter().map(|b| u32::from(b - b'0')).sum();
        u32::from(bytes[6] - b'0') == sum % 10
    }
}

impl Plugin for {{type}} {
    fn info() -> PluginInfo {
        PluginInfo::new("{{id}}", env!("CARGO_PKG_VERSION"), StageKind::Detector)
            .summary("Flags columns of member numbers (prefix, six digits, check digit).")
            // The host sends only text columns; numbers never hold these ids.
            .reads(&[ColumnType::Text])
            .field(
                ConfigField::string("prefix", "Start of every member number.")
                    .default(ConfigValue::String("ACM-".into())),
            )
            .field(
                ConfigField::float("min_share", "Share of a column's values that must be valid to flag it.")
                    .default(ConfigValue::Float(0.8))
                    .range(Some(0.0), Some(1.0)),
            )
    }
}

impl Detector for {{type}} {
    fn create(config: &Config) -> Result<Self, StageError> {
        // The host validated types and filled in defaults already.
        let prefix = config.string("prefix")?.unwrap_or("ACM-").to_owned();
        if prefix.is_empty() {
            return Err(StageError::InvalidConfig("`prefix` must not be empty".into()));
        }
        Ok({{type}} {
            prefix,
            min_share: config.float("min_share")?.unwrap_or(0.8),
            tallies: Vec::new(),
        })
    }

    fn scan(&mut self, batch: &RecordBatch, _row_offset: u64) -> Result<ScanOutcome, StageError> {
        let schema = batch.schema();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            let index = match self.tallies.iter().position(|t| &t.column == field.name()) {
                Some(i) => i,
                None => {
                    self.tallies.push(Tally { column: field.name().clone(), ..Tally::default() });
                    self.tallies.len() - 1
                }
            };
            let (mut scanned, mut matched) = (0, 0);
            for row in 0..column.len() {
                // `values::text` reads any string-like Arrow type as `&str`.
                if let Some(value) = values::text(column.as_ref(), row).filter(|v| !v.trim().is_empty()) {
                    scanned += 1;
                    matched += u64::from(self.is_member_number(&value));
                }
            }
            self.tallies[index].scanned += scanned;
            self.tallies[index].matched += matched;
        }
        // Column verdicts need every row here; a sampling detector could say
        // `needs_more: false` early and the host would stop sending batches.
        Ok(ScanOutcome { findings: Vec::new(), needs_more: true })
    }

    fn finish(&mut self) -> Result<Vec<ColumnFinding>, StageError> {
        let mut out = Vec::new();
        for t in &self.tallies {
            #[allow(clippy::cast_precision_loss, reason = "a share of row counts")]
            let share = if t.scanned == 0 { 0.0 } else { t.matched as f64 / t.scanned as f64 };
            let flagged = t.scanned > 0 && share >= self.min_share;
            #[allow(clippy::cast_possible_truncation, reason = "a confidence in [0, 1]")]
            let mut finding = if flagged {
                ColumnFinding::new(&t.column, "MEMBER_ID", share as f32)
            } else {
                // Every column gets a verdict; NONE says "looked, found nothing".
                ColumnFinding::new(&t.column, "NONE", 1.0 - share as f32)
            };
            finding.scanned = t.scanned;
            finding.matched = t.matched;
            out.push(finding);
        }
        Ok(out)
    }
}

export_detector!({{type}});

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use doppel_sdk::arrow_array::{ArrayRef, StringArray};

    use super::*;

    fn batch(columns: &[(&str, Vec<Option<&str>>)]) -> RecordBatch {
        let arrays: Vec<(&str, ArrayRef)> = columns
            .iter()
            .map(|(name, values)| (*name, Arc::new(StringArray::from(values.clone())) as ArrayRef))
            .collect();
        RecordBatch::try_from_iter(arrays).unwrap()
    }

    #[test]
    fn check_digits_decide() {
        let d = {{type}}::create(&Config::new()).unwrap();
        assert!(d.is_member_number("ACM-2495235"));
        assert!(!d.is_member_number("ACM-2495236"), "wrong check digit");
        assert!(!d.is_member_number("ACM-249523"), "too short");
        assert!(!d.is_member_number("XYZ-2495235"), "other prefix");
    }

    #[test]
    fn flags_member_columns_only() {
        let mut d = {{type}}::create(&Config::new()).unwrap();
        let b = batch(&[
            ("member_id", vec![Some("ACM-2495235"), Some("ACM-6214294"), Some("ACM-5706659")]),
            ("referred_by", vec![None, Some("ACM-2495235"), Some("")]),
            ("plan", vec![Some("gold"), Some("silver"), Some("ACM-2495235")]),
        ]);
        d.scan(&b, 0).unwrap();
        let verdicts = d.finish().unwrap();
        let entity = |c: &str| verdicts.iter().find(|v| v.column == c).unwrap().entity.clone();
        assert_eq!(entity("member_id"), "MEMBER_ID");
        assert_eq!(entity("referred_by"), "MEMBER_ID", "empty cells do not count against it");
        assert_eq!(entity("plan"), "NONE", "one id in three labels is below min_share");
    }

    #[test]
    fn config_is_read() {
        let config = Config::new().with("prefix", ConfigValue::String("XYZ-".into()));
        let d = {{type}}::create(&config).unwrap();
        assert!(d.is_member_number("XYZ-2495235"));
        let empty = Config::new().with("prefix", ConfigValue::String(String::new()));
        assert!({{type}}::create(&empty).is_err());
    }
}
