//! The marketplace endpoints: listings (privacy-gated), search, checkout,
//! purchases and downloads, notifications, the seller dashboard, operator
//! tools; plus the plain HTTP routes a browser or a payment provider calls
//! without a bearer token: webhooks, the return from checkout, and the fake
//! provider's hosted checkout page.

use std::sync::Arc;
use std::time::Duration;

use doppel_market::payments::{Money, PayoutDetails};
use doppel_market::{Listing, ListingPatch, ListingStatus, Purchase, PurchaseStatus, SearchQuery, Sort};
use doppel_platform::authz::{Scope, require};
use poem::web::Data;
use poem::{Body, Request, Response, handler};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::api::{ApiTags, DownloadLink, forget, hash_request, meta, page_limit, remember, replay};
use crate::auth::Auth;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use doppel_app::AppState;

/// The bank account a seller is paid into.
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct PayoutAccountBody {
    /// Name on the account.
    #[oai(validator(min_length = 1, max_length = 100))]
    pub business_name: String,
    /// The provider's bank code (Flutterwave: `044`, `058`…).
    #[oai(validator(min_length = 2, max_length = 10))]
    pub bank_code: String,
    /// Account number, without spaces.
    #[oai(validator(min_length = 6, max_length = 34))]
    pub account_number: String,
    /// ISO 3166-1 alpha-2 country of the bank (`NG`).
    #[oai(validator(min_length = 2, max_length = 2))]
    pub country: String,
}

/// Where the provider sends the seller after onboarding.
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct OnboardingBody {
    /// An http(s) URL of yours.
    #[oai(validator(max_length = 2048))]
    pub return_url: String,
}

/// A one-time onboarding link.
#[derive(Debug, Clone, Object)]
pub struct OnboardingView {
    /// Open it in a browser; it expires within minutes.
    pub url: String,
}

/// A seller's account at the payment provider.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PayoutAccountView {
    /// `fake`, `stripe`, `flutterwave`.
    pub provider: String,
    /// The provider's id for it (`acct_…`, `RS_…`).
    pub provider_account_id: String,
    /// Masked bank details (`Acme · bank 044 · ****0031 · NG`).
    pub payout: Option<String>,
    /// Whether this provider needs bank details before a first listing.
    pub needs_payout_details: bool,
    /// When it was opened (ms since the epoch).
    pub created_at: i64,
}

impl From<doppel_market::SellerAccount> for PayoutAccountView {
    fn from(a: doppel_market::SellerAccount) -> Self {
        PayoutAccountView {
            provider: a.provider,
            provider_account_id: a.provider_account_id,
            payout: a.payout_summary,
            needs_payout_details: a.needs_payout_details,
            created_at: a.created_at,
        }
    }
}

/// An amount of money.
#[derive(Debug, Clone, Object)]
pub struct MoneyView {
    /// Minor units (cents).
    pub minor: i64,
    /// ISO 4217 code.
    pub currency: String,
}

impl From<Money> for MoneyView {
    fn from(m: Money) -> Self {
        MoneyView {
            minor: m.minor,
            currency: m.currency,
        }
    }
}

/// A listing.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ListingView {
    /// Id (`lst_…`).
    pub id: String,
    /// Seller account: shown to the seller and operators only.
    pub seller_id: Option<String>,
    /// The job whose output is for sale: shown to the seller and operators
    /// only (a buyer needs neither, and ids are not for guessing with).
    pub job_id: Option<String>,
    /// The output.
    pub output_name: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Category.
    pub category: String,
    /// Price.
    pub price: MoneyView,
    /// License text.
    pub license: String,
    /// Schema, 20 synthetic rows, quality and privacy scores, compliance summary.
    pub preview: serde_json::Value,
    /// Quality score (0–1).
    pub quality_score: Option<f64>,
    /// Privacy score (0–100; listings need ≥ 40).
    pub privacy_score: f64,
    /// `active`, `paused`, `delisted`, `suspended`.
    pub status: String,
    /// Sales.
    pub sales: i64,
    /// Created, ms.
    pub created_at: i64,
    /// Updated, ms.
    pub updated_at: i64,
}

