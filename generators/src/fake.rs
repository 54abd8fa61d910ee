//! Realistic fake values for personal data, one entity at a time.
//!
//! A fake keeps the *format* of the value it replaces (separators, length,
//! letter and digit positions, the card brand's prefix, the IBAN's country)
//! and passes the same validation a real one would (Luhn, mod-97, NHS mod-11,
//! DEA and Base58Check checksums), so downstream systems and detectors treat it
//! as the real thing. Where a reserved range exists it is used: e-mail and web
//! domains under `example.*`, IP addresses in the documentation blocks,
//! locally administered MAC addresses, 555-01xx phone numbers.
//!
//! Every draw comes from the caller's RNG, so a seed gives the same fakes.

use doppel_vocab::entity;
use rand::{Rng, RngExt};
use sha2::{Digest, Sha256};

const FIRST: &[&str] = &[
    "Aaliyah",
    "Adrian",
    "Aisha",
    "Alejandro",
    "Amara",
    "Andre",
    "Anika",
    "Arjun",
    "Beatriz",
    "Bruno",
    "Camila",
    "Carmen",
    "Chen",
    "Chloe",
    "Dante",
    "Diego",
    "Elena",
    "Elif",
    "Emeka",
    "Esther",
    "Farah",
    "Felix",
    "Freya",
    "Gabriel",
    "Hana",
    "Hugo",
    "Ines",
    "Isaac",
    "Jamal",
    "Jonas",
    "Julia",
    "Kai",
    "Keanu",
    "Lara",
    "Leila",
    "Liam",
    "Lucia",
    "Malik",
    "Maya",
    "Mateo",
    "Mei",
    "Mia",
    "Nadia",
    "Nikhil",
    "Noah",
    "Nora",
    "Olivia",
    "Omar",
    "Paolo",
    "Priya",
    "Rafael",
    "Rosa",
    "Samir",
    "Sara",
    "Sofia",
    "Tariq",
    "Theo",
    "Uma",
    "Valeria",
    "Viktor",
    "Wen",
    "Yara",
    "Yusuf",
    "Zara",
];
const LAST: &[&str] = &[
    "Abara",
    "Alvarez",
    "Andersen",
    "Bakker",
    "Banerjee",
    "Becker",
    "Bianchi",
    "Castillo",
    "Chowdhury",
    "Costa",
    "Dubois",
    "Eriksen",
    "Ferreira",
    "Fischer",
    "Fontaine",
    "Gallagher",
    "Haddad",
    "Hartmann",
    "Ibrahim",
    "Jansen",
    "Kaur",
    "Kim",
    "Kowalczyk",
    "Larsen",
    "Lindqvist",
    "Mahlangu",
    "Marchetti",
    "Moreau",
    "Nakamura",
    "Novak",
    "Nowak",
    "Okafor",
    "Oliveira",
    "Papadopoulos",
    "Petrov",
    "Quinn",
    "Rahman",
    "Rossi",
    "Santos",
    "Sato",
    "Schneider",
    "Silva",
    "Takahashi",
    "Tran",
    "Varga",
    "Vasquez",
    "Weber",
    "Yilmaz",
    "Zhang",
    "Zimmermann",
];
const STREETS: &[&str] = &[
    "Alder", "Beacon", "Birch", "Briar", "Cedar", "Chestnut", "Clover", "Dogwood", "Elm", "Fern", "Hawthorn", "Hazel",
    "Juniper", "Laurel", "Linden", "Magnolia", "Maple", "Meadow", "Oak", "Orchard", "Pine", "Poplar", "Rowan", "Sage",
    "Spruce", "Sycamore", "Willow", "Wren",
];
const SUFFIXES: &[&str] = &[
    "Street", "Avenue", "Road", "Lane", "Drive", "Court", "Place", "Way", "Terrace", "Row",
];
const TOWNS: &[&str] = &[
    "Ashford",
    "Bramwell",
    "Brookhaven",
    "Cedarburg",
    "Clearwater",
    "Eastfield",
    "Fairmont",
    "Glenwood",
    "Harborview",
    "Hillcrest",
    "Kingsbridge",
    "Lakeside",
    "Maplewood",
    "Millbrook",
    "Northgate",
    "Oakridge",
    "Pinecrest",
    "Riverton",
    "Rosedale",
    "Silverton",
    "Springfield",
    "Stonebridge",
    "Westbrook",
    "Willowdale",
];
const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn pick<'a, R: Rng + ?Sized>(rng: &mut R, list: &[&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

