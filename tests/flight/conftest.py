"""Fixtures of the Flight suite: one `doppel serve` per test module (see
tests/doppel_server.py)."""

import pathlib
import sys

import pyarrow.flight as fl
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from doppel_server import ADULT, BUYER_SCOPES, ROOT, Server, free_port  # noqa: E402,F401


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


def opts(token: str) -> fl.FlightCallOptions:
    return fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
