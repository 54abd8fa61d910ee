//! `doppel/pii`: what in a table is personal data.
//!
//! Tabular users need a verdict per **column**, not per cell: the scanner
//! samples each column's non-null cells, runs every whole-value validator on
//! them (structure plus checksums: Luhn, mod-97, SSN invalidation rules, ...),
//! and weighs the share of cells that validate with the evidence of the column
//! name. Columns of prose are searched for personal data *inside* the text;
//! each such span is reported with its cell and byte offsets, and the column is
//! marked `MIXED`. Integer keys, prices and labels validate as nothing and
//! stay `NONE`; text codes that number a person's record (case, member,
//! patient, customer numbers, by the column's name) are `ID_NUMBER`. A
//! mostly-distinct code under any other name (a SKU, a batch code) stays
//! `NONE`: whether it points at a person depends on what the rows are, and
//! the host's release rule never releases such a column's real values anyway.
//!
//! Entities: `PERSON`, `EMAIL_ADDRESS`, `PHONE_NUMBER`, `US_SSN`,
//! `CREDIT_CARD`, `IBAN_CODE`, `IP_ADDRESS`, `MAC_ADDRESS`, `URL`,
//! `DATE_TIME`, `LOCATION`, `US_PASSPORT`, `US_DRIVER_LICENSE`, `UK_NHS`,
//! `UK_NINO`, `CRYPTO`, `MEDICAL_LICENSE`, and `ID_NUMBER` (case, record,
//! member and account numbers: mostly-distinct codes with digits).
//!
//! Names are found as people write them in real tables, not as test
//! fixtures do: any case (`miguel hernandez`, `HERNANDEZ, MIGUEL`), split
//! over `first` / `last` / `middle` columns, with particles and apostrophes
//! (`st. surin`, `o'neil`); by the column's name with the values' shape, or
//! by the values alone when most of them hold a known first name.
//!
//! Validators that cannot tell an entity from any other code on their own (nine
//! bare digits as an SSN or a passport, licence formats) count only when the
//! column's name says which entity it holds.

pub mod census;
pub mod names;
pub mod spans;
pub mod validate;

use doppel_sdk::vocab::entity;
use std::collections::HashMap;

use doppel_sdk::*;
use spans::SpanFinder;
use validate::Strength;

/// An entity type, named as Presidio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// A person's name.
    Person,
    /// E-mail address.
    Email,
    /// Phone number.
    Phone,
    /// US Social Security number.
    Ssn,
    /// Payment card number.
    CreditCard,
    /// International bank account number.
    Iban,
    /// IPv4 or IPv6 address.
    Ip,
    /// MAC address.
    Mac,
    /// Web address.
    Url,
    /// Date or date and time.
    DateTime,
    /// Street address, city, postcode.
    Location,
    /// US passport number.
    UsPassport,
    /// US driver's licence number.
    UsDriverLicense,
    /// UK NHS number.
    UkNhs,
    /// UK National Insurance number.
    UkNino,
    /// Cryptocurrency (Bitcoin) address.
    Crypto,
    /// Medical licence (DEA registration number).
    MedicalLicense,
    /// Any other identifying number or code: case, record, member, account
    /// numbers (mostly distinct, with digits).
    IdNumber,
}

impl Entity {
    /// Every entity, in the order ties are broken (most specific first).
    pub const ALL: [Entity; 18] = [
        Entity::Iban,
        Entity::Crypto,
        Entity::CreditCard,
        Entity::UkNino,
        Entity::MedicalLicense,
        Entity::UkNhs,
        Entity::Ssn,
        Entity::Email,
        Entity::Ip,
        Entity::Mac,
        Entity::Url,
        Entity::Phone,
        Entity::DateTime,
        Entity::Location,
        Entity::Person,
        Entity::UsPassport,
        Entity::UsDriverLicense,
        Entity::IdNumber,
    ];

