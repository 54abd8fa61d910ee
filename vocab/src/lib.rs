//! The words doppel's parts share, so that the PII detector, the rules, the
//! protect stage, the release rule and the fakes agree by construction
//! instead of by matching string copies.
//!
//! - [`entity`]: what a detector says a column holds (`PERSON`,
//!   `EMAIL_ADDRESS`, …; Presidio's names where Presidio has one), plus
//!   [`entity::NONE`] and [`entity::MIXED`] (free text with personal data
//!   inside).
//! - [`semantic`]: the semantic type of a column (`id`, `categorical`, …) and
//!   the Arrow field-metadata key that carries it.
//!
//! No dependencies: plugins compiled to WASM use it through `doppel-sdk`.
//!
//! ```
//! use doppel_vocab::{entity, semantic};
//! assert!(entity::PERSONAL.contains(&entity::PERSON));
//! assert!(!entity::PERSONAL.contains(&entity::NONE));
//! assert_eq!(semantic::KEY, "doppel.semantic-type");
//! ```

#![no_std]

/// PII entity names, as detectors report them per column and per span.
pub mod entity {
    /// A person's name.
    pub const PERSON: &str = "PERSON";
    /// An e-mail address.
    pub const EMAIL_ADDRESS: &str = "EMAIL_ADDRESS";
    /// A telephone number.
    pub const PHONE_NUMBER: &str = "PHONE_NUMBER";
    /// A US Social Security number.
    pub const US_SSN: &str = "US_SSN";
    /// A payment card number.
    pub const CREDIT_CARD: &str = "CREDIT_CARD";
    /// An IBAN.
    pub const IBAN_CODE: &str = "IBAN_CODE";
    /// An IPv4 or IPv6 address.
    pub const IP_ADDRESS: &str = "IP_ADDRESS";
    /// A MAC address.
    pub const MAC_ADDRESS: &str = "MAC_ADDRESS";
    /// A URL.
    pub const URL: &str = "URL";
    /// A date or timestamp tied to a person (birth, admission, …).
    pub const DATE_TIME: &str = "DATE_TIME";
    /// An address, city or other place.
    pub const LOCATION: &str = "LOCATION";
    /// A US passport number.
    pub const US_PASSPORT: &str = "US_PASSPORT";
    /// A US driver's licence number.
    pub const US_DRIVER_LICENSE: &str = "US_DRIVER_LICENSE";
    /// A UK NHS number.
    pub const UK_NHS: &str = "UK_NHS";
    /// A UK National Insurance number.
    pub const UK_NINO: &str = "UK_NINO";
    /// A cryptocurrency wallet address.
    pub const CRYPTO: &str = "CRYPTO";
    /// A medical licence (DEA) number.
    pub const MEDICAL_LICENSE: &str = "MEDICAL_LICENSE";
    /// A record, case, member or account number.
    pub const ID_NUMBER: &str = "ID_NUMBER";
    /// Nothing personal found.
    pub const NONE: &str = "NONE";
    /// Free text with personal data inside (see the cell findings).
    pub const MIXED: &str = "MIXED";

    /// Every entity that is personal data (everything but [`NONE`] and
    /// [`MIXED`]).
    pub const PERSONAL: &[&str] = &[
        PERSON,
        EMAIL_ADDRESS,
        PHONE_NUMBER,
        US_SSN,
        CREDIT_CARD,
        IBAN_CODE,
        IP_ADDRESS,
        MAC_ADDRESS,
        URL,
        DATE_TIME,
        LOCATION,
        US_PASSPORT,
        US_DRIVER_LICENSE,
        UK_NHS,
        UK_NINO,
        CRYPTO,
        MEDICAL_LICENSE,
        ID_NUMBER,
    ];
}

/// Semantic column types: what a column means, beyond its Arrow type.
pub mod semantic {
    /// Arrow field-metadata key carrying a column's semantic type.
    pub const KEY: &str = "doppel.semantic-type";
    /// A key: unique per row.
    pub const ID: &str = "id";
    /// A small set of labels.
    pub const CATEGORICAL: &str = "categorical";
    /// A quantity.
    pub const NUMERICAL: &str = "numerical";
    /// A date or timestamp.
    pub const DATETIME: &str = "datetime";
    /// True/false.
    pub const BOOLEAN: &str = "boolean";
    /// Prose.
    pub const TEXT: &str = "text";
    /// Personal data a detector flagged.
    pub const PII: &str = "pii";
    /// Every semantic type.
    pub const ALL: &[&str] = &[ID, CATEGORICAL, NUMERICAL, DATETIME, BOOLEAN, TEXT, PII];
}
