"""A hostile user against `doppel serve` on (nearly) default settings: each
attack from the hardening issue, its refusal, and that the server is still up
with its memory bounded afterwards (the fixture checks the peak at the end).

Run with the binary built: `cd tests/security && python -m pytest -q`."""

import concurrent.futures
import io
import json
import secrets
import threading
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest

from conftest import BUYER_SCOPES, Server, adult_slice, request, upload


def opts(token):
    return fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


@pytest.fixture(scope="module")
def mallory(server):
    """An ordinary account with a small dataset of its own."""
    password, session, key = server.account("mallory@example.com", scopes=("datasets:read", "datasets:write", "jobs:run"))
    code, ds = upload(server, key, adult_slice(300), "adult.csv", "text/csv")
    assert code == 201, ds
    return {"password": password, "session": session, "key": key, "dataset": ds["id"]}


# ---------------------------------------------------------------- critical


def test_job_overrides_cannot_name_a_file(server, mallory):
    """`overrides` once let a job profile any file the server could read
    (other tenants' tables, the signing key), and answered missing paths
    with `cannot open /x: No such file or directory`."""
    key, ds = mallory["key"], mallory["dataset"]
    for override in [
        'source.path="/etc/passwd"',
        'source.path="/nonexistent/x"',
        'source.format="csv"',
        "source.has_header=false",
        'pii.anything="x"',
        'report.file="../../escape.pdf"',
    ]:
        code, body = server.rest(
            "POST", "/v1/jobs", {"pipeline": "pii-scan", "dataset_id": ds, "overrides": [override]}, token=key
        )
        assert (code, body["code"]) == (422, "not_allowed"), (override, body)
        assert body["message"].startswith("overrides[0]: "), body
        assert "No such file" not in body["message"] and "/etc/passwd" not in body["message"], body
    # Tuning keys still work, and a key after a good one is named by its place.
    code, body = server.rest(
        "POST",
        "/v1/jobs",
        {"pipeline": "quickstart", "dataset_id": ds, "overrides": ["synth.seed=3", 'source.path="/x"']},
        token=key,
    )
    assert (code, body["message"][:13]) == (422, "overrides[1]:"), body
    # A DP run's noise may not be made reproducible from a known seed.
    code, body = server.rest(
        "POST", "/v1/jobs", {"pipeline": "dp", "dataset_id": ds, "overrides": ["synth.reproducible_noise=true"]}, token=key
    )
    assert (code, body["code"]) == (422, "not_allowed"), body
    # The same over Flight's job.submit.
    client = server.client()
    action = fl.Action(
        "job.submit",
        json.dumps({"pipeline": "pii-scan", "dataset": ds, "overrides": ['source.path="/etc/passwd"']}).encode(),
    )
    with pytest.raises(pa.ArrowInvalid, match="cannot be set on a server job"):
        list(client.do_action(action, opts(key)))
    # Nothing was queued by any of it.
    _, jobs = server.rest("GET", "/v1/jobs", token=key)
    assert jobs["data"] == [], jobs


def test_generator_parameters_are_the_generators_schema_and_nothing_else(server, mallory):
    """`generator.params` reaches a stage's settings: only what the chosen
    generator declares settable by a job may pass, typed and bounded, over
    REST and Flight alike, and nothing is queued or charged by a refusal."""
    key, ds = mallory["key"], mallory["dataset"]
    _, before = server.rest("GET", f"/v1/datasets/{ds}/privacy", token=key)
    _, queued = server.rest("GET", "/v1/jobs", token=key)
    for name, params, field in [
        ("cart", {"path": "/etc/passwd"}, "generator.params.path"),
        ("cart", {"allow_copies": True}, "generator.params.allow_copies"),
        ("privsyn", {"reproducible_noise": True}, "generator.params.reproducible_noise"),
        ("privsyn", {"epsilon": 1e308}, "generator.params.epsilon"),
        ("privsyn", {"epsilon": {"$gt": 0}}, "generator.params.epsilon"),
        ("cart", {"rows": 10**12}, "generator.params.rows"),
        ("cart", {"x" * 5000: 1}, "generator.params"),
        ("cart", {f"k{i}": 1 for i in range(1000)}, "generator.params"),
        ("../../etc/passwd", {}, "generator"),
    ]:
        code, body = server.rest(
            "POST", "/v1/jobs", {"dataset_id": ds, "generator": {"name": name, "params": params}}, token=key
        )
        assert (code, body["code"]) == (400, "invalid_request"), (name, params, body)
        assert body["message"].startswith(field + ":"), body
        assert "/etc/passwd" not in body["message"] and "x" * 100 not in body["message"], body
    client = server.client()
    action = fl.Action(
        "job.submit",
        json.dumps({"dataset": ds, "generator": {"name": "cart", "params": {"path": "/etc/passwd"}}}).encode(),
    )
    with pytest.raises(pa.ArrowInvalid, match="generator.params.path"):
        list(client.do_action(action, opts(key)))
    _, jobs = server.rest("GET", "/v1/jobs", token=key)
    assert jobs["data"] == queued["data"], jobs
    _, ledger = server.rest("GET", f"/v1/datasets/{ds}/privacy", token=key)
    assert ledger["spent"] == before["spent"], ledger


