"""The Flight and Flight SQL server against real clients: pyarrow.flight and
the ADBC Flight SQL driver, talking to the real `doppel serve` binary."""

import json
import time

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.flight as fl
import pytest

from conftest import ADULT, BUYER_SCOPES, Server, opts

OWNER = "owner@example.com"


@pytest.fixture(scope="module")
def owner(server):
    return server.account(OWNER)


@pytest.fixture(scope="module")
def stranger(server):
    return server.account("stranger@example.com")


@pytest.fixture(scope="module")
def adult(server, owner):
    """Adult uploaded by the owner with DoPut; returns the PutResult metadata."""
    _, _, key = owner
    table = pacsv.read_csv(ADULT)
    writer, reader = server.client().do_put(
        fl.FlightDescriptor.for_path("datasets", "adult"), table.schema, options=opts(key)
    )
    # Several batches, as a notebook streaming a big frame would send them.
    writer.write_table(table, max_chunksize=5000)
    writer.done_writing()
    meta = json.loads(reader.read().to_pybytes())
    writer.close()
    return meta


def read_dataset(server, key, *path):
    c = server.client()
    info = c.get_flight_info(fl.FlightDescriptor.for_path(*path), opts(key))
    return info, c.do_get(info.endpoints[0].ticket, opts(key)).read_all()


def test_handshake_basic_password_and_api_key(server, owner):
    password, _, key = owner
    c = server.client()
    header = c.authenticate_basic_token(OWNER, password)
    assert header[0] == b"authorization" and header[1].startswith(b"Bearer dps_")
    c.list_flights(options=fl.FlightCallOptions(headers=[header]))
    header = c.authenticate_basic_token("token", key)
    assert header == (b"authorization", f"Bearer {key}".encode())
    with pytest.raises(fl.FlightUnauthenticatedError):
        c.authenticate_basic_token(OWNER, "wrong password")
    with pytest.raises(fl.FlightUnauthenticatedError):
        c.authenticate_basic_token("token", "dpl_notakey")
    with pytest.raises(fl.FlightUnauthenticatedError):
        list(c.list_flights())
    with pytest.raises(fl.FlightUnauthenticatedError):
        list(c.list_flights(options=opts("dpl_revoked_or_made_up")))


def test_do_put_adult_then_list_flights_shows_it_to_its_owner_only(server, owner, stranger, adult):
    assert adult["rows"] == 32561 and adult["name"] == "adult" and adult["version"] == 1
    assert adult["dataset_id"].startswith("ds_")
    mine = list(server.client().list_flights(options=opts(owner[2])))
    datasets = [f for f in mine if f.descriptor.path[0] == b"datasets"]
    assert [f.descriptor.path for f in datasets] == [[b"datasets", b"adult", b"1"]]
    assert datasets[0].total_records == 32561
    assert datasets[0].schema.names == pacsv.read_csv(ADULT).schema.names
    theirs = list(server.client().list_flights(options=opts(stranger[2])))
    assert theirs == []
    # The REST API sees the same dataset, profiled like an upload.
    status, d = server.rest("GET", f"/v1/datasets/{adult['dataset_id']}", token=owner[2])
    assert status == 200 and d["rows"] == 32561


def test_do_get_streams_the_dataset_back(server, owner, adult):
    info, table = read_dataset(server, owner[2], "datasets", "adult")
    assert table.num_rows == 32561 == info.total_records
    assert table.schema == info.schema
    source = pacsv.read_csv(ADULT)
    assert table.column("age").to_pylist() == source.column("age").to_pylist()
    assert table.column("workclass").to_pylist() == source.column("workclass").to_pylist()
    # By id, and by version, too.
    _, by_id = read_dataset(server, owner[2], "datasets", adult["dataset_id"])
    _, v1 = read_dataset(server, owner[2], "datasets", "adult", "1")
    assert by_id.equals(table) and v1.equals(table)
    # GetSchema agrees without reading data.
    schema = server.client().get_schema(fl.FlightDescriptor.for_path("datasets", "adult"), opts(owner[2])).schema
    assert schema == table.schema


def action(client, key, name, body):
    results = list(client.do_action(fl.Action(name, json.dumps(body).encode()), opts(key)))
    assert len(results) == 1
    return json.loads(results[0].body.to_pybytes())


