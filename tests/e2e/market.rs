//! The marketplace over REST on the default setup (SQLite, local files, the
//! built-in payment provider): a seller lists a twin, a buyer browses, pays
//! on the hosted checkout page, is redirected back, and downloads; webhooks
//! are attacked; the ledger balances; refunds revoke access; outputs below
//! the privacy bar are refused.

use serde_json::{Value, json};

use crate::server::{Server, account, follow, get, http, post, upload};

const WHSEC: &str = "whsec_e2e";

fn server() -> Server {
    server_with(&[])
}

fn server_with(extra: &[(&str, String)]) -> Server {
    let mut env = vec![
        ("DOPPEL__PAYMENTS__WEBHOOK_SECRET", WHSEC.to_owned()),
        // Reconciliation runs when the test asks (admin endpoint).
        ("DOPPEL__PAYMENTS__RECONCILE_SECONDS", "0".to_owned()),
        ("DOPPEL__PAYMENTS__RECONCILE_AFTER_SECONDS", "0".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    Server::start(&["serve"], &env)
}

fn job(s: &Server, token: &str, pipeline: &str, dataset: &Value) -> String {
    let (status, job) = post(
        s,
        "/v1/jobs",
        Some(token),
        &json!({"pipeline": pipeline, "dataset_id": dataset["id"]}),
    );
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let last = follow(s, token, &id).pop().unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");
    id
}

fn webhook(s: &Server, body: &Value, signature: Option<String>) -> (u16, Value) {
    let raw = body.to_string();
    let mut r = http()
        .post(s.url("/v1/webhooks/fake"))
        .header("content-type", "application/json")
        .body(raw);
    if let Some(sig) = signature {
        r = r.header("stripe-signature", sig);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
}

fn sign(secret: &str, body: &Value, age: i64) -> String {
    let t = doppel_platform::util::now_ms() / 1000 - age;
    doppel_market::payments::stripe_signature::sign(secret, t, body.to_string().as_bytes())
}

fn event(id: &str, payment: &str) -> Value {
    json!({"id": id, "type": "payment.succeeded", "data": {"object": {"id": payment}}})
}

/// Pay on the hosted page like a browser: load it, press the button, follow
/// the redirect back to the server's return page.
fn pay(s: &Server, checkout_url: &str, action: &str) -> String {
    let page = http().get(checkout_url).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().unwrap();
    assert!(html.contains("id=\"pay\""), "{html}");
    let form_action = html.split("action=\"").nth(1).unwrap().split('"').next().unwrap();
    let back = http()
        .post(s.url(form_action))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("action={action}"))
        .send()
        .unwrap();
    assert_eq!(back.status().as_u16(), 200, "redirected back to the return page");
    assert!(back.url().path().ends_with("/v1/checkout/return"), "{}", back.url());
    back.text().unwrap()
}

fn ledger(s: &Server, admin: &str, purchase: &str) -> Vec<Value> {
    let (status, lines) = get(s, &format!("/v1/admin/ledger?purchase_id={purchase}"), Some(admin));
    assert_eq!(status, 200, "{lines}");
    lines.as_array().unwrap().clone()
}

fn assert_balanced(lines: &[Value]) {
    let mut txns: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for l in lines {
        *txns.entry(l["txn_id"].as_str().unwrap().to_owned()).or_default() += l["amount_minor"].as_i64().unwrap();
    }
    assert!(
        txns.values().all(|v| *v == 0),
        "every ledger transaction sums to zero: {lines:?}"
    );
}

#[test]
fn a_buyer_buys_a_twin_and_the_ledger_never_loses_a_cent() {
    let s = server();
    let seller = account(&s, "seller@example.com");
    let buyer = account(&s, "buyer@example.com");
    let other = account(&s, "other@example.com");
    let admin = account(&s, "admin@example.com");

    // The seller's twin of Adult; a PII scan has no table to sell.
    let (status, ds) = upload(&s, &seller, "data/adult.csv", None);
    assert_eq!(status, 201, "{ds}");
    let twin = job(&s, &seller, "quickstart", &ds);
    let scan = job(&s, &seller, "pii-scan", &ds);
    let listing_body = |job_id: &str| {
        json!({"job_id": job_id, "title": "UCI Adult census income twin",
               "description": "Synthetic twin of the 1994 US census extract: income, education, occupation.",
               "tags": ["census", "income"], "category": "Demographics", "price_minor": 4900,
               "currency": "USD", "license": "CC-BY-4.0; no re-identification attempts."})
    };
    let (status, err) = post(&s, "/v1/listings", Some(&seller), &listing_body(&scan));
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().starts_with("output:"), "{err}");
    let (status, listing) = post(&s, "/v1/listings", Some(&seller), &listing_body(&twin));
    assert_eq!(status, 201, "{listing}");
    let lid = listing["id"].as_str().unwrap().to_owned();
    assert!(listing["privacy_score"].as_f64().unwrap() >= 40.0, "{listing}");
    assert_eq!(listing["preview"]["table"]["rows"].as_array().unwrap().len(), 20);
    assert_eq!(listing["preview"]["table"]["columns"].as_array().unwrap().len(), 15);
    assert_eq!(listing["preview"]["table"]["rows_total"], 32_561);
    assert!(listing["preview"]["quality_score"].as_f64().unwrap() > 0.8, "{listing}");
    // Someone else cannot list the seller's job.
    let (status, _) = post(&s, "/v1/listings", Some(&other), &listing_body(&twin));
    assert_eq!(status, 404);

    // Browse: full text, filters, sort.
    let (status, found) = get(
        &s,
        "/v1/listings?q=incomes%20census&min_privacy=40&category=demographics",
        Some(&buyer),
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["data"][0]["id"], lid.as_str());
    let (_, none) = get(&s, "/v1/listings?q=hospital", Some(&buyer));
    assert!(none["data"].as_array().unwrap().is_empty());
    let (_, none) = get(&s, "/v1/listings?max_price=4000", Some(&buyer));
    assert!(none["data"].as_array().unwrap().is_empty());
    // Nothing of the seller's but the listing is visible.
    let (status, _) = get(&s, &format!("/v1/jobs/{twin}"), Some(&buyer));
    assert_eq!(status, 404);

    // Checkout, with an Idempotency-Key: a retry opens the same purchase.
    let checkout = |key: &str| {
        let resp = http()
            .post(s.url(&format!("/v1/listings/{lid}/checkout")))
            .bearer_auth(&buyer)
            .header("Idempotency-Key", key)
            .json(&json!({}))
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap())
    };
    let (status, purchase) = checkout("buy-1");
    assert_eq!(status, 201, "{purchase}");
    let (_, again) = checkout("buy-1");
    assert_eq!(again["id"], purchase["id"]);
    let pid = purchase["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (purchase["fee_minor"].as_i64(), purchase["seller_minor"].as_i64()),
        (Some(980), Some(3920))
    );
    let checkout_url = purchase["checkout_url"].as_str().unwrap().to_owned();
    let payment = checkout_url.rsplit('/').next().unwrap().to_owned();
    let (status, _) = get(&s, &format!("/v1/purchases/{pid}/download"), Some(&buyer));
    assert_eq!(status, 409, "no download before payment");

    // Webhook attacks change nothing.
    let forged = event("evt_forged", &payment);
    assert_eq!(webhook(&s, &forged, Some(sign("whsec_wrong", &forged, 0))).0, 400);
    assert_eq!(webhook(&s, &forged, Some(sign(WHSEC, &forged, 301))).0, 400);
    let (status, err) = webhook(&s, &forged, None);
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_signature")));
    // Correctly signed but premature: the provider says pending, so pending.
    let early = event("evt_early", &payment);
    let (status, out) = webhook(&s, &early, Some(sign(WHSEC, &early, 0)));
    assert_eq!((status, out["result"].as_str()), (200, Some("processed")));
    let (_, p) = get(&s, &format!("/v1/purchases/{pid}"), Some(&buyer));
    assert_eq!(p["status"], "pending");

    // The buyer pays on the hosted page and comes back verified.
    let page = pay(&s, &checkout_url, "pay");
    assert!(page.contains("data-status=\"completed\""), "{page}");
    let (_, p) = get(&s, &format!("/v1/purchases/{pid}"), Some(&buyer));
    assert_eq!(p["status"], "completed");
    // A replay of a delivered event is a no-op; so is a later duplicate.
    let (_, out) = webhook(&s, &early, Some(sign(WHSEC, &early, 0)));
    assert_eq!(out["result"], "duplicate");
    let late = event("evt_late", &payment);
    webhook(&s, &late, Some(sign(WHSEC, &late, 0)));
    let lines = ledger(&s, &admin, &pid);
    assert_eq!(lines.len(), 3, "charged once: {lines:?}");
    assert_balanced(&lines);

    // Download through a signed link.
    let (status, link) = get(&s, &format!("/v1/purchases/{pid}/download"), Some(&buyer));
    assert_eq!(status, 200, "{link}");
    let file = http().get(link["url"].as_str().unwrap()).send().unwrap();
    assert_eq!(file.status().as_u16(), 200);
    assert!(file.bytes().unwrap().starts_with(b"PAR1"));
    let (status, _) = get(&s, &format!("/v1/purchases/{pid}/download"), Some(&other));
    assert_eq!(status, 404, "another account's purchase does not exist for them");

    // Notifications and the seller's dashboard.
    let (_, n) = get(&s, "/v1/notifications?unread=true", Some(&seller));
    let kinds: Vec<&str> = n["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"sale_made"), "{n}");
    assert!(kinds.contains(&"job_succeeded"), "{n}");
    let first = n["data"][0]["id"].as_str().unwrap();
    assert_eq!(
        post(
            &s,
            &format!("/v1/notifications/{first}/read"),
            Some(&seller),
            &json!({})
        )
        .0,
        200
    );
    let (_, d) = get(&s, "/v1/seller/dashboard", Some(&seller));
    assert_eq!(d["listings"][0]["sales"], 1);
    assert_eq!(d["listings"][0]["downloads"], 1);
    assert_eq!(d["payable"][0]["minor"], 3920);

    // A second buyer's webhook is dropped: reconciliation settles it.
    let (_, p2) = post(&s, &format!("/v1/listings/{lid}/checkout"), Some(&other), &json!({}));
    let other_payment = p2["checkout_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    // (Paying through the provider directly, without our return page.)
    let back = http()
        .post(s.url(&format!("/v1/fake-pay/{other_payment}")))
        .body("action=pay")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .unwrap();
    assert_eq!(back.status().as_u16(), 200);
    let (status, r) = post(&s, "/v1/admin/payments/reconcile", Some(&admin), &json!({}));
    assert_eq!(status, 200, "{r}");
    let (_, p2) = get(
        &s,
        &format!("/v1/purchases/{}", p2["id"].as_str().unwrap()),
        Some(&other),
    );
    assert_eq!(p2["status"], "completed");

    // The seller pauses: not for sale any more, buyers keep access.
    let resp = http()
        .patch(s.url(&format!("/v1/listings/{lid}")))
        .bearer_auth(&seller)
        .json(&json!({"status": "paused"}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (_, found) = get(&s, "/v1/listings?q=census", Some(&admin));
    assert!(found["data"].as_array().unwrap().is_empty());
    assert_eq!(
        get(&s, &format!("/v1/listings/{lid}"), Some(&buyer)).0,
        200,
        "a buyer still sees it"
    );
    assert_eq!(get(&s, &format!("/v1/purchases/{pid}/download"), Some(&buyer)).0, 200);

    // Refund: access ends, and the ledger nets to zero for the purchase.
    assert_eq!(
        post(
            &s,
            &format!("/v1/admin/purchases/{pid}/refund"),
            Some(&buyer),
            &json!({})
        )
        .0,
        403
    );
    let (status, refunded) = post(
        &s,
        &format!("/v1/admin/purchases/{pid}/refund"),
        Some(&admin),
        &json!({}),
    );
    assert_eq!(status, 200, "{refunded}");
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(get(&s, &format!("/v1/purchases/{pid}/download"), Some(&buyer)).0, 409);
    let lines = ledger(&s, &admin, &pid);
    assert_eq!(lines.len(), 6);
    assert_balanced(&lines);
    let mut by_account: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for l in &lines {
        *by_account.entry(l["account"].as_str().unwrap()).or_default() += l["amount_minor"].as_i64().unwrap();
    }
    assert!(by_account.values().all(|v| *v == 0), "{by_account:?}");
    let (_, all) = get(&s, "/v1/admin/ledger", Some(&admin));
    assert_eq!(
        all.as_array()
            .unwrap()
            .iter()
            .map(|l| l["amount_minor"].as_i64().unwrap())
            .sum::<i64>(),
        0
    );
    let (_, d) = get(&s, "/v1/seller/dashboard", Some(&seller));
    assert_eq!(d["payable"][0]["minor"], 3920, "only the standing sale is owed");
}

/// The default bar (40) is exercised on both metadata stores in
/// platform/tests/store.rs; here an operator's stricter bar refuses a real,
/// measured twin over REST.
#[test]
fn an_output_below_the_privacy_bar_is_refused_with_the_reason() {
    let s = server_with(&[("DOPPEL__PAYMENTS__MIN_PRIVACY_SCORE", "75".to_owned())]);
    let seller = account(&s, "seller@example.com");
    // Two columns, four possible rows: every synthetic row copies a real one.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("tiny.csv");
    let mut text = String::from("plan,active\n");
    for i in 0..400 {
        text.push_str(&format!("{},{}\n", ["free", "pro"][i % 2], ["yes", "no"][i % 7 % 2]));
    }
    std::fs::write(&csv, text).unwrap();
    let form = reqwest::blocking::multipart::Form::new().file("file", &csv).unwrap();
    let ds: Value = http()
        .post(s.url("/v1/datasets"))
        .bearer_auth(&seller)
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = job(&s, &seller, "quickstart", &ds);
    let (_, j) = get(&s, &format!("/v1/jobs/{id}"), Some(&seller));
    let score = j["summary"]["privacy.Privacy Score"].as_f64().unwrap();
    assert!(score < 75.0, "copies everywhere should score low: {score}");
    let (status, err) = post(
        &s,
        "/v1/listings",
        Some(&seller),
        &json!({"job_id": id, "title": "Plans", "category": "saas", "price_minor": 100,
                "currency": "EUR", "license": "proprietary"}),
    );
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["code"], "listing_refused");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("below the marketplace minimum of 75"), "{message}");
    assert!(message.contains(&format!("{score:.1}")), "{message}");
}

/// Switching to Flutterwave is configuration only: the server refuses to
/// start without its keys, and with them serves the Flutterwave webhook, the
/// payout account a seller needs first, and provider outages as a stable
/// error that leaks nothing. (The adapter's calls are tested against a local
/// server speaking Flutterwave's shapes in platform/tests/store.rs.)
#[test]
fn flutterwave_is_configuration_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::doppel()
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--http-addr", "127.0.0.1:0"])
        .env("DOPPEL__PAYMENTS__PROVIDER", "flutterwave")
        .env("DOPPEL__FLIGHT_ADDR", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("flutterwave_secret_key"), "{stderr}");

    let s = Server::start(
        &["serve"],
        &[
            ("DOPPEL__PAYMENTS__PROVIDER", "flutterwave".to_owned()),
            (
                "DOPPEL__PAYMENTS__FLUTTERWAVE_SECRET_KEY",
                "FLWSECK_TEST-e2e".to_owned(),
            ),
            ("DOPPEL__PAYMENTS__WEBHOOK_SECRET", "e2e-hash".to_owned()),
            // Nothing listens here: every provider call fails.
            (
                "DOPPEL__PAYMENTS__FLUTTERWAVE_API_BASE",
                "http://127.0.0.1:9".to_owned(),
            ),
            ("DOPPEL__PAYMENTS__RECONCILE_SECONDS", "0".to_owned()),
            (
                "DOPPEL__PAYMENTS__RETURN_ORIGINS",
                "[\"https://shop.example\"]".to_owned(),
            ),
        ],
    );
    let seller = account(&s, "seller@example.com");
    let (status, _) = get(&s, "/v1/seller/payout-account", Some(&seller));
    assert_eq!(status, 404);
    let (status, err) = post(
        &s,
        "/v1/seller/payout-account/onboarding-link",
        Some(&seller),
        &json!({"return_url": "https://shop.example/seller"}),
    );
    assert_eq!(
        (status, err["code"].as_str()),
        (422, Some("payout_details_required")),
        "{err}"
    );
    let put = |body: &Value| {
        let resp = http()
            .put(s.url("/v1/seller/payout-account"))
            .bearer_auth(&seller)
            .json(body)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap_or(Value::Null))
    };
    let (status, err) = put(&json!({"business_name": "Acme", "bank_code": "044",
                                    "account_number": "0690000031", "country": "Nigeria"}));
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("country"), "{err}");
    let (status, err) = put(&json!({"business_name": "Acme", "bank_code": "044",
                                    "account_number": "0690000031", "country": "NG"}));
    assert_eq!(status, 503, "{err}");
    assert_eq!(err["code"], "unavailable");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("cannot be reached") && !message.contains("127.0.0.1"),
        "{message}"
    );

    // The webhook route is the configured provider's; verif-hash guards it.
    let hook = |provider: &str, hash: Option<&str>| {
        let mut r = http()
            .post(s.url(&format!("/v1/webhooks/{provider}")))
            .header("content-type", "application/json")
            .body(
                json!({"event": "charge.completed",
                         "data": {"id": 1, "tx_ref": "pur_unknown", "status": "successful"}})
                .to_string(),
            );
        if let Some(h) = hash {
            r = r.header("verif-hash", h);
        }
        let resp = r.send().unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap_or(Value::Null))
    };
    assert_eq!(hook("fake", Some("e2e-hash")).0, 404);
    let (status, body) = hook("flutterwave", None);
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_signature")),
        "{body}"
    );
    assert_eq!(hook("flutterwave", Some("wrong")).0, 400);
    let (status, body) = hook("flutterwave", Some("e2e-hash"));
    assert_eq!((status, body["result"].as_str()), (200, Some("ignored")), "{body}");
}
