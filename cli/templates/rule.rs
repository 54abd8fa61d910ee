//! `{{id}}`: a release gate — the synthetic table may ship only if the
//! privacy and quality scores clear your thresholds and no detector found
//! personal data in it. Replace the checks with your own; the shape stays.
//!
//! Rules read the facts other stages produced, by stage id: tables (columns,
//! types, null shares, ranges), detector findings, metric scores and the
//! pipeline's [attributes].
//!
//! ```text
//! cargo test                                            # natively, no WASM
//! doppel plugin build                                   # dist/plugin.toml + .wasm
//! doppel plugin test . --input testdata/sample.csv      # in the real sandbox
//! ```

use doppel_sdk::*;

/// The rule and its thresholds.
#[derive(Debug)]
pub struct {{type}} {
    privacy: String,
    quality: String,
    released_findings: String,
    min_privacy: f64,
    min_quality: f64,
}

fn verdict(rule_id: &str, title: &str) -> Verdict {
    Verdict {
        rule_id: rule_id.into(),
        title: title.into(),
        reference: "internal release policy".into(),
        status: VerdictStatus::NotApplicable,
        severity: Severity::High,
        evidence: String::new(),
        remediation: String::new(),
        columns: Vec::new(),
    }
}

impl {{type}} {
    fn threshold(&self, facts: &Facts, stage: &str, score: &str, minimum: f64, rule_id: &str) -> Verdict {
        let mut v = verdict(rule_id, &format!("{score} of at least {minimum}"));
        match facts.metric(stage, score, None) {
            None => {
                v.evidence = format!("no `{score}` from stage `{stage}`");
                v.remediation = format!("add a stage `{stage}` that computes it, or set this rule's stage ids");
            }
            Some(m) if m.value >= minimum => {
                v.status = VerdictStatus::Pass;
                v.evidence = format!("{score} = {:.3}", m.value);
            }
            Some(m) => {
                v.status = VerdictStatus::Fail;
                v.evidence = format!("{score} = {:.3}, below {minimum}", m.value);
                v.remediation = "tune the generator or protect more columns, then run again".into();
            }
        }
        v
    }
}

impl Plugin for {{type}} {
    fn info() -> PluginInfo {
        PluginInfo::new("{{id}}", env!("CARGO_PKG_VERSION"), StageKind::Rule)
            .summary("Release gate: privacy and quality thresholds, no personal data in the release.")
            .field(ConfigField::string("privacy", "Privacy stage id.").default(ConfigValue::String("privacy".into())))
            .field(ConfigField::string("quality", "Quality stage id.").default(ConfigValue::String("quality".into())))
            .field(
                ConfigField::string("released_findings", "Detector stage that scanned the released table.")
                    .default(ConfigValue::String("pii_output".into())),
            )
            .field(
                ConfigField::float("min_privacy", "Lowest privacy score (0-100) that may ship.")
                    .default(ConfigValue::Float(60.0))
                    .range(Some(0.0), Some(100.0)),
            )
            .field(
                ConfigField::float("min_quality", "Lowest quality score (0-1) that may ship.")
                    .default(ConfigValue::Float(0.8))
                    .range(Some(0.0), Some(1.0)),
            )
    }
}

impl Rule for {{type}} {
    fn create(config: &Config) -> Result<Self, StageError> {
        let text = |k: &str, d: &str| -> Result<String, StageError> { Ok(config.string(k)?.unwrap_or(d).to_owned()) };
        Ok({{type}} {
            privacy: text("privacy", "privacy")?,
            quality: text("quality", "quality")?,
            released_findings: text("released_findings", "pii_output")?,
            min_privacy: config.float("min_privacy")?.unwrap_or(60.0),
            min_quality: config.float("min_quality")?.unwrap_or(0.8),
        })
    }

    fn evaluate(&mut self, facts: &Facts) -> Result<Vec<Verdict>, StageError> {
        let privacy = self.threshold(facts, &self.privacy, "Privacy Score", self.min_privacy, "GATE-PRIVACY");
        let quality = self.threshold(facts, &self.quality, "Quality Score", self.min_quality, "GATE-QUALITY");
        let mut pii = verdict("GATE-PII", "No personal data in the release");
        if let Some(findings) = facts.findings_of(&self.released_findings) {
            let found: Vec<&ColumnFinding> = findings.iter().filter(|f| f.entity != "NONE").collect();
            pii.columns = found.iter().map(|f| f.column.clone()).collect();
            if found.is_empty() {
                pii.status = VerdictStatus::Pass;
                pii.evidence = format!("`{}` found nothing personal", self.released_findings);
            } else {
                pii.status = VerdictStatus::Warn;
                pii.evidence = found.iter().map(|f| format!("`{}` ({})", f.column, f.entity)).collect::<Vec<_>>().join(", ");
                pii.remediation = "confirm these are synthetic values (builtin:protect), or drop them".into();
            }
        } else {
            pii.evidence = format!("no findings from stage `{}`", self.released_findings);
        }
        Ok(vec![privacy, quality, pii])
    }
}

export_rule!({{type}});

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(privacy: f64, quality: f64) -> Facts {
        Facts {
            tables: Vec::new(),
            findings: vec![("pii_output".into(), vec![ColumnFinding::new("email", "EMAIL_ADDRESS", 0.9)])],
            metrics: vec![
                ("privacy".into(), vec![MetricValue::new("Privacy Score", &[], privacy)]),
                ("quality".into(), vec![MetricValue::new("Quality Score", &[], quality)]),
            ],
            attributes: Vec::new(),
        }
    }

    #[test]
    fn thresholds_decide() {
        let mut rule = {{type}}::create(&Config::new()).unwrap();
        let v = rule.evaluate(&facts(75.0, 0.9)).unwrap();
        assert_eq!(v[0].status, VerdictStatus::Pass);
        assert_eq!(v[1].status, VerdictStatus::Pass);
        assert_eq!(v[2].status, VerdictStatus::Warn);
        assert_eq!(v[2].columns, ["email"]);
        let v = rule.evaluate(&facts(35.0, 0.9)).unwrap();
        assert_eq!(v[0].status, VerdictStatus::Fail);
        let empty = Facts { tables: vec![], findings: vec![], metrics: vec![], attributes: vec![] };
        let v = rule.evaluate(&empty).unwrap();
        assert!(v.iter().all(|x| x.status == VerdictStatus::NotApplicable));
    }
}
