//! `doppel/gdpr`: GDPR checks on a synthetic release.
//!
//! - **Identifiability** (Art. 4(1), Recital 26): is the release anonymous —
//!   no real identifier copied, few exact or near copies, records not closer to
//!   real people than chance — judged from the privacy stage's metrics.
//! - **Special categories** (Art. 9(1)): columns on racial or ethnic origin,
//!   political opinions, religion, union membership, genetics, biometrics,
//!   health, sex life or sexual orientation need an Art. 9(2) condition (the
//!   `art9_condition` attribute).
//! - **Minimisation** (Art. 5(1)(c)): direct identifiers left in the release.
//! - **Purpose limitation** (Art. 5(1)(b)) and **storage limitation**
//!   (Art. 5(1)(e)): the `purpose` and `retention_days` attributes.
//! - **Data protection impact assessment** (Art. 35): recommended for high risk
//!   or special categories.
//!
//! `with`: `released`, `released_findings`, `source`, `privacy` (stage ids).

use doppel_sdk::vocab::entity;
use doppel_sdk::*;

const SPECIAL: &[(&str, &[&str])] = &[
    (
        "racial or ethnic origin",
        &["race", "ethnicity", "ethnic", "nationality"],
    ),
    ("political opinions", &["political", "party", "vote"]),
    (
        "religious or philosophical beliefs",
        &["religion", "religious", "faith", "belief"],
    ),
    ("trade union membership", &["union"]),
    ("genetic data", &["genetic", "genome", "dna", "gene"]),
    ("biometric data", &["biometric", "fingerprint", "retina", "faceprint"]),
    (
        "health",
        &[
            "health",
            "diagnosis",
            "disease",
            "disability",
            "medical",
            "condition",
            "icd",
            "hiv",
            "pregnancy",
            "medication",
        ],
    ),
    ("sex life or sexual orientation", &["sexual", "orientation", "sex_life"]),
];

const DIRECT: &[&str] = &[
    entity::PERSON,
    entity::EMAIL_ADDRESS,
    entity::PHONE_NUMBER,
    entity::US_SSN,
    entity::CREDIT_CARD,
    entity::IBAN_CODE,
    entity::IP_ADDRESS,
    entity::MAC_ADDRESS,
    entity::US_PASSPORT,
    entity::US_DRIVER_LICENSE,
    entity::UK_NHS,
    entity::UK_NINO,
    entity::CRYPTO,
    entity::MEDICAL_LICENSE,
];

/// The GDPR rule plugin.
#[derive(Debug)]
pub struct Gdpr {
    released: String,
    released_findings: String,
    source: String,
    privacy: String,
}

impl Plugin for Gdpr {
    fn info() -> PluginInfo {
        PluginInfo::new("doppel/gdpr", "0.1.0", StageKind::Rule)
            .summary("GDPR identifiability, special categories, minimisation, purpose, storage limits, DPIA.")
            .field(
                ConfigField::string("released", "Stage whose table is released.")
                    .default(ConfigValue::String("synth".into())),
            )
            .field(
                ConfigField::string("released_findings", "Detector stage that scanned the released table.")
                    .default(ConfigValue::String("pii_output".into())),
            )
            .field(
                ConfigField::string("source", "Stage of the real table.").default(ConfigValue::String("source".into())),
            )
            .field(
                ConfigField::string("privacy", "Privacy metric stage.").default(ConfigValue::String("privacy".into())),
            )
    }
}

fn verdict(rule_id: &str, title: &str, reference: &str, severity: Severity) -> Verdict {
    Verdict {
        rule_id: rule_id.into(),
        title: title.into(),
        reference: reference.into(),
        status: VerdictStatus::Pass,
        severity,
        evidence: String::new(),
        remediation: String::new(),
        columns: vec![],
    }
}

