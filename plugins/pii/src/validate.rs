//! Whole-value validators: does this cell *be* an entity (not merely contain
//! one)? Each checks structure and, where the entity has one, its checksum,
//! so random digits and codes do not pass (Presidio's rules, made stricter
//! where a whole cell is known to be one value).

/// How convincing a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// Plausible only with supporting evidence (e.g. 9 bare digits as an SSN
    /// in a column named `ssn`).
    Weak,
    /// Convincing on its own.
    Strong,
}

fn digits_of(s: &str) -> Vec<u8> {
    s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect()
}

/// `local@domain.tld` with a sane local part and hostname.
pub fn email(s: &str) -> bool {
    let s = s.trim();
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.len() > 253 {
        return false;
    }
    if !local.chars().all(|c| c.is_ascii_alphanumeric() || "._%+-'".contains(c))
        || local.starts_with('.')
        || local.ends_with('.')
    {
        return false;
    }
    hostname(domain, true)
}

/// Dot-separated labels ending in an alphabetic TLD.
fn hostname(domain: &str, need_dot: bool) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    if need_dot && labels.len() < 2 {
        return false;
    }
    let Some(tld) = labels.last() else { return false };
    if !(2..=24).contains(&tld.len()) || !tld.chars().all(|c| c.is_ascii_alphabetic()) {
        return false;
    }
    labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// A phone number: international (`+`/`00` prefix, 8–15 digits), North
/// American (10 digits, or 11 starting with 1), or a separated local format
/// whose groups look like a phone's (last group ≥ 4 digits, the one before it
/// ≥ 3 — which rules out SSNs, dates and IP addresses). An extension
/// (`x123`, `ext. 123`) may follow.
pub fn phone(s: &str) -> bool {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let main = ["ext.", "ext", "x", "#"]
        .iter()
        .find_map(|sep| {
            let i = lower.rfind(sep)?;
            let tail = lower[i + sep.len()..].trim();
            (!tail.is_empty() && tail.len() <= 6 && tail.chars().all(|c| c.is_ascii_digit())).then_some(&s[..i])
        })
        .unwrap_or(s)
        .trim();
    if main.is_empty() || !main.chars().all(|c| c.is_ascii_digit() || " -.()+".contains(c)) {
        return false;
    }
    if main[1..].contains('+') {
        return false;
    }
    let digits = digits_of(main);
    let groups: Vec<usize> = main
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    let international = main.starts_with('+') || (main.starts_with("00") && groups.len() > 1);
    let separated = groups.len() > 1;
    let phone_groups = groups.last().is_some_and(|l| *l >= 4) && (groups.len() < 3 || groups[groups.len() - 2] >= 3);
    if international {
        return (8..=15).contains(&digits.len()) && (!separated || phone_groups);
    }
    if separated {
        return (7..=12).contains(&digits.len()) && phone_groups;
    }
    // Bare digits: only the North American plan is distinctive enough.
    let nanp = match digits.len() {
        10 => &digits[..],
        11 if digits[0] == 1 => &digits[1..],
        _ => return false,
    };
    (2..=9).contains(&nanp[0]) && (2..=9).contains(&nanp[3])
}

/// US Social Security number, with Presidio's invalidation rules: no mixed
/// delimiters, area not 000/666/9xx, group not 00, serial not 0000, not all one
/// digit, not a well-known sample number. Nine bare digits are only [`Strength::Weak`].
pub fn us_ssn(s: &str) -> Option<Strength> {
    let s = s.trim();
    let (strength, d) = match s.len() {
        9 if s.bytes().all(|b| b.is_ascii_digit()) => (Strength::Weak, digits_of(s)),
        11 => {
            let b = s.as_bytes();
            let (d1, d2) = (b[3], b[6]);
            if d1 != d2 || !(d1 == b'-' || d1 == b' ') {
                return None;
            }
            let d = digits_of(s);
            if d.len() != 9 || s.chars().filter(char::is_ascii_digit).count() != 9 {
                return None;
            }
            (Strength::Strong, d)
        }
        _ => return None,
    };
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |acc, x| acc * 10 + u32::from(*x));
    let all_same = d.iter().all(|x| *x == d[0]);
    let text: String = d.iter().map(|x| char::from(b'0' + x)).collect();
    if area == 0
        || area == 666
        || area >= 900
        || group == 0
        || serial == 0
        || all_same
        || text == "123456789"
        || text == "078051120"
    {
        return None;
    }
    Some(strength)
}

