"""Hash draws: the native and the portable (md5) draw keep a fraction q of the keys; md5 draws are engine-free."""

import hashlib

import ibis
import numpy as np
import pyarrow as pa
import pytest

from rluf.signals import sampling


@pytest.fixture(scope="module")
def keys():
    con = ibis.duckdb.connect()
    ids = [f"m{i:06d}" for i in range(20_000)]
    return con, ibis.memtable(pa.table({"message_id": ids})), ids


@pytest.mark.parametrize("how", ["native", "md5"])
@pytest.mark.parametrize("q", [0.05, 0.5, 0.9])
def test_draw_keeps_fraction_q(keys, how, q):
    con, t, _ = keys
    kept = con.to_pyarrow(t.filter(sampling.draw(t.message_id, "train0", how) < sampling.threshold(q, how)).count())
    # binomial sd at n = 20,000 is at most 0.0036: 5 sd
    assert abs(kept.as_py() / 20_000 - q) < 0.018


def test_md5_draw_is_python_md5(keys):
    """DuckDB's draw equals hashlib's MD5 of 'salt:key': any engine with a correct MD5 draws the same rows."""
    con, t, _ = keys
    res = con.to_pyarrow(t.select("message_id", d=sampling.draw(t.message_id, "eval3", "md5")).limit(50))
    got = res.column("d").to_pylist()
    assert got == [hashlib.md5(f"eval3:{k}".encode()).hexdigest() for k in res.column("message_id").to_pylist()]
    # the string threshold orders as the number it encodes: u = first 12 hex digits / 16^12
    u = np.array([int(h[:12], 16) / 16**12 for h in got])
    for q in (0.0, 0.3, 0.77, 1.0):
        thr = sampling.threshold(q, "md5")
        assert [h < thr for h in got] == list(u < q)


def test_threshold_bounds():
    assert sampling.threshold(0.0, "md5") == "0" * 12
    assert sampling.threshold(1.0, "md5") > "f" * 32
    assert sampling.threshold(0.25, "md5") == "400000000000"
    assert sampling.threshold(0.25, "native") == 0.25