def test_a_billion_rows_is_refused_before_it_is_queued(server, mallory):
    """`synth.rows=1000000000` was accepted; the worker died, and the retry
    killed the restarted server again."""
    code, body = server.rest(
        "POST",
        "/v1/jobs",
        {"pipeline": "quickstart", "dataset_id": mallory["dataset"], "overrides": ["synth.rows=1000000000"]},
        token=mallory["key"],
    )
    assert (code, body["code"]) == (422, "not_allowed"), body
    assert "limits.max_synthetic_rows" in body["message"], body
    code, body = server.rest(
        "POST",
        "/v1/jobs",
        {"pipeline": "quickstart", "dataset_id": mallory["dataset"], "overrides": ["synth.rows=99999999999"]},
        token=mallory["key"],
    )
    assert (code, body["code"]) == (422, "invalid_pipeline"), body


def test_reports_name_the_dataset_not_a_server_file(server, mallory):
    key, ds = mallory["key"], mallory["dataset"]
    code, job = server.rest("POST", "/v1/jobs", {"pipeline": "pii-scan", "dataset_id": ds}, token=key)
    assert code == 201, job
    job = server.wait_job(key, job["id"])
    assert job["state"] == "succeeded", job
    code, report = server.rest("GET", f"/v1/jobs/{job['id']}/report", token=key)
    assert code == 200, report
    assert report["input"]["path"] == f"dataset {ds}", report["input"]
    text = json.dumps(report) + json.dumps(job)
    for leak in ("/tmp", server.data.name, "input.parquet", "data.parquet"):
        assert leak not in text, leak


# ---------------------------------------------------------------- one small request, whole process


def nested_parquet_footer(levels: int) -> bytes:
    """A Parquet file whose footer (Thrift compact) describes a root, `levels`
    nested groups and one leaf: a few hundred KB that a recursive schema
    builder descends once per level."""

    def varint(v):
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            if v == 0:
                out.append(b)
                return bytes(out)
            out.append(b | 0x80)

    n = levels + 2
    meta = bytearray([0x15, 0x02, 0x19, 0xFC]) + varint(n)
    for i in range(n):
        meta += bytes([0x48, 0x01]) + b"g"
        if i + 1 < n:
            meta += bytes([0x15, 0x02])
        meta.append(0)
    meta += bytes([0x16, 0x02, 0x00])
    return b"PAR1" + bytes(meta) + len(meta).to_bytes(4, "little") + b"PAR1"


def dictionary_bomb() -> bytes:
    """One 100 KB string referenced by 100,000 rows: tens of KB on disk, 10 GB
    once decoded."""
    values = pa.array(["x" * 100_000])
    column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(100_000, dtype=np.int32)), values)
    buf = io.BytesIO()
    pq.write_table(pa.table({"v": column}), buf, compression="zstd")
    return buf.getvalue()


