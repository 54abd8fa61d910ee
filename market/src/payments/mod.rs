//! Payments behind one trait: create seller accounts, open a hosted checkout
//! with the platform's fee split off, fetch a payment's true status (the
//! redirect and the webhook body prove nothing), refund, and verify webhooks.
//!
//! Money is integer minor units plus an ISO 4217 currency ([`Money`]);
//! nothing here is a float. [`fake::FakeProvider`] is the default: it needs
//! no account anywhere, keeps its books in the metadata store, serves a
//! hosted checkout page and signs its webhooks exactly as Stripe does
//! ([`stripe_signature`]), so the code that settles purchases is the code
//! that will settle them against a real provider. [`stripe::StripeProvider`]
//! and [`flutterwave::FlutterwaveProvider`] are the real adapters.

pub mod fake;
pub mod flutterwave;
mod rest;
pub mod stripe;

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use doppel_platform::util::{ct_eq, hex, unhex};
use doppel_platform::{Error, Result};

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

    /// How many digits the currency's minor unit has (ISO 4217): 0 for the
    /// yen or the CFA franc, 3 for the dinars of Bahrain, Kuwait…, 2 for the
    /// rest. Providers that take decimal amounts (Flutterwave) need it.
    pub fn exponent(&self) -> u32 {
        currency_exponent(&self.currency)
    }

    /// `12.34 USD`, `1200 JPY`, `1.500 KWD`.
    pub fn display(&self) -> String {
        let e = self.exponent();
        if e == 0 {
            return format!("{} {}", self.minor, self.currency);
        }
        let unit = 10i64.pow(e);
        format!(
            "{}{}.{:0width$} {}",
            if self.minor < 0 { "-" } else { "" },
            (self.minor / unit).abs(),
            (self.minor % unit).abs(),
            self.currency,
            width = e as usize
        )
    }
}

/// Minor-unit digits of an ISO 4217 currency.
pub fn currency_exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// An amount as a person types it in `currency`'s major unit (`12.50`,
/// `1,200`, `0.5`), in exact minor units: parsed as a decimal, never through
/// floating point, with thousands separators (`,` `_` spaces) ignored. More
/// decimals than the currency has, a sign, or anything else is an error
/// naming `field`; so is an amount beyond `i64`.
pub fn minor_from_text(field: &str, text: &str, currency: &str) -> Result<i64> {
    let e = currency_exponent(currency);
    let bad = |why: String| Error::invalid(field, why);
    let digits: String = text.trim().chars().filter(|c| !matches!(c, ',' | '_' | ' ')).collect();
    let (whole, frac) = digits.split_once('.').unwrap_or((&digits, ""));
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !numeric(whole) || !numeric(frac) {
        return Err(bad("enter an amount such as 49.00".to_owned()));
    }
    if frac.len() > e as usize {
        return Err(bad(format!("{currency} has {e} decimal place(s)")));
    }
    let unit = 10i64.pow(e);
    let parse = |s: &str| if s.is_empty() { Some(0) } else { s.parse::<i64>().ok() };
    let frac_minor = parse(frac).and_then(|f| f.checked_mul(10i64.pow(e - frac.len() as u32)));
    parse(whole)
        .and_then(|w| w.checked_mul(unit))
        .zip(frac_minor)
        .and_then(|(w, f)| w.checked_add(f))
        .ok_or_else(|| bad("the amount is too large".to_owned()))
}

/// The platform's fee and the seller's share of `amount`: the fee is
/// rounded down, so the seller never gets less than their share and the two
/// always add up to the amount.
pub fn split(amount: i64, fee_bps: i64) -> (i64, i64) {
    let fee = i64::try_from(i128::from(amount) * i128::from(fee_bps.clamp(0, 10_000)) / 10_000).unwrap_or(0);
    (fee, amount - fee)
}

/// Where a seller is paid: what a provider that splits payments into bank
/// accounts (Flutterwave subaccounts) needs. Only a masked summary is kept
/// by doppel; the details go to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutDetails {
    /// Name on the account.
    pub business_name: String,
    /// The provider's bank code (`044`, `058`…).
    pub bank_code: String,
    /// The account number.
    pub account_number: String,
    /// ISO 3166-1 alpha-2 country of the bank (`NG`, `KE`, `GH`…).
    pub country: String,
}

