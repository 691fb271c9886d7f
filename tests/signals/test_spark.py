"""The same curate pipeline on Spark local[2] through Ibis' PySpark backend (skipped without pyspark/Java)."""

import shutil

import pyarrow.parquet as pq
import pytest

from rluf.signals import curate

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (optional: pip install pyspark)")


@pytest.mark.slow
def test_curate_on_spark_matches_duckdb(ten_days, tmp_path):
    if shutil.which("java") is None:
        pytest.skip("Java is not installed; Spark needs a JVM")
    import ibis
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("rluf-test").config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    try:
        # Train rows are drawn by hashes, and Spark's HASH is not DuckDB's: compare the deterministic parts
        # (split counts, and the validation/test rows with their labels and contexts).
        # spam stays on (min_repeats 2 flags nobody here: no user repeats a text) to run its two passes on Spark
        cfg = {"filters": {"rate": {"enabled": False}, "burst": {"enabled": False}, "spam": {"min_repeats": 2}},
               "context": {"k": 2}}
        spark_man = curate(ten_days, tmp_path / "spark", cfg, con=ibis.pyspark.connect(spark))
        duck_man = curate(ten_days, tmp_path / "duck", cfg)
    finally:
        spark.stop()
    assert spark_man["counts"]["split"] == duck_man["counts"]["split"]
    for split in ("validation", "test"):
        cols = ["message_id", "prompt", "completion", "label"]
        s = pq.read_table(tmp_path / "spark" / f"{split}.parquet", columns=cols).to_pylist()
        d = pq.read_table(tmp_path / "duck" / f"{split}.parquet", columns=cols).to_pylist()
        assert sorted(s, key=lambda r: r["message_id"]) == sorted(d, key=lambda r: r["message_id"])