fn digit<R: Rng + ?Sized>(rng: &mut R) -> char {
    char::from(b'0' + rng.random_range(0..10u8))
}

/// A first name from the lexicon (Title case).
pub fn first_name<R: Rng + ?Sized>(rng: &mut R) -> &'static str {
    pick(rng, FIRST)
}

/// A family name from the lexicon (Title case).
pub fn last_name<R: Rng + ?Sized>(rng: &mut R) -> &'static str {
    pick(rng, LAST)
}

/// Replace each digit and ASCII letter with a random one of its class.
pub fn reshape<R: Rng + ?Sized>(template: &str, rng: &mut R) -> String {
    template
        .chars()
        .map(|c| match c {
            '0'..='9' => digit(rng),
            'a'..='z' => char::from(b'a' + rng.random_range(0..26u8)),
            'A'..='Z' => char::from(b'A' + rng.random_range(0..26u8)),
            other => other,
        })
        .collect()
}

/// Replace only the digits of `template`.
fn redigit<R: Rng + ?Sized>(template: &str, rng: &mut R) -> String {
    template
        .chars()
        .map(|c| if c.is_ascii_digit() { digit(rng) } else { c })
        .collect()
}

/// Fill the digit positions of `template` with `digits`, in order.
fn fill_digits(template: &str, digits: &[u8]) -> String {
    let mut it = digits.iter();
    template
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                it.next().map_or(c, |d| char::from(b'0' + d))
            } else {
                c
            }
        })
        .collect()
}

fn luhn_check(body: &[u8]) -> u8 {
    // The check digit makes the sum over body + check ≡ 0 (mod 10).
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    u8::try_from((10 - sum % 10) % 10).expect("a digit")
}

/// Entities [`fake`] has a dedicated generator for; others are reshaped.
pub const KNOWN_ENTITIES: [&str; 15] = [
    entity::PERSON,
    entity::EMAIL_ADDRESS,
    entity::PHONE_NUMBER,
    entity::US_SSN,
    entity::CREDIT_CARD,
    entity::IBAN_CODE,
    entity::IP_ADDRESS,
    entity::MAC_ADDRESS,
    entity::URL,
    entity::LOCATION,
    entity::UK_NHS,
    entity::UK_NINO,
    entity::CRYPTO,
    entity::MEDICAL_LICENSE,
    entity::DATE_TIME,
];

/// A fake for `value`, which a detector said is `entity` (Presidio's names).
/// Unknown entities keep the shape of the value ([`reshape`]).
pub fn fake<R: Rng + ?Sized>(entity: &str, value: &str, rng: &mut R) -> String {
    match entity {
        entity::PERSON => person(value, rng),
        entity::EMAIL_ADDRESS => email(rng),
        entity::PHONE_NUMBER => phone(value, rng),
        entity::US_SSN => ssn(value, rng),
        entity::CREDIT_CARD => card(value, rng),
        entity::IBAN_CODE => iban(value, rng),
        entity::IP_ADDRESS => ip(value, rng),
        entity::MAC_ADDRESS => mac(value, rng),
        entity::URL => url(value, rng),
        entity::LOCATION => location(value, rng),
        entity::UK_NHS => nhs(value, rng),
        entity::UK_NINO => nino(value, rng),
        entity::CRYPTO => crypto(value, rng),
        entity::MEDICAL_LICENSE => dea(rng),
        entity::DATE_TIME => date(value, rng),
        _ => reshape(value, rng),
    }
}

fn person<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    let words = value.split_whitespace().count();
    let mut name = format!("{} {}", pick(rng, FIRST), pick(rng, LAST));
    if words >= 3 && rng.random::<f64>() < 0.3 {
        name = format!(
            "{} {}. {}",
            pick(rng, FIRST),
            char::from(b'A' + rng.random_range(0..26u8)),
            pick(rng, LAST)
        );
    }
    name
}