    /// Presidio's name.
    pub fn name(self) -> &'static str {
        match self {
            Entity::Person => entity::PERSON,
            Entity::Email => entity::EMAIL_ADDRESS,
            Entity::Phone => entity::PHONE_NUMBER,
            Entity::Ssn => entity::US_SSN,
            Entity::CreditCard => entity::CREDIT_CARD,
            Entity::Iban => entity::IBAN_CODE,
            Entity::Ip => entity::IP_ADDRESS,
            Entity::Mac => entity::MAC_ADDRESS,
            Entity::Url => entity::URL,
            Entity::DateTime => entity::DATE_TIME,
            Entity::Location => entity::LOCATION,
            Entity::UsPassport => entity::US_PASSPORT,
            Entity::UsDriverLicense => entity::US_DRIVER_LICENSE,
            Entity::UkNhs => entity::UK_NHS,
            Entity::UkNino => entity::UK_NINO,
            Entity::Crypto => entity::CRYPTO,
            Entity::MedicalLicense => entity::MEDICAL_LICENSE,
            Entity::IdNumber => entity::ID_NUMBER,
        }
    }

    fn from_name(s: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name() == s)
    }
}

/// Evidence gathered for one column.
#[derive(Debug, Default)]
struct ColumnEvidence {
    temporal: bool,
    text: bool,
    /// Non-null cells examined by the validators.
    seen: u64,
    strong: HashMap<Entity, u64>,
    weak: HashMap<Entity, u64>,
    person_shape: u64,
    place_shape: u64,
    words: u64,
    /// Cells holding PII inside longer text, and the entities found there.
    embedded_cells: u64,
    embedded: HashMap<Entity, u64>,
    /// Cells searched for embedded PII.
    searched: u64,
    declared_text: bool,
    /// Cells of 1–4 name words in any case, and of 2 or more.
    name_like: u64,
    full_name_like: u64,
    /// Cells holding a known first name or common surname (1990 US Census
    /// lists, or the free-text lexicon) as one of their words.
    first_name: u64,
    /// Cells shaped like a case / record / account number.
    code_like: u64,
    /// Distinct values among the sampled cells.
    distinct: std::collections::HashSet<String>,
}

impl ColumnEvidence {
    #[allow(clippy::cast_precision_loss, reason = "sample sizes are small")]
    fn share(&self, n: u64) -> f64 {
        if self.seen == 0 {
            0.0
        } else {
            n as f64 / self.seen as f64
        }
    }

    /// Prose rather than one value per cell: several words per cell, or the
    /// host says so.
    #[allow(clippy::cast_precision_loss, reason = "sample sizes are small")]
    fn is_prose(&self) -> bool {
        self.declared_text || (self.seen > 0 && self.words as f64 / self.seen as f64 >= 2.5)
    }
}

/// The scanner of one stage run.
#[derive(Debug)]
pub struct PiiScanner {
    sample_rows: u64,
    min_share: f64,
    scan_all_text: bool,
    entities: Vec<Entity>,
    finder: SpanFinder,
    columns: Vec<(String, ColumnEvidence)>,
}

impl Plugin for PiiScanner {
    fn info() -> PluginInfo {
        let names: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
        PluginInfo::new("doppel/pii", "0.1.0", StageKind::Detector)
            .summary("Finds personal data: a verdict per column, and PII spans inside free text.")
            .reads(&[ColumnType::Text, ColumnType::Integer, ColumnType::Temporal])
            .field(
                ConfigField::integer("sample_rows", "Non-null cells per column the validators look at.")
                    .default(ConfigValue::Integer(1000))
                    .range(Some(10.0), None),
            )
            .field(
                ConfigField::float(
                    "min_share",
                    "Share of sampled cells that must validate for a column to be classified.",
                )
                .default(ConfigValue::Float(0.7))
                .range(Some(0.05), Some(1.0)),
            )
            .field(
                ConfigField::boolean(
                    "scan_all_text",
                    "Search every row of prose columns for embedded PII (not only the sample).",
                )
                .default(ConfigValue::Boolean(true)),
            )
            .field(
                ConfigField::strings("entities", "Entities to look for.")
                    .allowed(&names)
                    .default(ConfigValue::Strings(names.iter().map(|s| (*s).to_owned()).collect())),
            )
    }
}