impl Gdpr {
    fn identifiability(&self, facts: &Facts) -> Verdict {
        let mut v = verdict(
            "GDPR-ANON",
            "Anonymous data: no person reasonably identifiable",
            "GDPR Art. 4(1), Recital 26",
            Severity::Critical,
        );
        let Some(score) = facts.metric(&self.privacy, "Privacy Score", None) else {
            v.status = VerdictStatus::Fail;
            v.evidence = format!("no privacy metrics (stage `{}`): anonymity is not shown", self.privacy);
            v.remediation = "add a builtin:privacy stage comparing the real and released tables".into();
            return v;
        };
        let get = |name: &str| {
            facts
                .metric(&self.privacy, name, None)
                .map(|m| m.value)
                .filter(|x| !x.is_nan())
        };
        let copies: Vec<String> = facts
            .metrics_of(&self.privacy)
            .unwrap_or_default()
            .iter()
            .filter(|m| {
                (m.name == "PIICopyRate" && !m.note.as_deref().unwrap_or("").contains("not scored")
                    || m.name == "RareValueCopyRate")
                    && m.value > 0.0
            })
            .map(|m| format!("`{}` {:.1}%", m.columns.join(","), m.value * 100.0))
            .collect();
        let exact = get("ExactCopyRate").unwrap_or(0.0);
        let mut evidence = vec![format!(
            "privacy score {:.1} ({})",
            score.value,
            score.note.as_deref().unwrap_or("")
        )];
        if let Some(b) = get("DCRBaselineProtection") {
            evidence.push(format!("DCR baseline protection {b:.3}"));
        }
        if let Some(o) = get("DCROverfittingProtection") {
            evidence.push(format!("DCR overfitting protection {o:.3}"));
        }
        if let Some(h) = get("DCRHoldoutProtection") {
            evidence.push(format!("DCR holdout protection {h:.3}"));
        }
        evidence.push(format!("exact copies {:.2}%", exact * 100.0));
        if !copies.is_empty() {
            evidence.push(format!(
                "real identifiers or rare values released: {}",
                copies.join(", ")
            ));
        }
        v.evidence = evidence.join("; ");
        if !copies.is_empty() || score.value < 40.0 {
            v.status = VerdictStatus::Fail;
            v.remediation =
                "replace identifiers before synthesis (builtin:protect) and lower the re-identification risk".into();
        } else if score.value < 80.0 || exact > 0.01 {
            // Recital 26 asks whether identification is "reasonably likely";
            // only a low measured risk supports calling the release anonymous.
            v.status = VerdictStatus::Warn;
            v.severity = Severity::High;
            v.remediation = "treat the release as personal data until the risk is low (privacy score ≥ 80, < 1% exact copies): fewer quasi-identifiers, coarser values, or a DP generator".into();
        }
        v
    }

    fn special_categories(&self, facts: &Facts) -> Verdict {
        let mut v = verdict(
            "GDPR-ART9",
            "Special categories of personal data",
            "GDPR Art. 9(1)",
            Severity::High,
        );
        let mut found = Vec::new();
        for table in facts.tables.iter() {
            for col in &table.columns {
                let category = SPECIAL.iter().find(|(_, words)| names::mentions(&col.name, words));
                if let Some((category, _)) = category
                    && !v.columns.contains(&col.name)
                {
                    v.columns.push(col.name.clone());
                    found.push(format!("`{}` ({category})", col.name));
                }
            }
        }
        if found.is_empty() {
            v.evidence = "no column names a special category".into();
            return v;
        }
        match facts.attribute_text("art9_condition") {
            Some(condition) => {
                v.evidence = format!(
                    "special categories: {}; Art. 9(2) condition declared: {condition}",
                    found.join(", ")
                );
            }
            None => {
                v.status = VerdictStatus::Warn;
                v.evidence = format!("special categories: {}", found.join(", "));
                v.remediation =
                    "declare the Art. 9(2) condition relied on (attribute `art9_condition`), or drop these columns"
                        .into();
            }
        }
        v
    }

    fn minimisation(&self, facts: &Facts) -> Verdict {
        let mut v = verdict(
            "GDPR-ART5-1C",
            "Data minimisation",
            "GDPR Art. 5(1)(c)",
            Severity::Medium,
        );
        let Some(findings) = facts.findings_of(&self.released_findings) else {
            v.status = VerdictStatus::Warn;
            v.evidence = format!(
                "no detector findings about the released table (stage `{}`)",
                self.released_findings
            );
            v.remediation = format!(
                "scan the released table with a detector stage named `{}`",
                self.released_findings
            );
            return v;
        };
        let direct: Vec<&ColumnFinding> = findings
            .iter()
            .filter(|f| DIRECT.contains(&f.entity.as_str()))
            .collect();
        if direct.is_empty() {
            v.evidence = "no direct identifiers in the released table".into();
            return v;
        }
        v.columns = direct.iter().map(|f| f.column.clone()).collect();
        v.status = VerdictStatus::Warn;
        let purpose = facts.attribute_text("purpose").unwrap_or_else(|| "undeclared".into());
        v.evidence = format!(
            "identifier-shaped columns are released (synthetic values): {} — purpose: {purpose}",
            direct
                .iter()
                .map(|f| format!("`{}` ({})", f.column, f.entity))
                .collect::<Vec<_>>()
                .join(", ")
        );
        v.remediation = "drop the columns the purpose does not need (builtin:protect with `drop`)".into();
        v
    }

    fn attribute_rule(&self, facts: &Facts, key: &str, rule: (&str, &str, &str), missing: &str) -> Verdict {
        let mut v = verdict(rule.0, rule.1, rule.2, Severity::Medium);
        match facts.attribute_text(key) {
            Some(value) => v.evidence = format!("`{key}` = {value}"),
            None => {
                v.status = VerdictStatus::Warn;
                v.evidence = format!("no `{key}` attribute in the pipeline");
                v.remediation = missing.into();
            }
        }
        v
    }

