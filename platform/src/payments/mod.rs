//! Payments behind one trait: create seller accounts, open a hosted checkout
//! with the platform's fee split off, fetch a payment's true status (the
//! redirect and the webhook body prove nothing), refund, and verify webhooks.
//!
//! Money is integer minor units plus an ISO 4217 currency ([`Money`]);
//! nothing here is a float. [`fake::FakeProvider`] is the default: it needs
//! no account anywhere, keeps its books in the metadata store, serves a
//! hosted checkout page and signs its webhooks exactly as Stripe does
//! ([`stripe_signature`]), so the code that settles purchases is the code
//! that will settle them against a real provider.

pub mod fake;
pub mod stripe;

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::util::{ct_eq, hex, unhex};
use crate::{Error, Result};

/// What a provider call returns.
pub type ProviderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// An amount in minor units (cents, pence) of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Money {
    /// Minor units.
    pub minor: i64,
    /// Upper-case ISO 4217 code.
    pub currency: String,
}

impl Money {
    /// Checked money: a positive amount in a three-letter currency.
    pub fn new(minor: i64, currency: &str) -> Result<Money> {
        if minor <= 0 {
            return Err(Error::invalid(
                "price_minor",
                "must be a positive whole number of minor units",
            ));
        }
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::invalid(
                "currency",
                format!("`{currency}` is not an ISO 4217 code (three upper-case letters, e.g. USD)"),
            ));
        }
        Ok(Money {
            minor,
            currency: currency.to_owned(),
        })
    }
}

/// The platform's fee and the seller's share of `amount`: the fee is
/// rounded down, so the seller never gets less than their share and the two
/// always add up to the amount.
pub fn split(amount: i64, fee_bps: i64) -> (i64, i64) {
    let fee = i64::try_from(i128::from(amount) * i128::from(fee_bps.clamp(0, 10_000)) / 10_000).unwrap_or(0);
    (fee, amount - fee)
}

/// A checkout to open.
#[derive(Debug, Clone)]
pub struct CheckoutRequest<'a> {
    /// Our purchase id (the provider echoes it back as the reference).
    pub reference: &'a str,
    /// What the buyer pays.
    pub amount: &'a Money,
    /// The seller's account at the provider (the split's destination).
    pub seller_account: &'a str,
    /// The platform's fee, kept back from the seller.
    pub platform_fee_minor: i64,
    /// Shown to the buyer.
    pub description: &'a str,
    /// Where the provider sends the buyer afterwards.
    pub return_url: &'a str,
    /// Sent to the provider so a retried call opens one checkout.
    pub idempotency_key: &'a str,
}

/// An opened checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The provider's payment id.
    pub provider_ref: String,
    /// The hosted page to send the buyer to.
    pub url: String,
}

/// A payment's state at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Not paid yet.
    Pending,
    /// Paid.
    Succeeded,
    /// Declined, abandoned or expired.
    Failed,
    /// Paid, then refunded.
    Refunded,
}

impl PaymentStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Refunded => "refunded",
        }
    }

    /// From the wire name.
    pub fn parse(s: &str) -> Result<PaymentStatus> {
        Ok(match s {
            "pending" | "open" => PaymentStatus::Pending,
            "succeeded" => PaymentStatus::Succeeded,
            "failed" | "canceled" => PaymentStatus::Failed,
            "refunded" => PaymentStatus::Refunded,
            other => return Err(Error::Internal(format!("unknown payment status `{other}`"))),
        })
    }
}

/// A payment as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Provider's id.
    pub provider_ref: String,
    /// Our purchase id, as given at checkout.
    pub reference: String,
    /// State.
    pub status: PaymentStatus,
    /// Amount charged.
    pub amount: Money,
}

/// A webhook whose signature checked out. Only its id (for deduplication)
/// and the payment it names are used: state comes from fetching the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEvent {
    /// Provider's event id.
    pub id: String,
    /// Event type (`payment.succeeded`, …).
    pub kind: String,
    /// The payment it is about.
    pub provider_ref: Option<String>,
}

/// A payment provider.
pub trait PaymentProvider: Send + Sync + std::fmt::Debug {
    /// `fake`, `stripe`, `flutterwave`.
    fn name(&self) -> &'static str;
    /// Open an account for a seller to be paid into; returns its id.
    fn create_seller_account<'a>(&'a self, account_id: &'a str, email: &'a str) -> ProviderFuture<'a, String>;
    /// Open a hosted checkout with the platform's fee split off.
    fn create_checkout<'a>(&'a self, request: CheckoutRequest<'a>) -> ProviderFuture<'a, Checkout>;
    /// The payment's true state (verify-after-redirect, reconciliation).
    fn fetch_payment<'a>(&'a self, provider_ref: &'a str) -> ProviderFuture<'a, Payment>;
    /// Refund the whole payment; returns the status after.
    fn refund<'a>(&'a self, provider_ref: &'a str, idempotency_key: &'a str) -> ProviderFuture<'a, PaymentStatus>;
    /// Check a webhook's signature over its raw bytes.
    fn verify_webhook(&self, headers: &http::HeaderMap, raw: &[u8], now: SystemTime) -> Result<VerifiedEvent>;
}