impl PiiScanner {
    fn evidence(&mut self, field: &Field) -> usize {
        if let Some(i) = self.columns.iter().position(|(n, _)| n == field.name()) {
            return i;
        }
        let ev = ColumnEvidence {
            temporal: field.data_type().is_temporal(),
            text: values::is_text(field.data_type()),
            declared_text: semantic_type(field) == Some("text"),
            ..ColumnEvidence::default()
        };
        self.columns.push((field.name().clone(), ev));
        self.columns.len() - 1
    }

    fn validate_cell(&self, value: &str, ev: &mut ColumnEvidence) {
        let v = value.trim();
        let on = |e: Entity| self.entities.contains(&e);
        let mut hit = |e: Entity, s: Option<Strength>| match s {
            Some(Strength::Strong) => *ev.strong.entry(e).or_default() += 1,
            Some(Strength::Weak) => *ev.weak.entry(e).or_default() += 1,
            None => {}
        };
        let strong = |b: bool| b.then_some(Strength::Strong);
        if on(Entity::Email) {
            hit(Entity::Email, strong(validate::email(v)));
        }
        if on(Entity::Phone) {
            hit(Entity::Phone, strong(validate::phone(v)));
        }
        if on(Entity::Ssn) {
            hit(Entity::Ssn, validate::us_ssn(v));
        }
        if on(Entity::CreditCard) {
            hit(Entity::CreditCard, strong(validate::credit_card(v)));
        }
        if on(Entity::Iban) {
            hit(Entity::Iban, strong(validate::iban(v)));
        }
        if on(Entity::Ip) {
            hit(Entity::Ip, strong(validate::ip(v)));
        }
        if on(Entity::Mac) {
            hit(Entity::Mac, strong(validate::mac(v)));
        }
        if on(Entity::Url) {
            hit(Entity::Url, strong(validate::url(v)));
        }
        if on(Entity::DateTime) {
            hit(Entity::DateTime, strong(validate::date(v)));
        }
        if on(Entity::Location) {
            let address = validate::street_address(v).then_some(Strength::Strong);
            hit(Entity::Location, address.or_else(|| validate::postcode(v)));
        }
        if on(Entity::UsPassport) {
            hit(Entity::UsPassport, validate::us_passport(v));
        }
        if on(Entity::UsDriverLicense) {
            hit(Entity::UsDriverLicense, validate::us_driver_license(v));
        }
        if on(Entity::UkNhs) {
            hit(Entity::UkNhs, validate::uk_nhs(v));
        }
        if on(Entity::UkNino) {
            hit(Entity::UkNino, strong(validate::uk_nino(v)));
        }
        if on(Entity::Crypto) {
            hit(Entity::Crypto, strong(validate::crypto(v)));
        }
        if on(Entity::MedicalLicense) {
            hit(Entity::MedicalLicense, strong(validate::dea(v)));
        }
        ev.person_shape += u64::from(validate::person_shape(v));
        let words = validate::name_words(v);
        ev.name_like += u64::from(words >= 1);
        ev.full_name_like += u64::from(words >= 2);
        ev.first_name += u64::from(
            words >= 1
                && v.split(|c: char| c.is_whitespace() || c == ',').any(|w| {
                    let w = w.to_lowercase();
                    names::is_first_name(&w) || census::is_first(&w) || census::is_last(&w)
                }),
        );
        ev.code_like += u64::from(validate::code_shape(v));
        if ev.distinct.len() < 10_000 {
            ev.distinct.insert(v.to_owned());
        }
        ev.place_shape += u64::from(validate::place_shape(v));
        ev.words += v.split_whitespace().count() as u64;
    }

