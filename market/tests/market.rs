//! The marketplace against real metadata stores (SQLite, and PostgreSQL
//! when `DOPPEL_TEST_POSTGRES` is set): listings and search, purchases on the
//! built-in provider, and the Stripe and Flutterwave adapters against local
//! servers speaking their request and response shapes.

#![allow(clippy::print_stderr, reason = "a test says which backend legs it skipped")]

#[macro_use]
#[path = "../../platform/tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;

use doppel_platform::{Db, Error};
use support::{accounts, meta, user};

// ---------------------------------------------------------------- marketplace

use doppel_market::payments::fake::FakeProvider;
use doppel_market::payments::stripe_signature;
use doppel_market::{
    ListingPatch, ListingStatus, Market, NewListing, PurchaseStatus, SearchQuery, Sort, WebhookOutcome,
};
use doppel_platform::settings::PaymentSettings;

const WHSEC: &str = "whsec_test";

fn market(db: &Db) -> (Market, FakeProvider) {
    // Nothing listens on the discard port: the fake's own deliveries fail,
    // and the tests deliver (and forge) webhooks themselves.
    let fake = FakeProvider::new(db.clone(), WHSEC.into(), "http://127.0.0.1:9".into(), 300, true);
    let settings = PaymentSettings {
        reconcile_after_seconds: 0,
        ..PaymentSettings::default()
    };
    (Market::new(db.clone(), Arc::new(fake.clone()), settings), fake)
}

fn listing(title: &str, tags: &[&str], category: &str, price: i64, quality: f64, privacy: f64) -> NewListing {
    NewListing {
        job_id: "job_x".into(),
        output_name: "synthetic.parquet".into(),
        output_key: "outputs/acct/job_x/a1/synthetic.parquet".into(),
        title: title.into(),
        description: format!("{title}: a synthetic twin with the real table's statistics."),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        category: category.into(),
        price_minor: price,
        currency: "USD".into(),
        license: "CC-BY-4.0".into(),
        preview: serde_json::json!({"rows": []}),
        quality_score: Some(quality),
        privacy_score: Some(privacy),
        failed_checks: Vec::new(),
    }
}

fn event(kind: &str, id: &str, payment: &str) -> Vec<u8> {
    serde_json::json!({"id": id, "type": kind, "data": {"object": {"id": payment}}})
        .to_string()
        .into_bytes()
}

fn signed(secret: &str, body: &[u8], age_seconds: i64) -> http::HeaderMap {
    let t = doppel_platform::util::now_ms() / 1000 - age_seconds;
    let mut h = http::HeaderMap::new();
    h.insert(
        "stripe-signature",
        stripe_signature::sign(secret, t, body).parse().unwrap(),
    );
    h
}

async fn titles(m: &Market, q: SearchQuery) -> (Vec<String>, Option<String>) {
    let (rows, next) = m.search(&q).await.unwrap();
    (rows.into_iter().map(|l| l.title).collect(), next)
}