fn email<R: Rng + ?Sized>(rng: &mut R) -> String {
    let tld = ["com", "org", "net"][rng.random_range(0..3)];
    format!(
        "{}.{}{}@example.{tld}",
        pick(rng, FIRST).to_lowercase(),
        pick(rng, LAST).to_lowercase(),
        rng.random_range(1..100)
    )
}

fn phone<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    // An extension (`x123`) and an international prefix (`+1-`, `001-`) keep
    // their form; North American numbers get the fictional 555-01xx block,
    // others keep their shape with random digits.
    let ext_at = value.to_ascii_lowercase().find(['x', '#']).unwrap_or(value.len());
    let (main, ext) = value.split_at(ext_at);
    let ext = redigit(ext, rng);
    let first_group_end = main
        .find(|c: char| !c.is_ascii_digit() && c != '+')
        .unwrap_or(main.len());
    let (prefix, rest) = if main.starts_with('+') || (main.starts_with("00") && first_group_end < main.len()) {
        main.split_at(first_group_end)
    } else {
        ("", main)
    };
    let rest_digits: Vec<u8> = rest.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
    let nanp = rest_digits.len() == 10 || (rest_digits.len() == 11 && rest_digits[0] == 1);
    if !nanp {
        return format!("{prefix}{}{ext}", redigit(rest, rng));
    }
    let mut d: Vec<u8> = Vec::with_capacity(rest_digits.len());
    if rest_digits.len() == 11 {
        d.push(1);
    }
    d.push(rng.random_range(2..10));
    d.push(rng.random_range(0..10));
    d.push(rng.random_range(0..10));
    d.extend([5, 5, 5, 0, 1]);
    d.push(rng.random_range(0..10));
    d.push(rng.random_range(0..10));
    format!("{prefix}{}{ext}", fill_digits(rest, &d))
}

fn ssn<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    let mut area = rng.random_range(1..900u32);
    if area == 666 {
        area = 667;
    }
    let group = rng.random_range(1..100u32);
    let serial = rng.random_range(1..10_000u32);
    let text = format!("{area:03}{group:02}{serial:04}");
    let d: Vec<u8> = text.bytes().map(|b| b - b'0').collect();
    if value.bytes().filter(u8::is_ascii_digit).count() == 9 {
        fill_digits(value, &d)
    } else {
        format!("{area:03}-{group:02}-{serial:04}")
    }
}

fn card<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    let original: Vec<u8> = value.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
    let len = if (13..=19).contains(&original.len()) {
        original.len()
    } else {
        16
    };
    // Keep the issuer prefix (brand) so the fake is a plausible card of the same kind.
    let keep = original.len().min(2);
    let mut body: Vec<u8> = original[..keep].to_vec();
    if body.is_empty() {
        body.push(4);
    }
    while body.len() < len - 1 {
        body.push(rng.random_range(0..10));
    }
    let check = luhn_check(&body);
    body.push(check);
    if original.len() == len {
        fill_digits(value, &body)
    } else {
        body.iter().map(|d| char::from(b'0' + d)).collect()
    }
}

fn iban<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    let compact: String = value
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if compact.len() < 5 || !compact.is_ascii() {
        return reshape(value, rng);
    }
    let country = &compact[..2];
    let bban = reshape(&compact[4..], rng);
    // Check digits: 98 − (BBAN + country + "00" as digits) mod 97.
    let rearranged = format!("{bban}{country}00");
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = c.to_digit(36).unwrap_or(0);
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    let check = 98 - rem;
    let fresh = format!("{country}{check:02}{bban}");
    if value.contains(' ') {
        fresh
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        fresh
    }
}

fn ip<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    if value.contains(':') {
        // 2001:db8::/32 is reserved for documentation.
        let groups: Vec<String> = (0..6)
            .map(|_| format!("{:x}", rng.random_range(0..=0xffffu32)))
            .collect();
        return format!("2001:db8:{}", groups.join(":"));
    }
    let block = ["192.0.2", "198.51.100", "203.0.113"][rng.random_range(0..3)];
    format!("{block}.{}", rng.random_range(1..255))
}

