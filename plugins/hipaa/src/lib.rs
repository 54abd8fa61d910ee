//! `doppel/hipaa`: HIPAA de-identification checks on a released table.
//!
//! **Safe Harbor** (45 CFR §164.514(b)(2)) lists 18 identifiers that must be
//! removed. Each becomes a verdict over the facts of the released table: the
//! entities a detector found in it, column names and types, value ranges
//! (ages over 89), and — where values are replaced rather than removed —
//! the privacy stage's `PIICopyRate` as evidence that none of them is a real
//! person's. **Expert determination** (§164.514(b)(1)) gets a verdict from the
//! privacy score.
//!
//! `with`: `released` (table stage), `released_findings` (detector that
//! scanned it), `privacy` (privacy metric stage).

use doppel_sdk::vocab::entity;
use doppel_sdk::*;

/// One Safe Harbor identifier.
struct Identifier {
    letter: char,
    title: &'static str,
    /// Entities a detector reports for it.
    entities: &'static [&'static str],
    /// Words in a column name that mark it.
    names: &'static [&'static str],
    severity: Severity,
}

const SAFE_HARBOR: &[Identifier] = &[
    Identifier {
        letter: 'A',
        title: "Names",
        entities: &[entity::PERSON],
        names: &[],
        severity: Severity::High,
    },
    Identifier {
        letter: 'B',
        title: "Geographic subdivisions smaller than a state",
        entities: &[entity::LOCATION],
        names: &[
            "zip", "zipcode", "postcode", "county", "street", "address", "city", "precinct",
        ],
        severity: Severity::Medium,
    },
    Identifier {
        letter: 'C',
        title: "Dates (except year) related to an individual; ages over 89",
        entities: &[entity::DATE_TIME],
        names: &[],
        severity: Severity::Medium,
    },
    Identifier {
        letter: 'D',
        title: "Telephone numbers",
        entities: &[entity::PHONE_NUMBER],
        names: &["phone", "telephone", "mobile"],
        severity: Severity::High,
    },
    Identifier {
        letter: 'E',
        title: "Fax numbers",
        entities: &[],
        names: &["fax"],
        severity: Severity::High,
    },
    Identifier {
        letter: 'F',
        title: "Electronic mail addresses",
        entities: &[entity::EMAIL_ADDRESS],
        names: &["email"],
        severity: Severity::High,
    },
    Identifier {
        letter: 'G',
        title: "Social security numbers",
        entities: &[entity::US_SSN],
        names: &["ssn"],
        severity: Severity::Critical,
    },
    Identifier {
        letter: 'H',
        title: "Medical record numbers",
        entities: &[],
        names: &["mrn", "medical_record", "chart"],
        severity: Severity::High,
    },
    Identifier {
        letter: 'I',
        title: "Health plan beneficiary numbers",
        entities: &[entity::UK_NHS],
        names: &["beneficiary", "member", "insurance", "policy", "nhs"],
        severity: Severity::High,
    },
    Identifier {
        letter: 'J',
        title: "Account numbers",
        entities: &[entity::IBAN_CODE, entity::CREDIT_CARD, entity::CRYPTO],
        names: &["account", "iban"],
        severity: Severity::High,
    },
    Identifier {
        letter: 'K',
        title: "Certificate/license numbers",
        entities: &[entity::US_DRIVER_LICENSE, entity::MEDICAL_LICENSE, entity::US_PASSPORT],
        names: &["license", "licence", "certificate", "passport"],
        severity: Severity::High,
    },
    Identifier {
        letter: 'L',
        title: "Vehicle identifiers and serial numbers, including license plates",
        entities: &[],
        names: &["vin", "plate", "vehicle"],
        severity: Severity::Medium,
    },
    Identifier {
        letter: 'M',
        title: "Device identifiers and serial numbers",
        entities: &[entity::MAC_ADDRESS],
        names: &["device", "serial", "imei", "udid"],
        severity: Severity::Medium,
    },
    Identifier {
        letter: 'N',
        title: "Web Universal Resource Locators (URLs)",
        entities: &[entity::URL],
        names: &["url", "website"],
        severity: Severity::Medium,
    },
    Identifier {
        letter: 'O',
        title: "Internet Protocol (IP) addresses",
        entities: &[entity::IP_ADDRESS],
        names: &["ip", "ip_address"],
        severity: Severity::Medium,
    },
    Identifier {
        letter: 'P',
        title: "Biometric identifiers, including finger and voice prints",
        entities: &[],
        names: &["fingerprint", "biometric", "voiceprint", "retina"],
        severity: Severity::High,
    },
    Identifier {
        letter: 'Q',
        title: "Full-face photographs and comparable images",
        entities: &[],
        names: &["photo", "image", "face", "portrait"],
        severity: Severity::High,
    },
    Identifier {
        letter: 'R',
        title: "Any other unique identifying number, characteristic, or code",
        entities: &[entity::UK_NINO, entity::ID_NUMBER],
        names: &[],
        severity: Severity::Low,
    },
];