/// Luhn checksum.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A payment card number: 13–19 digits (spaces or dashes allowed), an issuer
/// prefix (1–6), a valid Luhn checksum.
pub fn credit_card(s: &str) -> bool {
    let s = s.trim();
    if !s.chars().all(|c| c.is_ascii_digit() || c == ' ' || c == '-') {
        return false;
    }
    let d = digits_of(s);
    (13..=19).contains(&d.len()) && (1..=6).contains(&d[0]) && !d.iter().all(|x| *x == d[0]) && luhn(&d)
}

/// IBAN length by country (ISO 13616 registry).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AE" => 23,
        "AL" => 28,
        "AT" => 20,
        "AZ" => 28,
        "BA" => 20,
        "BE" => 16,
        "BG" => 22,
        "BH" => 22,
        "BR" => 29,
        "BY" => 28,
        "CH" => 21,
        "CR" => 22,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "DO" => 28,
        "EE" => 20,
        "EG" => 29,
        "ES" => 24,
        "FI" => 18,
        "FO" => 18,
        "FR" => 27,
        "GB" => 22,
        "GE" => 22,
        "GI" => 23,
        "GL" => 18,
        "GR" => 27,
        "GT" => 28,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IL" => 23,
        "IQ" => 23,
        "IS" => 26,
        "IT" => 27,
        "JO" => 30,
        "KW" => 30,
        "KZ" => 20,
        "LB" => 28,
        "LC" => 32,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MD" => 24,
        "ME" => 22,
        "MK" => 19,
        "MR" => 27,
        "MT" => 31,
        "MU" => 30,
        "NL" => 18,
        "NO" => 15,
        "PK" => 24,
        "PL" => 28,
        "PS" => 29,
        "PT" => 25,
        "QA" => 29,
        "RO" => 24,
        "RS" => 22,
        "SA" => 24,
        "SC" => 31,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "ST" => 25,
        "SV" => 28,
        "TL" => 23,
        "TN" => 24,
        "TR" => 26,
        "UA" => 29,
        "VA" => 22,
        "VG" => 24,
        "XK" => 20,
        _ => return None,
    })
}

/// An IBAN: country code, its registered length, check digits by ISO 7064 mod-97.
pub fn iban(s: &str) -> bool {
    let compact: String = s
        .trim()
        .chars()
        .filter(|c| *c != ' ')
        .collect::<String>()
        .to_ascii_uppercase();
    if compact.len() < 5 || !compact.is_ascii() {
        return false;
    }
    let (country, rest) = compact.split_at(2);
    if iban_length(country) != Some(compact.len()) || !rest[..2].chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    if !compact.chars().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    let rotated = format!("{}{}", &compact[4..], &compact[..4]);
    let mut rem: u32 = 0;
    for c in rotated.chars() {
        let v = c.to_digit(36).expect("alphanumeric");
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    rem == 1
}

/// IPv4 (dotted quad) or IPv6.
pub fn ip(s: &str) -> bool {
    let s = s.trim();
    if s.contains(':') {
        return s.matches(':').count() >= 2 && s.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.chars().all(|c| c.is_ascii_digit())
                && p.parse::<u16>().is_ok_and(|v| v <= 255)
                && !(p.len() > 1 && p.starts_with('0'))
        })
}

/// A MAC address: six hex pairs (`:` or `-`) or three hex quads (`.`).
pub fn mac(s: &str) -> bool {
    let s = s.trim();
    let hex = |g: &str, n: usize| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit());
    for sep in [':', '-'] {
        let g: Vec<&str> = s.split(sep).collect();
        if g.len() == 6 && g.iter().all(|x| hex(x, 2)) {
            return true;
        }
    }
    let g: Vec<&str> = s.split('.').collect();
    g.len() == 3 && g.iter().all(|x| hex(x, 4))
}

