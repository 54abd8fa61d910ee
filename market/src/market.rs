//! The marketplace: sellers list a finished job's output, buyers pay through
//! a [`PaymentProvider`], and a double-entry ledger in integer minor units
//! records every charge and refund.
//!
//! Rules the code keeps:
//! - An output is listed only with a privacy score of at least
//!   `payments.min_privacy_score` (40) and no failed compliance check.
//! - A purchase's state follows the payment *as fetched from the provider*,
//!   never a webhook body or a redirect; transitions only go forward
//!   (pending → completed → refunded, pending → failed, and failed →
//!   completed should the provider report the money taken after all), each
//!   in one transaction guarded by the state it leaves, so duplicate,
//!   replayed or out-of-order events cannot apply twice.
//! - Webhooks are deduplicated by `(provider, event id)`; a purchase whose
//!   webhook never arrives is settled by [`Market::reconcile`].
//! - Every ledger transaction sums to zero: buyer's payment into clearing,
//!   seller's payable, platform fee; a refund is the exact reverse, and
//!   revokes access.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use doppel_platform::audit::{self, Event, RequestMeta};
use doppel_platform::authz::{Grant, Principal, Scope, authorize, require};
use doppel_platform::db::Backend;
pub use doppel_platform::notifications::{Notification, mark_read, notifications, notify_raw};
use doppel_platform::settings::PaymentSettings;
use doppel_platform::util::{new_id, now_ms};
use doppel_platform::{Db, Error, Result};

use crate::payments::{CheckoutRequest, Money, PaymentProvider, PaymentStatus, PayoutDetails, SellerOnboarding, split};

/// A listing's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingStatus {
    /// For sale.
    Active,
    /// Hidden from search and not for sale; the seller may resume it.
    Paused,
    /// Withdrawn for good; buyers keep what they bought.
    Delisted,
    /// Taken down by an operator.
    Suspended,
}

impl ListingStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ListingStatus::Active => "active",
            ListingStatus::Paused => "paused",
            ListingStatus::Delisted => "delisted",
            ListingStatus::Suspended => "suspended",
        }
    }

    fn parse(s: &str) -> Result<ListingStatus> {
        Ok(match s {
            "active" => ListingStatus::Active,
            "paused" => ListingStatus::Paused,
            "delisted" => ListingStatus::Delisted,
            "suspended" => ListingStatus::Suspended,
            other => return Err(Error::invalid("status", format!("unknown listing status `{other}`"))),
        })
    }
}

/// A listing.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// Id (`lst_…`).
    pub id: String,
    /// Seller account.
    pub seller_id: String,
    /// The job whose output is sold.
    pub job_id: String,
    /// The output's name.
    pub output_name: String,
    /// Object key of the output (never shown: access goes through signed links).
    #[serde(skip)]
    pub output_key: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Lower-case tags.
    pub tags: Vec<String>,
    /// Category.
    pub category: String,
    /// Price.
    pub price: Money,
    /// License text.
    pub license: String,
    /// Preview (schema, sample rows, scores, compliance) as the server built it.
    pub preview: serde_json::Value,
    /// Quality score (0–1), when the job measured one.
    pub quality_score: Option<f64>,
    /// Privacy score (0–100).
    pub privacy_score: f64,
    /// State.
    pub status: ListingStatus,
    /// Completed sales (refunds subtract).
    pub sales: i64,
    /// Created, ms.
    pub created_at: i64,
    /// Updated, ms.
    pub updated_at: i64,
}

/// What a seller lists.
#[derive(Debug, Clone)]
pub struct NewListing {
    /// The finished job.
    pub job_id: String,
    /// Which of its outputs.
    pub output_name: String,
    /// That output's object key.
    pub output_key: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Category.
    pub category: String,
    /// Price.
    pub price_minor: i64,
    /// Currency.
    pub currency: String,
    /// License text.
    pub license: String,
    /// Preview.
    pub preview: serde_json::Value,
    /// Quality score, when measured.
    pub quality_score: Option<f64>,
    /// Privacy score; `None` when the job measured none (refused).
    pub privacy_score: Option<f64>,
    /// Compliance checks that failed (`hipaa: safe-harbor-…`); any refuses.
    pub failed_checks: Vec<String>,
}

/// A seller's changes to a listing.
#[derive(Debug, Clone, Default)]
pub struct ListingPatch {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New tags.
    pub tags: Option<Vec<String>>,
    /// New category.
    pub category: Option<String>,
    /// New price (minor units, same currency).
    pub price_minor: Option<i64>,
    /// New license text.
    pub license: Option<String>,
    /// `active`, `paused` or `delisted`.
    pub status: Option<ListingStatus>,
}

/// How search results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Best text match first (needs a query; without one, newest).
    Relevance,
    /// Newest first.
    Newest,
    /// Cheapest first.
    PriceAsc,
    /// Dearest first.
    PriceDesc,
    /// Most sold first.
    Popularity,
}

/// A search.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Words to find in title, description and tags.
    pub text: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Every tag must be present.
    pub tags: Vec<String>,
    /// Currency the price bounds are in.
    pub currency: Option<String>,
    /// Lowest price, minor units.
    pub min_price: Option<i64>,
    /// Highest price, minor units.
    pub max_price: Option<i64>,
    /// Lowest quality score.
    pub min_quality: Option<f64>,
    /// Lowest privacy score.
    pub min_privacy: Option<f64>,
    /// Order.
    pub sort: Option<Sort>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: i64,
}

/// A purchase's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseStatus {
    /// Waiting for the payment.
    Pending,
    /// Paid: the buyer has access.
    Completed,
    /// The payment failed or was abandoned.
    Failed,
    /// Refunded: access revoked.
    Refunded,
}

impl PurchaseStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseStatus::Pending => "pending",
            PurchaseStatus::Completed => "completed",
            PurchaseStatus::Failed => "failed",
            PurchaseStatus::Refunded => "refunded",
        }
    }

    fn parse(s: &str) -> Result<PurchaseStatus> {
        Ok(match s {
            "pending" => PurchaseStatus::Pending,
            "completed" => PurchaseStatus::Completed,
            "failed" => PurchaseStatus::Failed,
            "refunded" => PurchaseStatus::Refunded,
            other => return Err(Error::Internal(format!("unknown purchase status `{other}`"))),
        })
    }
}

