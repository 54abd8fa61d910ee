//! Opaque, stateless tickets and prepared-statement handles.
//!
//! A ticket says what to stream (a dataset, a job output, a SQL statement),
//! to whom it was issued and until when; it is HMAC-SHA256-signed with a key
//! derived from the server's signing key, so any server process of the
//! deployment can redeem it and nobody can forge or alter one. Nothing is
//! kept server-side: a ticket is re-authorized against the metadata store on
//! every `DoGet`, because tickets can be replayed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The protobuf `Any` type URL our tickets travel under.
pub const TICKET_TYPE_URL: &str = "type.googleapis.com/doppel.flight.v1.Ticket";

/// What a ticket or handle grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Target {
    /// A stored dataset.
    Dataset {
        /// Dataset id.
        id: String,
    },
    /// One table output of a succeeded job.
    Output {
        /// Job id.
        job: String,
        /// Output file name (`synthetic.parquet`).
        name: String,
    },
    /// The table a marketplace purchase bought (access re-checked on
    /// redemption: a refund ends it).
    Purchase {
        /// Purchase id.
        id: String,
    },
    /// A read-only SQL statement, with bound parameters (an Arrow IPC stream,
    /// base64) when a prepared statement was bound.
    Sql {
        /// The statement text.
        sql: String,
        /// Bound parameter row, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<String>,
    },
}

/// A decoded, verified ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// What it grants.
    #[serde(flatten)]
    pub target: Target,
    /// The account it was issued to.
    pub acct: String,
    /// Expiry, ms since the epoch.
    pub exp: i64,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not something we issued (bad encoding).
    #[error("the ticket is malformed")]
    Malformed,
    /// Altered or signed with another key.
    #[error("the ticket's signature does not match")]
    BadSignature,
    /// Past its expiry.
    #[error("the ticket expired; ask for a new one with GetFlightInfo")]
    Expired,
}

/// Signs and verifies tickets.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    /// A signer from the deployment's signing key. The ticket key is derived
    /// (HMAC of a label) so a ticket signature can never double as a signed
    /// download URL's, or the reverse.
    pub fn new(signing_key: &[u8]) -> Signer {
        Signer {
            key: mac(signing_key, b"doppel flight ticket v1").to_vec(),
        }
    }

    /// `base64url(json) "." base64url(hmac)`.
    pub fn sign(&self, claims: &Claims) -> Vec<u8> {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let sig = URL_SAFE_NO_PAD.encode(mac(&self.key, body.as_bytes()));
        format!("{body}.{sig}").into_bytes()
    }

    /// Check the signature, then the expiry (at `now_ms`), and decode.
    pub fn verify(&self, ticket: &[u8], now_ms: i64) -> Result<Claims, TicketError> {
        let text = std::str::from_utf8(ticket).map_err(|_| TicketError::Malformed)?;
        let (body, sig) = text.split_once('.').ok_or(TicketError::Malformed)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| TicketError::Malformed)?;
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).map_err(|_| TicketError::Malformed)?;
        m.update(body.as_bytes());
        // Constant-time comparison of the tag.
        m.verify_slice(&sig).map_err(|_| TicketError::BadSignature)?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| TicketError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TicketError::Malformed)?;
        if claims.exp <= now_ms {
            return Err(TicketError::Expired);
        }
        Ok(claims)
    }
}

fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims(target: Target) -> Claims {
        Claims {
            target,
            acct: "acc_1".into(),
            exp: 2_000,
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let s = Signer::new(b"k");
        let c = claims(Target::Output {
            job: "job_1".into(),
            name: "synthetic.parquet".into(),
        });
        let t = s.sign(&c);
        assert_eq!(s.verify(&t, 1_999).unwrap(), c);
        assert_eq!(s.verify(&t, 2_000), Err(TicketError::Expired));
    }

    #[test]
    fn another_key_or_an_edit_is_refused() {
        let s = Signer::new(b"k");
        let t = s.sign(&claims(Target::Dataset { id: "ds_1".into() }));
        assert_eq!(Signer::new(b"other").verify(&t, 0), Err(TicketError::BadSignature));
        // Re-sign a changed body with a guessed key: still refused.
        let forged = Signer::new(b"guess").sign(&Claims {
            acct: "acc_2".into(),
            ..claims(Target::Dataset { id: "ds_1".into() })
        });
        assert_eq!(s.verify(&forged, 0), Err(TicketError::BadSignature));
        assert_eq!(s.verify(b"no-dot", 0), Err(TicketError::Malformed));
        assert_eq!(s.verify(&[0xff, 0xfe], 0), Err(TicketError::Malformed));
    }

    proptest! {
        /// Whatever the claims, a ticket verifies to exactly them; flipping any
        /// byte of it never verifies to anything.
        #[test]
        fn any_claims_round_trip_and_any_flip_is_caught(
            sql in ".{0,64}",
            acct in "[a-z0-9_]{1,20}",
            exp in 1i64..i64::MAX,
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let s = Signer::new(b"secret");
            let c = Claims { target: Target::Sql { sql, params: None }, acct, exp };
            let t = s.sign(&c);
            prop_assert_eq!(s.verify(&t, 0).unwrap(), c);
            let mut bad = t.clone();
            let i = flip.index(bad.len());
            bad[i] ^= 1 << bit;
            prop_assert!(s.verify(&bad, 0).is_err());
        }
    }
}
