//! Flutterwave (API v3): split payments into seller subaccounts through
//! Flutterwave Standard's hosted checkout.
//!
//! - A seller is a **subaccount** (`POST /v3/subaccounts`) opened with their
//!   bank details ([`PayoutDetails`]): Flutterwave pays sellers into a bank
//!   account, so listing on Flutterwave needs them first. The id kept is the
//!   `subaccount_id` (`RS_…`); doppel keeps only a masked summary.
//! - A checkout is a payment link (`POST /v3/payments`) whose `tx_ref` is the
//!   purchase id and whose `subaccounts` entry gives the seller exactly their
//!   share (`transaction_charge_type = flat_subaccount`), so the split at
//!   Flutterwave is the split the ledger books, to the minor unit.
//! - Flutterwave amounts are decimals in the currency's *major* unit. They are
//!   converted with the ISO 4217 exponent ([`Money::exponent`]), and the
//!   conversion round-trips exactly (property-tested) for every amount below
//!   10¹⁵ minor units; larger ones are refused rather than rounded.
//! - The provider reference is the `tx_ref`: Flutterwave creates a
//!   transaction only when the buyer tries to pay. State is fetched by
//!   **transaction id** (`GET /v3/transactions/{id}/verify`) when a webhook
//!   or the redirect names one, else by reference
//!   (`GET /v3/transactions/verify_by_reference`), and the answer's own
//!   `tx_ref`, amount and currency are what the marketplace checks, so an
//!   event naming another buyer's transaction changes nothing.
//! - Webhooks carry `verif-hash`, which simply equals the secret hash set in
//!   the Flutterwave dashboard (no HMAC, no timestamp): it is compared in
//!   constant time, replays are dropped by the event key (event, transaction,
//!   status), and the state is always fetched again.
//! - Refunds: `POST /v3/transactions/{id}/refund` for the whole amount. The
//!   transaction itself stays `successful` at Flutterwave (the refund is its
//!   own object), so the refund call's answer is what says "refunded".
//!
//! The base URL is configurable (`payments.flutterwave_api_base`), which is
//! how the tests point it at a local server speaking Flutterwave's shapes.

use std::time::{Duration, SystemTime};

use super::{
    Checkout, CheckoutRequest, Money, Payment, PaymentProvider, PaymentStatus, ProviderFuture, SellerOnboarding,
    VerifiedEvent,
};
use doppel_platform::util::{ct_eq, sha256_hex};
use doppel_platform::{Error, Result};

/// The largest amount converted to a decimal: below it, `minor / 10^e`
/// printed as the shortest round-tripping decimal is the exact amount.
const MAX_MINOR: i64 = 1_000_000_000_000_000;

/// `minor` as a decimal in the major unit (`1234` USD → `12.34`).
pub fn to_major(m: &Money) -> Result<f64> {
    if !(0..MAX_MINOR).contains(&m.minor) {
        return Err(Error::invalid(
            "price_minor",
            "is too large for a decimal amount at the payment provider",
        ));
    }
    #[allow(clippy::cast_precision_loss, reason = "below 2^50: exact")]
    let minor = m.minor as f64;
    Ok(minor / 10f64.powi(i32::try_from(m.exponent()).unwrap_or(2)))
}

/// A decimal major-unit amount from Flutterwave in minor units.
pub fn from_major(amount: f64, currency: &str) -> Result<i64> {
    let scaled = amount * 10f64.powi(i32::try_from(super::currency_exponent(currency)).unwrap_or(2));
    #[allow(clippy::cast_precision_loss, reason = "a power of ten below 2^53: exact")]
    let limit = MAX_MINOR as f64;
    if !scaled.is_finite() || scaled < 0.0 || scaled >= limit {
        return Err(Error::Internal(format!(
            "Flutterwave amount {amount} {currency} is out of range"
        )));
    }
    #[allow(clippy::cast_possible_truncation, reason = "finite and in range")]
    Ok(scaled.round() as i64)
}

/// The Flutterwave adapter.
#[derive(Debug, Clone)]
pub struct FlutterwaveProvider {
    base: String,
    secret_key: String,
    secret_hash: String,
    platform_fee_bps: i64,
    http: reqwest::Client,
}