on_both!(listings_are_privacy_gated_and_searchable, |db: Db| async move {
    let a = accounts(&db);
    let seller = user(&a, "seller@example.com").await;
    let other = user(&a, "other@example.com").await;
    let (m, _) = market(&db);

    let err = m
        .create_listing(&meta(), &seller, listing("Risky", &[], "misc", 100, 0.9, 31.5))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "listing_refused");
    assert!(
        err.to_string().contains("31.5 is below the marketplace minimum of 40"),
        "{err}"
    );
    let mut none = listing("Unmeasured", &[], "misc", 100, 0.9, 90.0);
    none.privacy_score = None;
    let err = m.create_listing(&meta(), &seller, none).await.unwrap_err();
    assert!(err.to_string().contains("measured no privacy score"), "{err}");
    let mut failed = listing("Non-compliant", &[], "misc", 100, 0.9, 90.0);
    failed.failed_checks = vec!["hipaa: safe-harbor-dates".into()];
    let err = m.create_listing(&meta(), &seller, failed).await.unwrap_err();
    assert!(err.to_string().contains("safe-harbor-dates"), "{err}");
    let err = m
        .create_listing(&meta(), &seller, listing("Free", &[], "misc", 0, 0.9, 90.0))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("price_minor"), "{err}");

    let census = m
        .create_listing(
            &meta(),
            &seller,
            listing(
                "US census income twin",
                &["census", "Income"],
                "demographics",
                5000,
                0.9,
                85.0,
            ),
        )
        .await
        .unwrap();
    assert_eq!(census.tags, vec!["census", "income"]);
    assert_eq!(census.status, ListingStatus::Active);
    let hospital = m
        .create_listing(
            &meta(),
            &seller,
            listing("Hospital visits", &["health"], "health", 20_000, 0.8, 70.0),
        )
        .await
        .unwrap();
    m.create_listing(
        &meta(),
        &seller,
        listing("Income by county", &["income"], "demographics", 1000, 0.7, 55.0),
    )
    .await
    .unwrap();

    let q = |text: Option<&str>| SearchQuery {
        text: text.map(str::to_owned),
        limit: 10,
        ..SearchQuery::default()
    };
    // Stemmed full-text over title, description and tags.
    let (mut found, _) = titles(&m, q(Some("incomes"))).await;
    found.sort();
    assert_eq!(found, vec!["Income by county", "US census income twin"]);
    assert_eq!(titles(&m, q(Some("census"))).await.0, vec!["US census income twin"]);
    assert_eq!(titles(&m, q(Some("health"))).await.0, vec!["Hospital visits"]);
    assert!(
        titles(&m, q(Some("\" OR *"))).await.0.is_empty(),
        "query syntax is not passed through"
    );
    // Filters.
    let mut f = q(None);
    f.category = Some("Demographics".into());
    f.min_privacy = Some(60.0);
    assert_eq!(titles(&m, f).await.0, vec!["US census income twin"]);
    let mut f = q(None);
    f.tags = vec!["income".into()];
    f.max_price = Some(4999);
    assert_eq!(titles(&m, f).await.0, vec!["Income by county"]);
    let mut f = q(None);
    f.min_quality = Some(0.75);
    f.min_price = Some(5000);
    f.sort = Some(Sort::PriceDesc);
    assert_eq!(titles(&m, f).await.0, vec!["Hospital visits", "US census income twin"]);
    // Keyset pages.
    let mut f = q(None);
    f.sort = Some(Sort::PriceAsc);
    f.limit = 2;
    let (page1, next) = titles(&m, f.clone()).await;
    assert_eq!(page1, vec!["Income by county", "US census income twin"]);
    f.cursor = next;
    let (page2, next) = titles(&m, f.clone()).await;
    assert_eq!((page2, next), (vec!["Hospital visits".to_owned()], None));
    f.sort = Some(Sort::Newest);
    assert!(
        m.search(&f)
            .await
            .unwrap_err()
            .to_string()
            .contains("another sort order")
    );

    // Sellers edit and pause; nobody else can.
    let patch = ListingPatch {
        price_minor: Some(4500),
        status: Some(ListingStatus::Paused),
        ..ListingPatch::default()
    };
    let err = m
        .update_listing(&meta(), &other, &census.id, patch.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let paused = m.update_listing(&meta(), &seller, &census.id, patch).await.unwrap();
    assert_eq!((paused.price.minor, paused.status), (4500, ListingStatus::Paused));
    assert!(
        titles(&m, q(Some("census"))).await.0.is_empty(),
        "paused listings leave search"
    );
    assert!(matches!(
        m.visible_listing(&other, &census.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(m.visible_listing(&seller, &census.id).await.is_ok());
    // Renaming re-indexes.
    let renamed = ListingPatch {
        title: Some("Hospital admissions 2024".into()),
        ..ListingPatch::default()
    };
    m.update_listing(&meta(), &seller, &hospital.id, renamed).await.unwrap();
    assert_eq!(
        titles(&m, q(Some("admissions"))).await.0,
        vec!["Hospital admissions 2024"]
    );
    assert_eq!(titles(&m, q(Some("2024"))).await.0, vec!["Hospital admissions 2024"]);
});

/// Sum of the ledger per account (and overall) for one purchase.
async fn balances(m: &Market, purchase: &str) -> (HashMap<String, i64>, i64) {
    let entries = m.ledger(Some(purchase), 100).await.unwrap();
    let mut by_txn: HashMap<String, i64> = HashMap::new();
    let mut by_account: HashMap<String, i64> = HashMap::new();
    for e in &entries {
        *by_txn.entry(e.txn_id.clone()).or_default() += e.amount_minor;
        *by_account.entry(e.account.clone()).or_default() += e.amount_minor;
    }
    assert!(
        by_txn.values().all(|v| *v == 0),
        "every transaction balances: {entries:?}"
    );
    (by_account, i64::try_from(entries.len()).unwrap())
}

on_both!(
    purchases_follow_the_fetched_payment_and_the_ledger_balances,
    |db: Db| async move {
        let a = accounts(&db);
        let seller = user(&a, "seller@example.com").await;
        let buyer = user(&a, "buyer@example.com").await;
        let root = user(&a, "root@example.com").await;
        let (m, fake) = market(&db);
        let l = m
            .create_listing(
                &meta(),
                &seller,
                listing("Adult twin", &["census"], "demographics", 10_000, 0.9, 80.0),
            )
            .await
            .unwrap();
        assert!(matches!(
            m.checkout(&meta(), &seller, &l.id, "http://back").await,
            Err(Error::Refused {
                code: "not_for_sale",
                ..
            })
        ));

        let pur = m.checkout(&meta(), &buyer, &l.id, "http://back/return").await.unwrap();
        assert_eq!(pur.status, PurchaseStatus::Pending);
        assert_eq!((pur.fee_minor, pur.seller_minor), (2000, 8000), "80/20");
        let payment = pur.provider_ref.clone().unwrap();
        assert!(
            pur.checkout_url
                .as_deref()
                .unwrap()
                .ends_with(&format!("/v1/fake-pay/{payment}"))
        );
        // Asking again while it is pending gives the same checkout.
        assert_eq!(
            m.checkout(&meta(), &buyer, &l.id, "http://back/return")
                .await
                .unwrap()
                .id,
            pur.id
        );

        // Attacks: a forged signature, a stale one, a missing one.
        let body = event("payment.succeeded", "evt_1", &payment);
        for headers in [
            signed("whsec_wrong", &body, 0),
            signed(WHSEC, &body, 301),
            http::HeaderMap::new(),
        ] {
            let err = m.webhook(&headers, &body).await.unwrap_err();
            assert_eq!(err.code(), "invalid_signature", "{err}");
        }
        // A genuine event claiming success before the buyer paid changes
        // nothing: the state comes from the provider, not the body.
        let out = m.webhook(&signed(WHSEC, &body, 0), &body).await.unwrap();
        assert_eq!(
            out,
            WebhookOutcome::Synced {
                purchase_id: pur.id.clone(),
                status: PurchaseStatus::Pending
            }
        );
        assert!(m.access(&buyer, &l.id).await.unwrap().is_none());

        let back = fake.settle(&payment, true).await.unwrap();
        assert_eq!(
            back,
            format!("http://back/return?purchase={}&payment={payment}", pur.id)
        );
        let body = event("payment.succeeded", "evt_2", &payment);
        let out = m.webhook(&signed(WHSEC, &body, 0), &body).await.unwrap();
        assert!(
            matches!(
                out,
                WebhookOutcome::Synced {
                    status: PurchaseStatus::Completed,
                    ..
                }
            ),
            "{out:?}"
        );
        // Replays of the same event, and a second event, book nothing more.
        assert_eq!(
            m.webhook(&signed(WHSEC, &body, 0), &body).await.unwrap(),
            WebhookOutcome::Duplicate
        );
        let again = event("payment.succeeded", "evt_3", &payment);
        m.webhook(&signed(WHSEC, &again, 0), &again).await.unwrap();
        let (accounts_after, lines) = balances(&m, &pur.id).await;
        assert_eq!(lines, 3);
        assert_eq!(accounts_after[&format!("seller:{}", seller.account_id)], -8000);
        assert_eq!(accounts_after["platform:fees"], -2000);
        assert_eq!(accounts_after["clearing:fake"], 10_000);
        assert_eq!(m.payable(&seller.account_id).await.unwrap()[0].minor, 8000);
        assert!(m.access(&buyer, &l.id).await.unwrap().is_some());
        assert_eq!(m.listing(&l.id).await.unwrap().sales, 1);
        assert!(matches!(
            m.checkout(&meta(), &buyer, &l.id, "http://back").await,
            Err(Error::Conflict(_))
        ));
        // An event about a payment we know nothing of is acknowledged and ignored.
        let stray = event("payment.succeeded", "evt_4", "fp_someone_elses");
        assert_eq!(
            m.webhook(&signed(WHSEC, &stray, 0), &stray).await.unwrap(),
            WebhookOutcome::Ignored
        );

        // A refund reverses every line and ends access; only operators refund.
        assert!(matches!(
            m.refund(&meta(), &buyer, &pur.id).await,
            Err(Error::Forbidden(_))
        ));
        let refunded = m.refund(&meta(), &root, &pur.id).await.unwrap();
        assert_eq!(refunded.status, PurchaseStatus::Refunded);
        let (after, lines) = balances(&m, &pur.id).await;
        assert_eq!(lines, 6);
        assert!(after.values().all(|v| *v == 0), "{after:?}");
        assert!(m.access(&buyer, &l.id).await.unwrap().is_none());
        assert_eq!(m.listing(&l.id).await.unwrap().sales, 0);
        // A late "succeeded" after the refund does not grant access again.
        let late = event("payment.succeeded", "evt_5", &payment);
        m.webhook(&signed(WHSEC, &late, 0), &late).await.unwrap();
        assert_eq!(m.purchase(&pur.id).await.unwrap().status, PurchaseStatus::Refunded);
        let kinds: Vec<String> = m
            .notifications(&buyer.account_id, false, None, 50)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.kind)
            .collect();
        assert_eq!(kinds, vec!["refund", "purchase_completed"]);
        let seller_kinds: Vec<String> = m
            .notifications(&seller.account_id, false, None, 50)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.kind)
            .collect();
        assert_eq!(seller_kinds, vec!["refund", "sale_made"]);

        // Out of order: paid and refunded at the provider before any event
        // arrived; the first event books both, and nets to zero.
        let second = user(&a, "second@example.com").await;
        let p2 = m.checkout(&meta(), &second, &l.id, "http://back").await.unwrap();
        let r2 = p2.provider_ref.clone().unwrap();
        fake.settle(&r2, true).await.unwrap();
        use doppel_market::payments::PaymentProvider as _;
        fake.refund(&r2, "r").await.unwrap();
        let refund_first = event("charge.refunded", "evt_6", &r2);
        m.webhook(&signed(WHSEC, &refund_first, 0), &refund_first)
            .await
            .unwrap();
        assert_eq!(m.purchase(&p2.id).await.unwrap().status, PurchaseStatus::Refunded);
        let (after, lines) = balances(&m, &p2.id).await;
        assert_eq!(lines, 6);
        assert!(after.values().all(|v| *v == 0));

        // A dropped webhook: reconciliation fetches the payment and settles it.
        let third = user(&a, "third@example.com").await;
        let p3 = m.checkout(&meta(), &third, &l.id, "http://back").await.unwrap();
        fake.settle(p3.provider_ref.as_deref().unwrap(), true).await.unwrap();
        assert_eq!(m.purchase(&p3.id).await.unwrap().status, PurchaseStatus::Pending);
        assert_eq!(m.reconcile().await.unwrap(), 1);
        assert_eq!(m.purchase(&p3.id).await.unwrap().status, PurchaseStatus::Completed);
        assert!(m.access(&third, &l.id).await.unwrap().is_some());

        // A declined payment fails the purchase, and grants nothing.
        let fourth = user(&a, "fourth@example.com").await;
        let p4 = m.checkout(&meta(), &fourth, &l.id, "http://back").await.unwrap();
        fake.settle(p4.provider_ref.as_deref().unwrap(), false).await.unwrap();
        assert_eq!(m.sync(&p4.id).await.unwrap().status, PurchaseStatus::Failed);
        assert!(m.ledger(Some(&p4.id), 10).await.unwrap().is_empty());

        // Across everything: the whole ledger sums to zero, and the seller is
        // owed exactly the one sale that stands.
        let all = m.ledger(None, 1000).await.unwrap();
        assert_eq!(all.iter().map(|e| e.amount_minor).sum::<i64>(), 0);
        assert_eq!(m.payable(&seller.account_id).await.unwrap()[0].minor, 8000);
        let stats = m.dashboard(&seller.account_id).await.unwrap();
        assert_eq!((stats[0].sales, stats[0].refunds, stats[0].revenue_minor), (1, 2, 8000));
    }
);

