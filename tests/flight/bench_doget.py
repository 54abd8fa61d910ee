"""DoGet throughput: doppel's Flight server vs pyarrow's own Flight server.

Both serve the same >= 1 GB table to a pyarrow client on loopback; the
script prints GB/s for each and the ratio. pyarrow's server holds the table in
memory (the best case for it); doppel reads it from object storage on every
DoGet, as it does in production (a dataset's Arrow IPC serving copy, whose
stored record-batch messages it forwards without decoding).

    cargo build --release -p doppel-cli
    DOPPEL_BIN=$CARGO_TARGET_DIR/release/doppel .venv-ci/bin/python tests/flight/bench_doget.py [--gb 1.1] [--runs 3]
"""

import argparse
import json
import statistics
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as fl

sys.path.insert(0, __import__("os").path.dirname(__file__))
from conftest import Server, free_port, opts  # noqa: E402


def make_table(gb: float, seed: int = 7) -> pa.Table:
    """Ten numeric columns and one short string column (~96 bytes a row)."""
    rng = np.random.default_rng(seed)
    rows = int(gb * 1e9 / 96)
    cols = {}
    for i in range(5):
        cols[f"i{i}"] = rng.integers(0, 1_000_000, rows, dtype=np.int64)
    for i in range(5):
        cols[f"f{i}"] = rng.standard_normal(rows)
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"])
    cols["s"] = pa.array(words[rng.integers(0, len(words), rows)])
    return pa.table(cols)


class InMemory(fl.FlightServerBase):
    def __init__(self, location, table):
        super().__init__(location)
        self.table = table

    def do_get(self, context, ticket):
        return fl.RecordBatchStream(self.table)


def timed_get(client, ticket, options) -> tuple[float, int]:
    t0 = time.perf_counter()
    table = client.do_get(ticket, options).read_all()
    return time.perf_counter() - t0, table.num_rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.1)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    table = make_table(args.gb)
    # Serve in ~64k-row batches on both sides (doppel streams Parquet in 64k-row batches).
    table = pa.Table.from_batches(table.to_batches(max_chunksize=65536))
    size = table.nbytes
    print(f"table: {table.num_rows:,} rows x {table.num_columns} columns, {size / 1e9:.2f} GB in Arrow")

    port = free_port()
    ref = InMemory(f"grpc://127.0.0.1:{port}", table)
    threading.Thread(target=ref.serve, daemon=True).start()
    c = fl.connect(f"grpc://127.0.0.1:{port}")
    ref_times = []
    for _ in range(args.runs):
        secs, rows = timed_get(c, fl.Ticket(b"t"), fl.FlightCallOptions())
        assert rows == table.num_rows
        ref_times.append(secs)
    ref.shutdown()

    s = Server({"DOPPEL__LIMITS__UPLOAD_MAX_MB": "1000000"})
    try:
        _, _, key = s.account("bench@example.com")
        c = s.client()
        t0 = time.perf_counter()
        w, r = c.do_put(fl.FlightDescriptor.for_path("datasets", "bench"), table.schema, options=opts(key))
        w.write_table(table)
        w.done_writing()
        meta = json.loads(r.read().to_pybytes())
        w.close()
        put_secs = time.perf_counter() - t0
        assert meta["rows"] == table.num_rows
        info = c.get_flight_info(fl.FlightDescriptor.for_path("datasets", "bench"), opts(key))
        ours = []
        for _ in range(args.runs):
            secs, rows = timed_get(c, info.endpoints[0].ticket, opts(key))
            assert rows == table.num_rows
            ours.append(secs)
    finally:
        s.stop()

    best_ref, best_ours = min(ref_times), min(ours)
    med_ref, med_ours = statistics.median(ref_times), statistics.median(ours)
    print(f"pyarrow Flight server (in memory): best {size / best_ref / 1e9:.2f} GB/s, median {size / med_ref / 1e9:.2f} GB/s  runs {['%.2fs' % t for t in ref_times]}")
    print(f"doppel Flight server (stored):     best {size / best_ours / 1e9:.2f} GB/s, median {size / med_ours / 1e9:.2f} GB/s  runs {['%.2fs' % t for t in ours]}")
    print(f"doppel DoPut (store + profile):    {size / put_secs / 1e9:.2f} GB/s ({put_secs:.1f} s)")
    print(f"ratio doppel / pyarrow DoGet: best {best_ref / best_ours:.2f}x, median {med_ref / med_ours:.2f}x")


if __name__ == "__main__":
    main()