impl FlutterwaveProvider {
    /// A client of Flutterwave's v3 API at `base` (`https://api.flutterwave.com`)
    /// with the secret key (`FLWSECK-…`), the webhook secret hash and the
    /// platform's fee (the subaccounts' default commission).
    pub fn new(base: &str, secret_key: String, secret_hash: String, platform_fee_bps: i64) -> FlutterwaveProvider {
        FlutterwaveProvider {
            base: base.trim_end_matches('/').to_owned(),
            secret_key,
            secret_hash,
            platform_fee_bps,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<serde_json::Value> {
        let answer = super::rest::send("flutterwave", req.bearer_auth(&self.secret_key)).await?;
        // Flutterwave also says `"status": "error"` inside some 2xx answers.
        if answer.ok() && answer.body["status"] == "success" {
            return Ok(answer.body);
        }
        let message = answer.body["message"].as_str().unwrap_or("no message");
        // "No transaction was found for this id": the buyer has not paid.
        if answer.status == 400 && message.to_lowercase().contains("no transaction") {
            return Err(Error::NotFound("payment".into()));
        }
        Err(super::rest::refusal("flutterwave", answer.status, message))
    }

    fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    async fn by_reference(&self, tx_ref: &str) -> Result<serde_json::Value> {
        self.call(
            self.http
                .get(format!("{}/v3/transactions/verify_by_reference", self.base))
                .query(&[("tx_ref", tx_ref)]),
        )
        .await
    }
}

/// A transaction id: digits only (it goes into a URL path).
fn transaction_id(id: &str) -> Result<&str> {
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(
            "transaction_id",
            "must be Flutterwave's numeric transaction id",
        ));
    }
    Ok(id)
}

/// A transaction as a payment. The reference is the transaction's own
/// `tx_ref`, whatever was asked for: the caller compares.
fn payment_of(provider_ref: &str, data: &serde_json::Value) -> Result<Payment> {
    let currency = data["currency"]
        .as_str()
        .ok_or_else(|| Error::Internal("Flutterwave answer lacks data.currency".into()))?
        .to_uppercase();
    let amount = data["amount"]
        .as_f64()
        .ok_or_else(|| Error::Internal("Flutterwave answer lacks data.amount".into()))?;
    Ok(Payment {
        provider_ref: provider_ref.to_owned(),
        reference: data["tx_ref"]
            .as_str()
            .ok_or_else(|| Error::Internal("Flutterwave answer lacks data.tx_ref".into()))?
            .to_owned(),
        status: match data["status"].as_str().unwrap_or_default() {
            "successful" => PaymentStatus::Succeeded,
            "failed" | "cancelled" => PaymentStatus::Failed,
            _ => PaymentStatus::Pending,
        },
        amount: Some(Money {
            minor: from_major(amount, &currency)?,
            currency,
        }),
    })
}

/// No transaction yet: the buyer has not reached the payment step.
fn unpaid(provider_ref: &str) -> Payment {
    Payment {
        provider_ref: provider_ref.to_owned(),
        reference: provider_ref.to_owned(),
        status: PaymentStatus::Pending,
        amount: None,
    }
}

fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

