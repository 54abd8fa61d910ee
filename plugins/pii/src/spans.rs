//! Personal data *inside* free text: candidate spans by pattern, each then
//! checked by the same validator a whole cell would be.

use regex::Regex;

use crate::Entity;
use crate::names::is_first_name;
use crate::validate;

/// A span found in one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Byte offsets.
    pub start: usize,
    /// Byte offsets.
    pub end: usize,
    /// What it is.
    pub entity: Entity,
    /// Confidence.
    pub score: f32,
}

/// Compiled patterns; built once per stage.
#[derive(Debug)]
pub struct SpanFinder {
    patterns: Vec<(Entity, Regex, f32)>,
    person: bool,
}

impl SpanFinder {
    /// Compile the patterns for `entities`.
    pub fn new(entities: &[Entity]) -> Self {
        let all: [(Entity, &str, f32); 13] = [
            (
                Entity::Email,
                r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}",
                1.0,
            ),
            (
                Entity::Crypto,
                r"\b(?:[13][1-9A-HJ-NP-Za-km-z]{25,34}|bc1[02-9ac-hj-np-z]{11,71})\b",
                1.0,
            ),
            (Entity::UkNino, r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", 0.85),
            (Entity::MedicalLicense, r"\b[A-Z][A-Z9]\d{7}\b", 0.8),
            (Entity::UkNhs, r"\b\d{3}[ -]\d{3}[ -]\d{4}\b", 0.8),
            (
                Entity::Url,
                r"\b(?i-u:https?://|ftp://|www\.)[^\s<>()]+[^\s<>().,;:!?]",
                0.9,
            ),
            (Entity::Iban, r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", 1.0),
            (Entity::CreditCard, r"\b\d(?:[ -]?\d){12,18}\b", 1.0),
            (Entity::Ssn, r"\b\d{3}[- ]\d{2}[- ]\d{4}\b", 0.85),
            (
                Entity::Ip,
                r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){2,7}\b",
                0.9,
            ),
            (Entity::Mac, r"\b[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}\b", 0.9),
            (
                Entity::Phone,
                r"(?:\+|\b00)?\d[\d .()-]{5,18}\d(?:\s*(?:x|ext\.?)\s*\d{1,6})?\b",
                0.75,
            ),
            (
                Entity::DateTime,
                r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b|\b\d{1,2}[-/.]\d{1,2}[-/.]\d{4}\b",
                0.6,
            ),
        ];
        let patterns = all
            .into_iter()
            .filter(|(e, _, _)| entities.contains(e))
            .map(|(e, p, s)| (e, Regex::new(p).expect("static pattern"), s))
            .collect();
        SpanFinder {
            patterns,
            person: entities.contains(&Entity::Person),
        }
    }

    /// Spans in `text`, left to right, none overlapping. Earlier patterns win
    /// overlaps (an e-mail's digits are not also a phone number).
    pub fn find(&self, text: &str) -> Vec<Span> {
        let mut spans: Vec<Span> = Vec::new();
        let free = |spans: &[Span], s: usize, e: usize| spans.iter().all(|x| e <= x.start || s >= x.end);
        for (entity, re, score) in &self.patterns {
            for m in re.find_iter(text) {
                let (s, e) = (m.start(), m.end());
                if !free(&spans, s, e) {
                    continue;
                }
                let ok = match entity {
                    Entity::Email => validate::email(m.as_str()),
                    Entity::Url => validate::url(m.as_str()),
                    Entity::Iban => validate::iban(m.as_str()),
                    Entity::CreditCard => validate::credit_card(m.as_str()),
                    Entity::Ssn => validate::us_ssn(m.as_str()) == Some(validate::Strength::Strong),
                    Entity::Ip => validate::ip(m.as_str()),
                    Entity::Mac => validate::mac(m.as_str()),
                    Entity::Phone => validate::phone(m.as_str()) && !validate::date(m.as_str()),
                    Entity::DateTime => validate::date(m.as_str()),
                    Entity::Crypto => validate::crypto(m.as_str()),
                    Entity::UkNino => validate::uk_nino(m.as_str()),
                    Entity::MedicalLicense => validate::dea(m.as_str()),
                    Entity::UkNhs => validate::uk_nhs(m.as_str()) == Some(validate::Strength::Strong),
                    _ => false,
                };
                if ok {
                    spans.push(Span {
                        start: s,
                        end: e,
                        entity: *entity,
                        score: *score,
                    });
                }
            }
        }
        if self.person {
            for (s, e) in people(text) {
                if free(&spans, s, e) {
                    spans.push(Span {
                        start: s,
                        end: e,
                        entity: Entity::Person,
                        score: 0.8,
                    });
                }
            }
        }
        spans.sort_by_key(|s| s.start);
        spans
    }
}