/// A purchase.
#[derive(Debug, Clone, Serialize)]
pub struct Purchase {
    /// Id (`pur_…`).
    pub id: String,
    /// What was bought.
    pub listing_id: String,
    /// Buyer.
    pub buyer_id: String,
    /// Seller.
    pub seller_id: String,
    /// Price paid.
    pub amount: Money,
    /// Platform's fee.
    pub fee_minor: i64,
    /// Seller's share.
    pub seller_minor: i64,
    /// Payment provider.
    pub provider: String,
    /// Provider's payment id.
    pub provider_ref: Option<String>,
    /// Hosted checkout to send the buyer to (while pending).
    pub checkout_url: Option<String>,
    /// State.
    pub status: PurchaseStatus,
    /// Created, ms.
    pub created_at: i64,
    /// Completed, ms.
    pub completed_at: Option<i64>,
    /// Refunded, ms.
    pub refunded_at: Option<i64>,
}

/// One ledger line: debits positive, credits negative; each transaction's
/// lines sum to zero.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerEntry {
    /// Id.
    pub id: String,
    /// The transaction it belongs to.
    pub txn_id: String,
    /// The purchase.
    pub purchase_id: String,
    /// `clearing:<provider>`, `seller:<account>`, `platform:fees`.
    pub account: String,
    /// Signed minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// `charge` or `refund`.
    pub kind: String,
    /// When, ms.
    pub created_at: i64,
}

/// A seller's account at the payment provider.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SellerAccount {
    /// `fake`, `stripe`, `flutterwave`.
    pub provider: String,
    /// The provider's id (`acct_…`, `RS_…`).
    pub provider_account_id: String,
    /// Masked bank details, when the seller gave them.
    pub payout_summary: Option<String>,
    /// Whether this provider pays sellers into a bank account they give.
    pub needs_payout_details: bool,
    /// When it was opened (ms).
    pub created_at: i64,
}

/// What a webhook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Already handled (same provider and event id).
    Duplicate,
    /// About no purchase of ours.
    Ignored,
    /// The purchase, after syncing with the provider.
    Synced {
        /// Purchase id.
        purchase_id: String,
        /// Its state now.
        status: PurchaseStatus,
    },
}

/// Sales of one listing.
#[derive(Debug, Clone, Serialize)]
pub struct ListingStats {
    /// Listing.
    pub listing_id: String,
    /// Title.
    pub title: String,
    /// Completed sales.
    pub sales: i64,
    /// Refunds.
    pub refunds: i64,
    /// Seller's revenue net of the fee and refunds (minor units).
    pub revenue_minor: i64,
    /// Currency.
    pub currency: String,
    /// Downloads.
    pub downloads: i64,
    /// `(day "YYYY-MM-DD" as days since 1970, sales, downloads)`.
    pub daily: Vec<(i64, i64, i64)>,
}

/// A forward step of a purchase (see [`Market::step`]).
struct Step {
    /// The guarded state change; binds `$1` = now, `$2` = purchase id.
    update: &'static str,
    /// Ledger kind: `charge` or `refund`.
    kind: &'static str,
    /// +1 books the sale, −1 reverses it.
    sign: i64,
    /// Notification kind and text for the buyer.
    buyer: (&'static str, &'static str),
    /// And for the seller.
    seller: (&'static str, &'static str),
}

/// The marketplace service.
#[derive(Debug, Clone)]
pub struct Market {
    db: Db,
    provider: Arc<dyn PaymentProvider>,
    settings: PaymentSettings,
}

const LISTING_COLUMNS: &str = "l.id, l.seller_id, l.job_id, l.output_name, l.output_key, l.title, l.description, \
     l.tags, l.category, l.price_minor, l.currency, l.license, l.preview, l.quality_score, l.privacy_score, l.status, \
     l.sales, l.created_at, l.updated_at";

const PURCHASE_COLUMNS: &str = "id, listing_id, buyer_id, seller_id, amount_minor, currency, fee_minor, seller_minor, \
     provider, provider_ref, checkout_url, status, created_at, completed_at, refunded_at";

/// A `listings` row as read by [`LISTING_COLUMNS`] (tags space-separated,
/// the preview JSON text).
#[derive(sqlx::FromRow)]
struct ListingRow {
    id: String,
    seller_id: String,
    job_id: String,
    output_name: String,
    output_key: String,
    title: String,
    description: String,
    tags: String,
    category: String,
    price_minor: i64,
    currency: String,
    license: String,
    preview: String,
    quality_score: Option<f64>,
    privacy_score: f64,
    status: String,
    sales: i64,
    created_at: i64,
    updated_at: i64,
}

