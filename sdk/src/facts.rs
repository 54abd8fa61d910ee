//! Lookups over the [`Facts`] a rule receives.

use crate::{ColumnFact, ColumnFinding, ConfigValue, Facts, MetricValue, TableFacts};

impl Facts {
    /// The table facts of stage `stage`.
    pub fn table(&self, stage: &str) -> Option<&TableFacts> {
        self.tables.iter().find(|t| t.stage == stage)
    }

    /// The column verdicts of detector stage `stage`.
    pub fn findings_of(&self, stage: &str) -> Option<&[ColumnFinding]> {
        self.findings
            .iter()
            .find(|(s, _)| s == stage)
            .map(|(_, f)| f.as_slice())
    }

    /// The scores of metric stage `stage`.
    pub fn metrics_of(&self, stage: &str) -> Option<&[MetricValue]> {
        self.metrics.iter().find(|(s, _)| s == stage).map(|(_, m)| m.as_slice())
    }

    /// A score of stage `stage` by name, for `column` (`None`: table-level).
    pub fn metric(&self, stage: &str, name: &str, column: Option<&str>) -> Option<&MetricValue> {
        self.metrics_of(stage)?.iter().find(|m| {
            m.name == name
                && match column {
                    None => m.columns.is_empty(),
                    Some(c) => m.columns.len() == 1 && m.columns[0] == c,
                }
        })
    }

    /// The share of a column's released values that are real values, from a
    /// privacy stage's `PIICopyRate` (`None`: not measured).
    pub fn copy_rate(&self, privacy_stage: &str, column: &str) -> Option<f64> {
        // `PIICopyRate` (columns a detector flagged in the real table) and
        // `RareValueCopyRate` (every text column, flagged or not): the worse.
        self.metrics_of(privacy_stage)?
            .iter()
            .filter(|m| {
                (m.name == "PIICopyRate" || m.name == "RareValueCopyRate")
                    && m.columns.len() == 1
                    && m.columns[0] == column
            })
            .map(|m| m.value)
            .reduce(f64::max)
    }

    /// Columns whose released values include rare real values (the privacy
    /// stage's `RareValueCopyRate` above zero), with that rate.
    pub fn rare_copies(&self, privacy_stage: &str) -> Vec<(String, f64)> {
        self.metrics_of(privacy_stage)
            .unwrap_or_default()
            .iter()
            .filter(|m| m.name == "RareValueCopyRate" && m.value > 0.0 && m.columns.len() == 1)
            .map(|m| (m.columns[0].clone(), m.value))
            .collect()
    }

    /// A pipeline attribute.
    pub fn attribute(&self, key: &str) -> Option<&ConfigValue> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A pipeline attribute as text (strings, numbers and booleans).
    pub fn attribute_text(&self, key: &str) -> Option<String> {
        Some(match self.attribute(key)? {
            ConfigValue::String(s) => s.clone(),
            ConfigValue::Integer(i) => i.to_string(),
            ConfigValue::Float(f) => f.to_string(),
            ConfigValue::Boolean(b) => b.to_string(),
            ConfigValue::Strings(s) => s.join(", "),
        })
    }
}

impl TableFacts {
    /// A column's facts by name.
    pub fn column(&self, name: &str) -> Option<&ColumnFact> {
        self.columns.iter().find(|c| c.name == name)
    }
}
