"""Fixtures of the hostile suite: the real `doppel serve` binary under a
memory limit, and the helpers an attacker would write.

The server runs with its data segment capped (`MEMORY_LIMIT`): an attack that
exhausts memory kills it, and the suite fails on the next `healthy()` check
instead of passing slowly. Settings are the defaults except where a test needs
to reach a limit quickly (noted where they are set).
"""

import http.client
import json
import pathlib
import sys
import urllib.parse
import uuid

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from doppel_server import ADULT, BUYER_SCOPES, Server  # noqa: E402,F401

# Heap and private mappings of the server process.
MEMORY_LIMIT = 4 << 30
# Peak resident memory the server may reach over the whole suite, quickstart
# jobs on a slice of Adult included.
PEAK_RSS_MIB = 2048


@pytest.fixture(scope="module")
def server():
    s = Server(
        env={
            # Real password hashing: the argon2 test needs its real cost.
            "DOPPEL__AUTH__INSECURE_FAST_HASHING": "false",
            # The request budget is tested on its own server (`limited`).
            "DOPPEL__LIMITS__REQUESTS_PER_SECOND": "100000",
            "DOPPEL__LIMITS__BURST": "100000",
            "DOPPEL__LIMITS__UPLOAD_MAX_MB": "512",
            # Short enough that runaway statements end within the suite.
            "DOPPEL__LIMITS__SQL_TIMEOUT_SECONDS": "5",
            # The upload reader's own cap, well under the server's.
            "DOPPEL__LIMITS__INGEST_MEMORY_MB": "1024",
            "DOPPEL__AUTH__ADMIN_EMAILS": '["admin@example.com"]',
        },
        memory_limit=MEMORY_LIMIT,
    )
    yield s
    alive = s.healthy()
    peak = s.peak_rss_mib() if s.proc.poll() is None else float("nan")
    log = s.server_log()
    s.stop()
    assert alive, "the server died during the suite:\n" + log[-4000:]
    assert peak < PEAK_RSS_MIB, f"peak RSS {peak:.0f} MiB"


def request(server, method, path, body=b"", headers=None, timeout=60):
    """One raw HTTP request: (status, parsed JSON or text)."""
    u = urllib.parse.urlparse(server.http)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
    finally:
        c.close()
    try:
        return r.status, json.loads(data or b"null")
    except ValueError:
        return r.status, data.decode(errors="replace")


def upload(server, token, data: bytes, filename: str, content_type="application/octet-stream", key=None):
    """A REST multipart upload: (status, body)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": f"multipart/form-data; boundary={boundary}",
        "content-length": str(len(body)),
    }
    if key:
        headers["idempotency-key"] = key
    return request(server, "POST", "/v1/datasets", body, headers, timeout=600)


def adult_slice(rows: int) -> bytes:
    lines = ADULT.read_bytes().splitlines(keepends=True)
    return b"".join(lines[: rows + 1])
