"""Start the real `doppel serve` binary (REST + Flight) for the Python suites
(tests/flight, tests/browser).

The binary is $DOPPEL_BIN, else the debug build under $CARGO_TARGET_DIR
(default ~/.cache/doppel/target), else ./target/debug/doppel.
"""

import json
import os
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


ROOT = pathlib.Path(__file__).resolve().parents[1]
# An API key that may buy on the marketplace.
BUYER_SCOPES = ("datasets:read", "datasets:write", "jobs:run", "marketplace:buy")
ADULT = ROOT / "data" / "adult.csv"


def doppel_bin() -> str:
    if os.environ.get("DOPPEL_BIN"):
        return os.environ["DOPPEL_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache/doppel/target"))
    for candidate in (pathlib.Path(target) / "debug/doppel", ROOT / "target/debug/doppel"):
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("build the binary first (cargo build) or set DOPPEL_BIN")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A running `doppel serve` with its REST and Flight addresses."""

    def __init__(self, env: dict | None = None, memory_limit: int | None = None, port: int | None = None):
        """`memory_limit`: cap the server's data segment (heap and private
        mappings) at this many bytes, soft and hard, so that exhausting
        memory kills it — a test then fails instead of a machine slowing.
        `port`: serve HTTP there (a test that registers callback URLs with
        an identity provider needs to know it first)."""
        self.data = tempfile.TemporaryDirectory()
        self.http = f"http://127.0.0.1:{port or free_port()}"
        self.grpc_port = free_port()
        self.grpc = f"grpc://127.0.0.1:{self.grpc_port}"
        full_env = dict(os.environ)
        full_env.update(
            {
                "DOPPEL__AUTH__INSECURE_FAST_HASHING": "true",
                "DOPPEL__JOBS__POLL_MS": "50",
                "DOPPEL__LIMITS__REQUESTS_PER_SECOND": "1000",
                "DOPPEL__LIMITS__BURST": "1000",
                "DOPPEL__LIMITS__UPLOAD_MAX_MB": "4096",
                # The marketplace test refunds a purchase as an operator.
                "DOPPEL__AUTH__ADMIN_EMAILS": '["admin@example.com"]',
                # The browser suite sends a buyer back to this same server
                # under another name (another origin): the operator allows it.
                "DOPPEL__PAYMENTS__RETURN_ORIGINS": f'["{self.http.replace("127.0.0.1", "localhost")}"]',
            }
        )
        full_env.update(env or {})
        self.log = open(pathlib.Path(self.data.name) / "server.log", "wb")

        def limit_memory():
            if memory_limit:
                import resource

                resource.setrlimit(resource.RLIMIT_DATA, (memory_limit, memory_limit))

        self.proc = subprocess.Popen(
            [
                doppel_bin(),
                "serve",
                "--data-dir",
                self.data.name,
                "--http-addr",
                self.http.removeprefix("http://"),
                "--flight-addr",
                f"127.0.0.1:{self.grpc_port}",
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=full_env,
            preexec_fn=limit_memory if memory_limit else None,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.http + "/healthz", timeout=1)
                with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("doppel serve did not start; see " + str(pathlib.Path(self.data.name) / "server.log"))

    def rest(self, method: str, path: str, body=None, token: str | None = None):
        req = urllib.request.Request(self.http + path, method=method)
        req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        data = json.dumps(body).encode() if body is not None else None
        try:
            with urllib.request.urlopen(req, data=data, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def account(self, email: str, scopes=("datasets:read", "datasets:write", "jobs:run")):
        """Sign up; return (password, session token, API key)."""
        password = "correct horse battery staple"
        status, _ = self.rest("POST", "/v1/auth/signup", {"email": email, "password": password})
        assert status == 201, status
        status, login = self.rest("POST", "/v1/auth/login", {"email": email, "password": password})
        assert status == 200, login
        status, key = self.rest(
            "POST", "/v1/api-keys", {"name": "flight", "scopes": list(scopes)}, token=login["token"]
        )
        assert status == 201, key
        return password, login["token"], key["secret"]

    def client(self):
        import pyarrow.flight as fl  # only the Flight suite needs pyarrow

        return fl.connect(self.grpc)

    def wait_job(self, token: str, job_id: str, timeout: float = 900) -> dict:
        """Poll a job until it ends; return it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            _, job = self.rest("GET", f"/v1/jobs/{job_id}", token=token)
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s")

    def peak_rss_mib(self) -> float:
        """The server process's peak resident memory so far (VmHWM)."""
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    def healthy(self) -> bool:
        """The process is alive and /healthz answers."""
        if self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.http + "/healthz", timeout=30) as r:
                return r.status == 200
        except OSError:
            return False

    def server_log(self) -> str:
        self.log.flush()
        return (pathlib.Path(self.data.name) / "server.log").read_text(errors="replace")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        self.data.cleanup()