/// The HIPAA rule plugin.
#[derive(Debug)]
pub struct Hipaa {
    released: String,
    released_findings: String,
    privacy: String,
}

impl Plugin for Hipaa {
    fn info() -> PluginInfo {
        PluginInfo::new("doppel/hipaa", "0.1.0", StageKind::Rule)
            .summary("HIPAA Safe Harbor's 18 identifiers and expert-determination evidence on a released table.")
            .field(
                ConfigField::string("released", "Stage whose table is released.")
                    .default(ConfigValue::String("synth".into())),
            )
            .field(
                ConfigField::string("released_findings", "Detector stage that scanned the released table.")
                    .default(ConfigValue::String("pii_output".into())),
            )
            .field(
                ConfigField::string("privacy", "Privacy metric stage.").default(ConfigValue::String("privacy".into())),
            )
    }
}

impl Hipaa {
    fn verdict(&self, id: &Identifier, facts: &Facts) -> Verdict {
        let reference = format!("45 CFR §164.514(b)(2)(i)({})", id.letter);
        let rule_id = format!("HIPAA-SH-{}", id.letter);
        let mut v = Verdict {
            rule_id,
            title: format!("Safe Harbor ({}): {}", id.letter, id.title),
            reference,
            status: VerdictStatus::Pass,
            severity: id.severity,
            evidence: String::new(),
            remediation: String::new(),
            columns: vec![],
        };
        let Some(table) = facts.table(&self.released) else {
            v.status = VerdictStatus::NotApplicable;
            v.evidence = format!(
                "no facts about the released table `{}`; give this stage its table as an input",
                self.released
            );
            return v;
        };
        let findings = facts.findings_of(&self.released_findings).unwrap_or_default();
        // Columns carrying this identifier: by detected entity or by name.
        let mut hits: Vec<(&ColumnFact, Option<&str>)> = Vec::new();
        for col in &table.columns {
            let entity = findings
                .iter()
                .find(|f| f.column == col.name && f.entity != entity::NONE)
                .map(|f| f.entity.as_str());
            let by_entity = entity.is_some_and(|e| id.entities.contains(&e));
            let by_name = names::mentions(&col.name, id.names);
            let by_kind = match id.letter {
                'C' => col.semantic_type == doppel_sdk::vocab::semantic::DATETIME,
                'Q' => col.data_type.contains("Binary"),
                'R' => col.semantic_type == "id",
                _ => false,
            };
            if by_entity || by_name || by_kind {
                hits.push((col, entity));
            }
        }
        // Ages over 89 must be aggregated to "90 or older".
        let old_ages: Vec<&ColumnFact> = table
            .columns
            .iter()
            .filter(|c| id.letter == 'C' && names::mentions(&c.name, &["age"]))
            .filter(|c| {
                c.max
                    .as_deref()
                    .and_then(|m| m.parse::<f64>().ok())
                    .is_some_and(|m| m > 89.0)
            })
            .collect();
        let rare = if id.letter == 'R' {
            facts.rare_copies(&self.privacy)
        } else {
            Vec::new()
        };
        if hits.is_empty() && old_ages.is_empty() && rare.is_empty() {
            v.evidence = format!("no column of `{}` holds {}", self.released, id.title.to_lowercase());
            if findings.is_empty() {
                v.status = VerdictStatus::Warn;
                v.evidence.push_str(&format!(
                    " by name or type; no detector findings about it (stage `{}`) to check values",
                    self.released_findings
                ));
                v.remediation = format!(
                    "scan the released table with a detector stage named `{}`",
                    self.released_findings
                );
            }
            return v;
        }
        let mut failing = Vec::new();
        let mut replaced = Vec::new();
        let mut warned = Vec::new();
        for (col, entity) in &hits {
            let copy = facts.copy_rate(&self.privacy, &col.name);
            if id.letter == 'C' {
                // Safe Harbor removes every date element but the year; shifting
                // dates is not removal.
                if col.semantic_type == doppel_sdk::vocab::semantic::DATETIME || entity.is_some() {
                    if entity == &Some(entity::DATE_TIME)
                        || col.semantic_type == doppel_sdk::vocab::semantic::DATETIME && findings.is_empty()
                    {
                        failing.push(format!(
                            "`{}` holds full dates ({} … {})",
                            col.name,
                            col.min.as_deref().unwrap_or("?"),
                            col.max.as_deref().unwrap_or("?")
                        ));
                    } else {
                        warned.push(format!("`{}` holds dates that may relate to individuals", col.name));
                    }
                }
                continue;
            }
            if id.letter == 'R' && entity.is_none() {
                warned.push(format!(
                    "`{}` is a unique key ({} distinct values)",
                    col.name, col.distinct
                ));
                continue;
            }
            match copy {
                Some(0.0) => replaced.push(format!(
                    "`{}` ({}: no value is a real one)",
                    col.name,
                    entity.unwrap_or("by name")
                )),
                Some(c) => failing.push(format!("`{}`: {:.1}% of its values are real", col.name, c * 100.0)),
                None => failing.push(format!("`{}` ({})", col.name, entity.unwrap_or("by its name"))),
            }
        }
        // Whatever a detector found: released values that are rare real
        // values (held by a few real rows, or any of an identifier-like
        // column's) are unique characteristics of those rows.
        if id.letter == 'R' {
            for (column, rate) in &rare {
                if !hits.iter().any(|(c, _)| &c.name == column) {
                    failing.push(format!(
                        "`{column}`: {:.1}% of its released values are rare real values",
                        rate * 100.0
                    ));
                }
            }
        }
        // A top of exactly 90 is what top-coding leaves ("90 or older", as in
        // census extracts): the pipeline author vouches for it with the
        // `ages_top_coded` attribute (builtin:protect `safe_harbor` does it).
        let top_coded = matches!(facts.attribute("ages_top_coded"), Some(ConfigValue::Boolean(true)));
        for c in &old_ages {
            let max = c
                .max
                .as_deref()
                .and_then(|m| m.parse::<f64>().ok())
                .unwrap_or(f64::INFINITY);
            if max > 90.0 {
                failing.push(format!(
                    "`{}` has ages up to {}",
                    c.name,
                    c.max.as_deref().unwrap_or("?")
                ));
            } else if top_coded {
                replaced.push(format!(
                    "`{}` tops at 90, declared \"90 or older\" (ages_top_coded)",
                    c.name
                ));
            } else {
                warned.push(format!(
                    "`{}` has ages up to 90: allowed only as one \"90 or older\" category",
                    c.name
                ));
            }
        }
        v.columns = hits
            .iter()
            .map(|(c, _)| c.name.clone())
            .chain(old_ages.iter().map(|c| c.name.clone()))
            .chain(rare.iter().map(|(c, _)| c.clone()))
            .collect();
        v.columns.dedup();
        if !failing.is_empty() {
            v.status = VerdictStatus::Fail;
            v.evidence = format!("present in the released table: {}", failing.join("; "));
            v.remediation = match id.letter {
                'C' => "generalise dates to the year (or drop them) and aggregate ages over 89 into one 90+ category".to_owned(),
                _ => "drop these columns, or replace them with synthetic values (builtin:protect) and measure copies (builtin:privacy)".to_owned(),
            };
        } else if !warned.is_empty() {
            v.status = VerdictStatus::Warn;
            v.evidence = warned.join("; ");
            v.remediation = match id.letter {
                'C' => "top-code ages (builtin:protect `safe_harbor = true`) and declare `ages_top_coded = true` in [attributes], or confirm dates do not relate to individuals".to_owned(),
                _ => "confirm these do not identify individuals, or remove them".to_owned(),
            };
        } else if id.letter == 'C' {
            v.evidence = replaced.join("; ");
        } else {
            v.evidence = format!("replaced with synthetic values: {}", replaced.join("; "));
        }
        v
    }