impl ListingView {
    /// The listing as `viewer` may see it: the seller's own ids only for the
    /// seller and operators.
    pub fn seen_by(l: Listing, viewer: &doppel_platform::authz::Principal) -> Self {
        let own = viewer.account_id == l.seller_id || viewer.is_admin();
        ListingView {
            id: l.id,
            seller_id: own.then_some(l.seller_id),
            job_id: own.then_some(l.job_id),
            output_name: l.output_name,
            title: l.title,
            description: l.description,
            tags: l.tags,
            category: l.category,
            price: l.price.into(),
            license: l.license,
            preview: l.preview,
            quality_score: l.quality_score,
            privacy_score: l.privacy_score,
            status: l.status.as_str().to_owned(),
            sales: l.sales,
            created_at: l.created_at,
            updated_at: l.updated_at,
        }
    }
}

/// A listing to create from one of your succeeded jobs.
#[derive(Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct NewListingBody {
    /// The job (yours, succeeded, with a privacy stage).
    pub job_id: String,
    /// Which output (default: `synthetic.parquet` or `synthetic.csv`).
    pub output: Option<String>,
    /// Title.
    pub title: String,
    /// Description.
    #[oai(default)]
    #[serde(default)]
    pub description: String,
    /// Tags (letters, digits, `-`).
    #[oai(default)]
    #[serde(default)]
    pub tags: Vec<String>,
    /// Category.
    pub category: String,
    /// Price in minor units.
    pub price_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// License text the buyer accepts.
    pub license: String,
}

/// Changes to a listing.
#[derive(Debug, Object, serde::Deserialize)]
pub struct ListingPatchBody {
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Category.
    pub category: Option<String>,
    /// Price in minor units (same currency).
    pub price_minor: Option<i64>,
    /// License text.
    pub license: Option<String>,
    /// `active`, `paused` or `delisted` (final).
    pub status: Option<String>,
}

/// A page of listings.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ListingPage {
    /// Listings.
    pub data: Vec<ListingView>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// A purchase.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PurchaseView {
    /// Id (`pur_…`).
    pub id: String,
    /// What was bought.
    pub listing_id: String,
    /// Price.
    pub amount: MoneyView,
    /// Platform fee (20 %).
    pub fee_minor: i64,
    /// Seller's share (80 %).
    pub seller_minor: i64,
    /// `pending`, `completed`, `failed`, `refunded`.
    pub status: String,
    /// Send the buyer here to pay (while pending).
    pub checkout_url: Option<String>,
    /// Created, ms.
    pub created_at: i64,
    /// Completed, ms.
    pub completed_at: Option<i64>,
    /// Refunded, ms.
    pub refunded_at: Option<i64>,
}

impl From<Purchase> for PurchaseView {
    fn from(p: Purchase) -> Self {
        PurchaseView {
            checkout_url: p.checkout_url.filter(|_| p.status == PurchaseStatus::Pending),
            id: p.id,
            listing_id: p.listing_id,
            amount: p.amount.into(),
            fee_minor: p.fee_minor,
            seller_minor: p.seller_minor,
            status: p.status.as_str().to_owned(),
            created_at: p.created_at,
            completed_at: p.completed_at,
            refunded_at: p.refunded_at,
        }
    }
}

/// Where the payment provider sends the buyer back.
#[derive(Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct CheckoutBody {
    /// Your page (default: this server's `/v1/checkout/return`, which
    /// verifies the payment).
    pub return_url: Option<String>,
}

/// A page of purchases.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PurchasePage {
    /// Purchases.
    pub data: Vec<PurchaseView>,
    /// More after these.
    pub has_more: bool,
    /// Pass as `starting_after`.
    pub next_cursor: Option<String>,
}

/// A notification.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NotificationView {
    /// Id.
    pub id: String,
    /// `job_succeeded`, `job_failed`, `sale_made`, `purchase_completed`, `purchase_failed`, `refund`.
    pub kind: String,
    /// Text.
    pub message: String,
    /// Ids involved.
    pub data: serde_json::Value,
    /// When, ms.
    pub created_at: i64,
    /// Read, ms.
    pub read_at: Option<i64>,
}

/// A page of notifications.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NotificationPage {
    /// Newest first.
    pub data: Vec<NotificationView>,
    /// More after these.
    pub has_more: bool,
    /// Pass as `starting_after`.
    pub next_cursor: Option<String>,
}

/// One listing's sales.
#[derive(Debug, Object)]
pub struct ListingStatsView {
    /// Listing.
    pub listing_id: String,
    /// Title.
    pub title: String,
    /// Standing sales.
    pub sales: i64,
    /// Refunded sales.
    pub refunds: i64,
    /// Your revenue after the platform fee and refunds, minor units.
    pub revenue_minor: i64,
    /// Currency.
    pub currency: String,
    /// Downloads by buyers.
    pub downloads: i64,
    /// Per day (days since 1970-01-01): sales, downloads.
    pub daily: Vec<DailyView>,
}