impl PaymentProvider for FlutterwaveProvider {
    fn name(&self) -> &'static str {
        "flutterwave"
    }

    fn needs_payout_details(&self) -> bool {
        true
    }

    fn create_seller_account<'a>(&'a self, seller: SellerOnboarding<'a>) -> ProviderFuture<'a, String> {
        Box::pin(async move {
            let Some(bank) = seller.payout else {
                return Err(Error::Refused {
                    code: "payout_details_required",
                    message: "sellers on Flutterwave are paid into a bank account: set your payout account \
                              (PUT /v1/seller/payout-account) before listing"
                        .into(),
                });
            };
            // The subaccount's default commission is the platform's fee; each
            // checkout also states the seller's exact share.
            #[allow(clippy::cast_precision_loss, reason = "at most 10,000: exact")]
            let share = self.platform_fee_bps.clamp(0, 10_000) as f64 / 10_000.0;
            let body = serde_json::json!({
                "account_bank": bank.bank_code,
                "account_number": bank.account_number,
                "business_name": bank.business_name,
                "business_email": seller.email,
                "country": bank.country,
                "split_type": "percentage",
                "split_value": share,
                "meta": [{"meta_name": "doppel_account", "meta_value": seller.account_id}],
            });
            let v = self.call(self.post("/v3/subaccounts", &body)).await?;
            v.pointer("/data/subaccount_id")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
                .ok_or_else(|| Error::Internal("Flutterwave answer lacks data.subaccount_id".into()))
        })
    }

    fn create_checkout<'a>(&'a self, r: CheckoutRequest<'a>) -> ProviderFuture<'a, Checkout> {
        Box::pin(async move {
            let seller_share = Money {
                minor: r.amount.minor - r.platform_fee_minor,
                currency: r.amount.currency.clone(),
            };
            let body = serde_json::json!({
                "tx_ref": r.reference,
                "amount": to_major(r.amount)?,
                "currency": r.amount.currency,
                "redirect_url": r.return_url,
                "customer": {"email": r.buyer_email},
                "customizations": {"title": "doppel", "description": r.description},
                "meta": {"purchase_id": r.reference},
                "subaccounts": [{
                    "id": r.seller_account,
                    "transaction_charge_type": "flat_subaccount",
                    "transaction_charge": to_major(&seller_share)?,
                }],
            });
            let v = self.call(self.post("/v3/payments", &body)).await?;
            let url = v
                .pointer("/data/link")
                .and_then(|s| s.as_str())
                .ok_or_else(|| Error::Internal("Flutterwave answer lacks data.link".into()))?
                .to_owned();
            Ok(Checkout {
                provider_ref: r.reference.to_owned(),
                url,
            })
        })
    }

    fn fetch_payment<'a>(&'a self, provider_ref: &'a str) -> ProviderFuture<'a, Payment> {
        Box::pin(async move {
            match self.by_reference(provider_ref).await {
                Ok(v) => payment_of(provider_ref, &v["data"]),
                Err(Error::NotFound(_)) => Ok(unpaid(provider_ref)),
                Err(e) => Err(e),
            }
        })
    }

    fn fetch_charge<'a>(&'a self, provider_ref: &'a str, charge_id: &'a str) -> ProviderFuture<'a, Payment> {
        Box::pin(async move {
            let id = transaction_id(charge_id)?;
            match self
                .call(self.http.get(format!("{}/v3/transactions/{id}/verify", self.base)))
                .await
            {
                Ok(v) => payment_of(provider_ref, &v["data"]),
                // An id Flutterwave does not know proves nothing was paid.
                Err(Error::NotFound(_)) => Ok(unpaid(provider_ref)),
                Err(e) => Err(e),
            }
        })
    }

    fn refund<'a>(&'a self, provider_ref: &'a str, idempotency_key: &'a str) -> ProviderFuture<'a, PaymentStatus> {
        Box::pin(async move {
            let v = self.by_reference(provider_ref).await?;
            let payment = payment_of(provider_ref, &v["data"])?;
            if payment.status != PaymentStatus::Succeeded {
                return Err(Error::Conflict(format!(
                    "payment is {}, only a succeeded payment can be refunded",
                    payment.status.as_str()
                )));
            }
            let id = v
                .pointer("/data/id")
                .and_then(id_text)
                .ok_or_else(|| Error::Internal("Flutterwave answer lacks data.id".into()))?;
            let amount = payment
                .amount
                .as_ref()
                .ok_or_else(|| Error::Internal("Flutterwave transaction without an amount".into()))?;
            let body = serde_json::json!({
                "amount": to_major(amount)?,
                "comments": format!("doppel refund ({idempotency_key})"),
            });
            let path = format!("/v3/transactions/{}/refund", transaction_id(&id)?);
            match self.call(self.post(&path, &body)).await {
                Ok(r) if r.pointer("/data/status").and_then(|s| s.as_str()) == Some("failed") => Err(Error::Refused {
                    code: "payment_provider_error",
                    message: "the payment provider could not refund this payment".into(),
                }),
                Ok(_) => Ok(PaymentStatus::Refunded),
                // A retried refund: Flutterwave says it is refunded already.
                Err(Error::Refused { message, .. }) if message.to_lowercase().contains("already") => {
                    Ok(PaymentStatus::Refunded)
                }
                Err(e) => Err(e),
            }
        })
    }

    fn verify_webhook(&self, headers: &http::HeaderMap, raw: &[u8], _now: SystemTime) -> Result<VerifiedEvent> {
        let hash = headers
            .get("verif-hash")
            .ok_or_else(|| Error::BadSignature("missing verif-hash header".into()))?;
        if self.secret_hash.is_empty() || !ct_eq(hash.as_bytes(), self.secret_hash.as_bytes()) {
            return Err(Error::BadSignature("verif-hash does not match the secret hash".into()));
        }
        let v: serde_json::Value =
            serde_json::from_slice(raw).map_err(|e| Error::invalid("body", format!("not a JSON event: {e}")))?;
        let kind = ["event", "event.type", "type"]
            .iter()
            .find_map(|k| v[*k].as_str())
            .unwrap_or_default()
            .to_owned();
        let data = &v["data"];
        let charge_id = id_text(&data["id"]);
        let status = data["status"].as_str().unwrap_or_default();
        let provider_ref = kind
            .starts_with("charge.")
            .then(|| data["tx_ref"].as_str().map(str::to_owned))
            .flatten();
        // Flutterwave events have no id of their own: the event, its
        // transaction, the reference and the status it reports name a
        // delivery; anything else is named by its bytes.
        let id = match &charge_id {
            Some(tx) => format!("{kind}:{tx}:{}:{status}", provider_ref.as_deref().unwrap_or_default()),
            None => format!("sha256:{}", sha256_hex(raw)),
        };
        Ok(VerifiedEvent {
            id,
            kind,
            provider_ref,
            charge_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn money(minor: i64, currency: &str) -> Money {
        Money {
            minor,
            currency: currency.to_owned(),
        }
    }

    #[test]
    fn amounts_use_the_currency_s_exponent() {
        assert_eq!(to_major(&money(1234, "NGN")).unwrap(), 12.34);
        assert_eq!(to_major(&money(1200, "UGX")).unwrap(), 1200.0);
        assert_eq!(to_major(&money(1500, "KWD")).unwrap(), 1.5);
        assert_eq!(from_major(12.34, "USD").unwrap(), 1234);
        assert_eq!(from_major(1200.0, "XAF").unwrap(), 1200);
        assert!(to_major(&money(MAX_MINOR, "USD")).is_err());
        assert!(from_major(f64::NAN, "USD").is_err());
        assert!(from_major(-1.0, "USD").is_err());
    }

    proptest! {
        /// What is sent is the exact decimal, and what comes back is the
        /// same number of minor units.
        #[test]
        fn decimal_amounts_round_trip(minor in 0i64..MAX_MINOR, c in prop::sample::select(vec!["NGN", "JPY", "KWD"])) {
            let m = money(minor, c);
            let major = to_major(&m).unwrap();
            prop_assert_eq!(from_major(major, c).unwrap(), minor);
            let e = m.exponent();
            let unit = 10i64.pow(e);
            let exact = if e == 0 {
                format!("{minor}.0")
            } else {
                let frac = format!("{:0width$}", minor % unit, width = e as usize);
                let frac = frac.trim_end_matches('0');
                format!("{}.{}", minor / unit, if frac.is_empty() { "0" } else { frac })
            };
            prop_assert_eq!(serde_json::to_string(&major).unwrap(), exact);
        }
    }

    #[test]
    fn webhooks_need_the_secret_hash() {
        let p = FlutterwaveProvider::new("http://127.0.0.1:9", "FLWSECK_TEST-x".into(), "hash-1".into(), 2000);
        let body = br#"{"event":"charge.completed","data":{"id":42,"tx_ref":"pur_1","status":"successful"}}"#;
        let mut h = http::HeaderMap::new();
        assert_eq!(
            p.verify_webhook(&h, body, SystemTime::now()).unwrap_err().code(),
            "invalid_signature"
        );
        h.insert("verif-hash", "hash-2".parse().unwrap());
        assert!(p.verify_webhook(&h, body, SystemTime::now()).is_err());
        h.insert("verif-hash", "hash-1".parse().unwrap());
        let e = p.verify_webhook(&h, body, SystemTime::now()).unwrap();
        assert_eq!(
            (e.id.as_str(), e.provider_ref.as_deref(), e.charge_id.as_deref()),
            ("charge.completed:42:pur_1:successful", Some("pur_1"), Some("42"))
        );
        // No secret configured: nothing verifies.
        let open = FlutterwaveProvider::new("http://127.0.0.1:9", "k".into(), String::new(), 2000);
        h.insert("verif-hash", "".parse().unwrap());
        assert!(open.verify_webhook(&h, body, SystemTime::now()).is_err());
        assert!(transaction_id("12/../x").is_err());
    }
}