/// `http(s)://` or `ftp://` or `www.` followed by a hostname.
pub fn url(s: &str) -> bool {
    let s = s.trim();
    if s.contains(char::is_whitespace) {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    let rest = ["https://", "http://", "ftp://"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .or_else(|| lower.starts_with("www.").then_some(lower.as_str()));
    let Some(rest) = rest else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next().unwrap_or("");
    hostname(host, true) || ip(host)
}

fn valid_ymd(y: u32, m: u32, d: u32) -> bool {
    (1800..=2200).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// A calendar date, optionally with a time: `YYYY-MM-DD`, `YYYY/MM/DD`,
/// `MM/DD/YYYY`, `DD/MM/YYYY`, `DD.MM.YYYY`.
pub fn date(s: &str) -> bool {
    let s = s.trim();
    let day = s.split(['T', ' ']).next().unwrap_or(s);
    let parts: Vec<&str> = day.split(['-', '/', '.']).collect();
    if parts.len() != 3
        || !parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    let n: Vec<u32> = parts.iter().map(|p| p.parse().unwrap_or(0)).collect();
    let ok = if parts[0].len() == 4 {
        valid_ymd(n[0], n[1], n[2])
    } else if parts[2].len() == 4 {
        valid_ymd(n[2], n[0], n[1]) || valid_ymd(n[2], n[1], n[0])
    } else {
        false
    };
    if !ok {
        return false;
    }
    let time = s[day.len()..].trim_start_matches(['T', ' ']);
    time.is_empty()
        || time
            .split([':', '.', '+', 'Z', '-'])
            .all(|t| t.is_empty() || t.chars().all(|c| c.is_ascii_digit()))
}

const UNIT_WORDS: &[&str] = &[
    "apt", "apt.", "suite", "ste", "ste.", "unit", "#", "floor", "fl", "room", "rm",
];

/// A street address: house number, then street words, optionally a unit.
pub fn street_address(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.len() < 2 || words.len() > 10 {
        return false;
    }
    let number = words[0].trim_end_matches(',');
    let numeric_len = number.chars().take_while(char::is_ascii_digit).count();
    if numeric_len == 0 || numeric_len > 6 || number.len() > numeric_len + 1 {
        return false;
    }
    let mut street = 0;
    for w in &words[1..] {
        let w = w.trim_end_matches(',');
        if UNIT_WORDS.contains(&w.to_ascii_lowercase().as_str()) {
            break;
        }
        if w.chars().next().is_some_and(char::is_uppercase) && w.chars().all(|c| c.is_alphabetic() || ".'-".contains(c))
        {
            street += 1;
        } else if !w.chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    street >= 1
}

const TITLES: &[&str] = &[
    "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "miss", "dr", "dr.", "prof", "prof.",
];
const SUFFIXES: &[&str] = &[
    "jr", "jr.", "sr", "sr.", "ii", "iii", "iv", "md", "dds", "phd", "dvm", "esq", "esq.",
];

fn capitalized_word(w: &str) -> bool {
    let mut chars = w.chars();
    chars.next().is_some_and(char::is_uppercase)
        && w.chars().count() >= 2
        && w.chars().all(|c| c.is_alphabetic() || c == '-' || c == '\'')
        && !w.chars().skip(1).all(char::is_uppercase)
}

/// Shaped like a person's name: 2–4 capitalised words, optionally a title and
/// suffix (`Dr. Jane Doe-Smith Jr.`).
pub fn person_shape(s: &str) -> bool {
    let core = core_words(s);
    (2..=4).contains(&core.len()) && core.iter().all(|w| capitalized_word(w))
}

/// The words of `s` without titles and suffixes (`Dr.`, `Jr.`).
fn core_words(s: &str) -> Vec<&str> {
    s.split_whitespace()
        .filter(|w| {
            let l = w.to_ascii_lowercase();
            !TITLES.contains(&l.as_str()) && !SUFFIXES.contains(&l.as_str())
        })
        .collect()
}

/// One word of a person's name, in any case: letters, with apostrophes,
/// hyphens or a period inside or at the end (`o'neil`, `st.`, `jean-luc`,
/// `MCDONALD`, `nuñez`).
pub fn name_word(w: &str) -> bool {
    let w = w.trim_end_matches(',');
    let letters = w.chars().filter(|c| c.is_alphabetic()).count();
    letters >= 1
        && w.chars().next().is_some_and(char::is_alphabetic)
        && w.chars()
            .all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '’' | '.'))
        && (letters >= 2 || w.ends_with('.'))
}

/// How many name words `s` is made of (titles and suffixes aside), in any
/// case and in either order (`miguel hernandez`, `HERNANDEZ, MIGUEL`,
/// `ana st. surin`); 0 when any word is not one.
pub fn name_words(s: &str) -> usize {
    if s.split_whitespace().count() > 5 || s.matches(',').count() > 1 {
        return 0;
    }
    let core = core_words(s);
    if core.is_empty() || core.len() > 4 || !core.iter().all(|w| name_word(w)) {
        0
    } else {
        core.len()
    }
}

/// Shaped like a case, record, member or account number: one token of 5–40
/// characters with at least one digit, made of letters, digits and `-_/.#`,
/// and not a date (`13011352CF10A`, `MRN-004521`, `A12-99-3041`).
pub fn code_shape(s: &str) -> bool {
    let n = s.chars().count();
    (5..=40).contains(&n)
        && s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '.' | '#'))
        && !date(s)
}