impl PayoutDetails {
    /// Checked details: every field is named when it is wrong.
    pub fn new(business_name: &str, bank_code: &str, account_number: &str, country: &str) -> Result<PayoutDetails> {
        let business_name = business_name.trim();
        if business_name.is_empty() || business_name.chars().count() > 100 {
            return Err(Error::invalid("business_name", "must be 1 to 100 characters"));
        }
        if !(2..=10).contains(&bank_code.len()) || !bank_code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::invalid(
                "bank_code",
                "must be the provider's bank code: 2 to 10 letters or digits",
            ));
        }
        if !(6..=34).contains(&account_number.len()) || !account_number.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::invalid(
                "account_number",
                "must be 6 to 34 letters or digits, without spaces",
            ));
        }
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::invalid(
                "country",
                format!("`{country}` is not an ISO 3166-1 alpha-2 code (e.g. NG)"),
            ));
        }
        Ok(PayoutDetails {
            business_name: business_name.to_owned(),
            bank_code: bank_code.to_owned(),
            account_number: account_number.to_owned(),
            country: country.to_owned(),
        })
    }

    /// What may be shown back: bank code, the last four digits, country.
    pub fn masked(&self) -> String {
        let n = self.account_number.len();
        format!(
            "{} · bank {} · ****{} · {}",
            self.business_name,
            self.bank_code,
            &self.account_number[n.saturating_sub(4)..],
            self.country
        )
    }
}

/// A seller to open a provider account for.
#[derive(Debug, Clone, Copy)]
pub struct SellerOnboarding<'a> {
    /// The doppel account.
    pub account_id: &'a str,
    /// Its e-mail.
    pub email: &'a str,
    /// Bank details, for providers that pay sellers into bank accounts.
    pub payout: Option<&'a PayoutDetails>,
}

/// A checkout to open.
#[derive(Debug, Clone)]
pub struct CheckoutRequest<'a> {
    /// Our purchase id (the provider echoes it back as the reference).
    pub reference: &'a str,
    /// The buyer's e-mail (some providers require a customer).
    pub buyer_email: &'a str,
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
    /// Amount charged; `None` while the provider holds no charge yet (the
    /// buyer has not reached the payment step).
    pub amount: Option<Money>,
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
    /// The provider's id of the charge, where the event names one: a
    /// Flutterwave transaction (the payment is then fetched by it, and must
    /// carry the reference), or the payment intent of a Stripe charge event
    /// (which names no session: [`PaymentProvider::resolve_reference`]
    /// finds it).
    pub charge_id: Option<String>,
}

