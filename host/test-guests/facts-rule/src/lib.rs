//! A well-behaved rule plugin, for the host's tests of the rule world: it
//! fails when any detector stage found a direct identifier, and reports the
//! tables and attributes it was given.

use doppel_sdk::*;

struct NoDirectIdentifiers {
    identifiers: Vec<String>,
}

impl Plugin for NoDirectIdentifiers {
    fn info() -> PluginInfo {
        PluginInfo::new("test/facts-rule", "0.1.0", StageKind::Rule)
            .summary("Fails when a detector found direct identifiers (test only).")
            .field(
                ConfigField::strings("identifiers", "Entities that identify a person on their own.").default(
                    ConfigValue::Strings(vec!["EMAIL_ADDRESS".into(), "US_SSN".into(), "PHONE_NUMBER".into()]),
                ),
            )
    }
}

impl Rule for NoDirectIdentifiers {
    fn create(config: &Config) -> Result<Self, StageError> {
        Ok(NoDirectIdentifiers {
            identifiers: config
                .strings("identifiers")?
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
        })
    }

    fn evaluate(&mut self, facts: &Facts) -> Result<Vec<Verdict>, StageError> {
        let mut columns = Vec::new();
        for (stage, findings) in &facts.findings {
            for f in findings {
                if self.identifiers.contains(&f.entity) {
                    columns.push(format!("{stage}.{}", f.column));
                }
            }
        }
        let tables: Vec<String> = facts.tables.iter().map(|t| format!("{}:{}", t.stage, t.rows)).collect();
        Ok(vec![Verdict {
            rule_id: "TEST-1".into(),
            title: "No direct identifiers".into(),
            reference: "test".into(),
            status: if columns.is_empty() {
                VerdictStatus::Pass
            } else {
                VerdictStatus::Fail
            },
            severity: Severity::High,
            evidence: format!(
                "identifiers: [{}]; tables: [{}]; attributes: {}",
                columns.join(", "),
                tables.join(", "),
                facts.attributes.len()
            ),
            remediation: "Replace or drop the flagged columns.".into(),
            columns,
        }])
    }
}

export_rule!(NoDirectIdentifiers);