fn mac<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    let sep = if value.contains('-') { "-" } else { ":" };
    // Locally administered, unicast: second-lowest bit of the first octet set, lowest clear.
    let first = (rng.random_range(0..=255u8) | 0x02) & 0xfe;
    let rest: Vec<String> = (0..5).map(|_| format!("{:02x}", rng.random_range(0..=255u8))).collect();
    let text = format!("{first:02x}{sep}{}", rest.join(sep));
    if value.chars().any(|c| c.is_ascii_uppercase()) {
        text.to_ascii_uppercase()
    } else {
        text
    }
}

fn url<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    let scheme = if value.starts_with("http://") {
        "http://"
    } else {
        "https://"
    };
    let tld = ["com", "org", "net"][rng.random_range(0..3)];
    let host = format!(
        "{}-{}",
        pick(rng, STREETS).to_lowercase(),
        pick(rng, LAST).to_lowercase()
    );
    let www = if value.contains("www.") { "www." } else { "" };
    format!("{scheme}{www}{host}.example.{tld}/")
}

fn location<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    let v = value.trim();
    if v.chars().next().is_some_and(|c| c.is_ascii_digit()) && v.contains(' ') && v.chars().any(char::is_alphabetic) {
        // A street address; keep an apartment or suite part.
        let unit = ["Apt.", "Suite", "Unit"]
            .iter()
            .find_map(|u| v.find(u).map(|i| redigit(&v[i..], rng)))
            .unwrap_or_default();
        let number = rng.random_range(1..10_000);
        let street = format!("{number} {} {}", pick(rng, STREETS), pick(rng, SUFFIXES));
        return if unit.is_empty() {
            street
        } else {
            format!("{street} {unit}")
        };
    }
    if v.chars().all(|c| c.is_ascii_digit() || c == '-' || c == ' ') || v.chars().any(|c| c.is_ascii_digit()) {
        // A postcode.
        return reshape(v, rng);
    }
    pick(rng, TOWNS).to_owned()
}

fn nhs<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    loop {
        let mut d: Vec<u8> = (0..9).map(|_| rng.random_range(0..10u8)).collect();
        let sum: u32 = d.iter().zip((2..=10u32).rev()).map(|(x, w)| u32::from(*x) * w).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => continue,
            c => c,
        };
        d.push(u8::try_from(check).expect("a digit"));
        return if value.bytes().filter(u8::is_ascii_digit).count() == 10 {
            fill_digits(value, &d)
        } else {
            fill_digits("000 000 0000", &d)
        };
    }
}

fn nino<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    const FIRST_OK: &[u8] = b"ABCEGHJKLMNOPRSTWXYZ";
    const SECOND_OK: &[u8] = b"ABCEGHJKLMNPRSTWXYZ";
    let prefix = loop {
        let p = [
            FIRST_OK[rng.random_range(0..FIRST_OK.len())],
            SECOND_OK[rng.random_range(0..SECOND_OK.len())],
        ];
        if !matches!(&p, b"BG" | b"GB" | b"KN" | b"NK" | b"NT" | b"TN" | b"ZZ") {
            break p;
        }
    };
    let digits: String = (0..6).map(|_| digit(rng)).collect();
    let suffix = char::from(b'A' + rng.random_range(0..4u8));
    let p = String::from_utf8_lossy(&prefix).into_owned();
    if value.contains(' ') {
        format!("{p} {} {} {} {suffix}", &digits[..2], &digits[2..4], &digits[4..])
    } else {
        format!("{p}{digits}{suffix}")
    }
}