    /// The verdict for one column.
    fn classify(&self, name: &str, ev: &ColumnEvidence) -> ColumnFinding {
        let hint = names::hint(name).filter(|h| self.entities.contains(h));
        let mut f = ColumnFinding::new(name, entity::NONE, 1.0);
        f.scanned = ev.seen;
        f.free_text = ev.is_prose();
        let mut counts: Vec<(Entity, u64)> = ev.strong.iter().map(|(e, c)| (*e, *c)).collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        f.entities = counts
            .iter()
            .map(|(e, c)| EntityCount {
                entity: e.name().into(),
                count: *c,
            })
            .collect();

        // Strongest validated entity. Ties (an NHS number is also shaped like a
        // phone number) go to the one the column's name suggests, then to the
        // most specific, in `Entity::ALL` order.
        let rank = |e: Entity| Entity::ALL.iter().position(|x| *x == e).unwrap_or(usize::MAX);
        let best = Entity::ALL
            .iter()
            .filter_map(|e| ev.strong.get(e).map(|c| (*e, *c)))
            .max_by(|a, b| {
                a.1.cmp(&b.1)
                    .then((hint == Some(a.0)).cmp(&(hint == Some(b.0))))
                    .then(rank(b.0).cmp(&rank(a.0)))
            });
        let decide = |f: &mut ColumnFinding, e: Entity, matched: u64, confidence: f64| {
            f.entity = e.name().into();
            f.matched = matched;
            #[allow(clippy::cast_possible_truncation, reason = "a confidence for display")]
            {
                f.confidence = confidence.clamp(0.0, 1.0) as f32;
            }
        };
        if ev.seen == 0 {
            if ev.temporal && hint == Some(Entity::DateTime) {
                decide(&mut f, Entity::DateTime, 0, 0.9);
            }
            return f;
        }
        let bonus = |e: Entity| if hint == Some(e) { 0.1 } else { 0.0 };
        let distinct = ev.distinct.len() as u64;
        if let Some((e, n)) = best {
            let share = ev.share(n);
            if share >= self.min_share {
                decide(&mut f, e, n, 0.5 + 0.4 * share + bonus(e));
                return f;
            }
        }
        if ev.temporal && self.entities.contains(&Entity::DateTime) {
            // Dates tied to a person are identifying (HIPAA counts every date
            // finer than a year); a name saying so makes it near certain.
            decide(
                &mut f,
                Entity::DateTime,
                ev.seen,
                if hint == Some(Entity::DateTime) { 0.95 } else { 0.6 },
            );
            return f;
        }
        if let Some(h) = hint {
            let strong = ev.strong.get(&h).copied().unwrap_or(0);
            let weak = ev.weak.get(&h).copied().unwrap_or(0);
            let with_weak = ev.share(strong + weak);
            match h {
                // Names in any case, split columns holding one word each.
                Entity::Person if ev.share(ev.person_shape.max(ev.name_like)) >= 0.8 => {
                    let n = ev.person_shape.max(ev.name_like);
                    decide(&mut f, h, n, 0.6 + 0.3 * ev.share(n));
                    return f;
                }
                Entity::IdNumber if ev.text && ev.share(ev.code_like) >= 0.8 && ev.share(distinct) >= 0.5 => {
                    decide(&mut f, h, ev.code_like, 0.6 + 0.3 * ev.share(ev.code_like));
                    return f;
                }
                Entity::Location if ev.share(ev.place_shape + strong) >= 0.8 => {
                    decide(
                        &mut f,
                        h,
                        ev.place_shape + strong,
                        0.55 + 0.3 * ev.share(ev.place_shape + strong),
                    );
                    return f;
                }
                _ if with_weak >= 0.5 => {
                    decide(&mut f, h, strong + weak, 0.5 + 0.35 * with_weak);
                    return f;
                }
                _ => {}
            }
        }
        if ev.text && !ev.is_prose() && self.entities.contains(&Entity::Person) {
            // No name says so, but the values do: nearly all are one to four
            // name words, many hold a known name, and there are too many
            // distinct ones for a set of labels (colours, statuses).
            let multi = ev.share(ev.full_name_like);
            if ev.share(ev.name_like) >= 0.9
                && ev.share(ev.first_name) >= 0.4
                && ev.distinct.len() >= 20
                && (multi >= 0.5 || hint.is_none())
            {
                decide(
                    &mut f,
                    Entity::Person,
                    ev.name_like,
                    0.55 + 0.3 * ev.share(ev.first_name),
                );
                return f;
            }
        }
        // Personal data inside prose.
        #[allow(clippy::cast_precision_loss, reason = "sample sizes are small")]
        let embedded_share = if ev.searched == 0 {
            0.0
        } else {
            ev.embedded_cells as f64 / ev.searched as f64
        };
        if ev.embedded_cells > 0 && (embedded_share >= 0.01 || ev.embedded_cells >= 3) {
            let mut counts: Vec<(Entity, u64)> = ev.embedded.iter().map(|(e, c)| (*e, *c)).collect();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            f.entity = entity::MIXED.into();
            f.free_text = true;
            f.matched = ev.embedded_cells;
            f.scanned = ev.searched;
            #[allow(clippy::cast_possible_truncation, reason = "a confidence for display")]
            {
                f.confidence = (0.5 + 0.5 * embedded_share.sqrt()).min(1.0) as f32;
            }
            f.entities = counts
                .iter()
                .map(|(e, c)| EntityCount {
                    entity: e.name().into(),
                    count: *c,
                })
                .collect();
        }
        f
    }
}

