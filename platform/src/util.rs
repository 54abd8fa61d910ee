//! Small shared helpers: time, random identifiers and secrets, hashing.

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Milliseconds since the Unix epoch (the unit of every timestamp column).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS generator failing is not something a server can recover from.
    getrandom::fill(&mut buf).expect("the operating system's random generator is available");
    buf
}

/// A new identifier `{prefix}_{26 chars}`: 48 bits of milliseconds then 80
/// random bits in Crockford base32, so ids sort by creation time. Cursor
/// pagination orders by id alone for that reason.
pub fn new_id(prefix: &str) -> String {
    let ms = u64::try_from(now_ms()).unwrap_or(0);
    let rand = random_bytes::<10>();
    let mut value: u128 = u128::from(ms) << 80;
    for (i, b) in rand.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..26).rev() {
        let idx = usize::try_from((value >> (5 * i)) & 31).unwrap_or(0);
        out.push(char::from(CROCKFORD[idx]));
    }
    out
}

/// Base62 of a big-endian byte string (no padding; `len` digits, left-padded).
pub fn base62(bytes: &[u8], len: usize) -> String {
    // Long division on the byte string; fine for the ≤ 40-byte secrets we make.
    let mut digits = Vec::with_capacity(len);
    let mut num: Vec<u8> = bytes.to_vec();
    while num.iter().any(|&b| b != 0) {
        let mut rem: u32 = 0;
        for byte in &mut num {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = u8::try_from(acc / 62).unwrap_or(0);
            rem = acc % 62;
        }
        digits.push(BASE62[usize::try_from(rem).unwrap_or(0)]);
    }
    while digits.len() < len {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Bytes from lower- or upper-case hex; `None` if it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_and_have_the_prefix() {
        let a = new_id("job");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("job");
        assert!(a.starts_with("job_") && a.len() == 30, "{a}");
        assert!(a < b);
    }

    #[test]
    fn base62_is_fixed_width_and_injective_on_small_values() {
        assert_eq!(base62(&[0], 3), "000");
        assert_eq!(base62(&[61], 1), "z");
        assert_eq!(base62(&[62], 2), "10");
        assert_eq!(base62(&[1, 0], 2), "48");
    }

    #[test]
    fn hex_round_trips() {
        let b = random_bytes::<16>();
        assert_eq!(unhex(&hex(&b)).unwrap(), b);
        assert!(unhex("zz").is_none());
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"ab", b"abc"));
    }
}
