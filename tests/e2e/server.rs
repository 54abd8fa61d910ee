//! `doppel serve` driven over HTTP as users drive it: the full journey, the
//! access matrix, and the error shape. Each test starts its own server on a
//! free loopback port with its own data directory.

#![allow(clippy::print_stderr, reason = "a test says which backend legs it skipped")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, multipart};
use serde_json::{Value, json};

use super::{doppel, repo};

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    pub(crate) data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// `doppel serve` (or another subcommand) with test-friendly settings plus `env`.
    pub(crate) fn start(args: &[&str], env: &[(&str, String)]) -> Server {
        Server::start_on(free_port(), args, env)
    }

    /// [`Server::start`] on a given port.
    pub(crate) fn start_on(port: u16, args: &[&str], env: &[(&str, String)]) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = doppel();
        cmd.args(args)
            .arg("--data-dir")
            .arg(data.path())
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{port}"))
            .env("DOPPEL__AUTH__INSECURE_FAST_HASHING", "true")
            .env("DOPPEL__AUTH__ADMIN_EMAILS", "[\"admin@example.com\"]")
            .env("DOPPEL__JOBS__POLL_MS", "50")
            .env("DOPPEL__LIMITS__REQUESTS_PER_SECOND", "1000")
            .env("DOPPEL__LIMITS__BURST", "1000")
            // Parallel servers would all want Flight's default port; the
            // Flight suite (tests/flight) starts its own on a free one.
            .env("DOPPEL__FLIGHT_ADDR", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let s = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if Client::new()
                .get(format!("{}/healthz", s.base))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("doppel serve did not come up on {}", s.base);
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub(crate) fn http() -> Client {
    Client::builder().timeout(Duration::from_secs(600)).build().unwrap()
}

/// POST JSON, returning (status, body).
pub(crate) fn post(s: &Server, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut r = http().post(s.url(path)).json(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
}

/// GET, returning (status, body as JSON or Null).
pub(crate) fn get(s: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = http().get(s.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
}

/// Sign up and log in; returns the session token.
pub(crate) fn account(s: &Server, email: &str) -> String {
    let (status, body) = post(
        s,
        "/v1/auth/signup",
        None,
        &json!({"email": email, "password": "correct horse battery"}),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(
        s,
        "/v1/auth/login",
        None,
        &json!({"email": email, "password": "correct horse battery"}),
    );
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

pub(crate) fn api_key(s: &Server, session: &str, scopes: &[&str]) -> String {
    let (status, body) = post(
        s,
        "/v1/api-keys",
        Some(session),
        &json!({"name": "test", "scopes": scopes}),
    );
    assert_eq!(status, 201, "{body}");
    body["secret"].as_str().unwrap().to_owned()
}

pub(crate) fn upload(s: &Server, token: &str, file: &str, idempotency: Option<&str>) -> (u16, Value) {
    let path = repo().join(file);
    let form = multipart::Form::new().file("file", &path).unwrap();
    let mut r = http().post(s.url("/v1/datasets")).bearer_auth(token).multipart(form);
    if let Some(k) = idempotency {
        r = r.header("Idempotency-Key", k);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
}

/// Follow a job's SSE stream to its end; returns every event.
pub(crate) fn follow(s: &Server, token: &str, job: &str) -> Vec<Value> {
    let resp = http()
        .get(s.url(&format!("/v1/jobs/{job}/events")))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut events = Vec::new();
    for line in BufReader::new(resp).lines() {
        let line = line.unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).unwrap();
            let terminal = matches!(v["state"].as_str(), Some("succeeded" | "failed" | "cancelled"));
            events.push(v);
            if terminal {
                break;
            }
        }
    }
    events
}

fn parquet_rows_and_columns(bytes: bytes::Bytes) -> (usize, usize) {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let cols = reader.schema().fields().len();
    (reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum(), cols)
}

#[test]
fn the_whole_journey_from_sign_up_to_a_signed_download() {
    let s = Server::start(&["serve"], &[("DOPPEL__LIMITS__DOWNLOAD_TTL_SECONDS", "4".into())]);
    journey(&s, true);
}

/// The same journey on PostgreSQL and an S3-compatible server (moto, started
/// here on loopback) instead of SQLite and a local directory.
#[test]
fn the_whole_journey_on_postgres_and_s3() {
    let Some(backends) = PgS3::start() else { return };
    let s = Server::start(&["serve"], &backends.env());
    let link = journey(&s, false);
    let endpoint = &backends.endpoint;
    assert!(
        link.starts_with(&format!("{endpoint}/doppel-e2e/tenant-a/outputs/")),
        "a presigned S3 URL: {link}"
    );
    assert!(link.contains("X-Amz-Signature="), "{link}");
    // The objects really are in the bucket, under the owner's prefix.
    let listing = http()
        .get(format!("{endpoint}/doppel-e2e?prefix=tenant-a/datasets/"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(listing.contains("data.parquet"), "{listing}");
    drop(s);
}

/// A fresh PostgreSQL database and an S3-compatible server (moto) on
/// loopback with a bucket, for the scale-out legs; `None` (and a note) when
/// the environment does not provide them.
pub(crate) struct PgS3 {
    _pg: PgDatabase,
    url: String,
    s3: Child,
    endpoint: String,
}

impl Drop for PgS3 {
    fn drop(&mut self) {
        let _ = self.s3.kill();
        let _ = self.s3.wait();
    }
}

impl PgS3 {
    pub(crate) fn start() -> Option<PgS3> {
        let (Some(pg), Ok(moto)) = (PgDatabase::create(), std::env::var("DOPPEL_TEST_MOTO")) else {
            eprintln!(
                "skipped: set DOPPEL_TEST_POSTGRES and DOPPEL_TEST_MOTO (moto_server) to run the PostgreSQL + S3 leg"
            );
            return None;
        };
        let port = free_port();
        let s3 = std::process::Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        // An unauthenticated PUT creates the bucket on moto once it listens.
        while http().put(format!("{endpoint}/doppel-e2e")).send().is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(PgS3 {
            url: pg.url.clone(),
            _pg: pg,
            s3,
            endpoint,
        })
    }

    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DOPPEL__DATABASE_URL", self.url.clone()),
            ("DOPPEL__STORAGE__URL", "s3://doppel-e2e/tenant-a".into()),
            ("DOPPEL__STORAGE__ENDPOINT", self.endpoint.clone()),
            ("DOPPEL__STORAGE__ACCESS_KEY_ID", "test".into()),
            ("DOPPEL__STORAGE__SECRET_ACCESS_KEY", "test".into()),
            ("DOPPEL__STORAGE__ALLOW_HTTP", "true".into()),
        ]
    }
}

/// Sign up → API key → upload Adult → quickstart job → SSE to completion →
/// report JSON and PDF → signed download; returns the download URL.
fn journey(s: &Server, local_links: bool) -> String {
    let session = account(s, "alice@example.com");
    let key = api_key(s, &session, &["datasets:read", "datasets:write", "jobs:run"]);
    assert!(key.starts_with("dpl_"));

    let (status, ds) = upload(s, &key, "data/adult.csv", Some("upload-1"));
    assert_eq!(status, 201, "{ds}");
    assert_eq!(ds["rows"], 32_561);
    assert_eq!(ds["columns"].as_array().unwrap().len(), 15);
    let (status, again) = upload(s, &key, "data/adult.csv", Some("upload-1"));
    assert_eq!(
        (status, &again["id"]),
        (201, &ds["id"]),
        "a repeated Idempotency-Key answers the first result"
    );
    let id = ds["id"].as_str().unwrap();
    let (status, one) = get(s, &format!("/v1/datasets/{id}"), Some(&key));
    assert_eq!(status, 200);
    assert_eq!(one["profile"]["columns"].as_array().unwrap().len(), 15);
    let (_, preview) = get(s, &format!("/v1/datasets/{id}/preview"), Some(&key));
    assert_eq!(preview["rows"].as_array().unwrap().len(), 20);
    assert_eq!(preview["columns"][0], "age");
    let (_, listed) = get(s, "/v1/datasets?limit=10", Some(&key));
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    let (status, job) = post(
        s,
        "/v1/jobs",
        Some(&key),
        &json!({"pipeline": "quickstart", "dataset_id": id}),
    );
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["state"], "queued");
    let job_id = job["id"].as_str().unwrap().to_owned();
    let events = follow(s, &key, &job_id);
    let last = events.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");
    let progress: Vec<f64> = events.iter().map(|e| e["progress"].as_f64().unwrap()).collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {progress:?}"
    );
    assert_eq!(progress.last(), Some(&1.0));
    for name in ["synthetic.parquet", "report.json", "report.pdf"] {
        assert!(
            last["outputs"].as_array().unwrap().iter().any(|o| o == name),
            "{name} in {last}"
        );
    }
    assert!(
        last["summary"]["quality.Quality Score"].as_f64().unwrap() > 0.8,
        "{}",
        last["summary"]
    );

    // The `sample` pipeline reads a saved model, not a dataset: asking for
    // it wrongly is answered before anything is queued.
    let (status, err) = post(
        s,
        "/v1/jobs",
        Some(&key),
        &json!({"pipeline": "sample", "model": {"job_id": job_id}}),
    );
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("saved no model"), "{err}");
    let (status, err) = post(
        s,
        "/v1/jobs",
        Some(&key),
        &json!({"pipeline": "sample", "dataset_id": id}),
    );
    assert_eq!(status, 422, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("samples a saved model"),
        "{err}"
    );
    let (status, err) = post(
        s,
        "/v1/jobs",
        Some(&key),
        &json!({"pipeline": "quickstart", "dataset_id": id, "model": {"job_id": job_id}}),
    );
    assert_eq!(status, 400, "{err}");

    let (status, report) = get(s, &format!("/v1/jobs/{job_id}/report"), Some(&key));
    assert_eq!(status, 200);
    assert!(report["stages"].as_array().unwrap().len() > 5);
    let pdf = http()
        .get(s.url(&format!("/v1/jobs/{job_id}/report.pdf")))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(pdf.status().as_u16(), 200);
    assert!(pdf.bytes().unwrap().starts_with(b"%PDF"));

    let (status, link) = get(
        s,
        &format!("/v1/jobs/{job_id}/outputs/synthetic.parquet/url"),
        Some(&key),
    );
    assert_eq!(status, 200, "{link}");
    let url = link["url"].as_str().unwrap().to_owned();
    // The link needs no credentials: it is the permission.
    let file = http().get(&url).send().unwrap();
    assert_eq!(file.status().as_u16(), 200);
    let (rows, cols) = parquet_rows_and_columns(file.bytes().unwrap());
    assert_eq!((rows, cols), (32_561, 15));
    if local_links {
        // One changed byte, in the signature or the path, and it is refused.
        let sig_at = url.find("signature=").unwrap() + "signature=".len();
        let mut tampered = url.clone().into_bytes();
        tampered[sig_at] = if tampered[sig_at] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        let r = http().get(&tampered).send().unwrap();
        assert_eq!(r.status().as_u16(), 403);
        assert_eq!(r.json::<Value>().unwrap()["code"], "invalid_link");
        let other_file = url.replace("synthetic.parquet", "report.json");
        assert_eq!(http().get(&other_file).send().unwrap().status().as_u16(), 403);
        // And after its expiry.
        let expires = link["expires_at"].as_i64().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        std::thread::sleep(Duration::from_millis(u64::try_from(expires - now).unwrap_or(0) + 1100));
        assert_eq!(
            http().get(&url).send().unwrap().status().as_u16(),
            403,
            "expired links are refused"
        );
    }
    let metrics = http().get(s.url("/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("doppel_jobs{state=\"succeeded\"} 1"), "{metrics}");
    assert!(metrics.contains("doppel_http_requests_total{method=\"POST\",status=\"201\"}"));
    let (status, _) = get(s, "/readyz", None);
    assert_eq!(status, 200);
    let spec = http()
        .get(s.url("/openapi.json"))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(spec["paths"]["/v1/jobs"]["post"]["operationId"], "create_job");
    assert_eq!(http().get(s.url("/docs/")).send().unwrap().status().as_u16(), 200);
    url
}

/// A small table for jobs that should finish quickly.
fn small_csv(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("small.csv");
    let mut text = String::from("age,plan,amount\n");
    for i in 0..300 {
        text.push_str(&format!(
            "{},{},{}.5\n",
            20 + i % 50,
            ["free", "pro", "team"][i % 3],
            i * 7 % 100
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn nobody_reaches_anyone_elses_resources_and_credentials_are_checked() {
    access_matrix(&Server::start(&["serve"], &[]));
}

#[test]
fn the_access_matrix_holds_on_postgres_and_s3() {
    let Some(backends) = PgS3::start() else { return };
    access_matrix(&Server::start(&["serve"], &backends.env()));
}

fn access_matrix(s: &Server) {
    let a = account(s, "a@example.com");
    let b = account(s, "b@example.com");
    let admin = account(s, "admin@example.com");
    let dir = tempfile::tempdir().unwrap();
    let csv = small_csv(dir.path());
    let form = multipart::Form::new().file("file", &csv).unwrap();
    let ds: Value = http()
        .post(s.url("/v1/datasets"))
        .bearer_auth(&a)
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ds_id = ds["id"].as_str().unwrap().to_owned();
    let (status, job) = post(
        s,
        "/v1/jobs",
        Some(&a),
        &json!({"pipeline": "pii-scan", "dataset_id": ds_id}),
    );
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_str().unwrap().to_owned();
    let done = follow(s, &a, &job_id);
    assert_eq!(done.last().unwrap()["state"], "succeeded", "{:?}", done.last());
    let out = done.last().unwrap()["outputs"][0].as_str().unwrap().to_owned();

    // Every read, change, run and download of A's, as B: 404 (not 403, so ids cannot be probed).
    let reads = [
        format!("/v1/datasets/{ds_id}"),
        format!("/v1/datasets/{ds_id}/preview"),
        format!("/v1/jobs/{job_id}"),
        format!("/v1/jobs/{job_id}/events"),
        format!("/v1/jobs/{job_id}/report"),
        format!("/v1/jobs/{job_id}/outputs/{out}/url"),
    ];
    for path in &reads {
        let (status, body) = get(s, path, Some(&b));
        assert_eq!(status, 404, "B reading {path}: {body}");
        assert_eq!(body["code"], "not_found");
        let (status, _) = get(s, path, Some(&admin));
        assert_eq!(status, 200, "admin reading {path}");
        let (status, _) = get(s, path, None);
        assert_eq!(status, 401, "anonymous reading {path}");
    }
    let (status, _) = post(s, &format!("/v1/jobs/{job_id}/cancel"), Some(&b), &json!({}));
    assert_eq!(status, 404);
    let (status, body) = post(
        s,
        "/v1/jobs",
        Some(&b),
        &json!({"pipeline": "pii-scan", "dataset_id": ds_id}),
    );
    assert_eq!(status, 400, "B cannot run A's dataset: {body}");
    let r = http()
        .delete(s.url(&format!("/v1/datasets/{ds_id}")))
        .bearer_auth(&b)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (_, listed) = get(s, "/v1/datasets", Some(&b));
    assert_eq!(listed["data"].as_array().unwrap().len(), 0, "B lists nothing of A's");
    let (_, listed) = get(s, "/v1/jobs", Some(&b));
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
    // Admin endpoints are for admins only.
    let (status, body) = get(s, "/v1/admin/users", Some(&a));
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, users) = get(s, "/v1/admin/users", Some(&admin));
    assert_eq!(status, 200);
    assert_eq!(users["data"].as_array().unwrap().len(), 3);
    let (status, _) = get(s, "/v1/admin/jobs", Some(&admin));
    assert_eq!(status, 200);

    // Keys: under-scoped, revoked, expired-looking and garbage credentials.
    let read_only = api_key(s, &a, &["datasets:read"]);
    let (status, _) = get(s, &format!("/v1/datasets/{ds_id}"), Some(&read_only));
    assert_eq!(status, 200);
    let (status, body) = post(
        s,
        "/v1/jobs",
        Some(&read_only),
        &json!({"pipeline": "pii-scan", "dataset_id": ds_id}),
    );
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let form = multipart::Form::new().file("file", &csv).unwrap();
    let r = http()
        .post(s.url("/v1/datasets"))
        .bearer_auth(&read_only)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (_, keys) = get(s, "/v1/api-keys", Some(&a));
    let key_id = keys[0]["id"].as_str().unwrap();
    assert!(keys[0].get("secret").is_none(), "secrets are shown once");
    let r = http()
        .delete(s.url(&format!("/v1/api-keys/{key_id}")))
        .bearer_auth(&b)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "B cannot revoke A's key");
    let r = http()
        .delete(s.url(&format!("/v1/api-keys/{key_id}")))
        .bearer_auth(&a)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, body) = get(s, &format!("/v1/datasets/{ds_id}"), Some(&read_only));
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated")),
        "revoked keys stop working"
    );
    for bad in ["dpl_nonsense", "dps_nonsense", "garbage"] {
        let (status, body) = get(s, "/v1/me", Some(bad));
        assert_eq!(status, 401, "{bad}: {body}");
        assert!(body["request_id"].as_str().unwrap().starts_with("req_"));
    }
    // Logging out ends the session.
    let r = http().post(s.url("/v1/auth/logout")).bearer_auth(&b).send().unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(get(s, "/v1/me", Some(&b)).0, 401);
    // A disabled account is locked out.
    let (_, me) = get(s, "/v1/me", Some(&a));
    let (status, _) = post(
        s,
        &format!("/v1/admin/users/{}/disable", me["id"].as_str().unwrap()),
        Some(&admin),
        &json!({}),
    );
    assert_eq!(status, 200);
    assert_eq!(get(s, "/v1/me", Some(&a)).0, 401);
}

#[test]
fn errors_have_one_shape_and_name_the_field() {
    let s = Server::start(&["serve"], &[]);
    let t = account(&s, "shape@example.com");
    // Malformed JSON body and a missing field: 400 naming it.
    let r = http()
        .post(s.url("/v1/auth/signup"))
        .header("content-type", "application/json")
        .body("{\"email\": 1}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().unwrap();
    assert_eq!(body["code"], "invalid_request");
    assert!(body["message"].as_str().unwrap().starts_with("email:"), "{body}");
    let (status, body) = post(
        &s,
        "/v1/auth/signup",
        None,
        &json!({"email": "shape@example.com", "password": "correct horse battery"}),
    );
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
    let (status, body) = post(
        &s,
        "/v1/jobs",
        Some(&t),
        &json!({"pipeline": "nope", "dataset_id": "ds_x"}),
    );
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().starts_with("pipeline:"), "{body}");
    let (status, body) = get(&s, "/v1/datasets?limit=1000", Some(&t));
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().starts_with("limit:"), "{body}");
    let (status, body) = get(&s, "/v1/nowhere", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    // A table that is not a table: 422 naming the line.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "a,b\n1,2\n3,4,5,6\n\"unterminated\n").unwrap();
    let form = multipart::Form::new().file("file", &bad).unwrap();
    let r = http()
        .post(s.url("/v1/datasets"))
        .bearer_auth(&t)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().unwrap();
    assert_eq!(body["code"], "unreadable_table");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("bad.csv") && message.contains("line"), "{message}");
    assert!(
        !message.contains(&std::env::temp_dir().display().to_string()),
        "no server paths leak: {message}"
    );
    // Pipeline validation reports every problem with its place.
    let r = http()
        .post(s.url("/v1/pipelines/validate"))
        .header("content-type", "text/plain")
        .body("version = 1\n[stages.a]\nuses = \"builtin:nope\"\n[stages.b]\nuses = \"builtin:copula\"\ninputs = [\"zzz\"]\n")
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["valid"], false);
    let problems = v["problems"].as_array().unwrap();
    assert!(problems.len() >= 2, "{v}");
    assert!(
        problems
            .iter()
            .all(|p| p["line"].as_u64().is_some() && p["column"].as_u64().is_some()),
        "{v}"
    );
    let (status, pipelines) = get(&s, "/v1/pipelines", None);
    assert_eq!(status, 200);
    assert!(pipelines.as_array().unwrap().iter().any(|p| p["name"] == "quickstart"));
    drop(s);
}