/// Stripe's webhook signature: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`,
/// where `v1 = HMAC-SHA256(secret, "{t}.{raw body}")`.
pub mod stripe_signature {
    use super::{Error, Hmac, Mac, Result, Sha256, SystemTime, ct_eq, hex, unhex};

    fn mac(secret: &str, t: i64, raw: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        m.update(t.to_string().as_bytes());
        m.update(b".");
        m.update(raw);
        m.finalize().into_bytes().to_vec()
    }

    /// The header value for `raw` signed at unix time `t`.
    pub fn sign(secret: &str, t: i64, raw: &[u8]) -> String {
        format!("t={t},v1={}", hex(&mac(secret, t, raw)))
    }

    /// Verify `header` over `raw`: some `v1` must match (key rotation sends
    /// several) and `t` must be within `tolerance` seconds of `now`.
    pub fn verify(secret: &str, header: &str, raw: &[u8], now: SystemTime, tolerance: u64) -> Result<()> {
        let mut t: Option<i64> = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = v.parse().ok(),
                Some(("v1", v)) => signatures.extend(unhex(v)),
                _ => {}
            }
        }
        let t = t.ok_or_else(|| Error::BadSignature("signature header has no timestamp".into()))?;
        if signatures.is_empty() {
            return Err(Error::BadSignature("signature header has no v1 signature".into()));
        }
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if (now - t).unsigned_abs() > tolerance {
            return Err(Error::BadSignature(format!(
                "timestamp is {}s from now, outside the {tolerance}s tolerance",
                now - t
            )));
        }
        let want = mac(secret, t, raw);
        if signatures.iter().any(|s| ct_eq(s, &want)) {
            Ok(())
        } else {
            Err(Error::BadSignature("no signature matches the payload".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn stripe_signatures_verify_and_refuse() {
        let body = br#"{"id":"evt_1"}"#;
        let t = 1_800_000_000;
        let at = |s: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap());
        let header = stripe_signature::sign("whsec_a", t, body);
        assert!(stripe_signature::verify("whsec_a", &header, body, at(t + 10), 300).is_ok());
        // Rotation: any matching v1 will do.
        let rotated = format!("{header},v1={}", "00".repeat(32));
        assert!(stripe_signature::verify("whsec_a", &rotated, body, at(t), 300).is_ok());
        for (secret, header, body, now, why) in [
            ("whsec_b", header.as_str(), &body[..], t, "no signature matches"),
            (
                "whsec_a",
                header.as_str(),
                &b"{\"id\":\"evt_2\"}"[..],
                t,
                "no signature matches",
            ),
            ("whsec_a", header.as_str(), &body[..], t + 301, "outside the 300s"),
            ("whsec_a", "v1=00", &body[..], t, "no timestamp"),
            ("whsec_a", "t=1800000000", &body[..], t, "no v1"),
        ] {
            let err = stripe_signature::verify(secret, header, body, at(now), 300).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
            assert_eq!(err.code(), "invalid_signature");
        }
    }

    proptest! {
        #[test]
        fn a_split_never_loses_a_cent(amount in 1i64..1_000_000_000_000, bps in 0i64..=10_000) {
            let (fee, seller) = split(amount, bps);
            prop_assert_eq!(fee + seller, amount);
            prop_assert!(fee >= 0 && seller >= 0);
            // The fee is the floor of the exact share.
            prop_assert!(i128::from(fee) * 10_000 <= i128::from(amount) * i128::from(bps));
            prop_assert!(i128::from(fee + 1) * 10_000 > i128::from(amount) * i128::from(bps));
        }
    }

    #[test]
    fn eighty_twenty() {
        assert_eq!(split(10_000, 2000), (2000, 8000));
        assert_eq!(split(999, 2000), (199, 800));
        assert_eq!(split(1, 2000), (0, 1));
    }

    #[test]
    fn money_is_checked() {
        assert!(Money::new(100, "EUR").is_ok());
        assert!(Money::new(0, "EUR").is_err());
        assert!(Money::new(100, "eur").unwrap_err().to_string().contains("ISO 4217"));
    }
}