    fn expert(&self, facts: &Facts) -> Verdict {
        let mut v = Verdict {
            rule_id: "HIPAA-ED".into(),
            title: "Expert determination: very small risk of re-identification".into(),
            reference: "45 CFR §164.514(b)(1)".into(),
            status: VerdictStatus::NotApplicable,
            severity: Severity::Info,
            evidence: format!("no privacy metrics (stage `{}`)", self.privacy),
            remediation: "add a builtin:privacy stage comparing the real and released tables".into(),
            columns: vec![],
        };
        if let Some(score) = facts.metric(&self.privacy, "Privacy Score", None) {
            let note = score.note.clone().unwrap_or_default();
            let parts: Vec<String> = score.extra.iter().map(|(k, x)| format!("{k} {x:.3}")).collect();
            v.evidence = format!("privacy score {:.1} ({note}); {}", score.value, parts.join(", "));
            if score.value >= 80.0 {
                v.status = VerdictStatus::Pass;
                v.remediation = "an expert's written determination must still document methods and results".into();
            } else {
                v.status = VerdictStatus::Warn;
                v.severity = Severity::Medium;
                v.remediation =
                    "raise the privacy score to low risk (≥ 80) before relying on expert determination".into();
            }
        }
        v
    }
}

impl Rule for Hipaa {
    fn create(config: &Config) -> Result<Self, StageError> {
        Ok(Hipaa {
            released: config.string("released")?.unwrap_or("synth").to_owned(),
            released_findings: config.string("released_findings")?.unwrap_or("pii_output").to_owned(),
            privacy: config.string("privacy")?.unwrap_or("privacy").to_owned(),
        })
    }

