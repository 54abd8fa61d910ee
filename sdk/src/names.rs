//! Column names as words, for plugins that judge a column by what it is
//! called (rules looking for `zip`, `diagnosis`, `fax`, ...).
//!
//! ```
//! use doppel_sdk::names::{mentions, tokens};
//! assert_eq!(tokens("Patient-ZIP code"), ["patient", "zip", "code"]);
//! assert!(mentions("home_zip", &["zip"]));
//! assert!(!mentions("zipper_size", &["zip"]), "whole words only");
//! assert!(mentions("medical_record_no", &["medical_record"]));
//! ```

/// Lower-case ASCII words of a name (split on anything not a letter or digit).
pub fn tokens(name: &str) -> Vec<String> {
    name.to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `name` mentions one of `words`: a whole word of it, or for entries
/// with `_` (`sex_life`), a run of its words.
pub fn mentions(name: &str, words: &[&str]) -> bool {
    which(name, words).is_some()
}

/// The first of `words` that `name` mentions (see [`mentions`]).
pub fn which<'w>(name: &str, words: &[&'w str]) -> Option<&'w str> {
    let t = tokens(name);
    let joined = format!("_{}_", t.join("_"));
    words
        .iter()
        .find(|w| t.iter().any(|x| x == *w) || (w.contains('_') && joined.contains(&format!("_{w}_"))))
        .copied()
}