/// Words with their byte offsets.
fn words(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let part = c.is_alphabetic() || c == '-' || c == '\'' || c == '.';
        match (part, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out
}

fn capitalized(w: &str) -> bool {
    let w = w.trim_end_matches('.');
    let mut c = w.chars();
    c.next().is_some_and(char::is_uppercase) && w.len() >= 2 && c.all(|x| x.is_lowercase() || x == '-' || x == '\'')
}

const TITLES: &[&str] = &["Mr", "Mr.", "Mrs", "Mrs.", "Ms", "Ms.", "Miss", "Dr", "Dr."];

/// A known first name (or a title) followed by a capitalised surname, with an
/// optional middle initial: `Natalie Mendoza`, `Dr. Kaur`, `John Q. Public`.
fn people(text: &str) -> Vec<(usize, usize)> {
    let w = words(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < w.len() {
        let (s, first) = w[i];
        let title = TITLES.contains(&first);
        if title || (capitalized(first) && is_first_name(first.trim_end_matches('.'))) {
            let mut j = i + 1;
            // Middle initial: `Q.`
            if !title
                && j + 1 < w.len()
                && w[j].1.len() == 2
                && w[j].1.ends_with('.')
                && w[j].1.starts_with(char::is_uppercase)
            {
                j += 1;
            }
            let (ls, last) = w[j];
            let last = last.trim_end_matches('.');
            if capitalized(last) && ls == w[j - 1].0 + w[j - 1].1.len() + 1 {
                out.push((s, ls + last.len()));
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entities(text: &str) -> Vec<(Entity, String)> {
        let f = SpanFinder::new(&Entity::ALL);
        f.find(text)
            .into_iter()
            .map(|s| (s.entity, text[s.start..s.end].to_owned()))
            .collect()
    }

    #[test]
    fn finds_people_and_contacts_in_prose() {
        assert_eq!(
            entities("Customer Natalie Mendoza asked about billing"),
            vec![(Entity::Person, "Natalie Mendoza".into())]
        );
        assert_eq!(
            entities("Sent invoice to richard22@example.net"),
            vec![(Entity::Email, "richard22@example.net".into())]
        );
        assert_eq!(
            entities("call 603.442.3667 or visit https://shop.example.com/a."),
            vec![
                (Entity::Phone, "603.442.3667".into()),
                (Entity::Url, "https://shop.example.com/a".into())
            ]
        );
        assert_eq!(
            entities("SSN 061-73-2029, card 4111 1111 1111 1111"),
            vec![
                (Entity::Ssn, "061-73-2029".into()),
                (Entity::CreditCard, "4111 1111 1111 1111".into())
            ]
        );
    }

    #[test]
    fn finds_national_numbers_and_wallets() {
        assert_eq!(
            entities("NHS 943 476 5919, NI AB 12 34 56 C, wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
            vec![
                (Entity::UkNhs, "943 476 5919".into()),
                (Entity::UkNino, "AB 12 34 56 C".into()),
                (Entity::Crypto, "1BoatSLRHtKNngkdXEeobR76b53LETtpyT".into())
            ]
        );
        assert_eq!(
            entities("prescriber AB1234563"),
            vec![(Entity::MedicalLicense, "AB1234563".into())]
        );
    }

    #[test]
    fn quiet_on_ordinary_text() {
        for t in [
            "No issues reported",
            "Renewal pending",
            "Prefers email contact",
            "Order 12345 shipped in 3 boxes",
            "Never-married",
            "Bachelors",
        ] {
            assert!(entities(t).is_empty(), "{t}: {:?}", entities(t));
        }
    }
}