fn crypto<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    // A Base58Check address of the same kind (1… P2PKH, 3… P2SH).
    let version = if value.starts_with('3') { 0x05 } else { 0x00 };
    let mut payload = vec![version];
    payload.extend((0..20).map(|_| rng.random::<u8>()));
    let check = Sha256::digest(Sha256::digest(&payload));
    payload.extend_from_slice(&check[..4]);
    let zeros = payload.iter().take_while(|b| **b == 0).count();
    let mut digits: Vec<u8> = Vec::new();
    for byte in &payload {
        let mut carry = u32::from(*byte);
        for d in &mut digits {
            carry += u32::from(*d) << 8;
            *d = u8::try_from(carry % 58).expect("below 58");
            carry /= 58;
        }
        while carry > 0 {
            digits.push(u8::try_from(carry % 58).expect("below 58"));
            carry /= 58;
        }
    }
    let mut out = "1".repeat(zeros);
    out.extend(digits.iter().rev().map(|d| char::from(BASE58[usize::from(*d)])));
    out
}

fn dea<R: Rng + ?Sized>(rng: &mut R) -> String {
    let d: Vec<u32> = (0..6).map(|_| rng.random_range(0..10u32)).collect();
    let check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10;
    let first = char::from(b"ABFGM"[rng.random_range(0..5)]);
    let second = char::from(b'A' + rng.random_range(0..26u8));
    let digits: String = d.iter().map(|x| char::from_digit(*x, 10).expect("a digit")).collect();
    format!("{first}{second}{digits}{check}")
}

/// Dates shift by up to half a year either way, keeping their format.
fn date<R: Rng + ?Sized>(value: &str, rng: &mut R) -> String {
    let v = value.trim();
    let parts: Vec<&str> = v.splitn(2, ['T', ' ']).collect();
    let day = parts[0];
    let fields: Vec<&str> = day.split(['-', '/', '.']).collect();
    if fields.len() == 3
        && fields[0].len() == 4
        && let (Ok(y), Ok(m), Ok(d)) = (
            fields[0].parse::<i32>(),
            fields[1].parse::<u32>(),
            fields[2].parse::<u32>(),
        )
    {
        let days = days_from_civil(y, m, d) + rng.random_range(-182..=182);
        let (y, m, d) = civil_from_days(days);
        let sep = &day[4..5];
        let rest = parts
            .get(1)
            .map(|t| format!("{}{t}", &v[day.len()..day.len() + 1]))
            .unwrap_or_default();
        return format!("{y:04}{sep}{m:02}{sep}{d:02}{rest}");
    }
    reshape(v, rng)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).expect("day of month");
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).expect("month");
    let y = i32::try_from(yoe + era * 400 + i64::from(m <= 2)).expect("year fits");
    (y, m, d)
}