/// The upload reader (`doppel ingest-worker`) runs under
/// `limits.ingest_memory_mb` as a data-segment limit. A table far inside it
/// is read: the limit counts what the reader uses, not address space the
/// allocator reserved up front (mimalloc's first arena, 1 GiB committed at
/// start, once made every upload under a 1 GiB limit a 500).
#[test]
fn an_upload_is_read_under_a_small_reader_memory_limit() {
    let s = Server::start(&["serve"], &[("DOPPEL__LIMITS__INGEST_MEMORY_MB", "512".into())]);
    let session = account(&s, "reader@example.com");
    let key = api_key(&s, &session, &["datasets:read", "datasets:write"]);
    let (status, ds) = upload(&s, &key, "data/adult.csv", None);
    assert_eq!(status, 201, "{ds}");
    assert_eq!(ds["rows"], 32_561);
    assert_eq!(ds["columns"].as_array().unwrap().len(), 15);
}

#[test]
fn requests_over_the_rate_limit_get_429_with_retry_after() {
    let s = Server::start(
        &["serve"],
        &[
            ("DOPPEL__LIMITS__REQUESTS_PER_SECOND", "1".into()),
            ("DOPPEL__LIMITS__BURST", "3".into()),
        ],
    );
    let statuses: Vec<(u16, Option<String>)> = (0..6)
        .map(|_| {
            let r = http().get(s.url("/v1/pipelines")).send().unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()),
            )
        })
        .collect();
    assert!(statuses.iter().take(3).all(|(s, _)| *s == 200), "{statuses:?}");
    let limited = statuses.iter().find(|(s, _)| *s == 429).expect("the burst is enforced");
    assert!(
        limited.1.as_deref().is_some_and(|v| v.parse::<u64>().unwrap() >= 1),
        "{statuses:?}"
    );
    // Health checks are never limited.
    assert_eq!(http().get(s.url("/healthz")).send().unwrap().status().as_u16(), 200);
}