fn listing_from(r: &sqlx::any::AnyRow) -> Result<Listing> {
    let r = <ListingRow as sqlx::FromRow<'_, sqlx::any::AnyRow>>::from_row(r)?;
    Ok(Listing {
        id: r.id,
        seller_id: r.seller_id,
        job_id: r.job_id,
        output_name: r.output_name,
        output_key: r.output_key,
        title: r.title,
        description: r.description,
        tags: r.tags.split_whitespace().map(str::to_owned).collect(),
        category: r.category,
        price: Money {
            minor: r.price_minor,
            currency: r.currency,
        },
        license: r.license,
        preview: serde_json::from_str(&r.preview).unwrap_or(serde_json::Value::Null),
        quality_score: r.quality_score,
        privacy_score: r.privacy_score,
        status: ListingStatus::parse(&r.status)?,
        sales: r.sales,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// A `purchases` row as read by [`PURCHASE_COLUMNS`].
#[derive(sqlx::FromRow)]
struct PurchaseRow {
    id: String,
    listing_id: String,
    buyer_id: String,
    seller_id: String,
    amount_minor: i64,
    currency: String,
    fee_minor: i64,
    seller_minor: i64,
    provider: String,
    provider_ref: Option<String>,
    checkout_url: Option<String>,
    status: String,
    created_at: i64,
    completed_at: Option<i64>,
    refunded_at: Option<i64>,
}

fn purchase_from(r: &sqlx::any::AnyRow) -> Result<Purchase> {
    let r = <PurchaseRow as sqlx::FromRow<'_, sqlx::any::AnyRow>>::from_row(r)?;
    Ok(Purchase {
        id: r.id,
        listing_id: r.listing_id,
        buyer_id: r.buyer_id,
        seller_id: r.seller_id,
        amount: Money {
            minor: r.amount_minor,
            currency: r.currency,
        },
        fee_minor: r.fee_minor,
        seller_minor: r.seller_minor,
        provider: r.provider,
        provider_ref: r.provider_ref,
        checkout_url: r.checkout_url,
        status: PurchaseStatus::parse(&r.status)?,
        created_at: r.created_at,
        completed_at: r.completed_at,
        refunded_at: r.refunded_at,
    })
}

fn text(field: &str, value: &str, max: usize, required: bool) -> Result<String> {
    let v = value.trim();
    if required && v.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(v.to_owned())
}

/// Lower-case, de-duplicated tags of letters, digits and `-`.
fn clean_tags(tags: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = t.trim().to_lowercase();
        if t.is_empty() || t.len() > 32 || !t.chars().all(|c| c.is_alphanumeric() || c == '-') {
            return Err(Error::invalid(
                "tags",
                format!("`{t}`: tags are 1–32 letters, digits or `-`"),
            ));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.len() > 20 {
        return Err(Error::invalid("tags", "at most 20 tags"));
    }
    Ok(out)
}

/// The words of a search as an FTS5 query: each word quoted (so no query
/// syntax gets through) with prefix matching, all required.
fn fts5_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| format!("\"{}\"*", w.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    sort: Sort,
    /// Keyset: the last row's sort value and id; relevance: the offset.
    key: Option<(serde_json::Value, String)>,
    offset: i64,
}

fn encode_cursor(c: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_cursor(s: &str) -> Result<Cursor> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::invalid("cursor", "not a cursor this server issued"))
}

/// A bind value for dynamically built queries.
enum Arg {
    Text(String),
    Int(i64),
    Float(f64),
}

impl Market {
    /// The marketplace on `db`, paying through `provider`.
    pub fn new(db: Db, provider: Arc<dyn PaymentProvider>, settings: PaymentSettings) -> Market {
        Market { db, provider, settings }
    }

    /// The payment provider.
    pub fn provider(&self) -> &Arc<dyn PaymentProvider> {
        &self.provider
    }

    /// List a finished job's output. Refused (`listing_refused`) when the
    /// output's privacy score is missing or below the minimum, or a
    /// compliance check failed; the message says which and why.
    pub async fn create_listing(&self, meta: &RequestMeta, p: &Principal, new: NewListing) -> Result<Listing> {
        require(p, Scope::MarketplaceSell)?;
        let min = self.settings.min_privacy_score;
        match new.privacy_score {
            None => {
                return Err(Error::Refused {
                    code: "listing_refused",
                    message: format!(
                        "job {} measured no privacy score; only outputs of a pipeline with a `builtin:privacy` stage \
                         can be listed",
                        new.job_id
                    ),
                });
            }
            Some(s) if s.is_nan() || s < min => {
                return Err(Error::Refused {
                    code: "listing_refused",
                    message: format!(
                        "privacy risk score {s:.1} is below the marketplace minimum of {min}: the twin is too close \
                         to real people (copies, near neighbours or inferable attributes); protect personal data, use \
                         a differentially private generator (pipelines/dp.toml) and run the job again"
                    ),
                });
            }
            Some(_) => {}
        }
        if !new.failed_checks.is_empty() {
            return Err(Error::Refused {
                code: "listing_refused",
                message: format!("compliance checks failed: {}", new.failed_checks.join("; ")),
            });
        }
        let price = Money::new(new.price_minor, &new.currency)?;
        let title = text("title", &new.title, 200, true)?;
        let description = text("description", &new.description, 10_000, false)?;
        let category = text("category", &new.category, 64, true)?.to_lowercase();
        let license = text("license", &new.license, 20_000, true)?;
        let tags = clean_tags(&new.tags)?;
        self.seller_account(p).await?;
        let id = new_id("lst");
        let now = now_ms();
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "INSERT INTO listings (id, seller_id, job_id, output_name, output_key, title, description, tags, category, \
             price_minor, currency, license, preview, quality_score, privacy_score, status, sales, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, CASE WHEN $17 THEN $14 ELSE NULL END, $15, 'active', 0, $16, $16)",
        )
        .bind(&id)
        .bind(&p.account_id)
        .bind(&new.job_id)
        .bind(&new.output_name)
        .bind(&new.output_key)
        .bind(&title)
        .bind(&description)
        .bind(tags.join(" "))
        .bind(&category)
        .bind(price.minor)
        .bind(&price.currency)
        .bind(&license)
        .bind(new.preview.to_string())
        // A number and a flag, never a NULL f64 (see `Queue::heartbeat`).
        .bind(new.quality_score.unwrap_or(0.0))
        .bind(new.privacy_score)
        .bind(now)
        .bind(new.quality_score.is_some())
        .execute(&mut *tx)
        .await?;
        self.index(&mut tx, &id, &title, &description, &tags).await?;
        audit::record(
            &mut tx,
            meta,
            &Event::by(p, "listing_create", Some(&id)).with(serde_json::json!({
                "job_id": new.job_id, "output": new.output_name, "price_minor": price.minor, "currency": price.currency,
                "privacy_score": new.privacy_score,
            })),
        )
        .await?;
        tx.commit().await?;
        self.listing(&id).await
    }

    /// Keep SQLite's full-text index in step (PostgreSQL's is a generated column).
    async fn index(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: &str,
        title: &str,
        description: &str,
        tags: &[String],
    ) -> Result<()> {
        if self.db.backend == Backend::Sqlite {
            sqlx::query("DELETE FROM listings_fts WHERE listing_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("INSERT INTO listings_fts (listing_id, title, description, tags) VALUES ($1, $2, $3, $4)")
                .bind(id)
                .bind(title)
                .bind(description)
                .bind(tags.join(" "))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Open (or replace) the seller's account at the provider with the bank
    /// account they are paid into. Providers that split into bank accounts
    /// (Flutterwave) need this before a first listing; the details go to the
    /// provider and only a masked summary is kept. Purchases already opened
    /// keep the account they were opened with.
    pub async fn set_payout_account(
        &self,
        meta: &RequestMeta,
        p: &Principal,
        details: &PayoutDetails,
    ) -> Result<SellerAccount> {
        require(p, Scope::MarketplaceSell)?;
        if !self.provider.needs_payout_details() {
            // Keeping bank details the provider never sees would mislead.
            return Err(Error::Refused {
                code: "payout_details_not_used",
                message: format!(
                    "the {} payment provider collects bank details itself: use the onboarding link instead",
                    self.provider.name()
                ),
            });
        }
        let opened = self
            .provider
            .create_seller_account(SellerOnboarding {
                account_id: &p.account_id,
                email: &p.email,
                payout: Some(details),
            })
            .await?;
        let summary = details.masked();
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "INSERT INTO seller_accounts (account_id, provider, provider_account_id, payout_summary, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, provider) DO UPDATE SET \
             provider_account_id = excluded.provider_account_id, payout_summary = excluded.payout_summary, \
             created_at = excluded.created_at",
        )
        .bind(&p.account_id)
        .bind(self.provider.name())
        .bind(&opened)
        .bind(&summary)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            meta,
            &Event::by(p, "payout_account_set", Some(&opened)).with(serde_json::json!({
                "provider": self.provider.name(), "payout": summary,
            })),
        )
        .await?;
        tx.commit().await?;
        self.payout_account(p)
            .await?
            .ok_or_else(|| Error::Internal("payout account vanished".into()))
    }

    /// A one-time link where the seller finishes onboarding at the provider
    /// (Stripe Express: identity and bank account), opening the provider
    /// account first if needed. Providers without such a step refuse with
    /// `no_onboarding`.
    pub async fn onboarding_link(&self, p: &Principal, return_url: &str) -> Result<String> {
        require(p, Scope::MarketplaceSell)?;
        let account = self.seller_account(p).await?;
        self.provider
            .onboarding_link(&account, return_url)
            .await?
            .ok_or_else(|| Error::Refused {
                code: "no_onboarding",
                message: format!(
                    "the {} payment provider has no onboarding step; set a payout account instead if it needs one",
                    self.provider.name()
                ),
            })
    }

    /// The seller's account at the configured provider, if one is open.
    pub async fn payout_account(&self, p: &Principal) -> Result<Option<SellerAccount>> {
        let row = sqlx::query(
            "SELECT provider, provider_account_id, payout_summary, created_at FROM seller_accounts \
             WHERE account_id = $1 AND provider = $2",
        )
        .bind(&p.account_id)
        .bind(self.provider.name())
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|r| {
            Ok(SellerAccount {
                provider: r.try_get("provider")?,
                provider_account_id: r.try_get("provider_account_id")?,
                payout_summary: r.try_get("payout_summary")?,
                needs_payout_details: self.provider.needs_payout_details(),
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// The seller's account at the provider, opened on first listing.
    async fn seller_account(&self, p: &Principal) -> Result<String> {
        if let Some(a) = self.provider_account(&p.account_id).await? {
            return Ok(a);
        }
        let opened = self
            .provider
            .create_seller_account(SellerOnboarding {
                account_id: &p.account_id,
                email: &p.email,
                payout: None,
            })
            .await?;
        sqlx::query(
            "INSERT INTO seller_accounts (account_id, provider, provider_account_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, provider) DO NOTHING",
        )
        .bind(&p.account_id)
        .bind(self.provider.name())
        .bind(&opened)
        .bind(now_ms())
        .execute(&self.db.pool)
        .await?;
        // A concurrent first listing may have won the insert: use its account.
        self.provider_account(&p.account_id)
            .await?
            .ok_or_else(|| Error::Internal("seller account vanished".into()))
    }

    /// `account`'s id at the configured provider, if it has one.
    async fn provider_account(&self, account: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT provider_account_id FROM seller_accounts WHERE account_id = $1 AND provider = $2",
        )
        .bind(account)
        .bind(self.provider.name())
        .fetch_optional(&self.db.pool)
        .await?)
    }

    /// A listing by id (any state; callers decide who may see it).
    pub async fn listing(&self, id: &str) -> Result<Listing> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LISTING_COLUMNS} FROM listings l WHERE l.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::NotFound("listing".into()))?;
        listing_from(&row)
    }

    /// A listing as `p` may see it: active ones to everyone; others to their
    /// seller, operators and buyers who bought it.
    pub async fn visible_listing(&self, p: &Principal, id: &str) -> Result<Listing> {
        let l = self.listing(id).await?;
        if l.status == ListingStatus::Active || l.seller_id == p.account_id || p.is_admin() {
            return Ok(l);
        }
        if self.access(p, id).await?.is_some() {
            return Ok(l);
        }
        Err(Error::NotFound("listing".into()))
    }

    /// The seller's (or an operator's) changes.
    pub async fn update_listing(
        &self,
        meta: &RequestMeta,
        p: &Principal,
        id: &str,
        patch: ListingPatch,
    ) -> Result<Listing> {
        let mut l = self.listing(id).await?;
        authorize(p, Scope::MarketplaceSell, &l.seller_id, "listing", Grant::OwnerOnly)?;
        if matches!(l.status, ListingStatus::Delisted | ListingStatus::Suspended) {
            return Err(Error::Conflict(format!(
                "listing is {}; it can no longer be changed",
                l.status.as_str()
            )));
        }
        if let Some(t) = &patch.title {
            l.title = text("title", t, 200, true)?;
        }
        if let Some(d) = &patch.description {
            l.description = text("description", d, 10_000, false)?;
        }
        if let Some(c) = &patch.category {
            l.category = text("category", c, 64, true)?.to_lowercase();
        }
        if let Some(lic) = &patch.license {
            l.license = text("license", lic, 20_000, true)?;
        }
        if let Some(tags) = &patch.tags {
            l.tags = clean_tags(tags)?;
        }
        if let Some(minor) = patch.price_minor {
            l.price = Money::new(minor, &l.price.currency)?;
        }
        if let Some(s) = patch.status {
            if s == ListingStatus::Suspended {
                return Err(Error::invalid("status", "only operators suspend listings"));
            }
            l.status = s;
        }
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "UPDATE listings SET title = $1, description = $2, tags = $3, category = $4, price_minor = $5, \
             license = $6, status = $7, updated_at = $8 WHERE id = $9",
        )
        .bind(&l.title)
        .bind(&l.description)
        .bind(l.tags.join(" "))
        .bind(&l.category)
        .bind(l.price.minor)
        .bind(&l.license)
        .bind(l.status.as_str())
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        self.index(&mut tx, id, &l.title, &l.description, &l.tags).await?;
        audit::record(
            &mut tx,
            meta,
            &Event::by(p, "listing_update", Some(id)).with(serde_json::json!({
                "status": l.status, "price_minor": l.price.minor,
            })),
        )
        .await?;
        tx.commit().await?;
        self.listing(id).await
    }

    /// An operator takes a listing down (buyers keep their access).
    pub async fn suspend_listing(&self, meta: &RequestMeta, p: &Principal, id: &str, reason: &str) -> Result<Listing> {
        require(p, Scope::Admin)?;
        self.listing(id).await?;
        let mut tx = self.db.pool.begin().await?;
        sqlx::query("UPDATE listings SET status = 'suspended', updated_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            meta,
            &Event::by(p, "listing_suspend", Some(id)).with(serde_json::json!({ "reason": reason })),
        )
        .await?;
        tx.commit().await?;
        self.listing(id).await
    }

    /// Active listings matching `q`, one page, and the cursor of the next.
    pub async fn search(&self, q: &SearchQuery) -> Result<(Vec<Listing>, Option<String>)> {
        let text = q.text.as_deref().and_then(|t| {
            let t = t.trim();
            (!t.is_empty()).then_some(t)
        });
        let sort = match (q.sort, text) {
            (Some(Sort::Relevance) | None, Some(_)) => Sort::Relevance,
            (Some(Sort::Relevance) | None, None) => Sort::Newest,
            (Some(s), _) => s,
        };
        let cursor = q.cursor.as_deref().map(decode_cursor).transpose()?;
        if let Some(c) = &cursor
            && c.sort != sort
        {
            return Err(Error::invalid("cursor", "was issued for another sort order"));
        }
        let limit = q.limit.clamp(1, 100);
        let mut args: Vec<Arg> = Vec::new();
        let next = |a: Arg, args: &mut Vec<Arg>| {
            args.push(a);
            format!("${}", args.len())
        };
        let sqlite = self.db.backend == Backend::Sqlite;
        let (from, rank) = match (text, sqlite) {
            (Some(t), true) => {
                let Some(m) = fts5_query(t) else {
                    return Ok((Vec::new(), None));
                };
                let m = next(Arg::Text(m), &mut args);
                (
                    format!(
                        "listings_fts JOIN listings l ON l.id = listings_fts.listing_id WHERE listings_fts MATCH {m}"
                    ),
                    // bm25: lower is better; title counts most, then tags.
                    "bm25(listings_fts, 0.0, 10.0, 1.0, 4.0)".to_owned(),
                )
            }
            (Some(t), false) => {
                let m = next(Arg::Text(t.to_owned()), &mut args);
                (
                    format!("listings l WHERE l.search @@ websearch_to_tsquery('english', {m})"),
                    format!("-ts_rank(l.search, websearch_to_tsquery('english', {m}))"),
                )
            }
            (None, _) => ("listings l WHERE 1 = 1".to_owned(), "0".to_owned()),
        };
        let mut sql = format!("SELECT {LISTING_COLUMNS}, {rank} AS rank FROM {from} AND l.status = 'active'");
        if let Some(c) = &q.category {
            sql += &format!(
                " AND l.category = {}",
                next(Arg::Text(c.trim().to_lowercase()), &mut args)
            );
        }
        for t in clean_tags(&q.tags)? {
            sql += &format!(
                " AND (' ' || l.tags || ' ') LIKE {}",
                next(Arg::Text(format!("% {t} %")), &mut args)
            );
        }
        if let Some(c) = &q.currency {
            sql += &format!(" AND l.currency = {}", next(Arg::Text(c.to_uppercase()), &mut args));
        }
        if let Some(v) = q.min_price {
            sql += &format!(" AND l.price_minor >= {}", next(Arg::Int(v), &mut args));
        }
        if let Some(v) = q.max_price {
            sql += &format!(" AND l.price_minor <= {}", next(Arg::Int(v), &mut args));
        }
        if let Some(v) = q.min_quality {
            sql += &format!(" AND l.quality_score >= {}", next(Arg::Float(v), &mut args));
        }
        if let Some(v) = q.min_privacy {
            sql += &format!(" AND l.privacy_score >= {}", next(Arg::Float(v), &mut args));
        }
        // Keyset pagination on (sort value, id); relevance pages by offset.
        let (column, descending) = match sort {
            Sort::Newest => ("l.created_at", true),
            Sort::PriceAsc => ("l.price_minor", false),
            Sort::PriceDesc => ("l.price_minor", true),
            Sort::Popularity => ("l.sales", true),
            Sort::Relevance => ("rank", false),
        };
        let offset = cursor.as_ref().map_or(0, |c| c.offset);
        if sort != Sort::Relevance
            && let Some((value, id)) = cursor.as_ref().and_then(|c| c.key.clone())
        {
            let v = value
                .as_i64()
                .ok_or_else(|| Error::invalid("cursor", "not a cursor this server issued"))?;
            let op = if descending { "<" } else { ">" };
            let a = next(Arg::Int(v), &mut args);
            let b = next(Arg::Int(v), &mut args);
            let c = next(Arg::Text(id), &mut args);
            sql += &format!(" AND ({column} {op} {a} OR ({column} = {b} AND l.id {op} {c}))");
        }
        let dir = if descending { "DESC" } else { "ASC" };
        sql += &format!(" ORDER BY {column} {dir}, l.id {dir} LIMIT {}", limit + 1);
        if sort == Sort::Relevance {
            sql += &format!(" OFFSET {offset}");
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            query = match a {
                Arg::Text(s) => query.bind(s),
                Arg::Int(i) => query.bind(i),
                Arg::Float(f) => query.bind(f),
            };
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        let mut listings = rows.iter().map(listing_from).collect::<Result<Vec<_>>>()?;
        let more = listings.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        listings.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_cursor = match (more, listings.last()) {
            (true, Some(last)) => {
                let value = match sort {
                    Sort::Newest => Some(last.created_at),
                    Sort::PriceAsc | Sort::PriceDesc => Some(last.price.minor),
                    Sort::Popularity => Some(last.sales),
                    Sort::Relevance => None,
                };
                Some(encode_cursor(&Cursor {
                    sort,
                    key: value.map(|v| (serde_json::Value::from(v), last.id.clone())),
                    offset: offset + limit,
                }))
            }
            _ => None,
        };
        Ok((listings, next_cursor))
    }

    /// Start buying `listing_id`: a pending purchase and the provider's
    /// hosted checkout. `return_url` is where the provider sends the buyer
    /// back (the server verifies the payment there). A buyer with a pending
    /// purchase of this listing gets that one again.
    pub async fn checkout(
        &self,
        meta: &RequestMeta,
        p: &Principal,
        listing_id: &str,
        return_url: &str,
    ) -> Result<Purchase> {
        require(p, Scope::DatasetsRead)?;
        let l = self.listing(listing_id).await?;
        if l.status != ListingStatus::Active {
            if l.seller_id == p.account_id || p.is_admin() {
                return Err(Error::Refused {
                    code: "not_for_sale",
                    message: format!("listing is {}", l.status.as_str()),
                });
            }
            return Err(Error::NotFound("listing".into()));
        }
        if l.seller_id == p.account_id {
            return Err(Error::Refused {
                code: "not_for_sale",
                message: "you cannot buy your own listing".into(),
            });
        }
        if self.access(p, listing_id).await?.is_some() {
            return Err(Error::Conflict("you already own this listing".into()));
        }
        let pending = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PURCHASE_COLUMNS} FROM purchases WHERE listing_id = $1 AND buyer_id = $2 AND status = 'pending' \
             AND provider_ref IS NOT NULL ORDER BY id DESC"
        )))
        .bind(listing_id)
        .bind(&p.account_id)
        .fetch_optional(&self.db.pool)
        .await?;
        if let Some(row) = pending {
            let existing = purchase_from(&row)?;
            if existing.amount == l.price {
                return Ok(existing);
            }
        }
        let seller_account = self
            .provider_account(&l.seller_id)
            .await?
            .ok_or_else(|| Error::Conflict("the seller has no payment account with this provider".into()))?;
        let (fee, seller_share) = split(l.price.minor, self.settings.platform_fee_bps);
        let id = new_id("pur");
        let now = now_ms();
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "INSERT INTO purchases (id, listing_id, buyer_id, seller_id, amount_minor, currency, fee_minor, \
             seller_minor, provider, provider_ref, checkout_url, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, 'pending', $10, $10)",
        )
        .bind(&id)
        .bind(listing_id)
        .bind(&p.account_id)
        .bind(&l.seller_id)
        .bind(l.price.minor)
        .bind(&l.price.currency)
        .bind(fee)
        .bind(seller_share)
        .bind(self.provider.name())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            meta,
            &Event::by(p, "purchase_create", Some(&id)).with(serde_json::json!({
                "listing_id": listing_id, "amount_minor": l.price.minor, "currency": l.price.currency,
            })),
        )
        .await?;
        tx.commit().await?;
        let sep = if return_url.contains('?') { '&' } else { '?' };
        let back = format!("{return_url}{sep}purchase={id}");
        let checkout = self
            .provider
            .create_checkout(CheckoutRequest {
                reference: &id,
                buyer_email: &p.email,
                amount: &l.price,
                seller_account: &seller_account,
                platform_fee_minor: fee,
                description: &l.title,
                return_url: &back,
                idempotency_key: &id,
            })
            .await;
        let checkout = match checkout {
            Ok(c) => c,
            Err(e) => {
                self.set_status_if(&id, PurchaseStatus::Pending, PurchaseStatus::Failed)
                    .await?;
                return Err(e);
            }
        };
        sqlx::query("UPDATE purchases SET provider_ref = $1, checkout_url = $2, updated_at = $3 WHERE id = $4")
            .bind(&checkout.provider_ref)
            .bind(&checkout.url)
            .bind(now_ms())
            .bind(&id)
            .execute(&self.db.pool)
            .await?;
        self.purchase(&id).await
    }

    async fn set_status_if(&self, id: &str, from: PurchaseStatus, to: PurchaseStatus) -> Result<bool> {
        let n = sqlx::query("UPDATE purchases SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4")
            .bind(to.as_str())
            .bind(now_ms())
            .bind(id)
            .bind(from.as_str())
            .execute(&self.db.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// A purchase by id.
    pub async fn purchase(&self, id: &str) -> Result<Purchase> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PURCHASE_COLUMNS} FROM purchases WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::NotFound("purchase".into()))?;
        purchase_from(&row)
    }

    /// A purchase its buyer (or an operator) may see.
    pub async fn own_purchase(&self, p: &Principal, id: &str) -> Result<Purchase> {
        let pur = self.purchase(id).await?;
        authorize(p, Scope::DatasetsRead, &pur.buyer_id, "purchase", Grant::OwnerOnly)?;
        Ok(pur)
    }

    /// The buyer's purchases, newest first.
    pub async fn purchases_of(&self, buyer: &str, starting_after: Option<&str>, limit: i64) -> Result<Vec<Purchase>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PURCHASE_COLUMNS} FROM purchases WHERE buyer_id = $1 AND ($2 = '' OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        )))
        .bind(buyer)
        .bind(starting_after.unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(purchase_from).collect()
    }

    /// The completed purchase that gives `p` access to `listing_id`, if any.
    pub async fn access(&self, p: &Principal, listing_id: &str) -> Result<Option<Purchase>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PURCHASE_COLUMNS} FROM purchases WHERE listing_id = $1 AND buyer_id = $2 AND status = 'completed' \
             ORDER BY id DESC"
        )))
        .bind(listing_id)
        .bind(&p.account_id)
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(purchase_from).transpose()
    }

    /// What `buyer` may read now: (purchase id, object key of the bought
    /// output) for each completed purchase, oldest first.
    pub async fn bought_outputs(&self, buyer: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT p.id, l.output_key FROM purchases p JOIN listings l ON l.id = p.listing_id \
             WHERE p.buyer_id = $1 AND p.status = 'completed' ORDER BY p.id",
        )
        .bind(buyer)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("output_key")?)))
            .collect()
    }

    /// Ask the provider how the payment stands and move the purchase on.
    /// A payment that is not the one this purchase opened (another
    /// reference, amount or currency) changes nothing and is logged.
    pub async fn sync(&self, purchase_id: &str) -> Result<Purchase> {
        self.sync_charge(purchase_id, None).await
    }

    /// [`Market::sync`], fetching the payment by the provider's charge id
    /// when a webhook or the redirect named one. The charge must be this
    /// purchase's: another buyer's payment changes nothing.
    pub async fn sync_charge(&self, purchase_id: &str, charge_id: Option<&str>) -> Result<Purchase> {
        let pur = self.purchase(purchase_id).await?;
        let Some(reference) = pur.provider_ref.as_deref() else {
            return Ok(pur);
        };
        let payment = match charge_id {
            Some(charge) => self.provider.fetch_charge(reference, charge).await?,
            None => self.provider.fetch_payment(reference).await?,
        };
        // No charge yet (amount unknown) can only mean "pending".
        let matches = payment.reference == pur.id
            && match &payment.amount {
                Some(amount) => *amount == pur.amount,
                None => payment.status == PaymentStatus::Pending,
            };
        if !matches {
            tracing::error!(
                purchase = %pur.id, payment = %reference, charge = ?charge_id,
                "Payment does not match its purchase; not applied."
            );
            return Ok(pur);
        }
        self.apply(&pur, payment.status).await?;
        self.purchase(purchase_id).await
    }

    /// Move `pur` forward to what the provider says, each step in one
    /// transaction guarded by the state it leaves.
    async fn apply(&self, pur: &Purchase, status: PaymentStatus) -> Result<()> {
        match status {
            PaymentStatus::Pending => {}
            PaymentStatus::Failed => {
                if self
                    .set_status_if(&pur.id, PurchaseStatus::Pending, PurchaseStatus::Failed)
                    .await?
                {
                    self.notify_now(
                        &pur.buyer_id,
                        "purchase_failed",
                        "Your payment did not go through.",
                        pur,
                    )
                    .await?;
                }
            }
            PaymentStatus::Succeeded => self.complete(pur).await?,
            PaymentStatus::Refunded => {
                // Paid and refunded before we heard of either: book both.
                self.complete(pur).await?;
                self.refunded(pur).await?;
            }
        }
        Ok(())
    }

    async fn complete(&self, pur: &Purchase) -> Result<()> {
        self.step(
            pur,
            &Step {
                update: "UPDATE purchases SET status = 'completed', completed_at = $1, updated_at = $1 WHERE id = $2 \
                         AND status IN ('pending', 'failed')",
                kind: "charge",
                sign: 1,
                buyer: (
                    "purchase_completed",
                    "Your purchase is complete; the data is ready to download.",
                ),
                seller: ("sale_made", "You made a sale."),
            },
        )
        .await
    }

    async fn refunded(&self, pur: &Purchase) -> Result<()> {
        self.step(
            pur,
            &Step {
                update: "UPDATE purchases SET status = 'refunded', refunded_at = $1, updated_at = $1 WHERE id = $2 \
                         AND status = 'completed'",
                kind: "refund",
                sign: -1,
                buyer: ("refund", "Your purchase was refunded; access ended."),
                seller: ("refund", "A sale was refunded."),
            },
        )
        .await
    }

    /// One forward step of a purchase in one transaction: the state change
    /// (guarded by the state it leaves; if another caller already took the
    /// step, nothing else happens), a balanced ledger transaction, the
    /// listing's sales counter, and both parties' notifications.
    async fn step(&self, pur: &Purchase, step: &Step) -> Result<()> {
        let now = now_ms();
        let mut tx = self.db.pool.begin().await?;
        let won = sqlx::query(sqlx::AssertSqlSafe(step.update))
            .bind(now)
            .bind(&pur.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !won {
            return Ok(());
        }
        // A charge moves the price into clearing and owes the seller and the
        // platform their shares; a refund is the exact reverse.
        let lines = [
            (format!("clearing:{}", pur.provider), step.sign * pur.amount.minor),
            (format!("seller:{}", pur.seller_id), -step.sign * pur.seller_minor),
            ("platform:fees".to_owned(), -step.sign * pur.fee_minor),
        ];
        self.book(&mut tx, pur, step.kind, &lines, now).await?;
        sqlx::query("UPDATE listings SET sales = sales + $1 WHERE id = $2")
            .bind(step.sign)
            .bind(&pur.listing_id)
            .execute(&mut *tx)
            .await?;
        notify(&mut tx, &pur.buyer_id, step.buyer.0, step.buyer.1, pur).await?;
        notify(&mut tx, &pur.seller_id, step.seller.0, step.seller.1, pur).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One balanced ledger transaction.
    async fn book(
        &self,
        conn: &mut sqlx::AnyConnection,
        pur: &Purchase,
        kind: &str,
        lines: &[(String, i64)],
        now: i64,
    ) -> Result<()> {
        if lines.iter().map(|(_, a)| i128::from(*a)).sum::<i128>() != 0 {
            return Err(Error::Internal(format!("unbalanced {kind} for purchase {}", pur.id)));
        }
        let txn = new_id("txn");
        for (account, amount) in lines {
            sqlx::query(
                "INSERT INTO ledger_entries (id, txn_id, purchase_id, account, amount_minor, currency, kind, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(new_id("le"))
            .bind(&txn)
            .bind(&pur.id)
            .bind(account)
            .bind(*amount)
            .bind(&pur.amount.currency)
            .bind(kind)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn notify_now(&self, account: &str, kind: &str, message: &str, pur: &Purchase) -> Result<()> {
        let mut conn = self.db.pool.acquire().await?;
        notify(&mut conn, account, kind, message, pur).await
    }

    /// Handle a webhook: verify its signature over the raw bytes, drop a
    /// delivery already handled, and sync the purchase it names with the
    /// provider. Bad signatures, stale timestamps and wrong secrets are
    /// errors ([`Error::BadSignature`]); everything else is acknowledged.
    pub async fn webhook(&self, headers: &http::HeaderMap, raw: &[u8]) -> Result<WebhookOutcome> {
        let event = self.provider.verify_webhook(headers, raw, SystemTime::now())?;
        let provider = self.provider.name();
        let seen: Option<String> =
            sqlx::query_scalar("SELECT event_id FROM webhook_events WHERE provider = $1 AND event_id = $2")
                .bind(provider)
                .bind(&event.id)
                .fetch_optional(&self.db.pool)
                .await?;
        if seen.is_some() {
            return Ok(WebhookOutcome::Duplicate);
        }
        // An event naming only a charge (a dashboard refund) is traced back
        // to its payment by asking the provider.
        let reference = match (&event.provider_ref, &event.charge_id) {
            (Some(r), _) => Some(r.clone()),
            (None, Some(charge)) => self.provider.resolve_reference(charge).await?,
            (None, None) => None,
        };
        let purchase: Option<String> = match &reference {
            Some(r) => {
                sqlx::query_scalar("SELECT id FROM purchases WHERE provider = $1 AND provider_ref = $2")
                    .bind(provider)
                    .bind(r)
                    .fetch_optional(&self.db.pool)
                    .await?
            }
            None => None,
        };
        // Processing is idempotent, so the event is recorded after it: a
        // failure (provider unreachable) leaves it to the provider's retry.
        let outcome = match purchase {
            Some(id) => {
                let pur = self.sync_charge(&id, event.charge_id.as_deref()).await?;
                WebhookOutcome::Synced {
                    purchase_id: pur.id,
                    status: pur.status,
                }
            }
            None => WebhookOutcome::Ignored,
        };
        sqlx::query(
            "INSERT INTO webhook_events (provider, event_id, kind, received_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (provider, event_id) DO NOTHING",
        )
        .bind(provider)
        .bind(&event.id)
        .bind(&event.kind)
        .bind(now_ms())
        .execute(&self.db.pool)
        .await?;
        Ok(outcome)
    }

    /// Settle pending purchases older than `payments.reconcile_after_seconds`
    /// by fetching their payments: what a dropped webhook leaves behind.
    /// Returns how many changed state.
    pub async fn reconcile(&self) -> Result<usize> {
        let before = now_ms() - i64::try_from(self.settings.reconcile_after_seconds * 1000).unwrap_or(0);
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM purchases WHERE status = 'pending' AND provider_ref IS NOT NULL AND created_at <= $1 \
             ORDER BY id LIMIT 500",
        )
        .bind(before)
        .fetch_all(&self.db.pool)
        .await?;
        let mut changed = 0;
        for id in ids {
            match self.sync(&id).await {
                Ok(p) if p.status != PurchaseStatus::Pending => changed += 1,
                Ok(_) => {}
                Err(e) => tracing::warn!(purchase = %id, error = %e, "Reconciliation could not sync a purchase."),
            }
        }
        Ok(changed)
    }

    /// An operator refunds a completed purchase: the provider refunds, and
    /// the purchase follows the refunded payment (access ends).
    pub async fn refund(&self, meta: &RequestMeta, p: &Principal, purchase_id: &str) -> Result<Purchase> {
        require(p, Scope::Admin)?;
        let pur = self.purchase(purchase_id).await?;
        if pur.status != PurchaseStatus::Completed {
            return Err(Error::Conflict(format!(
                "purchase is {}; only completed purchases are refunded",
                pur.status.as_str()
            )));
        }
        let reference = pur
            .provider_ref
            .as_deref()
            .ok_or_else(|| Error::Internal("completed purchase without a payment".into()))?;
        // The provider's answer to the refund call is its word (Flutterwave
        // keeps the transaction itself "successful" after a refund), so it is
        // applied as it is, without fetching the payment again.
        let status = self.provider.refund(reference, &format!("refund-{}", pur.id)).await?;
        self.apply(&pur, status).await?;
        let mut conn = self.db.pool.acquire().await?;
        audit::record(
            &mut conn,
            meta,
            &Event::by(p, "purchase_refund", Some(&pur.id)).with(serde_json::json!({
                "amount_minor": pur.amount.minor, "currency": pur.amount.currency,
            })),
        )
        .await?;
        drop(conn);
        self.purchase(purchase_id).await
    }

    /// Count a download of a bought listing (for the seller's dashboard).
    pub async fn record_download(&self, pur: &Purchase) -> Result<()> {
        sqlx::query(
            "INSERT INTO listing_downloads (id, listing_id, purchase_id, buyer_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(new_id("dl"))
        .bind(&pur.listing_id)
        .bind(&pur.id)
        .bind(&pur.buyer_id)
        .bind(now_ms())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Ledger lines, oldest first: of one purchase, or all (operators).
    pub async fn ledger(&self, purchase_id: Option<&str>, limit: i64) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query(
            "SELECT id, txn_id, purchase_id, account, amount_minor, currency, kind, created_at FROM ledger_entries \
             WHERE ($1 = '' OR purchase_id = $1) ORDER BY created_at, txn_id, id LIMIT $2",
        )
        .bind(purchase_id.unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerEntry {
                    id: r.try_get("id")?,
                    txn_id: r.try_get("txn_id")?,
                    purchase_id: r.try_get("purchase_id")?,
                    account: r.try_get("account")?,
                    amount_minor: r.try_get("amount_minor")?,
                    currency: r.try_get("currency")?,
                    kind: r.try_get("kind")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// What the platform owes `seller`, per currency (the credit balance of
    /// their payable account).
    pub async fn payable(&self, seller: &str) -> Result<Vec<Money>> {
        let rows = sqlx::query(
            "SELECT currency, CAST(SUM(amount_minor) AS BIGINT) AS total FROM ledger_entries WHERE account = $1 \
             GROUP BY currency ORDER BY currency",
        )
        .bind(format!("seller:{seller}"))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Money {
                    currency: r.try_get("currency")?,
                    minor: -r.try_get::<i64, _>("total")?,
                })
            })
            .collect()
    }

    /// Per listing of `seller`: sales, refunds, revenue, downloads, and a
    /// daily series.
    pub async fn dashboard(&self, seller: &str) -> Result<Vec<ListingStats>> {
        let listings = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LISTING_COLUMNS} FROM listings l WHERE l.seller_id = $1 ORDER BY l.id"
        )))
        .bind(seller)
        .fetch_all(&self.db.pool)
        .await?;
        let mut out = Vec::new();
        for row in &listings {
            let l = listing_from(row)?;
            let purchases = sqlx::query(
                "SELECT status, seller_minor, completed_at, refunded_at FROM purchases WHERE listing_id = $1 \
                 AND status IN ('completed', 'refunded')",
            )
            .bind(&l.id)
            .fetch_all(&self.db.pool)
            .await?;
            let downloads: Vec<i64> =
                sqlx::query_scalar("SELECT created_at FROM listing_downloads WHERE listing_id = $1")
                    .bind(&l.id)
                    .fetch_all(&self.db.pool)
                    .await?;
            let mut days: std::collections::BTreeMap<i64, (i64, i64)> = std::collections::BTreeMap::new();
            let (mut sales, mut refunds, mut revenue) = (0, 0, 0);
            for p in &purchases {
                let status: String = p.try_get("status")?;
                let share: i64 = p.try_get("seller_minor")?;
                if let Some(at) = p.try_get::<Option<i64>, _>("completed_at")? {
                    days.entry(at / 86_400_000).or_default().0 += 1;
                }
                if status == "completed" {
                    sales += 1;
                    revenue += share;
                } else {
                    refunds += 1;
                }
            }
            for at in &downloads {
                days.entry(at / 86_400_000).or_default().1 += 1;
            }
            out.push(ListingStats {
                listing_id: l.id,
                title: l.title,
                sales,
                refunds,
                revenue_minor: revenue,
                currency: l.price.currency,
                downloads: i64::try_from(downloads.len()).unwrap_or(i64::MAX),
                daily: days.into_iter().map(|(d, (s, dl))| (d, s, dl)).collect(),
            });
        }
        Ok(out)
    }

    /// `account`'s notifications, newest first.
    pub async fn notifications(
        &self,
        account: &str,
        unread_only: bool,
        starting_after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Notification>> {
        notifications(&self.db, account, unread_only, starting_after, limit).await
    }
}

/// Queue a notification on `conn` (the change's transaction).
async fn notify(
    conn: &mut sqlx::AnyConnection,
    account: &str,
    kind: &str,
    message: &str,
    pur: &Purchase,
) -> Result<()> {
    let data = serde_json::json!({
        "purchase_id": pur.id, "listing_id": pur.listing_id,
        "amount_minor": pur.amount.minor, "currency": pur.amount.currency,
    });
    notify_raw(conn, account, kind, message, &data).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_cannot_inject_fts_syntax() {
        assert_eq!(fts5_query("census income").as_deref(), Some("\"census\"* \"income\"*"));
        assert_eq!(
            fts5_query("a\" OR title:* NEAR(").as_deref(),
            Some("\"a\"* \"or\"* \"title\"* \"near\"*")
        );
        assert_eq!(fts5_query("  -- "), None);
    }

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let c = Cursor {
            sort: Sort::PriceAsc,
            key: Some((serde_json::Value::from(500), "lst_1".into())),
            offset: 20,
        };
        let back = decode_cursor(&encode_cursor(&c)).unwrap();
        assert_eq!((back.sort, back.offset), (Sort::PriceAsc, 20));
        assert!(decode_cursor("!!").is_err());
    }

    #[test]
    fn tags_are_normalised() {
        assert_eq!(
            clean_tags(&["Census".into(), "census".into(), "us-income".into()]).unwrap(),
            vec!["census", "us-income"]
        );
        assert!(clean_tags(&["two words".into()]).is_err());
    }
}