/// One day of a listing.
#[derive(Debug, Object)]
pub struct DailyView {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// Sales completed that day.
    pub sales: i64,
    /// Downloads that day.
    pub downloads: i64,
}

/// The seller's dashboard.
#[derive(Debug, Object)]
pub struct DashboardView {
    /// Per listing.
    pub listings: Vec<ListingStatsView>,
    /// What the platform owes you (the payout report), per currency.
    pub payable: Vec<MoneyView>,
}

/// A ledger line (debit positive, credit negative).
#[derive(Debug, Object)]
pub struct LedgerEntryView {
    /// Id.
    pub id: String,
    /// Transaction (its lines sum to zero).
    pub txn_id: String,
    /// Purchase.
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

/// Why an operator suspends a listing.
#[derive(Debug, Object, serde::Deserialize)]
pub struct SuspendBody {
    /// Reason (kept in the audit log).
    pub reason: String,
}

/// How many pending purchases a reconciliation pass settled.
#[derive(Debug, Object)]
pub struct ReconcileView {
    /// Purchases that changed state.
    pub settled: i64,
}

#[derive(Debug, ApiResponse)]
enum CreatedListing {
    /// Listed.
    #[oai(status = 201)]
    Created(Json<ListingView>),
}

#[derive(Debug, ApiResponse)]
enum CreatedPurchase {
    /// A pending purchase: send the buyer to `checkout_url`.
    #[oai(status = 201)]
    Created(Json<PurchaseView>),
}

/// Search order, as a query parameter.
#[derive(Debug, Clone, Copy, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum SortParam {
    /// Best match (default with `q`).
    Relevance,
    /// Newest first (default without `q`).
    Newest,
    /// Cheapest first.
    PriceAsc,
    /// Dearest first.
    PriceDesc,
    /// Best-selling first.
    Popularity,
}

/// The marketplace API.
#[derive(Debug, Default)]
pub struct MarketApi;

fn stats_view(s: doppel_market::ListingStats) -> ListingStatsView {
    ListingStatsView {
        listing_id: s.listing_id,
        title: s.title,
        sales: s.sales,
        refunds: s.refunds,
        revenue_minor: s.revenue_minor,
        currency: s.currency,
        downloads: s.downloads,
        daily: s
            .daily
            .into_iter()
            .map(|(day, sales, downloads)| DailyView { day, sales, downloads })
            .collect(),
    }
}

fn default_return(state: &AppState) -> String {
    format!(
        "{}/v1/checkout/return",
        state.settings.public_url().trim_end_matches('/')
    )
}