/// A PostgreSQL database for one test, dropped afterwards.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create() -> Option<PgDatabase> {
        let admin = std::env::var("DOPPEL_TEST_POSTGRES").ok()?;
        let name = format!("doppel_e2e_{}_{}", std::process::id(), free_port());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
        Some(PgDatabase {
            url: format!("{base}/{name}"),
            admin,
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .arg(url)
        .arg("-qc")
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn worker(data: &std::path::Path, env: &[(&str, String)]) -> Child {
    let mut cmd = doppel();
    cmd.args(["worker", "--data-dir"])
        .arg(data)
        .env("DOPPEL__JOBS__POLL_MS", "50")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

#[test]
fn a_worker_killed_mid_job_loses_nothing_and_the_job_completes_once() {
    let Some(pg) = PgDatabase::create() else {
        eprintln!("skipped: set DOPPEL_TEST_POSTGRES to run the PostgreSQL worker test");
        return;
    };
    let env = vec![
        ("DOPPEL__DATABASE_URL", pg.url.clone()),
        ("DOPPEL__JOBS__LEASE_SECONDS", "2".to_owned()),
        ("DOPPEL__JOBS__RETRY_BASE_SECONDS", "0".to_owned()),
    ];
    // The API server runs no workers; two separate worker processes do the work.
    let s = Server::start(&["serve", "--workers", "0"], &env);
    let session = account(&s, "ops@example.com");
    let (_, ds) = upload(&s, &session, "data/adult.csv", None);
    let (status, job) = post(
        &s,
        "/v1/jobs",
        Some(&session),
        &json!({"pipeline": "quickstart", "dataset_id": ds["id"]}),
    );
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_str().unwrap().to_owned();

    let mut first = worker(s.data.path(), &env);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, j) = get(&s, &format!("/v1/jobs/{job_id}"), Some(&session));
        if j["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline && j["state"] == "queued", "{j}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // kill -9 while it runs: no cleanup, no goodbye.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = worker(s.data.path(), &env);
    let events = follow(&s, &session, &job_id);
    second.kill().unwrap();
    second.wait().unwrap();
    let last = events.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(last["attempt"], 2, "the second worker retried it once: {last}");
    // Only the committed attempt's outputs are visible, each exactly once.
    let outputs: Vec<&str> = last["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    let mut unique = outputs.clone();
    unique.dedup();
    assert_eq!(outputs, unique);
    let (_, link) = get(
        &s,
        &format!("/v1/jobs/{job_id}/outputs/synthetic.parquet/url"),
        Some(&session),
    );
    assert!(link["url"].as_str().unwrap().contains("/a2/"), "{link}");
    let file = http().get(link["url"].as_str().unwrap()).send().unwrap();
    assert_eq!(parquet_rows_and_columns(file.bytes().unwrap()), (32_561, 15));
    drop(s);
}

/// The OpenID provider from `tests/oidc` (oidc-provider on Node), if installed.
struct Provider(Child);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn single_sign_on_with_a_real_openid_provider() {
    let dir = repo().join("tests/oidc");
    if !dir.join("node_modules/oidc-provider").is_dir() {
        eprintln!("skipped: run `npm ci` in tests/oidc to install the OpenID provider");
        return;
    }
    let (idp_port, port) = (free_port(), free_port());
    let callback = format!("http://127.0.0.1:{port}/v1/auth/oidc/local/callback");
    let mut node = std::process::Command::new("node")
        .current_dir(&dir)
        .args(["provider.mjs", &idp_port.to_string(), &callback])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(node.stdout.take().unwrap());
    let mut ready = String::new();
    out.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    // Keep draining: the provider logs notices, and a closed pipe would kill it.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let _idp = Provider(node);
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let s = Server::start_on(
        port,
        &["serve"],
        &[(
            "DOPPEL__AUTH__OIDC",
            format!(
                "[{{name = \"local\", issuer = \"{issuer}\", client_id = \"doppel\", client_secret = \"doppel-test-secret\"}}]"
            ),
        )],
    );
    // A browser: follows redirects and keeps the provider's cookies.
    let browser = || {
        Client::builder()
            .cookie_store(true)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    };

    // The redirect carries PKCE (S256), state and nonce.
    let r = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(s.url("/v1/auth/oidc/local/start"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{issuer}/auth?")), "{location}");
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        "response_type=code",
    ] {
        assert!(location.contains(part), "{part} in {location}");
    }

    // The whole flow, as a browser runs it, ends in a doppel session.
    let b = browser();
    let r = b.get(s.url("/v1/auth/oidc/local/start")).send().unwrap();
    let final_url = r.url().to_string();
    let status = r.status().as_u16();
    let session: Value = r.json().unwrap();
    assert_eq!(status, 200, "{final_url}: {session}");
    assert_eq!(session["account"]["email"], "alice@idp.example.com");
    let token = session["token"].as_str().unwrap();
    let (status, me) = get(&s, "/v1/me", Some(token));
    assert_eq!((status, me["email"].as_str()), (200, Some("alice@idp.example.com")));
    // The callback URL cannot be replayed: its state was used up.
    let replay = http().get(&final_url).send().unwrap();
    assert_eq!(replay.status().as_u16(), 401);
    assert_eq!(replay.json::<Value>().unwrap()["code"], "unauthenticated");
    // Signing in again reaches the same account (linked by issuer + subject).
    let again: Value = browser()
        .get(s.url("/v1/auth/oidc/local/start"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(again["account"]["id"], session["account"]["id"]);
    // Forged or unknown states, provider errors and unknown providers are refused.
    let (status, _) = get(&s, "/v1/auth/oidc/local/callback?code=x&state=forged", None);
    assert_eq!(status, 401);
    let (status, body) = get(&s, "/v1/auth/oidc/local/callback?error=access_denied", None);
    assert_eq!(status, 401, "{body}");
    let (status, _) = get(&s, "/v1/auth/oidc/elsewhere/start", None);
    assert_eq!(status, 404);
    // An SSO account's e-mail cannot be taken over by a password sign-up.
    let (status, _) = post(
        &s,
        "/v1/auth/signup",
        None,
        &json!({"email": "alice@idp.example.com", "password": "correct horse battery"}),
    );
    assert_eq!(status, 409);
}

#[test]
fn a_second_factor_over_rest() {
    use doppel_platform::accounts::{base32_decode, totp_at};
    let s = Server::start(&["serve"], &[]);
    let session = account(&s, "mfa@example.com");
    // Turning the second factor on takes the password, not just a session.
    let (status, refused) = post(&s, "/v1/me/totp", Some(&session), &json!({}));
    assert_eq!(status, 400, "{refused}");
    let (status, enrol) = post(
        &s,
        "/v1/me/totp",
        Some(&session),
        &json!({"password": "correct horse battery"}),
    );
    assert_eq!(status, 200, "{enrol}");
    let secret = base32_decode(enrol["secret"].as_str().unwrap()).unwrap();
    let step = |offset: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        totp_at(&secret, now / 30 + offset)
    };
    let (status, codes) = post(&s, "/v1/me/totp/confirm", Some(&session), &json!({"code": step(0)}));
    assert_eq!(status, 200, "{codes}");
    assert_eq!(codes["recovery_codes"].as_array().unwrap().len(), 10);
    let login = |extra: Value| {
        let mut body = json!({"email": "mfa@example.com", "password": "correct horse battery"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        post(&s, "/v1/auth/login", None, &body)
    };
    let (status, body) = login(json!({}));
    assert_eq!((status, body["code"].as_str()), (401, Some("mfa_required")));
    let (status, _) = login(json!({"totp_code": step(0)}));
    assert_eq!(status, 401, "the confirming code cannot be replayed");
    let (status, body) = login(json!({"totp_code": step(1)}));
    assert_eq!(status, 200, "{body}");
    let (status, _) = login(json!({"recovery_code": codes["recovery_codes"][3]}));
    assert_eq!(status, 200);
    let (status, _) = login(json!({"recovery_code": codes["recovery_codes"][3]}));
    assert_eq!(status, 401, "recovery codes work once");
    // An API key cannot change the second factor.
    let key = api_key(&s, &session, &["datasets:read"]);
    let (status, _) = post(&s, "/v1/me/totp", Some(&key), &json!({}));
    assert_eq!(status, 403);
    let (_, me) = get(&s, "/v1/me", Some(&session));
    assert_eq!(me["totp_enabled"], true);
}