    fn evaluate(&mut self, facts: &Facts) -> Result<Vec<Verdict>, StageError> {
        let mut out: Vec<Verdict> = SAFE_HARBOR.iter().map(|id| self.verdict(id, facts)).collect();
        let failed: Vec<String> = out
            .iter()
            .filter(|v| v.status == VerdictStatus::Fail)
            .map(|v| v.rule_id.clone())
            .collect();
        out.insert(
            0,
            Verdict {
                rule_id: "HIPAA-SH".into(),
                title: "Safe Harbor de-identification".into(),
                reference: "45 CFR §164.514(b)(2)".into(),
                status: if failed.is_empty() {
                    VerdictStatus::Pass
                } else {
                    VerdictStatus::Fail
                },
                severity: Severity::High,
                evidence: if failed.is_empty() {
                    "none of the 18 identifiers remains in the released table".into()
                } else {
                    format!("identifiers remain: {}", failed.join(", "))
                },
                remediation: if failed.is_empty() {
                    String::new()
                } else {
                    "fix the failing identifiers below".into()
                },
                columns: vec![],
            },
        );
        out.push(self.expert(facts));
        Ok(out)
    }
}

export_rule!(Hipaa);

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, semantic: &str, max: Option<&str>) -> ColumnFact {
        ColumnFact {
            name: name.into(),
            data_type: "Utf8".into(),
            semantic_type: semantic.into(),
            null_share: 0.0,
            distinct: 100,
            min: None,
            max: max.map(str::to_owned),
        }
    }

    fn facts(findings: Vec<ColumnFinding>, copies: &[(&str, f64)]) -> Facts {
        Facts {
            tables: vec![TableFacts {
                stage: "synth".into(),
                rows: 100,
                columns: vec![
                    col("email", "pii", None),
                    col("age", "numerical", Some("95")),
                    col("plan", "categorical", None),
                    col("visit", "datetime", None),
                ],
            }],
            findings: vec![("pii_output".into(), findings)],
            metrics: vec![(
                "privacy".into(),
                copies
                    .iter()
                    .map(|(c, v)| MetricValue::new("PIICopyRate", &[c], *v))
                    .collect(),
            )],
            attributes: vec![],
        }
    }

    fn status(v: &[Verdict], id: &str) -> VerdictStatus {
        v.iter().find(|x| x.rule_id == id).unwrap().status
    }

    #[test]
    fn safe_harbor_on_a_released_table() {
        let mut rule = Hipaa::create(&Config::new()).unwrap();
        let findings = vec![
            ColumnFinding::new("email", entity::EMAIL_ADDRESS, 0.9),
            ColumnFinding::new("visit", entity::DATE_TIME, 0.9),
        ];
        let copied = rule.evaluate(&facts(findings.clone(), &[("email", 0.2)])).unwrap();
        assert_eq!(status(&copied, "HIPAA-SH-F"), VerdictStatus::Fail);
        assert_eq!(status(&copied, "HIPAA-SH"), VerdictStatus::Fail);
        let replaced = rule.evaluate(&facts(findings, &[("email", 0.0)])).unwrap();
        assert_eq!(status(&replaced, "HIPAA-SH-F"), VerdictStatus::Pass);
        // Full dates and ages over 89 fail whatever else is done.
        let c = replaced.iter().find(|x| x.rule_id == "HIPAA-SH-C").unwrap();
        assert_eq!(c.status, VerdictStatus::Fail);
        assert!(
            c.evidence.contains("`visit`") && c.evidence.contains("ages up to 95"),
            "{}",
            c.evidence
        );
        assert_eq!(status(&replaced, "HIPAA-SH-G"), VerdictStatus::Pass);
        assert_eq!(status(&replaced, "HIPAA-ED"), VerdictStatus::NotApplicable);
        assert_eq!(replaced.len(), 20);
    }

    #[test]
    fn ages_topping_at_90_need_the_top_coding_declared() {
        let mut rule = Hipaa::create(&Config::new()).unwrap();
        let mut f = facts(
            vec![ColumnFinding::new("email", entity::EMAIL_ADDRESS, 0.9)],
            &[("email", 0.0)],
        );
        f.tables[0].columns = vec![col("age", "numerical", Some("90"))];
        let c = |v: &[Verdict]| v.iter().find(|x| x.rule_id == "HIPAA-SH-C").unwrap().clone();
        let undeclared = c(&rule.evaluate(&f).unwrap());
        assert_eq!(undeclared.status, VerdictStatus::Warn, "{}", undeclared.evidence);
        assert!(undeclared.remediation.contains("ages_top_coded"));
        f.attributes = vec![("ages_top_coded".into(), ConfigValue::Boolean(true))];
        let declared = c(&rule.evaluate(&f).unwrap());
        assert_eq!(declared.status, VerdictStatus::Pass, "{}", declared.evidence);
        assert!(declared.evidence.contains("90 or older"));
    }
}