/// Shaped like a place name: 1–4 capitalised words.
pub fn place_shape(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    (1..=4).contains(&words.len()) && words.iter().all(|w| capitalized_word(w.trim_end_matches(',')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_any_case() {
        for n in [
            "miguel hernandez",
            "HERNANDEZ, MIGUEL",
            "ana st. surin",
            "john o'neil",
            "Jean-Luc Picard",
            "nuñez",
        ] {
            assert!(name_words(n) >= 1, "{n}");
        }
        assert_eq!(name_words("miguel hernandez"), 2);
        assert_eq!(name_words("Dr. Jane Doe Jr."), 2);
        for n in ["13011352CF10A", "no issues, billing, again", "a1", "x", "3 apples", ""] {
            assert_eq!(name_words(n), 0, "{n}");
        }
    }

    #[test]
    fn case_numbers_but_not_dates_or_words() {
        for c in ["13011352CF10A", "MRN-004521", "A12-99-3041", "99887766"] {
            assert!(code_shape(c), "{c}");
        }
        for c in ["2013-01-05", "hello", "12", "has space 123", "white"] {
            assert!(!code_shape(c), "{c}");
        }
    }

    #[test]
    fn emails() {
        assert!(email("nicholsonclinton@example.net"));
        assert!(email("a.b+tag@mail.co.uk"));
        assert!(!email("no at sign"));
        assert!(!email("x@localhost"));
        assert!(!email("x@host.c0m"));
    }

    #[test]
    fn phones_but_not_lookalikes() {
        for p in [
            "3838016613",
            "603.442.3667x1276",
            "+1-950-589-1751",
            "001-702-428-6692x313",
            "(555) 234-5678",
            "+44 20 7946 0018",
            "020 7946 0018",
        ] {
            assert!(phone(p), "{p}");
        }
        for p in [
            "061-73-2029",
            "2024-05-15",
            "81.204.99.159",
            "439563",
            "1234567890",
            "26.55",
            "4996030824622",
        ] {
            assert!(!phone(p), "{p}");
        }
    }

    #[test]
    fn ssn_rules() {
        assert_eq!(us_ssn("061-73-2029"), Some(Strength::Strong));
        assert_eq!(us_ssn("061732029"), Some(Strength::Weak));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
            "111-11-1111",
            "123-45-6789x",
            "123-45 6789",
            "078-05-1120",
        ] {
            assert_eq!(us_ssn(bad), None, "{bad}");
        }
    }

    #[test]
    fn cards_need_luhn() {
        assert!(credit_card("4996030824622"));
        assert!(credit_card("4111 1111 1111 1111"));
        assert!(credit_card("30448014327949"));
        assert!(!credit_card("4111 1111 1111 1112"));
        assert!(!credit_card("0000000000000000"));
        assert!(!credit_card("439563"));
    }

    #[test]
    fn ibans_need_mod97_and_length() {
        assert!(iban("GB53RDSJ82199351819093"));
        assert!(iban("DE89 3704 0044 0532 0130 00"));
        assert!(!iban("GB54RDSJ82199351819093"));
        assert!(!iban("GB53RDSJ8219935181909"));
    }

    #[test]
    fn addresses_and_more() {
        assert!(ip("131.251.222.74") && ip("6d76:b07e:881e:d162:ae2e:b155:7f15:524"));
        assert!(!ip("256.1.1.1") && !ip("1.2.3") && !ip("01.2.3.4"));
        assert!(mac("00:1A:2B:3C:4D:5E") && mac("001a.2b3c.4d5e") && !mac("00:1A:2B:3C:4D"));
        assert!(url("http://www.barnes.info/") && url("www.example.com/x") && !url("web"));
        assert!(
            date("1944-04-16")
                && date("04/16/1944")
                && date("2020-01-01T10:00:00Z")
                && !date("2020-13-01")
                && !date("12-34")
        );
        assert!(street_address("9754 Laura Square Apt. 194") && street_address("37215 Curtis Port"));
        assert!(!street_address("No issues reported") && !street_address("3 x 4"));
        assert!(
            person_shape("Benjamin Gonzalez MD")
                && person_shape("Chris Curtis")
                && !person_shape("enterprise")
                && !person_shape("No issues reported")
        );
        assert!(place_shape("New Craig") && place_shape("Goldenmouth") && !place_shape("web"));
    }
}

/// US passport: nine digits, or a letter and eight digits (next-generation
/// books). Never convincing alone ([`Strength::Weak`]): it needs a column name.
pub fn us_passport(s: &str) -> Option<Strength> {
    let s = s.trim();
    let b = s.as_bytes();
    let digits = b.len() == 9 && b.iter().all(u8::is_ascii_digit) && !b.iter().all(|x| *x == b[0]);
    let next_gen = b.len() == 9 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit);
    let ok = digits || next_gen;
    ok.then_some(Strength::Weak)
}

