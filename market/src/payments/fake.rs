//! The built-in payment provider: the default, so a seller lists and a buyer
//! buys on a fresh install with no account anywhere.
//!
//! It behaves like a hosted-checkout provider: [`FakeProvider::create_checkout`]
//! records a payment in its own table (`fake_payments`, standing in for the
//! provider's books, so every server and worker sees the same state) and
//! answers the URL of a hosted page; the buyer pays or declines there
//! ([`FakeProvider::settle`]); the provider then posts a webhook signed
//! exactly as Stripe signs (`Stripe-Signature: t=…,v1=HMAC(secret, "t.body")`)
//! to the server's `/v1/webhooks/fake` and redirects the buyer back. Webhook
//! bodies carry only ids: the receiver fetches the payment to learn its state.

use std::time::{Duration, SystemTime};

use sqlx::Row;

use super::{
    Checkout, CheckoutRequest, Money, Payment, PaymentProvider, PaymentStatus, ProviderFuture, SellerOnboarding,
    VerifiedEvent, stripe_signature,
};
use doppel_platform::util::{new_id, now_ms};
use doppel_platform::{Db, Error, Result};

/// A payment as the fake provider's hosted page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePayment {
    /// Id (`fp_…`).
    pub id: String,
    /// What it pays for.
    pub description: String,
    /// Amount.
    pub amount: Money,
    /// The seller's share goes here.
    pub destination: String,
    /// The platform keeps this much.
    pub application_fee_minor: i64,
    /// State.
    pub status: PaymentStatus,
    /// Where the buyer goes afterwards.
    pub return_url: String,
}

/// The built-in provider.
#[derive(Debug, Clone)]
pub struct FakeProvider {
    db: Db,
    secret: String,
    public_url: String,
    tolerance: u64,
    drop_webhooks: bool,
    http: reqwest::Client,
}