impl Detector for PiiScanner {
    fn create(config: &Config) -> Result<Self, StageError> {
        let entities: Vec<Entity> = match config.strings("entities")? {
            Some(list) => list
                .iter()
                .map(|n| Entity::from_name(n).ok_or_else(|| StageError::InvalidConfig(format!("unknown entity `{n}`"))))
                .collect::<Result<_, _>>()?,
            None => Entity::ALL.to_vec(),
        };
        Ok(PiiScanner {
            sample_rows: u64::try_from(config.integer("sample_rows")?.unwrap_or(1000))
                .unwrap_or(1000)
                .max(1),
            min_share: config.float("min_share")?.unwrap_or(0.7),
            scan_all_text: config.boolean("scan_all_text")?.unwrap_or(true),
            finder: SpanFinder::new(&entities),
            entities,
            columns: Vec::new(),
        })
    }

    fn scan(&mut self, batch: &RecordBatch, row_offset: u64) -> Result<ScanOutcome, StageError> {
        let mut findings = Vec::new();
        let schema = batch.schema();
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            let idx = self.evidence(field);
            let mut ev = std::mem::take(&mut self.columns[idx].1);
            let sampling = ev.seen < self.sample_rows;
            let searching = ev.text && (sampling || (self.scan_all_text && ev.is_prose()));
            if sampling || searching {
                for row in 0..array.len() {
                    let Some(value) = values::text(array.as_ref(), row) else {
                        continue;
                    };
                    let in_sample = ev.seen < self.sample_rows;
                    if in_sample && !ev.temporal {
                        self.validate_cell(&value, &mut ev);
                    }
                    if in_sample {
                        ev.seen += 1;
                    }
                    if ev.text && (in_sample || (self.scan_all_text && ev.is_prose())) {
                        ev.searched += 1;
                        let spans = self.finder.find(&value);
                        // A span covering the whole cell is the column's own
                        // value (an e-mail column), not PII inside text.
                        let inner: Vec<_> = spans
                            .into_iter()
                            .filter(|s| s.end - s.start < value.trim().len())
                            .collect();
                        if !inner.is_empty() {
                            ev.embedded_cells += 1;
                        }
                        for s in inner {
                            *ev.embedded.entry(s.entity).or_default() += 1;
                            findings.push(Finding {
                                row: row_offset + row as u64,
                                column: field.name().clone(),
                                start: u32::try_from(s.start).unwrap_or(u32::MAX),
                                end: u32::try_from(s.end).unwrap_or(u32::MAX),
                                entity: s.entity.name().into(),
                                score: s.score,
                            });
                        }
                    } else if !in_sample {
                        break;
                    }
                }
            }
            self.columns[idx].1 = ev;
        }
        let needs_more = self
            .columns
            .iter()
            .any(|(_, ev)| ev.seen < self.sample_rows || (self.scan_all_text && ev.text && ev.is_prose()));
        Ok(ScanOutcome { findings, needs_more })
    }

    fn finish(&mut self) -> Result<Vec<ColumnFinding>, StageError> {
        Ok(self.columns.iter().map(|(name, ev)| self.classify(name, ev)).collect())
    }
}

export_detector!(PiiScanner);