@pytest.fixture(scope="module")
def finished_job(server, owner, adult):
    """The quickstart pipeline submitted on Adult by DoAction, polled to its end."""
    key = owner[2]
    c = server.client()
    job = action(c, key, "job.submit", {"pipeline": "quickstart", "dataset": "adult"})
    assert job["state"] in ("queued", "running") and job["dataset_id"] == adult["dataset_id"]
    deadline = time.time() + 600
    progress = []
    while time.time() < deadline:
        status = action(c, key, "job.status", {"id": job["id"]})
        progress.append(status["progress"])
        if status["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    return status, progress


def test_job_submitted_by_action_completes_and_its_output_streams_back(server, owner, finished_job):
    key = owner[2]
    c = server.client()
    actions = {a.type for a in c.list_actions(opts(key))}
    assert {"job.submit", "generators.list", "job.status", "job.cancel", "dataset.delete"} <= actions
    status, progress = finished_job
    assert status["state"] == "succeeded", status
    assert progress == sorted(progress), "progress never goes backwards"
    assert "synthetic.parquet" in status["outputs"]
    _, source = read_dataset(server, key, "datasets", "adult")
    info, twin = read_dataset(server, key, "jobs", status["id"])
    assert twin.num_rows == source.num_rows == info.total_records
    assert [(f.name, f.type) for f in twin.schema] == [(f.name, f.type) for f in source.schema]
    # The output is listed among the caller's flights, by job.
    paths = [f.descriptor.path for f in c.list_flights(options=opts(key))]
    assert [b"jobs", status["id"].encode(), b"synthetic.parquet"] in paths
    # PollFlightInfo is not in pyarrow; job.status above is its notebook twin.
    # Unknown output names are not found.
    with pytest.raises(KeyError, match="synthetic.parquet"):
        read_dataset(server, key, "jobs", status["id"], "nope.parquet")


def test_sql_group_by_through_adbc_matches_pandas(server, owner, adult, finished_job):
    key = owner[2]
    _, table = read_dataset(server, key, "datasets", "adult")
    df = table.to_pandas()
    expected = (
        df.groupby("workclass")
        .agg(n=("age", "size"), mean_age=("age", "mean"), hours=("hours_per_week", "sum"))
        .reset_index()
        .sort_values("workclass")
        .reset_index(drop=True)
    )
    with flight_sql.connect(
        server.grpc, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {key}"}
    ) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT workclass, COUNT(*) AS n, AVG(age) AS mean_age, SUM(hours_per_week) AS hours "
            "FROM adult GROUP BY workclass ORDER BY workclass"
        )
        got = cur.fetch_arrow_table().to_pandas()
        assert list(got["workclass"]) == list(expected["workclass"])
        assert list(got["n"]) == list(expected["n"])
        assert list(got["hours"]) == list(expected["hours"])
        assert (abs(got["mean_age"] - expected["mean_age"]) < 1e-9).all()

        # A prepared statement with a bound parameter (`?`, as JDBC sends it).
        cur.execute("SELECT COUNT(*) AS n FROM adult WHERE age > ? AND sex = ?", parameters=(40, "Female"))
        n = cur.fetch_arrow_table().column("n")[0].as_py()
        assert n == int(((df["age"] > 40) & (df["sex"] == "Female")).sum())

        # Catalog metadata that BI tools browse.
        schema = conn.adbc_get_table_schema("adult")
        assert schema.names == table.schema.names
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        assert objects[0]["catalog_name"] == "doppel"
        names = {
            (s["db_schema_name"], t["table_name"])
            for s in objects[0]["catalog_db_schemas"]
            for t in s["db_schema_tables"]
        }
        assert ("datasets", "adult") in names
        job_id = finished_job[0]["id"]
        assert ("outputs", job_id) in names
        cur.execute(f'SELECT COUNT(*) AS n FROM outputs."{job_id}"')
        assert cur.fetch_arrow_table().column("n")[0].as_py() == 32561

        info = conn.adbc_get_info()
        assert info["vendor_name"] == "doppel"

        # Writes are refused; bad SQL is the caller's mistake, not a server error.
        for bad, why in (
            ("DROP TABLE adult", "read-only"),
            ("INSERT INTO adult SELECT * FROM adult", "read-only"),
            ("SELEC 1", "SELEC"),
            ("SELECT nope FROM adult", "nope"),
            ("SELECT age / 0 FROM adult", "Divide by zero"),
        ):
            with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
                cur.execute(bad)
                cur.fetch_arrow_table()
            assert str(e.value).startswith("INVALID_ARGUMENT") and why in str(e.value), str(e.value)