/// US driver's licence: one of the state formats (a letter and 4–14 digits,
/// 7–13 digits, or letters and digits mixed in 6–13 characters with at least
/// two digits). Formats overlap with every code, so only [`Strength::Weak`].
pub fn us_driver_license(s: &str) -> Option<Strength> {
    let s = s.trim().replace(['-', ' '], "");
    let b = s.as_bytes();
    if !(5..=15).contains(&b.len()) || !b.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let letter_then_digits = b[0].is_ascii_alphabetic() && b[1..].iter().all(u8::is_ascii_digit) && b.len() >= 5;
    let all_digits = digits == b.len() && (7..=13).contains(&b.len());
    let mixed =
        digits >= 2 && b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) && (6..=13).contains(&b.len());
    (letter_then_digits || all_digits || mixed).then_some(Strength::Weak)
}

/// UK NHS number: ten digits (`3-3-4` groups) whose last is the mod-11 check
/// digit of the first nine (weights 10..2). Bare ten digits collide with phone
/// numbers one time in eleven, so they are only [`Strength::Weak`].
pub fn uk_nhs(s: &str) -> Option<Strength> {
    let t = s.trim();
    let grouped = {
        let b = t.as_bytes();
        b.len() == 12 && (b[3] == b' ' || b[3] == b'-') && b[7] == b[3]
    };
    let d = digits_of(t);
    if d.len() != 10 || t.chars().any(|c| !(c.is_ascii_digit() || c == ' ' || c == '-')) {
        return None;
    }
    if !grouped && t.len() != 10 {
        return None;
    }
    let sum: u32 = d[..9].iter().zip((2..=10).rev()).map(|(x, w)| u32::from(*x) * w).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return None,
        c => c,
    };
    if check != u32::from(d[9]) || d.iter().all(|x| *x == d[0]) {
        return None;
    }
    Some(if grouped { Strength::Strong } else { Strength::Weak })
}

/// UK National Insurance number: two prefix letters from the allowed sets (not
/// BG, GB, KN, NK, NT, TN, ZZ), six digits, a suffix A–D; spaces allowed.
pub fn uk_nino(s: &str) -> bool {
    let c: Vec<char> = s
        .trim()
        .chars()
        .filter(|c| *c != ' ')
        .collect::<String>()
        .to_ascii_uppercase()
        .chars()
        .collect();
    if c.len() != 9 {
        return false;
    }
    let first_ok = c[0].is_ascii_uppercase() && !"DFIQUV".contains(c[0]);
    let second_ok = c[1].is_ascii_uppercase() && !"DFIOQUV".contains(c[1]);
    let prefix: String = c[..2].iter().collect();
    first_ok
        && second_ok
        && !["BG", "GB", "KN", "NK", "NT", "TN", "ZZ"].contains(&prefix.as_str())
        && c[2..8].iter().all(char::is_ascii_digit)
        && ('A'..='D').contains(&c[8])
}

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn base58_decode(s: &str) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    for ch in s.bytes() {
        let mut carry = u32::try_from(BASE58.iter().position(|b| *b == ch)?).ok()?;
        for byte in out.iter_mut().rev() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            out.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|b| *b == b'1').count();
    let mut full = vec![0u8; zeros];
    full.extend(out);
    Some(full)
}

