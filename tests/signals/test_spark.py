"""The same curate pipeline on Spark local[2] through Ibis' PySpark backend gives the same files as on DuckDB
(skipped without pyspark or Java)."""

import math
import shutil

import pyarrow.parquet as pq
import pytest

from rluf.signals import curate, signals
from rluf.signals.engine import logs_from_tables, resolve_logs_dir

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (optional: pip install pyspark)")


@pytest.mark.slow
def test_stage1_on_spark_matches_duckdb(synth_dir, tmp_path):
    if shutil.which("java") is None:
        pytest.skip("Java is not installed; Spark needs a JVM")
    import ibis
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("rluf-test").config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.shuffle.partitions", "4")  # 200 by default: mostly empty tasks on small logs
             .getOrCreate())
    try:
        # Every filter on (the synthetic logs plant reaction spammers and a burst of new accounts), user-disjoint
        # splits and capped validation/test. sample.hash md5: Spark's HASH is not DuckDB's, MD5 is the same on
        # both, so both draw the same rows and put the same users in the same splits.
        cfg = {"sample": {"hash": "md5", "eval_max_negatives": 20}, "split": {"user_disjoint": True}}
        # The logs as tables of the Spark catalog, where a company's logs would live, not as files rluf reads.
        con = ibis.pyspark.connect(spark)
        logs_dir = resolve_logs_dir(synth_dir)
        msg_file = logs_dir / "messages.parquet"
        for kind in ("messages", "reactions", "users"):
            spark.read.parquet(str(logs_dir / f"{kind}.parquet")).createOrReplaceTempView(f"prod_{kind}")
        logs = logs_from_tables(con.table("prod_messages"), con.table("prod_reactions"), con.table("prod_users"))
        spark_man = curate(logs, tmp_path / "spark", cfg)
        duck_man = curate(synth_dir, tmp_path / "duck", cfg)
        # stage 1's other half: the signal ranking (filters on) on the same tables
        spark_sig, duck_sig = signals(logs, min_events=5), signals(synth_dir, min_events=5)
    finally:
        spark.stop()
    assert spark_sig["input"]["backend"] == "pyspark"
    spark_sig.pop("input"), duck_sig.pop("input")
    assert _same(spark_sig, duck_sig)
    assert [r["signal"] for r in spark_sig["signals"]] == [r["signal"] for r in duck_sig["signals"]]
    assert spark_man["input"] == {"backend": "pyspark", "messages": pq.read_metadata(msg_file).num_rows,
                                  "tables": {k: f"prod_{k}" for k in ("messages", "reactions", "users")}}
    for key in ("filters", "split", "resample", "output"):
        assert spark_man["counts"][key] == duck_man["counts"][key], key
    plan = duck_man["counts"]["resample"]["plan"]
    assert plan["neg_keep"] < 1 and plan["test_neg_keep"] < 1  # the draws did drop rows
    for split in ("train", "validation", "test"):
        cols = ["message_id", "prompt", "completion", "label", "weight", "user_id"]
        s = pq.read_table(tmp_path / "spark" / f"{split}.parquet", columns=cols).to_pylist()
        d = pq.read_table(tmp_path / "duck" / f"{split}.parquet", columns=cols).to_pylist()
        assert s and sorted(s, key=lambda r: r["message_id"]) == sorted(d, key=lambda r: r["message_id"])


def _same(a, b) -> bool:
    """Equal reports, floats to 1e-9 (the engines sum in different orders)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    return a == b