/// A keyed SHA-256 pseudonym: the same value and salt always give the same
/// 16 hex characters, which cannot be reversed without the salt.
pub fn pseudonym(salt: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update((salt.len() as u64).to_le_bytes());
    h.update(salt.as_bytes());
    h.update(value.as_bytes());
    h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(5)
    }

    fn luhn_ok(s: &str) -> bool {
        let d: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
        let body = &d[..d.len() - 1];
        luhn_check(body) == d[d.len() - 1]
    }

    #[test]
    fn formats_and_checksums_survive() {
        let mut r = rng();
        let c = fake(entity::CREDIT_CARD, "4111-1111-1111-1111", &mut r);
        assert!(
            c.starts_with("41") && c.len() == 19 && c.matches('-').count() == 3 && luhn_ok(&c),
            "{c}"
        );
        let p = fake(entity::PHONE_NUMBER, "(212) 555-0199 x12", &mut r);
        assert!(
            p.starts_with('(')
                && p.contains(") 555-01")
                && p.ends_with(|c: char| c.is_ascii_digit())
                && p.contains(" x"),
            "{p}"
        );
        let p = fake(entity::PHONE_NUMBER, "001-702-428-6692x313", &mut r);
        assert!(p.starts_with("001-") && p.contains("-555-01") && p.contains('x'), "{p}");
        let p = fake(entity::PHONE_NUMBER, "+1-950-589-1751", &mut r);
        assert!(p.starts_with("+1-") && p.contains("-555-01"), "{p}");
        let p = fake(entity::PHONE_NUMBER, "+44 20 7946 0018", &mut r);
        assert!(p.starts_with("+44 ") && p.len() == 16, "{p}");
        let e = fake(entity::EMAIL_ADDRESS, "jane@corp.com", &mut r);
        assert!(e.contains("@example."), "{e}");
        let s = fake(entity::US_SSN, "061-73-2029", &mut r);
        assert!(
            s.len() == 11 && &s[3..4] == "-" && !s.starts_with("666") && !s.starts_with('9'),
            "{s}"
        );
        let ip4 = fake(entity::IP_ADDRESS, "81.204.99.159", &mut r);
        assert!(
            ["192.0.2.", "198.51.100.", "203.0.113."]
                .iter()
                .any(|b| ip4.starts_with(b)),
            "{ip4}"
        );
        assert!(fake(entity::IP_ADDRESS, "6d76::1", &mut r).starts_with("2001:db8:"));
        let m = fake(entity::MAC_ADDRESS, "00:1A:2B:3C:4D:5E", &mut r);
        let first = u8::from_str_radix(&m[..2], 16).unwrap();
        assert!(
            first & 0x02 == 0x02 && first & 0x01 == 0 && m == m.to_ascii_uppercase(),
            "{m}"
        );
        let d = fake(entity::DATE_TIME, "1944-04-16", &mut r);
        assert_eq!(d.len(), 10, "{d}");
        let a = fake(entity::LOCATION, "9754 Laura Square Apt. 194", &mut r);
        assert!(a.contains("Apt. ") && a.chars().next().unwrap().is_ascii_digit(), "{a}");
    }

    #[test]
    fn national_numbers_validate() {
        let mut r = rng();
        let iban = fake(entity::IBAN_CODE, "GB53RDSJ82199351819093", &mut r);
        assert!(iban.starts_with("GB") && iban.len() == 22 && iban != "GB53RDSJ82199351819093");
        // mod-97 of the rearranged IBAN is 1.
        let rearranged = format!("{}{}", &iban[4..], &iban[..4]);
        let rem = rearranged.chars().fold(0u32, |rem, c| {
            let v = c.to_digit(36).unwrap();
            if v < 10 {
                (rem * 10 + v) % 97
            } else {
                (rem * 100 + v) % 97
            }
        });
        assert_eq!(rem, 1, "{iban}");
        let nhs = fake(entity::UK_NHS, "943 476 5919", &mut r);
        let d: Vec<u32> = nhs.chars().filter_map(|c| c.to_digit(10)).collect();
        let sum: u32 = d[..9].iter().zip((2..=10u32).rev()).map(|(x, w)| x * w).sum();
        assert_eq!((11 - sum % 11) % 11, d[9], "{nhs}");
        let dea = fake(entity::MEDICAL_LICENSE, "AB1234563", &mut r);
        let n: Vec<u32> = dea[2..].chars().map(|c| c.to_digit(10).unwrap()).collect();
        assert_eq!((n[0] + n[2] + n[4] + 2 * (n[1] + n[3] + n[5])) % 10, n[6]);
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1_000_000i64, -1, 0, 59, 10_957, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn pseudonyms_are_stable_and_salted() {
        assert_eq!(pseudonym("s", "x"), pseudonym("s", "x"));
        assert_ne!(pseudonym("s", "x"), pseudonym("t", "x"));
        assert_eq!(pseudonym("s", "x").len(), 16);
    }

    proptest! {
        #[test]
        fn cards_are_always_luhn_valid(len in 13usize..=19, seed in any::<u64>()) {
            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let template: String = std::iter::repeat_n('4', len).collect();
            let c = fake(entity::CREDIT_CARD, &template, &mut r);
            prop_assert_eq!(c.len(), len);
            prop_assert!(luhn_ok(&c));
        }

        #[test]
        fn reshape_keeps_shape(s in "[A-Za-z0-9 .-]{0,40}", seed in any::<u64>()) {
            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let out = reshape(&s, &mut r);
            prop_assert_eq!(out.len(), s.len());
            for (a, b) in s.chars().zip(out.chars()) {
                prop_assert_eq!(a.is_ascii_digit(), b.is_ascii_digit());
                prop_assert_eq!(a.is_ascii_uppercase(), b.is_ascii_uppercase());
                if !a.is_ascii_alphanumeric() { prop_assert_eq!(a, b); }
            }
        }
    }
}