impl FakeProvider {
    /// A provider keeping its books in `db`, signing webhooks with `secret`
    /// and posting them to `{public_url}/v1/webhooks/fake`.
    pub fn new(db: Db, secret: String, public_url: String, tolerance: u64, drop_webhooks: bool) -> FakeProvider {
        FakeProvider {
            db,
            secret,
            public_url: public_url.trim_end_matches('/').to_owned(),
            tolerance,
            drop_webhooks,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The payment behind a hosted page.
    pub async fn payment(&self, id: &str) -> Result<FakePayment> {
        let row = sqlx::query(
            "SELECT id, description, amount_minor, currency, destination, application_fee_minor, status, return_url \
             FROM fake_payments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::NotFound("payment".into()))?;
        Ok(FakePayment {
            id: row.try_get("id")?,
            description: row.try_get("description")?,
            amount: Money {
                minor: row.try_get("amount_minor")?,
                currency: row.try_get("currency")?,
            },
            destination: row.try_get("destination")?,
            application_fee_minor: row.try_get("application_fee_minor")?,
            status: PaymentStatus::parse(&row.try_get::<String, _>("status")?)?,
            return_url: row.try_get("return_url")?,
        })
    }

    /// The buyer paid (`pay`) or declined on the hosted page: settle the
    /// payment, post the webhook, and answer where to send the buyer. A
    /// payment settles once; a second press changes nothing.
    pub async fn settle(&self, id: &str, pay: bool) -> Result<String> {
        let status = if pay { "succeeded" } else { "failed" };
        let changed =
            sqlx::query("UPDATE fake_payments SET status = $1, updated_at = $2 WHERE id = $3 AND status = 'pending'")
                .bind(status)
                .bind(now_ms())
                .bind(id)
                .execute(&self.db.pool)
                .await?
                .rows_affected();
        let payment = self.payment(id).await?;
        if changed == 1 {
            self.deliver(if pay { "payment.succeeded" } else { "payment.failed" }, id);
        }
        let sep = if payment.return_url.contains('?') { '&' } else { '?' };
        Ok(format!("{}{sep}payment={id}", payment.return_url))
    }

    /// Post a signed event about `payment` to the server, in the background
    /// (the buyer's redirect does not wait for it), retrying briefly.
    fn deliver(&self, kind: &str, payment: &str) {
        if self.drop_webhooks {
            tracing::info!(
                kind,
                payment,
                "Fake provider: webhook dropped (payments.fake_drop_webhooks)."
            );
            return;
        }
        let body = serde_json::json!({
            "id": new_id("evt"),
            "type": kind,
            "created": now_ms() / 1000,
            "data": { "object": { "id": payment } },
        })
        .to_string();
        let (http, secret) = (self.http.clone(), self.secret.clone());
        let url = format!("{}/v1/webhooks/fake", self.public_url);
        tokio::spawn(async move {
            for attempt in 0..3u32 {
                let t = now_ms() / 1000;
                let sent = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("stripe-signature", stripe_signature::sign(&secret, t, body.as_bytes()))
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => tracing::warn!(status = %r.status(), attempt, "Fake provider: webhook refused."),
                    Err(e) => tracing::warn!(error = %e, attempt, "Fake provider: webhook not delivered."),
                }
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
        });
    }
}

impl PaymentProvider for FakeProvider {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn create_seller_account<'a>(&'a self, seller: SellerOnboarding<'a>) -> ProviderFuture<'a, String> {
        Box::pin(async move { Ok(format!("acct_fake_{}", seller.account_id)) })
    }

    fn create_checkout<'a>(&'a self, r: CheckoutRequest<'a>) -> ProviderFuture<'a, Checkout> {
        Box::pin(async move {
            let id = new_id("fp");
            let now = now_ms();
            sqlx::query(
                "INSERT INTO fake_payments (id, reference, amount_minor, currency, destination, application_fee_minor, \
                 description, return_url, idempotency_key, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $10) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&id)
            .bind(r.reference)
            .bind(r.amount.minor)
            .bind(&r.amount.currency)
            .bind(r.seller_account)
            .bind(r.platform_fee_minor)
            .bind(r.description)
            .bind(r.return_url)
            .bind(r.idempotency_key)
            .bind(now)
            .execute(&self.db.pool)
            .await?;
            // A retried call with the same key gets the first checkout, and
            // (as at Stripe) a key reused for other parameters is refused.
            let row = sqlx::query(
                "SELECT id, reference, amount_minor, currency FROM fake_payments WHERE idempotency_key = $1",
            )
            .bind(r.idempotency_key)
            .fetch_one(&self.db.pool)
            .await?;
            let same = row.try_get::<String, _>("reference")? == r.reference
                && row.try_get::<i64, _>("amount_minor")? == r.amount.minor
                && row.try_get::<String, _>("currency")? == r.amount.currency;
            if !same {
                return Err(Error::Conflict(
                    "idempotency key reused with different parameters".into(),
                ));
            }
            let id: String = row.try_get("id")?;
            Ok(Checkout {
                url: format!("{}/v1/fake-pay/{id}", self.public_url),
                provider_ref: id,
            })
        })
    }

    fn fetch_payment<'a>(&'a self, provider_ref: &'a str) -> ProviderFuture<'a, Payment> {
        Box::pin(async move {
            let row = sqlx::query("SELECT reference, amount_minor, currency, status FROM fake_payments WHERE id = $1")
                .bind(provider_ref)
                .fetch_optional(&self.db.pool)
                .await?
                .ok_or_else(|| Error::NotFound("payment".into()))?;
            Ok(Payment {
                provider_ref: provider_ref.to_owned(),
                reference: row.try_get("reference")?,
                status: PaymentStatus::parse(&row.try_get::<String, _>("status")?)?,
                amount: Some(Money {
                    minor: row.try_get("amount_minor")?,
                    currency: row.try_get("currency")?,
                }),
            })
        })
    }

    fn refund<'a>(&'a self, provider_ref: &'a str, _idempotency_key: &'a str) -> ProviderFuture<'a, PaymentStatus> {
        Box::pin(async move {
            let changed = sqlx::query(
                "UPDATE fake_payments SET status = 'refunded', updated_at = $1 WHERE id = $2 AND status = 'succeeded'",
            )
            .bind(now_ms())
            .bind(provider_ref)
            .execute(&self.db.pool)
            .await?
            .rows_affected();
            let payment = self.fetch_payment(provider_ref).await?;
            if changed == 1 {
                self.deliver("charge.refunded", provider_ref);
            } else if payment.status != PaymentStatus::Refunded {
                return Err(Error::Conflict(format!(
                    "payment is {}, only a succeeded payment can be refunded",
                    payment.status.as_str()
                )));
            }
            Ok(payment.status)
        })
    }

    fn verify_webhook(&self, headers: &http::HeaderMap, raw: &[u8], now: SystemTime) -> Result<VerifiedEvent> {
        let (id, kind, v) = stripe_signature::verify_event(&self.secret, headers, raw, now, self.tolerance)?;
        Ok(VerifiedEvent {
            id,
            kind,
            provider_ref: v.pointer("/data/object/id").and_then(|x| x.as_str()).map(str::to_owned),
            charge_id: None,
        })
    }
}