// ------------------------------------------------- Stripe, against a local fake

use doppel_market::payments::stripe::StripeProvider;

/// What the local Stripe stand-in holds and saw.
#[derive(Default)]
struct FakeStripe {
    sessions: HashMap<String, serde_json::Value>,
    idempotency: HashMap<String, (Vec<(String, String)>, serde_json::Value)>,
    requests: Vec<(String, Option<String>, HashMap<String, String>)>,
}

type Shared = Arc<std::sync::Mutex<FakeStripe>>;

fn stripe_error(status: u16, kind: &str, message: &str) -> poem::Response {
    poem::Response::builder()
        .status(poem::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(serde_json::json!({"error": {"type": kind, "message": message}}).to_string())
}

fn stripe_ok(v: &serde_json::Value) -> poem::Response {
    poem::Response::builder()
        .content_type("application/json")
        .body(v.to_string())
}

#[poem::handler]
async fn stripe_endpoint(req: &poem::Request, body: poem::Body, state: poem::web::Data<&Shared>) -> poem::Response {
    if req.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk_test_fake") {
        return stripe_error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****");
    }
    let path = req.uri().path().to_owned();
    let raw = body.into_string().await.unwrap_or_default();
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect();
    pairs.sort();
    let form: HashMap<String, String> = pairs.iter().cloned().collect();
    let idem = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut s = state.lock().unwrap();
    s.requests.push((path.clone(), idem.clone(), form.clone()));
    if req.method() == poem::http::Method::POST {
        let Some(key) = idem.clone() else {
            return stripe_error(400, "invalid_request_error", "this fake wants an Idempotency-Key");
        };
        if let Some((seen, answer)) = s.idempotency.get(&key) {
            return if *seen == pairs {
                stripe_ok(answer)
            } else {
                stripe_error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                )
            };
        }
        let answer = match path.as_str() {
            "/v1/accounts" => {
                assert_eq!(form["type"], "express");
                serde_json::json!({"id": format!("acct_test_{}", s.requests.len()), "object": "account"})
            }
            "/v1/account_links" => {
                for k in ["account", "type", "refresh_url", "return_url"] {
                    if !form.contains_key(k) {
                        return stripe_error(400, "invalid_request_error", &format!("Missing required param: {k}."));
                    }
                }
                serde_json::json!({"object": "account_link", "expires_at": 1_800_000_300,
                                   "url": format!("https://connect.stripe.test/setup/e/{}", form["account"])})
            }
            "/v1/checkout/sessions" => {
                for k in [
                    "mode",
                    "client_reference_id",
                    "success_url",
                    "line_items[0][price_data][currency]",
                    "line_items[0][price_data][unit_amount]",
                    "payment_intent_data[application_fee_amount]",
                    "payment_intent_data[transfer_data][destination]",
                ] {
                    if !form.contains_key(k) {
                        return stripe_error(400, "invalid_request_error", &format!("Missing required param: {k}."));
                    }
                }
                let n = s.sessions.len() + 1;
                let id = format!("cs_test_{n}");
                let session = serde_json::json!({
                    "id": id, "object": "checkout.session", "url": format!("https://checkout.stripe.test/c/pay/{id}"),
                    "status": "open", "payment_status": "unpaid",
                    "amount_total": form["line_items[0][price_data][unit_amount]"].parse::<i64>().unwrap(),
                    "currency": form["line_items[0][price_data][currency]"],
                    "client_reference_id": form["client_reference_id"],
                    "payment_intent": {"id": format!("pi_test_{n}"), "object": "payment_intent",
                                       "latest_charge": {"id": format!("ch_test_{n}"), "refunded": false}},
                });
                s.sessions.insert(id, session.clone());
                session
            }
            "/v1/refunds" => {
                let pi = form["payment_intent"].clone();
                let Some(session) = s
                    .sessions
                    .values_mut()
                    .find(|x| x["payment_intent"]["id"] == pi.as_str())
                else {
                    return stripe_error(404, "invalid_request_error", &format!("No such payment_intent: '{pi}'"));
                };
                if session["payment_intent"]["latest_charge"]["refunded"] == true {
                    return stripe_error(400, "invalid_request_error", "Charge has already been refunded.");
                }
                session["payment_intent"]["latest_charge"]["refunded"] = true.into();
                serde_json::json!({"id": "re_test_1", "object": "refund", "status": "succeeded"})
            }
            _ => return stripe_error(404, "invalid_request_error", "Unrecognized request URL."),
        };
        s.idempotency.insert(key, (pairs, answer.clone()));
        return stripe_ok(&answer);
    }
    // GET /v1/checkout/sessions?payment_intent=… (a list), or …/{id}
    if path == "/v1/checkout/sessions" {
        let query: HashMap<String, String> =
            url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let pi = query.get("payment_intent").cloned().unwrap_or_default();
        let found: Vec<_> = s
            .sessions
            .values()
            .filter(|x| x["payment_intent"]["id"] == pi.as_str())
            .cloned()
            .collect();
        return stripe_ok(&serde_json::json!({"object": "list", "data": found, "has_more": false}));
    }
    let id = path.trim_start_matches("/v1/checkout/sessions/");
    match s.sessions.get(id) {
        Some(session) => stripe_ok(session),
        None => stripe_error(
            404,
            "invalid_request_error",
            &format!("No such checkout.session: '{id}'"),
        ),
    }
}