#[OpenApi(prefix_path = "/v1")]
impl MarketApi {
    /// List one of your succeeded jobs' outputs for sale. Refused (422
    /// `listing_refused`) when its privacy score is below 40, it has none,
    /// or a compliance check failed; the message says why.
    #[oai(
        path = "/listings",
        method = "post",
        tag = "ApiTags::Marketplace",
        operation_id = "create_listing"
    )]
    async fn create_listing(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        body: JsonBody<NewListingBody>,
    ) -> ApiResult<CreatedListing> {
        let b = body.0;
        let listing = doppel_app::listings::list_job(
            &state,
            &meta(req),
            &auth.0,
            doppel_app::listings::ListJob {
                job_id: b.job_id,
                output: b.output,
                title: b.title,
                description: b.description,
                tags: b.tags,
                category: b.category,
                price_minor: b.price_minor,
                currency: b.currency,
                license: b.license,
            },
        )
        .await?;
        Ok(CreatedListing::Created(Json(ListingView::seen_by(listing, &auth.0))))
    }

    /// Search and browse active listings: full text over title, description
    /// and tags, filters, sort, cursor pages.
    #[oai(
        path = "/listings",
        method = "get",
        tag = "ApiTags::Marketplace",
        operation_id = "search_listings"
    )]
    #[allow(clippy::too_many_arguments, reason = "one query parameter each")]
    async fn search(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        q: Query<Option<String>>,
        category: Query<Option<String>>,
        /// Comma-separated; all must be present.
        tags: Query<Option<String>>,
        currency: Query<Option<String>>,
        min_price: Query<Option<i64>>,
        max_price: Query<Option<i64>>,
        min_quality: Query<Option<f64>>,
        min_privacy: Query<Option<f64>>,
        sort: Query<Option<SortParam>>,
        cursor: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
    ) -> ApiResult<Json<ListingPage>> {
        let query = SearchQuery {
            text: q.0,
            category: category.0,
            tags: tags
                .0
                .map(|t| {
                    t.split(',')
                        .filter(|s| !s.trim().is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            currency: currency.0,
            min_price: min_price.0,
            max_price: max_price.0,
            min_quality: min_quality.0,
            min_privacy: min_privacy.0,
            sort: sort.0.map(|s| match s {
                SortParam::Relevance => Sort::Relevance,
                SortParam::Newest => Sort::Newest,
                SortParam::PriceAsc => Sort::PriceAsc,
                SortParam::PriceDesc => Sort::PriceDesc,
                SortParam::Popularity => Sort::Popularity,
            }),
            cursor: cursor.0,
            limit: page_limit(limit.0)?,
        };
        let (rows, next_cursor) = doppel_app::access::search(&state, &auth.0, &query).await?;
        Ok(Json(ListingPage {
            data: rows.into_iter().map(|l| ListingView::seen_by(l, &auth.0)).collect(),
            next_cursor,
        }))
    }

    /// One listing (active ones to everyone; others to their seller and buyers).
    #[oai(
        path = "/listings/:id",
        method = "get",
        tag = "ApiTags::Marketplace",
        operation_id = "get_listing"
    )]
    async fn get_listing(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<ListingView>> {
        Ok(Json(ListingView::seen_by(
            doppel_app::access::listing(&state, &auth.0, &id).await?,
            &auth.0,
        )))
    }

    /// Edit, pause, resume or delist your listing. Buyers keep what they bought.
    #[oai(
        path = "/listings/:id",
        method = "patch",
        tag = "ApiTags::Marketplace",
        operation_id = "update_listing"
    )]
    async fn update_listing(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
        body: JsonBody<ListingPatchBody>,
    ) -> ApiResult<Json<ListingView>> {
        let b = body.0;
        let status = match b.status.as_deref() {
            None => None,
            Some("active") => Some(ListingStatus::Active),
            Some("paused") => Some(ListingStatus::Paused),
            Some("delisted") => Some(ListingStatus::Delisted),
            Some(other) => {
                return Err(ApiError::invalid(
                    "status",
                    format!("`{other}` is not one of active, paused, delisted"),
                ));
            }
        };
        let patch = ListingPatch {
            title: b.title,
            description: b.description,
            tags: b.tags,
            category: b.category,
            price_minor: b.price_minor,
            license: b.license,
            status,
        };
        Ok(Json(ListingView::seen_by(
            state.market.update_listing(&meta(req), &auth.0, &id, patch).await?,
            &auth.0,
        )))
    }

    /// Buy a listing: a pending purchase and the payment provider's hosted
    /// checkout (`checkout_url`). Send an `Idempotency-Key` so a retried
    /// request opens one checkout.
    #[oai(
        path = "/listings/:id/checkout",
        method = "post",
        tag = "ApiTags::Marketplace",
        operation_id = "checkout"
    )]
    async fn checkout(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: JsonBody<CheckoutBody>,
    ) -> ApiResult<CreatedPurchase> {
        require(&auth.0, Scope::MarketplaceBuy)?;
        let hash = hash_request(&[
            b"checkout",
            id.as_bytes(),
            serde_json::to_string(&body.0).unwrap_or_default().as_bytes(),
        ]);
        let key = idempotency_key.0.as_deref();
        if let Some(previous) = replay::<PurchaseView>(&state, &auth.0, key, &hash).await? {
            return Ok(CreatedPurchase::Created(Json(previous)));
        }
        let created = async {
            let return_url = body.0.return_url.unwrap_or_else(|| default_return(&state));
            let purchase = doppel_app::listings::checkout(&state, &meta(req), &auth.0, &id, &return_url).await?;
            let view: PurchaseView = purchase.into();
            remember(&state, &auth.0, key, &hash, &view).await?;
            Ok(view)
        }
        .await;
        let view = forget(&state, &auth.0, key, created).await?;
        Ok(CreatedPurchase::Created(Json(view)))
    }

    /// Your purchases, newest first.
    #[oai(
        path = "/purchases",
        method = "get",
        tag = "ApiTags::Marketplace",
        operation_id = "list_purchases"
    )]
    async fn purchases(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<PurchasePage>> {
        let n = page_limit(limit.0)?;
        let rows = doppel_app::access::purchases(&state, &auth.0, starting_after.0.as_deref(), n + 1).await?;
        let (rows, has_more, next_cursor) = crate::api::paginate(rows, n, |p| p.id.clone());
        Ok(Json(PurchasePage {
            data: rows.into_iter().map(Into::into).collect(),
            has_more,
            next_cursor,
        }))
    }

    /// One purchase, as the provider last reported it.
    #[oai(
        path = "/purchases/:id",
        method = "get",
        tag = "ApiTags::Marketplace",
        operation_id = "get_purchase"
    )]
    async fn purchase(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<PurchaseView>> {
        Ok(Json(state.market.own_purchase(&auth.0, &id).await?.into()))
    }

    /// Verify a purchase with the payment provider now (after the buyer is
    /// redirected back, or if a webhook is late).
    #[oai(
        path = "/purchases/:id/verify",
        method = "post",
        tag = "ApiTags::Marketplace",
        operation_id = "verify_purchase"
    )]
    async fn verify(&self, state: Data<&Arc<AppState>>, auth: Auth, id: Path<String>) -> ApiResult<Json<PurchaseView>> {
        let p = state.market.own_purchase(&auth.0, &id).await?;
        Ok(Json(state.market.sync(&p.id).await?.into()))
    }

    /// A signed link (1 hour) to download what you bought; refunded
    /// purchases have none.
    #[oai(
        path = "/purchases/:id/download",
        method = "get",
        tag = "ApiTags::Marketplace",
        operation_id = "download_purchase"
    )]
    async fn download(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<DownloadLink>> {
        let (p, _) = doppel_app::listings::purchased(&state, &auth.0, &id).await?;
        let ttl = Duration::from_secs(state.settings.limits.download_ttl_seconds.max(1));
        // A link to our own route, not to the object: the route re-checks
        // the purchase on every fetch, so a refund ends the link at once
        // (an S3 presigned URL would keep working for its hour).
        let link = state.storage.signed_route(&purchase_download_route(&p.id), ttl);
        state.market.record_download(&p).await?;
        Ok(Json(DownloadLink {
            url: link.url,
            expires_at: link.expires_at,
        }))
    }

    /// Your notifications, newest first.
    #[oai(
        path = "/notifications",
        method = "get",
        tag = "ApiTags::Notifications",
        operation_id = "list_notifications"
    )]
    async fn notifications(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        unread: Query<Option<bool>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<NotificationPage>> {
        require(&auth.0, Scope::DatasetsRead)?;
        let n = page_limit(limit.0)?;
        let rows = doppel_market::notifications(
            &state.db,
            &auth.0.account_id,
            unread.0.unwrap_or(false),
            starting_after.0.as_deref(),
            n + 1,
        )
        .await?;
        let (rows, has_more, next_cursor) = crate::api::paginate(rows, n, |x| x.id.clone());
        Ok(Json(NotificationPage {
            data: rows
                .into_iter()
                .map(|x| NotificationView {
                    id: x.id,
                    kind: x.kind,
                    message: x.message,
                    data: x.data,
                    created_at: x.created_at,
                    read_at: x.read_at,
                })
                .collect(),
            has_more,
            next_cursor,
        }))
    }

    /// Mark a notification read.
    #[oai(
        path = "/notifications/:id/read",
        method = "post",
        tag = "ApiTags::Notifications",
        operation_id = "read_notification"
    )]
    async fn read(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<serde_json::Value>> {
        require(&auth.0, Scope::DatasetsRead)?;
        doppel_market::mark_read(&state.db, &auth.0.account_id, &id).await?;
        Ok(Json(serde_json::json!({"id": id.0, "read": true})))
    }

    /// Your sales, revenue and downloads per listing, and what you are owed.
    #[oai(
        path = "/seller/dashboard",
        method = "get",
        tag = "ApiTags::Marketplace",
        operation_id = "seller_dashboard"
    )]
    async fn dashboard(&self, state: Data<&Arc<AppState>>, auth: Auth) -> ApiResult<Json<DashboardView>> {
        let (listings, payable) = doppel_app::listings::dashboard(&state, &auth.0).await?;
        Ok(Json(DashboardView {
            listings: listings.into_iter().map(stats_view).collect(),
            payable: payable.into_iter().map(Into::into).collect(),
        }))
    }

    /// Set the bank account you are paid into. Flutterwave pays sellers into
    /// a bank account through a subaccount, so there this comes before a
    /// first listing; the details go to the provider and only a masked
    /// summary is kept. Setting it again replaces the account for new sales.
    /// Providers that collect bank details themselves (Stripe, the built-in
    /// provider) answer 422 `payout_details_not_used`: use the onboarding link.
    #[oai(
        path = "/seller/payout-account",
        method = "put",
        tag = "ApiTags::Marketplace",
        operation_id = "set_payout_account"
    )]
    async fn set_payout_account(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        body: JsonBody<PayoutAccountBody>,
    ) -> ApiResult<Json<PayoutAccountView>> {
        let b = body.0;
        let details = PayoutDetails::new(&b.business_name, &b.bank_code, &b.account_number, &b.country)?;
        let account = state.market.set_payout_account(&meta(req), &auth.0, &details).await?;
        Ok(Json(account.into()))
    }

    /// Your account at the payment provider (404 until one is opened, by a
    /// first listing or by setting a payout account).
    #[oai(
        path = "/seller/payout-account",
        method = "get",
        tag = "ApiTags::Marketplace",
        operation_id = "get_payout_account"
    )]
    async fn payout_account(&self, state: Data<&Arc<AppState>>, auth: Auth) -> ApiResult<Json<PayoutAccountView>> {
        require(&auth.0, Scope::MarketplaceSell)?;
        match state.market.payout_account(&auth.0).await? {
            Some(a) => Ok(Json(a.into())),
            None => Err(doppel_platform::Error::NotFound("payout account".into()).into()),
        }
    }

    /// A one-time link where you finish onboarding at the payment provider
    /// (Stripe Express: identity and bank account); the provider sends you to
    /// `return_url` afterwards. 422 `no_onboarding` where the provider has
    /// no such step (the built-in provider; Flutterwave uses the payout
    /// account instead).
    #[oai(
        path = "/seller/payout-account/onboarding-link",
        method = "post",
        tag = "ApiTags::Marketplace",
        operation_id = "seller_onboarding_link"
    )]
    async fn onboarding_link(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        body: JsonBody<OnboardingBody>,
    ) -> ApiResult<Json<OnboardingView>> {
        let return_url = body.0.return_url;
        doppel_app::listings::check_return_url(&state, &return_url)?;
        let url = state.market.onboarding_link(&auth.0, &return_url).await?;
        Ok(Json(OnboardingView { url }))
    }

    /// Take a listing down (admin). Buyers keep access.
    #[oai(
        path = "/admin/listings/:id/suspend",
        method = "post",
        tag = "ApiTags::Admin",
        operation_id = "admin_suspend_listing"
    )]
    async fn suspend(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
        body: JsonBody<SuspendBody>,
    ) -> ApiResult<Json<ListingView>> {
        Ok(Json(ListingView::seen_by(
            doppel_app::admin::suspend(&state, &meta(req), &auth.0, &id, &body.0.reason).await?,
            &auth.0,
        )))
    }

    /// Refund a completed purchase through the provider (admin); access ends.
    #[oai(
        path = "/admin/purchases/:id/refund",
        method = "post",
        tag = "ApiTags::Admin",
        operation_id = "admin_refund"
    )]
    async fn refund(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<PurchaseView>> {
        Ok(Json(
            doppel_app::admin::refund(&state, &meta(req), &auth.0, &id)
                .await?
                .into(),
        ))
    }

    /// The ledger (admin): every line, or one purchase's.
    #[oai(
        path = "/admin/ledger",
        method = "get",
        tag = "ApiTags::Admin",
        operation_id = "admin_ledger"
    )]
    async fn ledger(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        purchase_id: Query<Option<String>>,
    ) -> ApiResult<Json<Vec<LedgerEntryView>>> {
        let rows = doppel_app::admin::ledger(&state, &auth.0, purchase_id.0.as_deref(), 10_000).await?;
        Ok(Json(
            rows.into_iter()
                .map(|e| LedgerEntryView {
                    id: e.id,
                    txn_id: e.txn_id,
                    purchase_id: e.purchase_id,
                    account: e.account,
                    amount_minor: e.amount_minor,
                    currency: e.currency,
                    kind: e.kind,
                    created_at: e.created_at,
                })
                .collect(),
        ))
    }

    /// Settle pending purchases with the provider now (admin); the server
    /// also does this every `payments.reconcile_seconds`.
    #[oai(
        path = "/admin/payments/reconcile",
        method = "post",
        tag = "ApiTags::Admin",
        operation_id = "admin_reconcile"
    )]
    async fn reconcile(&self, state: Data<&Arc<AppState>>, auth: Auth) -> ApiResult<Json<ReconcileView>> {
        let settled = doppel_app::admin::reconcile(&state, &auth.0).await?;
        Ok(Json(ReconcileView {
            settled: i64::try_from(settled).unwrap_or(i64::MAX),
        }))
    }
}