def test_another_account_gets_the_mapped_errors(server, owner, stranger, adult):
    _, _, their_key = stranger
    c = server.client()
    # Someone else's dataset does not exist, as far as they can tell.
    with pytest.raises(KeyError):
        c.get_flight_info(fl.FlightDescriptor.for_path("datasets", "adult"), opts(their_key))
    with pytest.raises(KeyError):
        c.get_flight_info(fl.FlightDescriptor.for_path("datasets", adult["dataset_id"]), opts(their_key))
    # A ticket the owner got cannot be replayed by them.
    info = c.get_flight_info(fl.FlightDescriptor.for_path("datasets", "adult"), opts(owner[2]))
    with pytest.raises(fl.FlightUnauthorizedError):
        c.do_get(info.endpoints[0].ticket, opts(their_key)).read_all()
    # A tampered ticket is an invalid argument.
    raw = bytearray(info.endpoints[0].ticket.ticket)
    raw[-3] ^= 1
    with pytest.raises(pa.ArrowInvalid):
        c.do_get(fl.Ticket(bytes(raw)), opts(owner[2])).read_all()
    # Their SQL cannot see the owner's table.
    with flight_sql.connect(
        server.grpc, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {their_key}"}
    ) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="table 'doppel.datasets.adult' not found"):
            cur.execute("SELECT COUNT(*) FROM adult")
    # Actions on the owner's things are not found.
    with pytest.raises(KeyError):
        list(c.do_action(fl.Action("dataset.delete", json.dumps({"dataset": adult["dataset_id"]}).encode()), opts(their_key)))
    # A bad action body names the problem.
    with pytest.raises(pa.ArrowInvalid, match="id"):
        list(c.do_action(fl.Action("job.status", b"{}"), opts(their_key)))
    # A read-only key may not upload.
    status, login = server.rest("POST", "/v1/auth/login", {"email": "stranger@example.com", "password": stranger[0]})
    status, ro = server.rest("POST", "/v1/api-keys", {"name": "ro", "scopes": ["datasets:read"]}, token=login["token"])
    t = pa.table({"x": [1, 2, 3]})
    with pytest.raises(fl.FlightUnauthorizedError):
        w, _ = c.do_put(fl.FlightDescriptor.for_path("datasets", "x"), t.schema, options=opts(ro["secret"]))
        w.write_table(t)
        w.close()
    # No internal error was logged for any of this.
    assert "Flight request failed" not in server.server_log()


def test_dataset_versions_and_delete(server, owner):
    key = owner[2]
    c = server.client()
    for i in range(2):
        t = pa.table({"x": list(range(10 + i))})
        w, r = c.do_put(fl.FlightDescriptor.for_path("datasets", "small"), t.schema, options=opts(key))
        w.write_table(t)
        w.done_writing()
        meta = json.loads(r.read().to_pybytes())
        w.close()
        assert meta["version"] == i + 1 and meta["rows"] == 10 + i
    _, latest = read_dataset(server, key, "datasets", "small")
    _, first = read_dataset(server, key, "datasets", "small", "1")
    assert (latest.num_rows, first.num_rows) == (11, 10)
    with pytest.raises(KeyError, match="2 version"):
        read_dataset(server, key, "datasets", "small", "3")
    out = action(c, key, "dataset.delete", {"dataset": "small"})
    assert out["deleted"].startswith("ds_")
    _, now = read_dataset(server, key, "datasets", "small")
    assert now.num_rows == 10, "deleting the latest version leaves the earlier one"


def test_rate_limit_answers_unavailable():
    s = Server({"DOPPEL__LIMITS__REQUESTS_PER_SECOND": "1", "DOPPEL__LIMITS__BURST": "3"})
    try:
        c = s.client()
        codes = []
        for _ in range(10):
            try:
                list(c.list_flights(options=opts("dpl_whatever")))
            except fl.FlightUnauthenticatedError:
                codes.append("unauthenticated")
            except fl.FlightUnavailableError:
                codes.append("unavailable")
        # The burst lets the first few through to authentication; then the
        # budget is spent and the answer is "unavailable", as pyarrow expects.
        # A token that resolves to nobody spends the address's budget, so
        # a fresh junk token buys nothing.
        assert codes[:3] == ["unauthenticated"] * 3 and "unavailable" in codes[3:], codes
        time.sleep(4)  # the address's budget refills
        # Guessing passwords through Handshake draws on the address's budget:
        # a new password does not buy a new one (keyed by credentials, all
        # five guesses would reach the password check).
        guesses = []
        for i in range(5):
            try:
                c.authenticate_basic_token("owner@example.com", f"guess {i}")
            except fl.FlightUnauthenticatedError:
                guesses.append("unauthenticated")
            except fl.FlightUnavailableError:
                guesses.append("unavailable")
        assert guesses[:3] == ["unauthenticated"] * 3 and "unavailable" in guesses[3:], guesses
    finally:
        s.stop()


