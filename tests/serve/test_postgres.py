"""The same gateway traffic on SQLite and PostgreSQL gives the same export (needs RLUF_TEST_PG_URL)."""

import os
import uuid

import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from rluf.serve import export

from .conftest import FixedClock, counting_ids, make_config
from .test_export import fill

PG_URL = os.environ.get("RLUF_TEST_PG_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="RLUF_TEST_PG_URL is unset: run `eval \"$(bash scripts/ci_services.sh)\"`"),
]


@pytest.fixture
def pg_url():
    """A fresh schema per test (other suites may share the database), dropped afterwards."""
    schema = f"rluf_serve_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def test_sqlite_and_postgres_give_the_same_export(make_client, tmp_path, pg_url):
    exported = {}
    for name, url in (("sqlite", f"sqlite:///{tmp_path / 'gw.db'}"), ("postgres", pg_url)):
        client = make_client(cfg=make_config(url), clock_us=FixedClock(), new_id=counting_ids())
        fill(client)
        export(url, tmp_path / name)
        exported[name] = {t: pq.read_table(tmp_path / name / "logs" / f"{t}.parquet")
                          for t in ("messages", "reactions", "users")}
    for table in ("messages", "reactions", "users"):
        assert exported["sqlite"][table].num_rows > 0
        assert exported["sqlite"][table].equals(exported["postgres"][table]), table