fn json_response(status: poem::http::StatusCode, value: &serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(value.to_string())
}

/// `POST /v1/webhooks/{provider}`: the raw body is what the signature
/// covers. 200 for handled, duplicate or unrelated events; 400 for a bad
/// signature; 503 when the provider cannot be reached to verify (the
/// provider retries).
#[handler]
pub(crate) async fn webhook(
    state: Data<&Arc<AppState>>,
    poem::web::Path(provider): poem::web::Path<String>,
    req: &Request,
    body: Body,
) -> Response {
    use poem::http::StatusCode;
    if provider != state.market.provider().name() {
        return json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"code": "not_found", "message": format!("no `{provider}` payment provider here")}),
        );
    }
    let raw = match body.into_bytes().await {
        Ok(b) => b,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"code": "invalid_request", "message": e.to_string()}),
            );
        }
    };
    match state.market.webhook(req.headers(), &raw).await {
        Ok(outcome) => {
            let (result, purchase) = match outcome {
                doppel_market::WebhookOutcome::Duplicate => ("duplicate", None),
                doppel_market::WebhookOutcome::Ignored => ("ignored", None),
                doppel_market::WebhookOutcome::Synced { purchase_id, .. } => ("processed", Some(purchase_id)),
            };
            json_response(
                StatusCode::OK,
                &serde_json::json!({"received": true, "result": result, "purchase": purchase}),
            )
        }
        Err(e) => {
            let api: ApiError = e.into();
            let status = StatusCode::from_u16(api.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let b = api.body();
            json_response(
                status,
                &serde_json::json!({"code": b.code, "message": b.message, "request_id": b.request_id}),
            )
        }
    }
}

