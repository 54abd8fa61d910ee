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
        self.metrics_of(privacy_stage)?
            .iter()
            .find(|m| m.name == "PIICopyRate" && m.columns.len() == 1 && m.columns[0] == column)
            .map(|m| m.value)
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
