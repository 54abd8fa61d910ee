//! Stripe: Connect destination charges through Checkout Sessions.
//!
//! - Seller accounts are Express connected accounts (`POST /v1/accounts`).
//! - A checkout is a Checkout Session in `payment` mode whose payment intent
//!   carries `application_fee_amount` (the platform's share) and
//!   `transfer_data[destination]` (the seller's account): the platform
//!   charges, keeps the fee, and Stripe transfers the rest.
//! - The provider reference is the session id; its state is fetched with the
//!   payment intent's latest charge expanded (paid, expired, refunded).
//! - Every POST carries an `Idempotency-Key`; webhooks are verified with
//!   [`super::stripe_signature`] over the raw body. `checkout.session.*`
//!   events name a session; `charge.*` events (a refund made in the Stripe
//!   dashboard) name a charge, whose payment intent leads to the session
//!   (`GET /v1/checkout/sessions?payment_intent=…`). Either way the session
//!   is fetched and its state applied; other events are acknowledged.
//!
//! The base URL is configurable (`payments.stripe_api_base`), which is how
//! the tests point it at a local server speaking Stripe's shapes.

use std::time::{Duration, SystemTime};

use super::{
    Checkout, CheckoutRequest, Money, Payment, PaymentProvider, PaymentStatus, ProviderFuture, SellerOnboarding,
    VerifiedEvent, stripe_signature,
};
use doppel_platform::{Error, Result};

/// The Stripe adapter.
#[derive(Debug, Clone)]
pub struct StripeProvider {
    base: String,
    secret_key: String,
    webhook_secret: String,
    tolerance: u64,
    http: reqwest::Client,
}

impl StripeProvider {
    /// A client of the Stripe API at `base` (`https://api.stripe.com`).
    pub fn new(base: &str, secret_key: String, webhook_secret: String, tolerance: u64) -> StripeProvider {
        StripeProvider {
            base: base.trim_end_matches('/').to_owned(),
            secret_key,
            webhook_secret,
            tolerance,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<serde_json::Value> {
        let req = req.bearer_auth(&self.secret_key).header("stripe-version", "2024-06-20");
        let answer = super::rest::send("stripe", req).await?;
        if answer.ok() {
            return Ok(answer.body);
        }
        let message = answer
            .body
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .unwrap_or("no message");
        Err(super::rest::refusal("stripe", answer.status, message))
    }

    fn post(&self, path: &str, idempotency_key: &str, form: &[(String, String)]) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .header("idempotency-key", idempotency_key)
            .form(form)
    }

    async fn session(&self, id: &str) -> Result<serde_json::Value> {
        self.call(
            self.http
                .get(format!("{}/v1/checkout/sessions/{id}", self.base))
                .query(&[("expand[]", "payment_intent.latest_charge")]),
        )
        .await
    }
}

fn field<'a>(v: &'a serde_json::Value, pointer: &str) -> Result<&'a serde_json::Value> {
    v.pointer(pointer)
        .ok_or_else(|| Error::Internal(format!("Stripe answer lacks {pointer}")))
}

fn text(v: &serde_json::Value, pointer: &str) -> Result<String> {
    field(v, pointer)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Internal(format!("Stripe answer: {pointer} is not a string")))
}

/// A session's payment state.
fn status_of(session: &serde_json::Value) -> PaymentStatus {
    let refunded = session
        .pointer("/payment_intent/latest_charge/refunded")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    match (
        session["status"].as_str().unwrap_or_default(),
        session["payment_status"].as_str().unwrap_or_default(),
    ) {
        (_, "paid") if refunded => PaymentStatus::Refunded,
        ("complete", "paid") => PaymentStatus::Succeeded,
        ("expired", _) => PaymentStatus::Failed,
        _ => PaymentStatus::Pending,
    }
}

impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn create_seller_account<'a>(&'a self, seller: SellerOnboarding<'a>) -> ProviderFuture<'a, String> {
        Box::pin(async move {
            // Express accounts: Stripe's own onboarding collects bank details.
            let form = vec![
                ("type".to_owned(), "express".to_owned()),
                ("email".to_owned(), seller.email.to_owned()),
                ("metadata[doppel_account]".to_owned(), seller.account_id.to_owned()),
            ];
            let v = self
                .call(self.post("/v1/accounts", &format!("account-{}", seller.account_id), &form))
                .await?;
            text(&v, "/id")
        })
    }

    fn onboarding_link<'a>(
        &'a self,
        provider_account_id: &'a str,
        return_url: &'a str,
    ) -> ProviderFuture<'a, Option<String>> {
        Box::pin(async move {
            // Account Links are single-use and short-lived: each call asks for
            // a fresh one (a random key, so a retry is a new link, as wanted).
            let form = vec![
                ("account".to_owned(), provider_account_id.to_owned()),
                ("type".to_owned(), "account_onboarding".to_owned()),
                ("refresh_url".to_owned(), return_url.to_owned()),
                ("return_url".to_owned(), return_url.to_owned()),
            ];
            let key = doppel_platform::util::new_id("onboard");
            let v = self.call(self.post("/v1/account_links", &key, &form)).await?;
            Ok(Some(text(&v, "/url")?))
        })
    }

    fn create_checkout<'a>(&'a self, r: CheckoutRequest<'a>) -> ProviderFuture<'a, Checkout> {
        Box::pin(async move {
            let form: Vec<(String, String)> = [
                ("mode", "payment".to_owned()),
                ("client_reference_id", r.reference.to_owned()),
                ("customer_email", r.buyer_email.to_owned()),
                ("metadata[purchase_id]", r.reference.to_owned()),
                ("success_url", r.return_url.to_owned()),
                ("cancel_url", r.return_url.to_owned()),
                ("line_items[0][quantity]", "1".to_owned()),
                ("line_items[0][price_data][currency]", r.amount.currency.to_lowercase()),
                ("line_items[0][price_data][unit_amount]", r.amount.minor.to_string()),
                (
                    "line_items[0][price_data][product_data][name]",
                    r.description.to_owned(),
                ),
                (
                    "payment_intent_data[application_fee_amount]",
                    r.platform_fee_minor.to_string(),
                ),
                (
                    "payment_intent_data[transfer_data][destination]",
                    r.seller_account.to_owned(),
                ),
                ("payment_intent_data[metadata][purchase_id]", r.reference.to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let v = self
                .call(self.post("/v1/checkout/sessions", r.idempotency_key, &form))
                .await?;
            Ok(Checkout {
                provider_ref: text(&v, "/id")?,
                url: text(&v, "/url")?,
            })
        })
    }

    fn fetch_payment<'a>(&'a self, provider_ref: &'a str) -> ProviderFuture<'a, Payment> {
        Box::pin(async move {
            let s = self.session(provider_ref).await?;
            Ok(Payment {
                provider_ref: provider_ref.to_owned(),
                reference: text(&s, "/client_reference_id")?,
                status: status_of(&s),
                amount: Some(Money {
                    minor: field(&s, "/amount_total")?
                        .as_i64()
                        .ok_or_else(|| Error::Internal("Stripe answer: amount_total".into()))?,
                    currency: text(&s, "/currency")?.to_uppercase(),
                }),
            })
        })
    }

    fn resolve_reference<'a>(&'a self, charge_id: &'a str) -> ProviderFuture<'a, Option<String>> {
        Box::pin(async move {
            let v = self
                .call(
                    self.http
                        .get(format!("{}/v1/checkout/sessions", self.base))
                        .query(&[("payment_intent", charge_id), ("limit", "1")]),
                )
                .await?;
            Ok(v.pointer("/data/0/id").and_then(|x| x.as_str()).map(str::to_owned))
        })
    }

    fn refund<'a>(&'a self, provider_ref: &'a str, idempotency_key: &'a str) -> ProviderFuture<'a, PaymentStatus> {
        Box::pin(async move {
            let s = self.session(provider_ref).await?;
            match status_of(&s) {
                PaymentStatus::Refunded => return Ok(PaymentStatus::Refunded),
                PaymentStatus::Succeeded => {}
                other => {
                    return Err(Error::Conflict(format!(
                        "payment is {}, only a succeeded payment can be refunded",
                        other.as_str()
                    )));
                }
            }
            let intent = s
                .pointer("/payment_intent/id")
                .or_else(|| s.get("payment_intent"))
                .and_then(|v| v.as_str())
                .ok_or_else(|| Error::Internal("Stripe session without a payment intent".into()))?
                .to_owned();
            // The whole amount, and the fee back from the platform and the
            // transfer back from the seller, so the split reverses too.
            let form = vec![
                ("payment_intent".to_owned(), intent),
                ("refund_application_fee".to_owned(), "true".to_owned()),
                ("reverse_transfer".to_owned(), "true".to_owned()),
            ];
            self.call(self.post("/v1/refunds", idempotency_key, &form)).await?;
            Ok(status_of(&self.session(provider_ref).await?))
        })
    }

    fn verify_webhook(&self, headers: &http::HeaderMap, raw: &[u8], now: SystemTime) -> Result<VerifiedEvent> {
        let (id, kind, v) = stripe_signature::verify_event(&self.webhook_secret, headers, raw, now, self.tolerance)?;
        let provider_ref = kind
            .starts_with("checkout.session.")
            .then(|| v.pointer("/data/object/id").and_then(|x| x.as_str()).map(str::to_owned))
            .flatten();
        let charge_id = kind
            .starts_with("charge.")
            .then(|| {
                v.pointer("/data/object/payment_intent")
                    .and_then(|x| x.as_str())
                    .map(str::to_owned)
            })
            .flatten();
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
    use serde_json::json;

    #[test]
    fn session_states_map_to_payment_states() {
        let s = |status: &str, paid: &str, refunded: bool| {
            json!({"status": status, "payment_status": paid,
                   "payment_intent": {"id": "pi_1", "latest_charge": {"refunded": refunded}}})
        };
        assert_eq!(status_of(&s("open", "unpaid", false)), PaymentStatus::Pending);
        assert_eq!(status_of(&s("complete", "paid", false)), PaymentStatus::Succeeded);
        assert_eq!(status_of(&s("complete", "paid", true)), PaymentStatus::Refunded);
        assert_eq!(status_of(&s("expired", "unpaid", false)), PaymentStatus::Failed);
        // Paid asynchronously later: still pending until Stripe says paid.
        assert_eq!(status_of(&s("complete", "unpaid", false)), PaymentStatus::Pending);
    }
}