/// A payment provider.
pub trait PaymentProvider: Send + Sync + std::fmt::Debug {
    /// `fake`, `stripe`, `flutterwave`.
    fn name(&self) -> &'static str;
    /// Whether sellers must give bank details ([`PayoutDetails`]) before
    /// they can be paid.
    fn needs_payout_details(&self) -> bool {
        false
    }
    /// Open an account for a seller to be paid into; returns its id.
    fn create_seller_account<'a>(&'a self, seller: SellerOnboarding<'a>) -> ProviderFuture<'a, String>;
    /// A one-time link where the seller finishes onboarding at the provider
    /// (identity, bank account), for providers that collect these
    /// themselves (Stripe Express). `None`: this provider has no such step.
    fn onboarding_link<'a>(
        &'a self,
        provider_account_id: &'a str,
        return_url: &'a str,
    ) -> ProviderFuture<'a, Option<String>> {
        let _ = (provider_account_id, return_url);
        Box::pin(async { Ok(None) })
    }
    /// Open a hosted checkout with the platform's fee split off.
    fn create_checkout<'a>(&'a self, request: CheckoutRequest<'a>) -> ProviderFuture<'a, Checkout>;
    /// The payment's true state (verify-after-redirect, reconciliation).
    fn fetch_payment<'a>(&'a self, provider_ref: &'a str) -> ProviderFuture<'a, Payment>;
    /// The payment's true state, fetched by the provider's charge id when a
    /// webhook or redirect named one ([`VerifiedEvent::charge_id`]). The
    /// answer still carries its own reference, which the caller checks.
    fn fetch_charge<'a>(&'a self, provider_ref: &'a str, charge_id: &'a str) -> ProviderFuture<'a, Payment> {
        let _ = charge_id;
        self.fetch_payment(provider_ref)
    }
    /// The reference of the payment a charge belongs to, for events that
    /// name only the charge (a refund or dispute made in the provider's
    /// dashboard). `None`: not one of ours, or not knowable.
    fn resolve_reference<'a>(&'a self, charge_id: &'a str) -> ProviderFuture<'a, Option<String>> {
        let _ = charge_id;
        Box::pin(async { Ok(None) })
    }
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

    /// A Stripe-signed event: the `Stripe-Signature` header verified over
    /// `raw`, then the body read as JSON. Returns its id, its type and the
    /// body, whose `data.object` each provider reads its own way.
    pub fn verify_event(
        secret: &str,
        headers: &http::HeaderMap,
        raw: &[u8],
        now: SystemTime,
        tolerance: u64,
    ) -> Result<(String, String, serde_json::Value)> {
        let header = headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::BadSignature("missing Stripe-Signature header".into()))?;
        verify(secret, header, raw, now, tolerance)?;
        let v: serde_json::Value =
            serde_json::from_slice(raw).map_err(|e| Error::invalid("body", format!("not a JSON event: {e}")))?;
        let id = v["id"]
            .as_str()
            .ok_or_else(|| Error::invalid("id", "the event has no id"))?
            .to_owned();
        let kind = v["type"].as_str().unwrap_or_default().to_owned();
        Ok((id, kind, v))
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
    fn typed_amounts_are_exact_minor_units() {
        assert_eq!(minor_from_text("price", "12.50", "USD").unwrap(), 1250);
        assert_eq!(minor_from_text("price", " 1,200 ", "JPY").unwrap(), 1200);
        assert_eq!(minor_from_text("price", "1.5", "KWD").unwrap(), 1500);
        assert_eq!(minor_from_text("price", ".5", "EUR").unwrap(), 50);
        assert_eq!(minor_from_text("price", "0", "EUR").unwrap(), 0);
        // 0.29 * 100 is 28.999… in floating point; the decimal parse is exact.
        assert_eq!(minor_from_text("price", "0.29", "USD").unwrap(), 29);
        for bad in ["", ".", "12.345", "-1", "1e3", "12.5.0", "ten"] {
            let e = minor_from_text("price", bad, "USD").unwrap_err();
            assert!(e.to_string().starts_with("price: "), "{bad}: {e}");
        }
        assert!(
            minor_from_text("price", "1.5", "JPY").is_err(),
            "the yen has no minor unit"
        );
        assert!(minor_from_text("price", "99999999999999999999", "USD").is_err());
    }

    proptest::proptest! {
        /// What `Money::display` prints, `minor_from_text` reads back.
        #[test]
        fn displayed_amounts_read_back(minor in 0i64..1_000_000_000_000, c in 0usize..3) {
            let currency = ["USD", "JPY", "KWD"][c];
            let m = Money { minor, currency: currency.to_owned() };
            let shown = m.display();
            let text = shown.strip_suffix(&format!(" {currency}")).unwrap();
            proptest::prop_assert_eq!(minor_from_text("price", text, currency).unwrap(), minor);
        }
    }

    #[test]
    fn money_displays_in_its_currency_s_unit() {
        assert_eq!(Money::new(1234, "USD").unwrap().display(), "12.34 USD");
        assert_eq!(Money::new(5, "EUR").unwrap().display(), "0.05 EUR");
        assert_eq!(Money::new(1200, "JPY").unwrap().display(), "1200 JPY");
        assert_eq!(Money::new(1500, "KWD").unwrap().display(), "1.500 KWD");
    }

    #[test]
    fn payout_details_are_checked_and_masked() {
        let d = PayoutDetails::new(" Acme Data ", "044", "0690000031", "NG").unwrap();
        assert_eq!(d.masked(), "Acme Data · bank 044 · ****0031 · NG");
        for (args, field) in [
            (("", "044", "0690000031", "NG"), "business_name"),
            (("A", "0", "0690000031", "NG"), "bank_code"),
            (("A", "044", "069 000", "NG"), "account_number"),
            (("A", "044", "0690000031", "Nigeria"), "country"),
        ] {
            let err = PayoutDetails::new(args.0, args.1, args.2, args.3).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn money_is_checked() {
        assert!(Money::new(100, "EUR").is_ok());
        assert!(Money::new(0, "EUR").is_err());
        assert!(Money::new(100, "eur").unwrap_err().to_string().contains("ISO 4217"));
    }
}