def test_a_bought_twin_streams_to_its_buyer_only(server, owner, stranger, finished_job):
    """Marketplace delivery over Flight: the buyer of a listing reads the twin
    with `["purchases", id]` once the purchase is paid; nobody else can."""
    import urllib.request

    status, _ = finished_job
    _, session, _ = owner  # sessions carry marketplace:sell
    code, listing = server.rest(
        "POST",
        "/v1/listings",
        {"job_id": status["id"], "title": "Adult twin", "category": "demographics",
         "price_minor": 1500, "currency": "EUR", "license": "CC-BY-4.0"},
        token=session,
    )
    assert code == 201, listing
    buyer = server.account("buyer@example.com", scopes=BUYER_SCOPES)
    code, purchase = server.rest("POST", f"/v1/listings/{listing['id']}/checkout", {}, token=buyer[2])
    assert code == 201, purchase
    path = ("purchases", purchase["id"])
    with pytest.raises(pa.ArrowInvalid, match="pending"):
        read_dataset(server, buyer[2], *path)
    # Pay on the provider's hosted page; its redirect lands on the return page.
    payment = purchase["checkout_url"].rsplit("/", 1)[1]
    req = urllib.request.Request(
        server.http + f"/v1/fake-pay/{payment}", data=b"action=pay", method="POST",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert b'data-status="completed"' in r.read()
    info, table = read_dataset(server, buyer[2], *path)
    assert table.num_rows == info.total_records == 32561
    _, twin = read_dataset(server, owner[2], "jobs", status["id"])
    assert table.equals(twin), "the buyer gets exactly the listed output"
    # Another account cannot see the purchase at all.
    with pytest.raises(KeyError):
        read_dataset(server, stranger[2], *path)

    # Flight SQL: the bought table is `purchases.<purchase id>`, for its buyer
    # only, and nothing else of the seller's comes with it.
    def sql(key, query):
        with flight_sql.connect(
            server.grpc, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {key}"}
        ) as conn, conn.cursor() as cur:
            cur.execute(query)
            return cur.fetch_arrow_table()

    bought = f"purchases.{purchase['id']}"
    got = sql(buyer[2], f"SELECT count(*) AS n, sum(age) AS age FROM {bought}")
    assert got["n"][0].as_py() == 32561
    assert got["age"][0].as_py() == pc.sum(twin["age"]).as_py()
    with pytest.raises(adbc_driver_manager.ProgrammingError, match="not found"):
        sql(stranger[2], f"SELECT count(*) FROM {bought}")
    with pytest.raises(adbc_driver_manager.ProgrammingError, match="not found"):
        sql(buyer[2], f"SELECT count(*) FROM outputs.{status['id']}")
    # A refund ends access, over Flight and Flight SQL, from the next call on.
    admin = server.account("admin@example.com")
    code, refunded = server.rest("POST", f"/v1/admin/purchases/{purchase['id']}/refund", token=admin[1])
    assert code == 200 and refunded["status"] == "refunded", refunded
    with pytest.raises(adbc_driver_manager.ProgrammingError, match="not found"):
        sql(buyer[2], f"SELECT count(*) FROM {bought}")
    with pytest.raises(pa.ArrowInvalid, match="refunded"):
        read_dataset(server, buyer[2], *path)


def rest_upload(server, token, data: bytes, filename: str, name: str | None = None):
    """A REST multipart upload with an optional `name` field: (status, body)."""
    import urllib.error
    import urllib.request
    import uuid

    boundary = uuid.uuid4().hex
    parts = b""
    if name is not None:
        parts += f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'.encode()
    parts += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(server.http + "/v1/datasets", data=parts, method="POST")
    req.add_header("authorization", f"Bearer {token}")
    req.add_header("content-type", f"multipart/form-data; boundary={boundary}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_rest_and_flight_share_one_name_rule(server, owner):
    """REST once accepted a dataset named `ds_x`, which Flight could then not
    address (it reads `ds_…` as an id), and names with `/`, which Flight
    refused: both doors now apply the application core's one rule."""
    key = owner[2]
    csv = b"x,y\n1,2\n3,4\n"
    for bad in ["ds_lookalike", "a/b", "   "]:
        status, body = rest_upload(server, key, csv, "t.csv", name=bad)
        assert (status, body["code"]) == (400, "invalid_request"), (bad, body)
        assert body["message"].startswith("name: "), body
    c = server.client()
    t = pa.table({"x": [1, 2]})
    for bad in ["ds_lookalike", "a/b"]:
        w, r = c.do_put(fl.FlightDescriptor.for_path("datasets", bad), t.schema, options=opts(key))
        with pytest.raises(pa.ArrowInvalid, match="name: "):
            # The refusal arrives with the end of the stream.
            w.write_table(t)
            w.done_writing()
            w.close()
    # An upload named after its file gets a name every door can address.
    status, body = rest_upload(server, key, csv, "exports/ds_march.csv")
    assert status == 201, body
    assert body["name"] == "upload march.csv", body
    _, table = read_dataset(server, key, "datasets", "upload march.csv")
    assert table.num_rows == 2
