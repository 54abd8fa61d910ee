"""Time to first byte and weight of the console's main pages, against the
real binary with Adult uploaded and one quickstart job done.

    DOPPEL_BIN=target/release/doppel python tests/browser/measure_pages.py

Prints, per page, the median time to first byte over 20 requests (after 3
warm-ups), the HTML size, and what a first visit downloads in all (HTML,
the stylesheet, the script and the icon, which are cached for a year after).
"""

import pathlib
import re
import statistics
import sys
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from doppel_server import ADULT, Server  # noqa: E402


def ttfb(url: str, cookie: str) -> tuple[float, bytes]:
    req = urllib.request.Request(url, headers={"cookie": cookie})
    start = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        r.read(1)
        first = time.perf_counter() - start
        body = b"x" + r.read()
    return first, body


def main() -> None:
    s = Server()
    try:
        _, session, key = s.account("measure@example.com", scopes=("datasets:read", "datasets:write", "jobs:run"))
        import uuid

        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="adult.csv"\r\n'
                "Content-Type: text/csv\r\n\r\n").encode() + ADULT.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(s.http + "/v1/datasets", data=body, method="POST",
                                     headers={"authorization": f"Bearer {key}",
                                              "content-type": f"multipart/form-data; boundary={boundary}"})
        import json

        with urllib.request.urlopen(req) as r:
            ds = json.loads(r.read())["id"]
        _, job = s.rest("POST", "/v1/jobs", {"pipeline": "quickstart", "dataset_id": ds}, token=key)
        job = s.wait_job(key, job["id"])["id"]
        cookie = f"doppel_session={session}"
        pages = ["/", "/datasets", f"/datasets/{ds}", f"/datasets/{ds}/synthesize", "/jobs", f"/jobs/{job}",
                 f"/jobs/{job}/report", "/market", "/selling", "/account", "/login"]
        print(f"| page | TTFB median (ms) | HTML (KiB) | first visit, all (KiB) |")
        print("|---|---|---|---|")
        for page in pages:
            times = []
            html = b""
            for i in range(23):
                t, html = ttfb(s.http + page, cookie if page != "/login" else "")
                if i >= 3:
                    times.append(t)
            assets = 0
            for ref in re.findall(rb'(?:href|src)="(/assets/[^"]+)"', html):
                _, a = ttfb(s.http + ref.decode(), cookie)
                assets += len(a)
            label = re.sub(r"(ds|job)_[0-9a-z]+", r"\1_…", page)
            print(f"| `{label}` | {statistics.median(times) * 1e3:.1f} | {len(html) / 1024:.1f} | {(len(html) + assets) / 1024:.1f} |")
    finally:
        s.stop()


if __name__ == "__main__":
    main()