/// A local stand-in for a provider's API: every path goes to `endpoint`,
/// which sees a fresh `T` as shared state. Returns its base URL.
async fn local_provider<T, E>(endpoint: E) -> (String, Arc<std::sync::Mutex<T>>)
where
    T: Default + Send + 'static,
    E: poem::Endpoint + 'static,
{
    use poem::EndpointExt;
    use poem::listener::{Acceptor, Listener};
    let state: Arc<std::sync::Mutex<T>> = Arc::default();
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let app = poem::Route::new().at("/*path", endpoint).data(Arc::clone(&state));
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (format!("http://{addr}"), state)
}

async fn fake_stripe() -> (String, Shared) {
    local_provider(stripe_endpoint).await
}

fn pay_session(state: &Shared, id: &str) {
    let mut s = state.lock().unwrap();
    let session = s.sessions.get_mut(id).unwrap();
    session["status"] = "complete".into();
    session["payment_status"] = "paid".into();
}

on_both!(
    the_stripe_adapter_speaks_connect_destination_charges,
    |db: Db| async move {
        let a = accounts(&db);
        let seller = user(&a, "seller@example.com").await;
        let buyer = user(&a, "buyer@example.com").await;
        let root = user(&a, "root@example.com").await;
        let (base, stripe) = fake_stripe().await;
        let provider = StripeProvider::new(&base, "sk_test_fake".into(), WHSEC.into(), 300);
        let m = Market::new(db.clone(), Arc::new(provider), PaymentSettings::default());

        let l = m
            .create_listing(
                &meta(),
                &seller,
                listing("Adult twin", &[], "demographics", 10_000, 0.9, 80.0),
            )
            .await
            .unwrap();
        let pur = m
            .checkout(&meta(), &buyer, &l.id, "https://shop.example/back")
            .await
            .unwrap();
        let session = pur.provider_ref.clone().unwrap();
        assert_eq!(
            pur.checkout_url.as_deref(),
            Some(format!("https://checkout.stripe.test/c/pay/{session}").as_str())
        );
        // The seller finishes Express onboarding on Stripe's own pages.
        let link = m.onboarding_link(&seller, "https://shop.example/seller").await.unwrap();
        assert_eq!(link, "https://connect.stripe.test/setup/e/acct_test_1");
        {
            let s = stripe.lock().unwrap();
            let (_, key, form) = s.requests.iter().rfind(|r| r.0 == "/v1/account_links").unwrap();
            assert!(key.is_some());
            assert_eq!(
                (form["type"].as_str(), form["return_url"].as_str()),
                ("account_onboarding", "https://shop.example/seller")
            );
        }
        {
            let s = stripe.lock().unwrap();
            let (_, key, account) = &s.requests[0];
            assert_eq!(
                (account["email"].as_str(), key.as_deref()),
                (
                    "seller@example.com",
                    Some(format!("account-{}", seller.account_id).as_str())
                )
            );
            let (path, key, form) = &s.requests[1];
            assert_eq!(path, "/v1/checkout/sessions");
            assert_eq!(
                key.as_deref(),
                Some(pur.id.as_str()),
                "the purchase id is the idempotency key"
            );
            assert_eq!(form["mode"], "payment");
            assert_eq!(form["line_items[0][price_data][currency]"], "usd");
            assert_eq!(form["line_items[0][price_data][unit_amount]"], "10000");
            assert_eq!(
                form["payment_intent_data[application_fee_amount]"], "2000",
                "the platform's 20 %"
            );
            assert_eq!(form["payment_intent_data[transfer_data][destination]"], "acct_test_1");
            assert_eq!(form["client_reference_id"], pur.id);
            assert!(form["success_url"].starts_with("https://shop.example/back?purchase="));
        }

        // A completed-session event before payment: Stripe says unpaid, so pending.
        let completed = |id: &str| {
            serde_json::json!({"id": id, "type": "checkout.session.completed",
                           "data": {"object": {"id": session, "object": "checkout.session"}}})
            .to_string()
            .into_bytes()
        };
        let early = completed("evt_s1");
        let out = m.webhook(&signed(WHSEC, &early, 0), &early).await.unwrap();
        assert!(
            matches!(
                out,
                WebhookOutcome::Synced {
                    status: PurchaseStatus::Pending,
                    ..
                }
            ),
            "{out:?}"
        );
        pay_session(&stripe, &session);
        let paid = completed("evt_s2");
        let out = m.webhook(&signed(WHSEC, &paid, 0), &paid).await.unwrap();
        assert!(
            matches!(
                out,
                WebhookOutcome::Synced {
                    status: PurchaseStatus::Completed,
                    ..
                }
            ),
            "{out:?}"
        );
        assert_eq!(
            m.webhook(&signed(WHSEC, &paid, 0), &paid).await.unwrap(),
            WebhookOutcome::Duplicate
        );
        assert!(m.webhook(&signed("whsec_other", &paid, 0), &paid).await.is_err());
        // Charge events name no session: acknowledged, nothing changes.
        let charge =
            serde_json::json!({"id": "evt_s3", "type": "charge.refunded", "data": {"object": {"id": "ch_test_1"}}})
                .to_string()
                .into_bytes();
        assert_eq!(
            m.webhook(&signed(WHSEC, &charge, 0), &charge).await.unwrap(),
            WebhookOutcome::Ignored
        );

        // A refund made in the Stripe dashboard arrives as a charge event
        // naming the payment intent: traced to its session, it is applied
        // once Stripe says the charge is refunded (not on the event's word).
        let buyer2 = user(&a, "buyer2@example.com").await;
        let pur2 = m
            .checkout(&meta(), &buyer2, &l.id, "https://shop.example/back")
            .await
            .unwrap();
        let session2 = pur2.provider_ref.clone().unwrap();
        pay_session(&stripe, &session2);
        assert_eq!(m.sync(&pur2.id).await.unwrap().status, PurchaseStatus::Completed);
        let intent2 = stripe.lock().unwrap().sessions[&session2]["payment_intent"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let charge_event = |id: &str| {
            serde_json::json!({"id": id, "type": "charge.refunded",
                               "data": {"object": {"id": "ch_x", "object": "charge", "payment_intent": intent2}}})
            .to_string()
            .into_bytes()
        };
        let premature = charge_event("evt_s4");
        let out = m.webhook(&signed(WHSEC, &premature, 0), &premature).await.unwrap();
        assert!(
            matches!(
                out,
                WebhookOutcome::Synced {
                    status: PurchaseStatus::Completed,
                    ..
                }
            ),
            "not refunded at Stripe: {out:?}"
        );
        stripe.lock().unwrap().sessions.get_mut(&session2).unwrap()["payment_intent"]["latest_charge"]["refunded"] =
            true.into();
        let dashboard = charge_event("evt_s5");
        let out = m.webhook(&signed(WHSEC, &dashboard, 0), &dashboard).await.unwrap();
        assert!(
            matches!(
                out,
                WebhookOutcome::Synced {
                    status: PurchaseStatus::Refunded,
                    ..
                }
            ),
            "{out:?}"
        );
        assert!(m.access(&buyer2, &l.id).await.unwrap().is_none());
        let (after2, lines2) = balances(&m, &pur2.id).await;
        assert_eq!(lines2, 6);
        assert!(after2.values().all(|v| *v == 0));

        // Refund reverses the fee and the transfer at Stripe, and in the ledger.
        let refunded = m.refund(&meta(), &root, &pur.id).await.unwrap();
        assert_eq!(refunded.status, PurchaseStatus::Refunded);
        {
            let s = stripe.lock().unwrap();
            let (path, _, form) = s.requests.iter().rev().find(|r| r.0 == "/v1/refunds").unwrap();
            assert_eq!(path, "/v1/refunds");
            assert_eq!(form["payment_intent"], "pi_test_1");
            assert_eq!(
                (
                    form["refund_application_fee"].as_str(),
                    form["reverse_transfer"].as_str()
                ),
                ("true", "true")
            );
        }
        let (after, lines) = balances(&m, &pur.id).await;
        assert_eq!(lines, 6);
        assert!(after.values().all(|v| *v == 0));

        // Error answers become errors that say what happened, and leak nothing.
        use doppel_market::payments::PaymentProvider as _;
        let wrong_key = StripeProvider::new(&base, "sk_test_wrong".into(), WHSEC.into(), 300);
        let err = wrong_key.fetch_payment(&session).await.unwrap_err();
        assert!(
            matches!(err, Error::Unavailable(ref m) if m.contains("credentials")),
            "{err}"
        );
        let right = StripeProvider::new(&base, "sk_test_fake".into(), WHSEC.into(), 300);
        assert!(matches!(right.fetch_payment("cs_nope").await, Err(Error::NotFound(_))));
        let money = doppel_market::payments::Money::new(500, "EUR").unwrap();
        let request = |amount| doppel_market::payments::CheckoutRequest {
            reference: "pur_x",
            buyer_email: "buyer@example.com",
            amount,
            seller_account: "acct_test_1",
            platform_fee_minor: 100,
            description: "x",
            return_url: "https://shop.example/back",
            idempotency_key: "same-key",
        };
        right.create_checkout(request(&money)).await.unwrap();
        let other = doppel_market::payments::Money::new(900, "EUR").unwrap();
        let err = right.create_checkout(request(&other)).await.unwrap_err();
        assert_eq!(err.code(), "payment_provider_error");
        assert!(err.to_string().contains("same parameters"), "{err}");
        let unreachable = StripeProvider::new("http://127.0.0.1:9", "sk_test_fake".into(), WHSEC.into(), 300);
        assert!(matches!(
            unreachable.fetch_payment(&session).await,
            Err(Error::Unavailable(_))
        ));
    }
);

// -------------------------------------------- Flutterwave, against a local fake

use doppel_market::payments::PayoutDetails;
use doppel_market::payments::flutterwave::FlutterwaveProvider;

const FLW_KEY: &str = "FLWSECK_TEST-fake";
const FLW_HASH: &str = "flw-secret-hash";

/// What the local Flutterwave stand-in holds and saw.
#[derive(Default)]
struct FakeFlutterwave {
    /// Payment links by `tx_ref`: the request that opened them.
    links: HashMap<String, serde_json::Value>,
    /// Transactions by id.
    transactions: Vec<serde_json::Value>,
    refunded: Vec<u64>,
    requests: Vec<(String, String, serde_json::Value)>,
}

type FlwShared = Arc<std::sync::Mutex<FakeFlutterwave>>;

fn flw(status: u16, message: &str, data: serde_json::Value) -> poem::Response {
    let ok = (200..300).contains(&status);
    poem::Response::builder()
        .status(poem::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(
            serde_json::json!({"status": if ok { "success" } else { "error" }, "message": message, "data": data})
                .to_string(),
        )
}

#[poem::handler]
async fn flutterwave_endpoint(
    req: &poem::Request,
    body: poem::Body,
    state: poem::web::Data<&FlwShared>,
) -> poem::Response {
    if req.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {FLW_KEY}")) {
        return flw(401, "Invalid authorization key", serde_json::Value::Null);
    }
    let path = req.uri().path().to_owned();
    let query: HashMap<String, String> = url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let raw = body.into_string().await.unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
    let mut s = state.lock().unwrap();
    s.requests.push((req.method().to_string(), path.clone(), json.clone()));
    let not_found = || flw(400, "No transaction was found for this id", serde_json::Value::Null);
    let parts: Vec<&str> = path.trim_start_matches("/v3/").split('/').collect();
    match (req.method().as_str(), parts.as_slice()) {
        ("POST", ["subaccounts"]) => {
            for k in [
                "account_bank",
                "account_number",
                "business_name",
                "country",
                "split_type",
                "split_value",
            ] {
                if json.get(k).is_none() {
                    return flw(400, &format!("{k} is required"), serde_json::Value::Null);
                }
            }
            if json["account_number"] == "0000000000" {
                return flw(
                    400,
                    "Sorry we couldn't verify your account number kindly pass a valid account number",
                    serde_json::Value::Null,
                );
            }
            let n = s.requests.len();
            flw(
                200,
                "Subaccount created",
                serde_json::json!({"id": n, "subaccount_id": format!("RS_TEST{n}"), "split_type": json["split_type"],
                                   "split_value": json["split_value"], "bank_name": "ACCESS BANK NIGERIA"}),
            )
        }
        ("POST", ["payments"]) => {
            for k in ["tx_ref", "amount", "currency", "redirect_url"] {
                if json.get(k).is_none() {
                    return flw(400, &format!("{k} is required"), serde_json::Value::Null);
                }
            }
            if json.pointer("/customer/email").is_none() {
                return flw(400, "customer.email is required", serde_json::Value::Null);
            }
            let tx_ref = json["tx_ref"].as_str().unwrap().to_owned();
            s.links.insert(tx_ref.clone(), json.clone());
            flw(
                200,
                "Hosted Link",
                serde_json::json!({"link": format!("https://checkout.flutterwave.test/v3/hosted/pay/{tx_ref}")}),
            )
        }
        ("GET", ["transactions", "verify_by_reference"]) => {
            let tx_ref = query.get("tx_ref").cloned().unwrap_or_default();
            match s.transactions.iter().rev().find(|t| t["tx_ref"] == tx_ref.as_str()) {
                Some(t) => flw(200, "Transaction fetched successfully", t.clone()),
                None => not_found(),
            }
        }
        ("GET", ["transactions", id, "verify"]) => match s
            .transactions
            .iter()
            .find(|t| id.parse::<u64>().is_ok_and(|id| t["id"] == id))
        {
            Some(t) => flw(200, "Transaction fetched successfully", t.clone()),
            None => not_found(),
        },
        ("POST", ["transactions", id, "refund"]) => {
            let Ok(id) = id.parse::<u64>() else { return not_found() };
            let Some(t) = s.transactions.iter().find(|t| t["id"] == id).cloned() else {
                return not_found();
            };
            if s.refunded.contains(&id) {
                return flw(
                    400,
                    "Transaction has already been fully refunded",
                    serde_json::Value::Null,
                );
            }
            if json["amount"] != t["amount"] {
                return flw(400, "Refund amount does not match", serde_json::Value::Null);
            }
            s.refunded.push(id);
            flw(
                200,
                "Transaction refund initiated",
                serde_json::json!({"id": 75923, "tx_id": id, "amount_refunded": json["amount"], "status": "completed",
                                   "destination": "payment_source"}),
            )
        }
        _ => flw(404, "Route not found", serde_json::Value::Null),
    }
}

async fn fake_flutterwave() -> (String, FlwShared) {
    local_provider(flutterwave_endpoint).await
}

/// The buyer pays (or fails to) on Flutterwave's page: a transaction for
/// the link's `tx_ref`, as Flutterwave records it. Returns its id.
fn flw_pay(state: &FlwShared, tx_ref: &str, status: &str) -> u64 {
    let mut s = state.lock().unwrap();
    let link = s.links[tx_ref].clone();
    let id = 285_959_875 + u64::try_from(s.transactions.len()).unwrap();
    s.transactions.push(serde_json::json!({
        "id": id, "tx_ref": tx_ref, "flw_ref": format!("FLW-MOCK-{id}"), "amount": link["amount"],
        "charged_amount": link["amount"], "currency": link["currency"], "status": status,
        "customer": link["customer"],
    }));
    id
}

fn flw_event(tx: u64, tx_ref: &str, status: &str) -> Vec<u8> {
    serde_json::json!({"event": "charge.completed",
                       "data": {"id": tx, "tx_ref": tx_ref, "status": status, "amount": 1}})
    .to_string()
    .into_bytes()
}

fn flw_signed(hash: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("verif-hash", hash.parse().unwrap());
    h
}

on_both!(the_flutterwave_adapter_splits_into_subaccounts, |db: Db| async move {
    let a = accounts(&db);
    let seller = user(&a, "seller@example.com").await;
    let buyer = user(&a, "buyer@example.com").await;
    let root = user(&a, "root@example.com").await;
    let other = user(&a, "other@example.com").await;
    let (base, fw) = fake_flutterwave().await;
    let provider = FlutterwaveProvider::new(&base, FLW_KEY.into(), FLW_HASH.into(), 2000);
    let settings = PaymentSettings {
        reconcile_after_seconds: 0,
        ..PaymentSettings::default()
    };
    let m = Market::new(db.clone(), Arc::new(provider), settings);
    let naira = |price| {
        let mut l = listing("Lagos clinics twin", &["health"], "health", price, 0.9, 80.0);
        l.currency = "NGN".into();
        l
    };

    // No onboarding pages at Flutterwave: the payout account is the step.
    assert_eq!(
        m.onboarding_link(&seller, "https://shop.example/seller")
            .await
            .unwrap_err()
            .code(),
        "payout_details_required"
    );
    // Flutterwave pays sellers into a bank account: none given, no listing.
    let err = m.create_listing(&meta(), &seller, naira(1_000_050)).await.unwrap_err();
    assert_eq!(err.code(), "payout_details_required", "{err}");
    assert!(m.payout_account(&seller).await.unwrap().is_none());
    // A bank account Flutterwave cannot verify: its reason, no account.
    let bad = PayoutDetails::new("Acme Data", "044", "0000000000", "NG").unwrap();
    let err = m.set_payout_account(&meta(), &seller, &bad).await.unwrap_err();
    assert_eq!(err.code(), "payment_provider_error");
    assert!(err.to_string().contains("verify your account number"), "{err}");
    let bank = PayoutDetails::new("Acme Data", "044", "0690000031", "NG").unwrap();
    let acct = m.set_payout_account(&meta(), &seller, &bank).await.unwrap();
    assert_eq!(acct.provider, "flutterwave");
    assert!(acct.needs_payout_details);
    assert_eq!(
        acct.payout_summary.as_deref(),
        Some("Acme Data · bank 044 · ****0031 · NG")
    );
    let subaccount = acct.provider_account_id.clone();
    assert!(subaccount.starts_with("RS_"), "{subaccount}");
    {
        let s = fw.lock().unwrap();
        let (_, path, body) = s.requests.iter().rfind(|r| r.1 == "/v3/subaccounts").unwrap();
        assert_eq!(path, "/v3/subaccounts");
        assert_eq!(
            (&body["account_bank"], &body["account_number"], &body["country"]),
            (&"044".into(), &"0690000031".into(), &"NG".into())
        );
        assert_eq!(
            (&body["split_type"], &body["split_value"]),
            (&"percentage".into(), &0.2.into())
        );
        assert_eq!(body["business_email"], "seller@example.com");
    }

    // ₦10,000.50: Flutterwave takes decimals in naira; the seller's flat
    // share is exactly the 80 % the ledger books.
    let l = m.create_listing(&meta(), &seller, naira(1_000_050)).await.unwrap();
    let pur = m
        .checkout(&meta(), &buyer, &l.id, "https://shop.example/back")
        .await
        .unwrap();
    assert_eq!(
        pur.provider_ref.as_deref(),
        Some(pur.id.as_str()),
        "tx_ref is the purchase id"
    );
    assert_eq!(
        pur.checkout_url.as_deref(),
        Some(format!("https://checkout.flutterwave.test/v3/hosted/pay/{}", pur.id).as_str())
    );
    assert_eq!((pur.fee_minor, pur.seller_minor), (200_010, 800_040));
    {
        let s = fw.lock().unwrap();
        let opened = &s.links[&pur.id];
        assert_eq!(opened["amount"], serde_json::json!(10000.5));
        assert_eq!(opened["currency"], "NGN");
        assert_eq!(opened["customer"]["email"], "buyer@example.com");
        assert!(
            opened["redirect_url"]
                .as_str()
                .unwrap()
                .starts_with("https://shop.example/back?purchase=")
        );
        assert_eq!(
            opened["subaccounts"],
            serde_json::json!([{"id": subaccount, "transaction_charge_type": "flat_subaccount",
                                    "transaction_charge": 8000.4}])
        );
    }

    // Before payment there is no transaction: pending, no error.
    assert_eq!(m.sync(&pur.id).await.unwrap().status, PurchaseStatus::Pending);
    // Wrong, missing hash: refused; an event naming a transaction
    // Flutterwave does not know changes nothing.
    let early = flw_event(999, &pur.id, "successful");
    assert_eq!(
        m.webhook(&flw_signed("not-the-hash"), &early).await.unwrap_err().code(),
        "invalid_signature"
    );
    assert!(m.webhook(&http::HeaderMap::new(), &early).await.is_err());
    let out = m.webhook(&flw_signed(FLW_HASH), &early).await.unwrap();
    assert!(
        matches!(
            out,
            WebhookOutcome::Synced {
                status: PurchaseStatus::Pending,
                ..
            }
        ),
        "{out:?}"
    );

    // Paid: the webhook's transaction is verified by id, then completed.
    let tx = flw_pay(&fw, &pur.id, "successful");
    let paid = flw_event(tx, &pur.id, "successful");
    let out = m.webhook(&flw_signed(FLW_HASH), &paid).await.unwrap();
    assert!(
        matches!(
            out,
            WebhookOutcome::Synced {
                status: PurchaseStatus::Completed,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(
        fw.lock()
            .unwrap()
            .requests
            .iter()
            .any(|r| r.1 == format!("/v3/transactions/{tx}/verify")),
        "verified by transaction id"
    );
    assert_eq!(
        m.webhook(&flw_signed(FLW_HASH), &paid).await.unwrap(),
        WebhookOutcome::Duplicate
    );
    let (books, lines) = balances(&m, &pur.id).await;
    assert_eq!(lines, 3);
    assert_eq!(
        m.bought_outputs(&buyer.account_id).await.unwrap(),
        vec![(pur.id.clone(), l.output_key.clone())],
        "what the buyer may read (Flight SQL's purchases schema)"
    );
    assert_eq!(books[&format!("seller:{}", seller.account_id)], -800_040);
    assert_eq!(books["platform:fees"], -200_010);

    // Another buyer's purchase, named in an event with the first
    // buyer's transaction: the fetched transaction is not theirs.
    let pur2 = m
        .checkout(&meta(), &other, &l.id, "https://shop.example/back")
        .await
        .unwrap();
    let stolen = flw_event(tx, &pur2.id, "successful");
    let out = m.webhook(&flw_signed(FLW_HASH), &stolen).await.unwrap();
    assert!(
        matches!(
            out,
            WebhookOutcome::Synced {
                status: PurchaseStatus::Pending,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(m.access(&other, &l.id).await.unwrap().is_none());
    // The redirect naming someone else's transaction proves nothing either.
    assert_eq!(
        m.sync_charge(&pur2.id, Some(&tx.to_string())).await.unwrap().status,
        PurchaseStatus::Pending
    );
    assert!(m.sync_charge(&pur2.id, Some("1/../../x")).await.is_err());
    // A failed attempt fails the purchase and books nothing…
    let declined = flw_pay(&fw, &pur2.id, "failed");
    assert_eq!(
        m.sync_charge(&pur2.id, Some(&declined.to_string()))
            .await
            .unwrap()
            .status,
        PurchaseStatus::Failed
    );
    assert_eq!(balances(&m, &pur2.id).await.1, 0);
    // …and a later successful attempt, whose webhook is dropped, is
    // settled by reconciliation through the reference.
    flw_pay(&fw, &pur2.id, "successful");
    assert_eq!(m.sync(&pur2.id).await.unwrap().status, PurchaseStatus::Completed);

    // Refund: the whole amount, in naira, by transaction id; access ends.
    let refunded = m.refund(&meta(), &root, &pur.id).await.unwrap();
    assert_eq!(refunded.status, PurchaseStatus::Refunded);
    {
        let s = fw.lock().unwrap();
        let (_, _, body) = s
            .requests
            .iter()
            .rfind(|r| r.1 == format!("/v3/transactions/{tx}/refund"))
            .unwrap();
        assert_eq!(body["amount"], serde_json::json!(10000.5));
        assert_eq!(s.refunded, vec![tx]);
    }
    assert!(m.access(&buyer, &l.id).await.unwrap().is_none());
    assert!(m.bought_outputs(&buyer.account_id).await.unwrap().is_empty());
    let (after, lines) = balances(&m, &pur.id).await;
    assert_eq!(lines, 6);
    assert!(after.values().all(|v| *v == 0), "{after:?}");
    // Flutterwave still calls the transaction successful: a late sync or
    // a replayed event does not bring access back.
    assert_eq!(m.sync(&pur.id).await.unwrap().status, PurchaseStatus::Refunded);
    let late = flw_event(tx, &pur.id, "successful");
    assert_eq!(
        m.webhook(&flw_signed(FLW_HASH), &late).await.unwrap(),
        WebhookOutcome::Duplicate
    );
    assert!(m.refund(&meta(), &root, &pur.id).await.is_err());

    // Error answers become errors that say what happened and leak nothing.
    use doppel_market::payments::PaymentProvider as _;
    let wrong_key = FlutterwaveProvider::new(&base, "FLWSECK_TEST-wrong".into(), FLW_HASH.into(), 2000);
    let err = wrong_key.fetch_payment(&pur.id).await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable(ref m) if m.contains("credentials")),
        "{err}"
    );
    let unreachable = FlutterwaveProvider::new("http://127.0.0.1:9", FLW_KEY.into(), FLW_HASH.into(), 2000);
    assert!(matches!(
        unreachable.fetch_payment(&pur.id).await,
        Err(Error::Unavailable(_))
    ));
    // The whole ledger still sums to zero.
    let all = m.ledger(None, 1000).await.unwrap();
    assert_eq!(all.iter().map(|e| e.amount_minor).sum::<i64>(), 0);
});