def xlsx_bomb() -> bytes:
    """A workbook whose one sheet is 4.06 GiB of spaces (past the default 4 GiB
    decoded limit), deflated to 4 MiB."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as f:
            chunk = b" " * (64 << 20)
            for _ in range(65):
                f.write(chunk)
    return buf.getvalue()


def test_hostile_uploads_are_refused_and_the_server_stays_small(server, mallory):
    key = mallory["key"]
    before = server.peak_rss_mib()
    cases = [
        ("deep.ndjson", b'{"a": ' + b"[" * 10_000 + b"1" + b"]" * 10_000 + b"}\n", "max_depth"),
        # A JSON array spread over lines: the depth scan covers the whole document.
        ("deep.json", b'[\n{"a": ' + b"[" * 10_000 + b"1" + b"]" * 10_000 + b"}\n]", "max_depth"),
        # An .xlsx whose sheet inflates past 4 GiB declares it: refused unopened.
        ("bomb.xlsx", xlsx_bomb(), "decoded_max_mb"),
        ("nested.parquet", nested_parquet_footer(20_000), "max_depth"),
        ("commas.csv", b"a,b\n1,2\n" + b"," * 25_000_000 + b"\n", "max_columns"),
    ]
    bomb = dictionary_bomb()
    assert len(bomb) < 200_000, len(bomb)
    cases.append(("bomb.parquet", bomb, ""))
    wide = (",".join(f"c{i}" for i in range(20_000)) + "\n").encode()
    wide += b"".join((",".join(str(i) for i in range(20_000)) + "\n").encode() for _ in range(50))
    cases += [(f"wide{i}.csv", wide, "max_columns") for i in range(4)]
    for name, data, limit in cases:
        code, body = upload(server, key, data, name)
        assert (code, body["code"]) == (422, "limit_exceeded"), (name, body)
        assert limit in body["message"], (name, body)
        assert "/tmp" not in body["message"], body
        print(f"{name} ({len(data):,} bytes): {code} {body['code']}: {body['message']}")
        assert server.healthy(), f"the server died on {name}"
    after = server.peak_rss_mib()
    # The uploads were read by child processes: the server's own peak barely moves.
    assert after - before < 256, f"peak RSS grew from {before:.0f} to {after:.0f} MiB"
    _, datasets = server.rest("GET", "/v1/datasets", token=key)
    assert len(datasets["data"]) == 1, "nothing hostile was stored"


def test_flight_sql_statements_are_bounded(server, mallory):
    key = mallory["key"]

    def run(sql, parameters=None):
        with flight_sql.connect(
            server.grpc, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {key}"}
        ) as conn, conn.cursor() as cur:
            cur.execute(sql, parameters=parameters)
            return cur.fetch_arrow_table()

    # 80,000 × 100 KB through array_agg: refused before it is allocated.
    with pytest.raises(adbc_driver_manager.Error, match="limits.sql_memory_mb"):
        run("SELECT cardinality(array_agg(repeat('x', 100000))) FROM generate_series(1, 80000)")
    for sql in ["SELECT repeat('x', 2000000000)", "SELECT range(1, 20000000000)", "SELECT lpad('x', 2000000000)"]:
        with pytest.raises(adbc_driver_manager.Error, match="limits.sql_memory_mb"):
            run(sql)
    # A sort larger than the statement's pool is an error, not a swollen server.
    with pytest.raises(adbc_driver_manager.Error, match="(?i)resources exhausted|memory"):
        run("SELECT v FROM (SELECT repeat(CAST(value AS VARCHAR), 500) AS v FROM generate_series(1, 3000000)) ORDER BY v")
    # Endless statements end at the deadline, on their own threads: REST
    # keeps answering meanwhile (the latency ratio is printed, not asserted).
    started = time.perf_counter()
    with pytest.raises(adbc_driver_manager.Error, match="limits.sql_timeout_seconds"):
        run("SELECT count(*) FROM generate_series(1, 20000000000)")
    assert time.perf_counter() - started < 60
    quiet = []
    for _ in range(20):
        t = time.perf_counter()
        assert server.healthy()
        quiet.append(time.perf_counter() - t)
    errors = []

    def endless():
        try:
            run("SELECT count(*) FROM generate_series(1, 20000000000)")
        except adbc_driver_manager.Error as e:
            errors.append(str(e))

    threads = [threading.Thread(target=endless) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1)
    busy = []
    for _ in range(20):
        t = time.perf_counter()
        assert server.healthy()
        busy.append(time.perf_counter() - t)
    for t in threads:
        t.join()
    assert len(errors) == 8 and all("limits.sql_timeout_seconds" in e for e in errors), errors
    print(f"/healthz p90 quiet {sorted(quiet)[17] * 1e3:.1f} ms, under 8 endless statements "
          f"{sorted(busy)[17] * 1e3:.1f} ms (ratio {sorted(busy)[17] / sorted(quiet)[17]:.1f})")
    # A prepared statement's parameters are read up to their limit, not whole
    # (8 MiB: ADBC itself sends no message over 16 MiB).
    with pytest.raises(adbc_driver_manager.Error, match="limits.sql_parameters_kb"):
        run("SELECT length(?) AS n", parameters=("x" * (8 << 20),))
    assert run("SELECT length(?) AS n", parameters=("x" * 1000,))["n"][0].as_py() == 1000


def test_concurrent_wrong_passwords_wait_for_the_hasher(server):
    """400 concurrent sign-ins with real argon2id (19 MiB each) once took the
    server past 6 GiB: they now wait for one of a few hashers (or get 429)."""
    server.account("victim@example.com")
    body = json.dumps({"email": "victim@example.com", "password": "not the password at all"}).encode()

    def attempt(_):
        return request(server, "POST", "/v1/auth/login", body, {"content-type": "application/json"}, timeout=120)[0]

    with concurrent.futures.ThreadPoolExecutor(400) as pool:
        statuses = list(pool.map(attempt, range(400)))
    assert set(statuses) <= {401, 429}, sorted(set(statuses))
    print(f"400 concurrent wrong passwords: {statuses.count(401)} × 401, {statuses.count(429)} × 429, "
          f"server peak RSS {server.peak_rss_mib():.0f} MiB")
    assert server.healthy()


# ---------------------------------------------------------------- medium and low


def test_second_factor_is_judged_with_the_password_and_locks_out(server):
    import base64
    import hashlib
    import hmac
    import struct

    password, session, _ = server.account("totp@example.com")
    code, body = server.rest("POST", "/v1/me/totp", {}, token=session)
    assert (code, body["code"]) == (400, "invalid_request") and "password" in body["message"], body
    code, enrol = server.rest("POST", "/v1/me/totp", {"password": password}, token=session)
    assert code == 200, enrol
    secret = base64.b32decode(enrol["secret"] + "=" * (-len(enrol["secret"]) % 8))

    def totp(offset=0):
        counter = int(time.time()) // 30 + offset
        digest = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
        o = digest[-1] & 0x0F
        return f"{(struct.unpack('>I', digest[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"

    code, confirmed = server.rest("POST", "/v1/me/totp/confirm", {"code": totp()}, token=session)
    assert code == 200, confirmed
    # Re-enrolment takes a code from the current factor, not just a session.
    code, body = server.rest("POST", "/v1/me/totp", {"password": password}, token=session)
    assert code == 400 and "code" in body["message"], body

    def login(pw, **extra):
        return server.rest("POST", "/v1/auth/login", {"email": "totp@example.com", "password": pw, **extra})

    # Without a code, right and wrong passwords get the same answer.
    assert login(password)[1]["code"] == login("wrong password!!")[1]["code"] == "mfa_required"
    # 25 wrong codes, then the right one: locked (429), not signed in.
    wrong = "000000" if totp(1) != "000000" else "111111"
    statuses = [login(password, totp_code=wrong)[0] for _ in range(25)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
    code, body = login(password, totp_code=totp(1))
    assert (code, body["code"]) == (429, "too_many_attempts"), body


def test_one_idempotency_key_makes_one_dataset(server):
    _, _, key = server.account("idem@example.com")
    data = adult_slice(50)

    def post(_):
        return upload(server, key, data, "adult.csv", "text/csv", key="same-key")

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(post, range(10)))
    codes = [c for c, _ in results]
    assert set(codes) <= {201, 409} and 201 in codes, codes
    assert len({b["id"] for c, b in results if c == 201}) == 1, results
    _, datasets = server.rest("GET", "/v1/datasets", token=key)
    assert len(datasets["data"]) == 1, datasets
    # Afterwards the key replays the one answer.
    code, again = upload(server, key, data, "adult.csv", "text/csv", key="same-key")
    assert code == 201 and again["id"] == datasets["data"][0]["id"]


def test_a_narrow_key_cannot_mint_revoke_or_buy(server):
    _, session, _ = server.account("keys@example.com")
    code, narrow = server.rest(
        "POST", "/v1/api-keys", {"name": "ro", "scopes": ["datasets:read"], "expires_in_days": 1}, token=session
    )
    assert code == 201, narrow
    code, strong = server.rest(
        "POST", "/v1/api-keys", {"name": "rw", "scopes": ["datasets:read", "datasets:write"]}, token=session
    )
    assert code == 201, strong
    ro = narrow["secret"]
    # Wider scopes: refused. Same scopes: allowed, but never outliving it.
    code, _ = server.rest("POST", "/v1/api-keys", {"name": "x", "scopes": ["datasets:write"]}, token=ro)
    assert code == 403
    code, child = server.rest("POST", "/v1/api-keys", {"name": "x", "scopes": ["datasets:read"]}, token=ro)
    assert code == 201 and child["key"]["expires_at"] <= narrow["key"]["expires_at"], child
    # Revoking a stronger key: refused; it still works.
    code, _ = server.rest("DELETE", f"/v1/api-keys/{strong['key']['id']}", token=ro)
    assert code == 403
    assert server.rest("GET", "/v1/datasets", token=strong["secret"])[0] == 200
    # Buying needs marketplace:buy.
    code, body = server.rest("POST", "/v1/listings/lst_anything/checkout", {}, token=ro)
    assert code == 403 and "marketplace:buy" in body["message"], body


def test_listings_hide_the_seller_and_refunds_end_links(server):
    seller = server.account("seller@example.com")
    code, ds = upload(server, seller[2], adult_slice(2000), "adult.csv", "text/csv")
    assert code == 201, ds
    code, job = server.rest("POST", "/v1/jobs", {"pipeline": "quickstart", "dataset_id": ds["id"]}, token=seller[2])
    assert code == 201, job
    job = server.wait_job(seller[2], job["id"])
    assert job["state"] == "succeeded", job
    code, listing = server.rest(
        "POST",
        "/v1/listings",
        {"job_id": job["id"], "title": "Census slice", "category": "demographics",
         "price_minor": 900, "currency": "EUR", "license": "CC-BY-4.0"},
        token=seller[1],
    )
    assert code == 201, listing
    assert listing["job_id"] == job["id"], "the seller sees their own ids"
    buyer = server.account("shopper@example.com", scopes=BUYER_SCOPES)
    _, found = server.rest("GET", f"/v1/listings/{listing['id']}", token=buyer[2])
    _, searched = server.rest("GET", "/v1/listings", token=buyer[2])
    for view in [found, *searched["data"]]:
        assert "seller_id" not in view and "job_id" not in view, view
    # The return URL may not lead anywhere the operator did not allow.
    code, body = server.rest(
        "POST", f"/v1/listings/{listing['id']}/checkout", {"return_url": "https://evil.example/steal"}, token=buyer[2]
    )
    assert code == 400 and "return_url" in body["message"], body
    code, purchase = server.rest("POST", f"/v1/listings/{listing['id']}/checkout", {}, token=buyer[2])
    assert code == 201, purchase
    payment = purchase["checkout_url"].rsplit("/", 1)[1]
    code, _ = request(server, "POST", f"/v1/fake-pay/{payment}", b"action=pay",
                      {"content-type": "application/x-www-form-urlencoded"})
    assert code in (200, 303)
    # The buyer's browser would follow the redirect to the return page; ask
    # for the provider's word directly instead.
    code, paid = server.rest("POST", f"/v1/purchases/{purchase['id']}/verify", token=buyer[2])
    assert code == 200 and paid["status"] == "completed", paid
    code, link = server.rest("GET", f"/v1/purchases/{purchase['id']}/download", token=buyer[2])
    assert code == 200, link
    with urllib.request.urlopen(link["url"], timeout=60) as r:
        assert r.status == 200 and r.read(4) == b"PAR1"
    admin = server.account("admin@example.com")
    code, refunded = server.rest("POST", f"/v1/admin/purchases/{purchase['id']}/refund", token=admin[1])
    assert code == 200 and refunded["status"] == "refunded", refunded
    # The link issued before the refund no longer downloads anything.
    path = link["url"].removeprefix(server.http)
    code, body = request(server, "GET", path)
    assert code == 403 and "refunded" in body["message"], body


def test_request_bodies_are_bounded(server):
    """Every route once read 512 MiB bodies into memory, unauthenticated ones
    too. Now a declared length over the route's limit is answered 413 before
    a byte of the body is read (so the client sends the headers only)."""
    import socket
    import urllib.parse

    u = urllib.parse.urlparse(server.http)

    def declare(path, length, token=None):
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {length}\r\n")
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        with socket.create_connection((u.hostname, u.port), timeout=30) as s:
            s.sendall((head + "\r\n{").encode())
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        return status, json.loads(answer.split(b"\r\n\r\n", 1)[1])

    _, session, _ = server.account("bodies@example.com")
    for path, token in [("/v1/auth/login", None), ("/v1/auth/signup", None), ("/v1/webhooks/fake", None),
                        ("/v1/jobs", session), ("/v1/listings", session)]:
        code, body = declare(path, 2 << 20, token)
        assert (code, body["code"]) == (413, "too_large"), (path, body)
    # The upload route takes files up to the upload limit, no more.
    code, body = declare("/v1/datasets", 600 << 20, session)
    assert (code, body["code"]) == (413, "too_large"), body
    # A body without a declared length cannot be bounded: refused.
    code, body = request(server, "POST", "/v1/auth/login", b"{}",
                         {"content-type": "application/json", "transfer-encoding": "chunked"})
    assert code in (400, 411), body
    assert server.healthy()


def test_console_inputs_are_bounded(server):
    """The web console's doors take the same bounds before reading: a form
    declaring more than `limits.body_max_kb` (signed in or not), an upload
    declaring more than the upload limit, a body of undeclared length, a
    forged form, an oversized query string and a cookie flood are refused,
    nothing is created, and the server stays up."""
    import socket
    import urllib.parse

    u = urllib.parse.urlparse(server.http)

    def raw(request_head: str) -> tuple[int, bytes]:
        with socket.create_connection((u.hostname, u.port), timeout=30) as s:
            s.sendall(request_head.encode())
            answer = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
                if b"</html>" in answer or (b"\r\n\r\n" in answer and b"content-length: 0" in answer.lower()):
                    break
        return int(answer.split(b" ", 2)[1]), answer

    _, session, _ = server.account("console-bodies@example.com")
    cookie = f"Cookie: doppel_session={session}\r\n"
    form = "Content-Type: application/x-www-form-urlencoded\r\n"
    for path, who in [("/login", ""), ("/signup", ""), ("/account/keys", cookie), ("/logout", cookie)]:
        code, answer = raw(f"POST {path} HTTP/1.1\r\nHost: x\r\n{form}{who}Content-Length: {2 << 20}\r\n\r\n_csrf=")
        assert code == 413, (path, answer[:300])
    # The upload route: up to the upload limit (512 MiB here), no more.
    code, answer = raw(f"POST /datasets HTTP/1.1\r\nHost: x\r\n{cookie}x-csrf-token: t\r\n"
                       f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {600 << 20}\r\n\r\n--b")
    assert code == 413, answer[:300]
    # Undeclared length: cannot be bounded before reading, refused.
    code, answer = raw(f"POST /login HTTP/1.1\r\nHost: x\r\n{form}Transfer-Encoding: chunked\r\n\r\n5\r\nemail\r\n0\r\n\r\n")
    assert code == 413, answer[:300]
    # A forged form (no token) changes nothing.
    code, _ = request(server, "POST", "/account/keys", b"name=stolen&scopes=datasets%3Aread",
                      {"content-type": "application/x-www-form-urlencoded", "cookie": f"doppel_session={session}"})
    assert code == 403
    _, keys = server.rest("GET", "/v1/api-keys", token=session)
    assert not [k for k in keys if k["name"] == "stolen"], keys
    # A 60 KB query string and a flood of junk cookies: answered, not fatal.
    code, _ = request(server, "GET", "/market?q=" + "x" * 60_000, b"", {"cookie": f"doppel_session={session}"})
    assert code < 500, code
    code, _ = request(server, "GET", "/datasets", b"", {"cookie": "; ".join(f"c{i}=v" for i in range(2000))})
    assert code < 500, code
    assert server.healthy()


def test_nested_documents_are_refused_by_depth(server, mallory):
    """A pipeline (TOML) or a JSON body nested 100,000 deep is refused by the
    parser's depth limit, not by the stack."""
    headers = {"authorization": f"Bearer {mallory['key']}"}
    toml = ("version = 1\na = " + "[" * 100_000 + "1" + "]" * 100_000 + "\n").encode()
    code, body = request(server, "POST", "/v1/pipelines/validate", toml, {**headers, "content-type": "text/plain"})
    assert code == 200 and not body["valid"] and "recursion" in body["problems"][0]["message"], body
    deep = b'{"pipeline": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    code, body = request(server, "POST", "/v1/jobs", deep, {**headers, "content-type": "application/json"})
    assert code == 400, body
    assert server.healthy()