fn html(status: poem::http::StatusCode, title: &str, body: &str) -> Response {
    page(status, title, body, None)
}

/// An HTML page with a locked-down CSP. `form_to` is the one other origin
/// the page's form may end up at: browsers apply `form-action` to the
/// redirect after a submission too, so the hosted checkout must allow the
/// buyer's return URL.
fn page(status: poem::http::StatusCode, title: &str, body: &str, form_to: Option<&str>) -> Response {
    let extra = form_to
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.origin())
        .filter(url::Origin::is_tuple)
        .map(|o| format!(" {}", o.ascii_serialization()))
        .unwrap_or_default();
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(
            "content-security-policy",
            format!("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'{extra}"),
        )
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
             <meta name=\"viewport\" content=\"width=device-width\"><style>body{{font:16px system-ui,sans-serif;\
             max-width:28rem;margin:4rem auto;padding:0 1rem}}button{{font:inherit;padding:.6rem 1.2rem;margin-right:.5rem}}\
             </style></head><body>{body}</body></html>",
            t = escape(title)
        ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `GET /v1/fake-pay/{id}`: the fake provider's hosted checkout page.
#[handler]
pub(crate) async fn fake_checkout_page(
    state: Data<&Arc<AppState>>,
    poem::web::Path(id): poem::web::Path<String>,
) -> Response {
    use poem::http::StatusCode;
    let Some(fake) = &state.fake else {
        return html(StatusCode::NOT_FOUND, "Not found", "<p>No such checkout.</p>");
    };
    let Ok(p) = fake.payment(&id).await else {
        return html(StatusCode::NOT_FOUND, "Not found", "<p>No such checkout.</p>");
    };
    let id = escape(&p.id);
    let body = match p.status {
        doppel_market::payments::PaymentStatus::Pending => format!(
            "<h1>Pay {amount}</h1><p id=\"what\">{what}</p><p>doppel test payments: no money moves.</p>\
             <form method=\"post\" action=\"/v1/fake-pay/{id}\"><button id=\"pay\" name=\"action\" value=\"pay\">Pay \
             {amount}</button><button id=\"decline\" name=\"action\" value=\"decline\">Decline</button></form>",
            amount = escape(&p.amount.display()),
            what = escape(&p.description),
        ),
        other => format!("<h1>Checkout closed</h1><p>This payment is {}.</p>", other.as_str()),
    };
    page(StatusCode::OK, "doppel checkout", &body, Some(&p.return_url))
}