    fn dpia(&self, facts: &Facts, special: bool) -> Verdict {
        let mut v = verdict(
            "GDPR-ART35",
            "Data protection impact assessment",
            "GDPR Art. 35",
            Severity::Medium,
        );
        let risk = facts.metric(&self.privacy, "Privacy Score", None).map(|s| s.value);
        let high = risk.is_none_or(|s| s < 60.0);
        if special || high {
            v.status = VerdictStatus::Warn;
            v.evidence = format!(
                "{}{}",
                if special {
                    "special categories are processed; "
                } else {
                    ""
                },
                risk.map_or("re-identification risk not measured".into(), |s| format!(
                    "privacy score {s:.1}"
                ))
            );
            v.remediation = match facts.attribute_text("dpia") {
                Some(d) => format!("DPIA on record: {d}"),
                None => "carry out a DPIA before processing and record it (attribute `dpia`)".into(),
            };
            if facts.attribute("dpia").is_some() {
                v.status = VerdictStatus::Pass;
            }
        } else {
            v.evidence = "no special categories and low or medium re-identification risk".into();
        }
        v
    }
}

impl Rule for Gdpr {
    fn create(config: &Config) -> Result<Self, StageError> {
        let get = |k: &str, d: &str| -> Result<String, StageError> { Ok(config.string(k)?.unwrap_or(d).to_owned()) };
        Ok(Gdpr {
            released: get("released", "synth")?,
            released_findings: get("released_findings", "pii_output")?,
            source: get("source", "source")?,
            privacy: get("privacy", "privacy")?,
        })
    }

    fn evaluate(&mut self, facts: &Facts) -> Result<Vec<Verdict>, StageError> {
        if facts.table(&self.released).is_none() && facts.table(&self.source).is_none() {
            log(
                LogLevel::Warn,
                "no table facts: give the rule the released or the source table as an input",
            );
        }
        let special = self.special_categories(facts);
        let has_special = !special.columns.is_empty();
        Ok(vec![
            self.identifiability(facts),
            special,
            self.minimisation(facts),
            self.attribute_rule(
                facts,
                "purpose",
                ("GDPR-ART5-1B", "Purpose limitation", "GDPR Art. 5(1)(b)"),
                "declare the purpose in the pipeline's [attributes] (`purpose = \"...\"`)",
            ),
            self.attribute_rule(
                facts,
                "retention_days",
                ("GDPR-ART5-1E", "Storage limitation", "GDPR Art. 5(1)(e)"),
                "declare how long the data is kept (`retention_days = 365`)",
            ),
            self.dpia(facts, has_special),
        ])
    }
}

export_rule!(Gdpr);

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(score: f64, attributes: Vec<(String, ConfigValue)>) -> Facts {
        Facts {
            tables: vec![TableFacts {
                stage: "synth".into(),
                rows: 10,
                columns: vec![ColumnFact {
                    name: "race".into(),
                    data_type: "Utf8".into(),
                    semantic_type: "categorical".into(),
                    null_share: 0.0,
                    distinct: 5,
                    min: None,
                    max: None,
                }],
            }],
            findings: vec![(
                "pii_output".into(),
                vec![ColumnFinding::new("email", entity::EMAIL_ADDRESS, 0.9)],
            )],
            metrics: vec![(
                "privacy".into(),
                vec![MetricValue::new("Privacy Score", &[], score).note("medium risk")],
            )],
            attributes,
        }
    }

    #[test]
    fn rules_follow_the_facts() {
        let mut rule = Gdpr::create(&Config::new()).unwrap();
        let v = rule.evaluate(&facts(85.0, vec![])).unwrap();
        let by = |id: &str| v.iter().find(|x| x.rule_id == id).unwrap();
        assert_eq!(by("GDPR-ANON").status, VerdictStatus::Pass);
        let medium = rule.evaluate(&facts(65.0, vec![])).unwrap();
        assert_eq!(medium[0].status, VerdictStatus::Warn, "medium risk is not anonymous");
        assert_eq!(by("GDPR-ART9").status, VerdictStatus::Warn);
        assert!(by("GDPR-ART9").evidence.contains("racial or ethnic origin"));
        assert_eq!(by("GDPR-ART5-1C").status, VerdictStatus::Warn);
        assert_eq!(by("GDPR-ART5-1B").status, VerdictStatus::Warn);
        assert_eq!(by("GDPR-ART35").status, VerdictStatus::Warn);
        let attrs = vec![
            ("purpose".to_owned(), ConfigValue::String("model training".into())),
            (
                "art9_condition".to_owned(),
                ConfigValue::String("Art. 9(2)(j) research".into()),
            ),
            ("dpia".to_owned(), ConfigValue::String("DPIA-2026-04".into())),
        ];
        let v = rule.evaluate(&facts(30.0, attrs)).unwrap();
        let by = |id: &str| v.iter().find(|x| x.rule_id == id).unwrap();
        assert_eq!(by("GDPR-ANON").status, VerdictStatus::Fail);
        assert_eq!(by("GDPR-ART9").status, VerdictStatus::Pass);
        assert_eq!(by("GDPR-ART5-1B").status, VerdictStatus::Pass);
        assert_eq!(by("GDPR-ART35").status, VerdictStatus::Pass);
    }
}