fn bech32_polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3];
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(*v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// A Bitcoin address, as Presidio's CRYPTO recognizer checks it: legacy and
/// P2SH addresses (`1…`, `3…`) by their Base58Check double-SHA-256 checksum,
/// SegWit addresses (`bc1…`) by their Bech32 / Bech32m checksum.
pub fn crypto(s: &str) -> bool {
    use sha2::{Digest, Sha256};
    let s = s.trim();
    if (s.starts_with('1') || s.starts_with('3')) && (26..=35).contains(&s.len()) {
        let Some(raw) = base58_decode(s) else { return false };
        if raw.len() != 25 {
            return false;
        }
        let (payload, check) = raw.split_at(21);
        let digest = Sha256::digest(Sha256::digest(payload));
        return &digest[..4] == check;
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("bc1") && (14..=74).contains(&s.len()) && (s == lower || s == s.to_ascii_uppercase()) {
        const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
        let data: Option<Vec<u8>> = lower[3..]
            .bytes()
            .map(|c| CHARSET.iter().position(|x| *x == c).and_then(|p| u8::try_from(p).ok()))
            .collect();
        let Some(data) = data else { return false };
        let mut values = vec![3u8, 3, 0, 2, 3]; // hrp "bc" expanded
        values.extend(&data);
        let m = bech32_polymod(&values);
        return m == 1 || m == 0x2bc8_30a3;
    }
    false
}

/// A DEA registration number (the MEDICAL_LICENSE Presidio checks): two
/// letters, seven digits, the last being the checksum of the first six.
pub fn dea(s: &str) -> bool {
    let b = s.trim().as_bytes();
    if b.len() != 9 || !b[0].is_ascii_uppercase() || !(b[1].is_ascii_uppercase() || b[1] == b'9') {
        return false;
    }
    if !b[2..].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let d: Vec<u32> = b[2..].iter().map(|c| u32::from(c - b'0')).collect();
    let sum = d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5]);
    sum % 10 == d[6]
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn uk_numbers() {
        assert_eq!(uk_nhs("943 476 5919"), Some(Strength::Strong));
        assert_eq!(uk_nhs("9434765919"), Some(Strength::Weak));
        assert_eq!(uk_nhs("943 476 5918"), None);
        assert!(uk_nino("AB 12 34 56 C") && uk_nino("JG103773A"));
        assert!(!uk_nino("QQ123456A"), "Q is never a first prefix letter");
        assert!(!uk_nino("GB123456A") && !uk_nino("DA123456A") && !uk_nino("AB123456E"));
    }

    #[test]
    fn bitcoin_addresses() {
        assert!(crypto("1BoatSLRHtKNngkdXEeobR76b53LETtpyT"));
        assert!(crypto("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"));
        assert!(crypto("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"));
        assert!(crypto("bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297"));
        assert!(!crypto("1BoatSLRHtKNngkdXEeobR76b53LETtpyU"));
        assert!(!crypto("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdr"));
    }

    #[test]
    fn licences_and_passports() {
        assert!(dea("AB1234563") && !dea("AB1234564"));
        assert_eq!(us_passport("912803456"), Some(Strength::Weak));
        assert_eq!(us_passport("A12345678"), Some(Strength::Weak));
        assert_eq!(us_passport("12345"), None);
        assert_eq!(us_driver_license("D1234567"), Some(Strength::Weak));
        assert_eq!(us_driver_license("plan"), None);
    }
}

/// A postcode: US ZIP (`12345`, `12345-6789`) or UK (`SW1A 1AA`). Five
/// digits are any number, so ZIPs are [`Strength::Weak`]; the UK shape is
/// distinctive.
pub fn postcode(s: &str) -> Option<Strength> {
    let s = s.trim();
    let b = s.as_bytes();
    let zip5 = |x: &[u8]| x.len() == 5 && x.iter().all(u8::is_ascii_digit);
    if zip5(b) || (b.len() == 10 && zip5(&b[..5]) && b[5] == b'-' && b[6..].iter().all(u8::is_ascii_digit)) {
        return Some(Strength::Weak);
    }
    let upper = s.to_ascii_uppercase();
    let (outward, inward) = upper.split_once(' ')?;
    let o = outward.as_bytes();
    let i = inward.as_bytes();
    let outward_ok = (2..=4).contains(&o.len())
        && o[0].is_ascii_alphabetic()
        && o.iter().all(u8::is_ascii_alphanumeric)
        && o.iter().any(u8::is_ascii_digit);
    let inward_ok = i.len() == 3 && i[0].is_ascii_digit() && i[1].is_ascii_alphabetic() && i[2].is_ascii_alphabetic();
    (outward_ok && inward_ok).then_some(Strength::Strong)
}