# ---------------------------------------------------------------- servers of their own


def test_rate_limits_follow_the_account_not_the_header():
    s = Server(env={"DOPPEL__LIMITS__REQUESTS_PER_SECOND": "2", "DOPPEL__LIMITS__BURST": "10"})
    try:
        _, session, key = s.account("busy@example.com")
        # Junk tokens resolve to nobody: they share the address's budget.
        codes = [request(s, "GET", "/v1/me", headers={"authorization": f"Bearer dpl_{secrets.token_hex(16)}"})[0]
                 for _ in range(30)]
        assert 429 in codes, codes
        time.sleep(6)
        # Re-spacing a real key does not make it another budget, nor does
        # switching to another credential of the same account.
        codes = [request(s, "GET", "/v1/me", headers={"authorization": "Bearer " + " " * (i % 5) + key})[0]
                 for i in range(15)]
        codes += [request(s, "GET", "/v1/me", headers={"authorization": f"Bearer {session}"})[0] for _ in range(15)]
        assert codes.count(429) >= 15, codes
        assert s.healthy()
    finally:
        s.stop()


def test_oidc_discovery_cannot_point_the_server_elsewhere():
    """A discovery document that names another host's token or JWKS endpoint
    (where the client secret would be posted, or keys trusted from) is
    refused, and so is an oversized one."""
    import http.server

    class Discovery(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            issuer = f"http://127.0.0.1:{self.server.server_port}"
            if self.path.startswith("/big/"):
                body = b'{"padding": "' + b"x" * (2 << 20) + b'"}'
            else:
                body = json.dumps({
                    "issuer": issuer + ("/evil" if self.path.startswith("/evil/") else ""),
                    "authorization_endpoint": issuer + "/auth",
                    "token_endpoint": "http://attacker.example/token",
                    "jwks_uri": issuer + "/jwks",
                }).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    idp = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Discovery)
    threading.Thread(target=idp.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{idp.server_port}"
    providers = (
        f'[{{name = "evil", issuer = "{base}/evil", client_id = "c", client_secret = "s"}}, '
        f'{{name = "big", issuer = "{base}/big", client_id = "c", client_secret = "s"}}]'
    )
    s = Server(env={"DOPPEL__AUTH__OIDC": providers})
    try:
        code, body = request(s, "GET", "/v1/auth/oidc/evil/start")
        assert (code, body["code"]) == (503, "unavailable"), body
        assert "token_endpoint" in body["message"] and "attacker" not in body["message"], body
        code, body = request(s, "GET", "/v1/auth/oidc/big/start")
        assert (code, body["code"]) == (503, "unavailable") and "KiB" in body["message"], body
        assert s.healthy()
    finally:
        s.stop()
        idp.shutdown()