/// `POST /v1/fake-pay/{id}` (`action=pay|decline`): settle, send the signed
/// webhook, redirect back to the return URL.
#[handler]
pub(crate) async fn fake_checkout_submit(
    state: Data<&Arc<AppState>>,
    poem::web::Path(id): poem::web::Path<String>,
    body: Body,
) -> Response {
    use poem::http::StatusCode;
    let Some(fake) = &state.fake else {
        return html(StatusCode::NOT_FOUND, "Not found", "<p>No such checkout.</p>");
    };
    let form = body.into_string().await.unwrap_or_default();
    let pay = form.split('&').any(|kv| kv == "action=pay");
    match fake.settle(&id, pay).await {
        Ok(back) => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header("location", back)
            .finish(),
        Err(_) => html(StatusCode::NOT_FOUND, "Not found", "<p>No such checkout.</p>"),
    }
}

/// The route a purchase's download link points at.
pub(crate) fn purchase_download_route(purchase: &str) -> String {
    format!("/v1/purchase-downloads/{purchase}")
}

/// `GET /v1/purchase-downloads/{id}?expires=…&signature=…`: a link made by
/// `GET /v1/purchases/{id}/download`. The signature proves the link; the
/// purchase is checked again now, so a refunded purchase downloads nothing.
#[handler]
pub(crate) async fn purchase_download(
    state: Data<&Arc<AppState>>,
    poem::web::Path(id): poem::web::Path<String>,
    req: &Request,
) -> poem::Result<Response> {
    use poem::http::StatusCode;
    let forbidden = |m: &str| crate::error::poem_error(StatusCode::FORBIDDEN, "invalid_link", m);
    let query = req.uri().query().unwrap_or_default();
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let (Some(expires), Some(signature)) = (param("expires").and_then(|e| e.parse::<i64>().ok()), param("signature"))
    else {
        return Err(forbidden("this download link is incomplete"));
    };
    state
        .storage
        .verify_route(&purchase_download_route(&id), expires, &signature)
        .map_err(|e| forbidden(&e.to_string()))?;
    let purchase = state
        .market
        .purchase(&id)
        .await
        .map_err(|_| forbidden("this download link is invalid or has expired"))?;
    if purchase.status != PurchaseStatus::Completed {
        return Err(forbidden(&format!(
            "the purchase is {}; its download links no longer work",
            purchase.status.as_str()
        )));
    }
    let listing = state.market.listing(&purchase.listing_id).await.map_err(|e| {
        tracing::error!(error = %e, "Download: listing lookup failed.");
        crate::error::poem_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the download failed")
    })?;
    crate::send_object(&state, &listing.output_key, &listing.output_name).await
}

