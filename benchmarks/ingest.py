"""Benchmark `rluf ingest`: rows per second on canonical Parquet and JSON lines, and peak memory.

Usage: .venv/bin/python benchmarks/ingest.py [--messages 1000000] [--jsonl-messages 200000]
With --write, writes benchmarks/results/ingest.json (wall and CPU time; the load average at the start says
how busy the machine was). Synthetic canonical logs (conversations of 4 messages, one reaction
per 20 assistant messages) are generated with numpy/pyarrow first; only ingest itself is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rluf.ingest import ingest
from rluf.schema import MESSAGES, REACTIONS
from rluf.utils import peak_rss_mb, write_json

RESULTS = Path(__file__).parent / "results" / "ingest.json"


def make_logs(n: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """n messages in conversations of 4 turns (user, assistant, user, assistant) and their reactions."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    conv = i // 4
    t0 = np.datetime64("2025-01-01T00:00:00", "us")
    created = t0 + (conv * 60_000_000 + (i % 4) * 5_000_000).astype("timedelta64[us]")
    ids = pa.array(np.char.add("m", i.astype(str)))
    role = np.where(i % 2 == 0, "user", "assistant")
    texts = np.array(
        [
            "What is the capital of France?",
            "Paris is the capital of France.",
            "Thanks! And Spain?",
            "Madrid. Bye! Sending love!",
        ]
    )
    messages = pa.table(
        {
            "conversation_id": pa.array(np.char.add("c", conv.astype(str))),
            "message_id": ids,
            "parent_id": pa.array([None if k % 4 == 0 else f"m{k - 1}" for k in range(n)], pa.string()),
            "turn_index": pa.array((i % 4).astype(np.int32)),
            "role": pa.array(role),
            "text": pa.array(texts[i % 4]),
            "created_at": pa.array(created).cast(pa.timestamp("us", tz="UTC")),
            "user_id": pa.array(np.char.add("u", (conv % 20_000).astype(str))),
            "model_id": pa.array(np.where(i % 2 == 1, "baseline", None)),
        },
        schema=MESSAGES,
    )
    assistant = i[(i % 2 == 1)]
    picked = assistant[rng.random(assistant.size) < 0.05]
    reactions = pa.table(
        {
            "message_id": pa.array(np.char.add("m", picked.astype(str))),
            "type": pa.array(np.full(picked.size, "love")),
            "user_id": pa.array(np.char.add("u", ((picked // 4) % 20_000).astype(str))),
            "created_at": pa.array(
                t0 + ((picked // 4) * 60_000_000 + 30_000_000).astype("timedelta64[us]")
            ).cast(pa.timestamp("us", tz="UTC")),
            "time_is_click": pa.nulls(picked.size, pa.bool_()),
        },
        schema=REACTIONS,
    )
    return messages, reactions


def _time(sources: list[Path], out: Path) -> dict:
    t, cpu = time.perf_counter(), time.process_time()
    report = ingest(sources, out, now=datetime(2026, 1, 1, tzinfo=UTC))
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    rows = report["records_read"]
    quarantined = sum(v["quarantined"] for v in report["tables"].values())
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        # CPU seconds of this process (all threads): a figure less distorted by other jobs on the cores
        "cpu_seconds": round(cpu, 3),
        "rows_per_cpu_s": round(rows / cpu),
        "quarantined": quarantined,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--jsonl-messages", type=int, default=200_000)
    ap.add_argument("--write", action="store_true", help=f"write the results to {RESULTS}")
    args = ap.parse_args()
    res: dict = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
        "python": platform.python_version(),
    }
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        m, r = make_logs(args.messages)
        (d / "logs").mkdir()
        pq.write_table(m, d / "logs" / "messages.parquet")
        pq.write_table(r, d / "logs" / "reactions.parquet")
        res["parquet"] = _time([d / "logs"], d / "out_parquet")
        m, r = make_logs(args.jsonl_messages)
        (d / "jl").mkdir()
        for name, t in (("messages", m), ("reactions", r)):
            rows = t.to_pylist()
            with (d / "jl" / f"{name}.jsonl").open("w") as f:
                for row in rows:
                    row["created_at"] = row["created_at"].isoformat()
                    f.write(json.dumps(row) + "\n")
        res["jsonl"] = _time([d / "jl"], d / "out_jsonl")
    res["ingest_rows_per_s"] = res["parquet"]["rows_per_s"]
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    for fmt in ("parquet", "jsonl"):
        x = res[fmt]
        print(
            f"{fmt:8s} {x['rows']:>9,d} rows in {x['seconds']:7.2f}s = {x['rows_per_s']:>9,d} rows/s "
            f"({x['rows_per_cpu_s']:,d} rows per CPU-second; quarantined {x['quarantined']})"
        )
    print(f"peak RSS {res['peak_rss_mb']} MB")
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        write_json(RESULTS, res)


if __name__ == "__main__":
    main()