/// `GET /v1/checkout/return?purchase=…`: where the provider sends the buyer
/// back. The redirect proves nothing, so the payment is fetched from the
/// provider; the page says how the purchase stands.
#[handler]
pub(crate) async fn checkout_return(state: Data<&Arc<AppState>>, req: &Request) -> Response {
    use poem::http::StatusCode;
    let query = req.uri().query().unwrap_or_default();
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let purchase = param("purchase").unwrap_or_default();
    // Flutterwave's redirect names the transaction: the payment is fetched
    // by it (and must be this purchase's), not believed.
    let charge = param("transaction_id").filter(|t| !t.is_empty());
    match state.market.sync_charge(&purchase, charge.as_deref()).await {
        Ok(p) => {
            let message = match p.status {
                PurchaseStatus::Completed => "Payment received. The data is in your purchases, ready to download.",
                PurchaseStatus::Pending => "Payment pending; this page does not need to stay open.",
                PurchaseStatus::Failed => "The payment did not go through; nothing was charged.",
                PurchaseStatus::Refunded => "This purchase was refunded.",
            };
            html(
                StatusCode::OK,
                "doppel purchase",
                &format!(
                    "<h1 id=\"status\" data-status=\"{}\">{}</h1><p>Purchase {}</p>",
                    p.status.as_str(),
                    escape(message),
                    escape(&p.id)
                ),
            )
        }
        Err(_) => html(StatusCode::NOT_FOUND, "Not found", "<p>No such purchase.</p>"),
    }
}
