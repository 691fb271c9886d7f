"""`rluf ingest`: logs in any supported format -> canonical Parquet + quarantine + counts (docs/ingest.md).

setup (config, sources) -> read and row-check each file -> cross-file checks -> write. Nothing is dropped
silently: every record read is accepted or quarantined with a reason, per table read = accepted +
quarantined, and files that cannot be read at all are listed with their reason.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rluf.errors import ConfigError, DataError
from rluf.ingest.config import IngestConfig
from rluf.ingest.readers import CANONICAL, FORMATS, KINDS, FileProblem, Source, data_format, read_source
from rluf.ingest.validate import check_rows, check_tables, connect, empty_checked, orphans, split
from rluf.jsonsafe import printable
from rluf.schema import TABLES, check_table
from rluf.utils import atomic_write_bytes, write_json

log = logging.getLogger(__name__)

OUTPUTS = ("messages.parquet", "reactions.parquet", "users.parquet", "quarantine.jsonl", "ingest.json")


def expand_sources(sources: list[str | Path]) -> tuple[list[Path], list[str]]:
    """Files to read (folders walked in name order) and files skipped in folders (unknown extension,
    hidden, or rluf's own ingest outputs)."""
    files, skipped = [], []
    for s in sources:
        p = Path(s)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                rel = f.relative_to(p)
                if any(part.startswith((".", "_")) for part in rel.parts) or f.name in OUTPUTS[3:]:
                    skipped.append(str(f))
                elif data_format(f):
                    files.append(f)
                else:
                    skipped.append(str(f))
        else:
            raise DataError(f"source {p} does not exist; pass files or folders of logs (docs/ingest.md)")
    return files, skipped


def _where(unit: str, row: int | None) -> dict[str, int | None]:
    return {"line": row if unit == "line" else None, "row": row if unit != "line" else None}


def _raw_json(rows: list[dict], limit: int) -> list[str]:
    def default(o: Any) -> Any:
        return o.decode("utf-8", errors="replace") if isinstance(o, bytes) else str(o)

    return [json.dumps(r, default=default, ensure_ascii=False)[:limit] for r in rows]


def _quarantine_rows(
    bad: pa.Table, raw: pa.Table | None, name: str, sources: list[Source], limit: int
) -> list[dict]:
    """quarantine.jsonl entries for the rows of `bad` (check_rows or check_tables output)."""
    raws = bad["_raw"].to_pylist()
    missing = [i for i, r in enumerate(raws) if r is None]
    if missing:
        if raw is not None:  # rebuild from the file's own values (typed values of bad fields are null)
            cols = [c for c in raw.column_names if not c.startswith("_")]
            rows = raw.select(cols).take(pa.array(bad["_i"].take(missing))).to_pylist()
        else:
            rows = bad.select(TABLES[name].names).take(missing).to_pylist()
        for i, text in zip(missing, _raw_json(rows, limit), strict=True):
            raws[i] = text
    out = []
    for (s, row, reason, fld, detail), text in zip(
        zip(*(bad[c].to_pylist() for c in ("_src", "_row", "_reason", "_field", "_detail")), strict=True),
        raws,
        strict=True,
    ):
        src = sources[s]
        out.append(
            {
                "source": str(src.path),
                **_where(src.unit, row),
                "table": name,
                "reason": reason,
                "field": fld,
                "detail": detail,
                "raw": text[:limit] if text else text,
            }
        )
    return out


def _strict_error(entry: dict) -> DataError:
    where = f"line {entry['line']}" if entry["line"] is not None else f"row {entry['row']}"
    what = f"{entry['table']} record" + (f", field '{entry['field']}'" if entry["field"] else "")
    return DataError(
        printable(
            f"{entry['source']} {where}: {what}: {entry['detail']} (reason {entry['reason']}). "
            "Fix the record, or run without --strict to quarantine it and go on."
        )
    )


def _first(bad: pa.Table) -> pa.Table:
    idx = pc.sort_indices(bad, [("_src", "ascending"), ("_row", "ascending"), ("_sub", "ascending")])
    return bad.take(idx[:1])


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _check_options(fmt: str, table: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {list(FORMATS)}")
    if table not in ("auto", *KINDS):
        raise ConfigError(f"--table {table!r} is not one of {['auto', *KINDS]}")


def ingest(
    sources: list[str | Path],
    out_dir: str | Path,
    strict: bool = False,
    fmt: str = "auto",
    now: datetime | None = None,
    *,
    table: str = "auto",
    config: IngestConfig | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Read `sources` (files or folders), write canonical Parquet, quarantine.jsonl and ingest.json to
    `out_dir`, and return the counts written to ingest.json.

    strict: raise DataError at the first bad record (file, line or row, field) and write nothing.
    fmt: container format for every file ("auto": by extension). table: what the records are ("auto":
    by field names; see rluf.ingest.readers.KINDS). now: the reference time of the future-timestamp check.
    """
    cfg = config or IngestConfig()
    _check_options(fmt, table)
    t0 = time.perf_counter()
    now = now or datetime.now(UTC)
    paths, skipped = expand_sources(sources)
    run = _Run(
        cfg,
        strict,
        now + timedelta(seconds=cfg.future_tolerance_s),
        [Source(p, i) for i, p in enumerate(paths)],
    )
    for src in run.srcs:
        if on_file is not None:
            on_file(src.path)
        run.read_file(src, fmt, table)
    accepted = run.cross_checks()
    order = {str(s.path): s.index for s in run.srcs}
    run.quarantine.sort(key=lambda q: (order.get(q["source"], -1), q["line"] or q["row"] or 0))
    return _write_outputs(Path(out_dir), accepted, run, skipped, now, t0)


@dataclass
class _Run:
    """State of one ingest run: what passed the row checks so far, the quarantine, per-file reports."""

    cfg: IngestConfig
    strict: bool
    latest: datetime
    srcs: list[Source]
    con: Any = field(default_factory=connect)
    read: Counter = field(default_factory=Counter)
    passed: dict[str, list[pa.Table]] = field(default_factory=lambda: {name: [] for name in CANONICAL})
    quarantine: list[dict] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    orphans: int = 0  # accepted messages whose parent_id is not an accepted message

    def _bad(self, bad: pa.Table, raw: pa.Table | None, name: str) -> None:
        if bad.num_rows and self.strict:
            first = _quarantine_rows(_first(bad), raw, name, self.srcs, self.cfg.raw_max_chars)[0]
            raise _strict_error(first)
        self.quarantine += _quarantine_rows(bad, raw, name, self.srcs, self.cfg.raw_max_chars)

    def read_file(self, src: Source, fmt: str, table: str) -> None:
        """Read one file and run the row checks on its records."""
        try:
            raws = read_source(src, self.cfg, fmt, table)
        except FileProblem as e:
            if self.strict:
                raise DataError(printable(f"{e.detail} (reason {e.reason})")) from None
            entry = {"path": str(src.path), "format": src.fmt or None, "table": None, "records": 0}
            self.files.append({**entry, "problem": e.reason, "detail": e.detail})
            self.quarantine.append(
                {
                    "source": str(src.path),
                    "line": None,
                    "row": None,
                    "table": None,
                    "reason": e.reason,
                    "field": None,
                    "detail": e.detail,
                    "raw": None,
                }
            )
            return
        counts = {}
        for name, raw in raws.items():
            checked = check_rows(
                self.con, raw, name, max_text_bytes=self.cfg.max_text_bytes, latest=self.latest
            )
            good, bad = split(checked)
            self._bad(bad, raw, name)
            self.passed[name].append(good.drop_columns(["_i"]))
            self.read[name] += raw.num_rows
            counts[name] = raw.num_rows
        notes = {"notes": src.notes} if src.notes else {}
        self.files.append(
            {
                "path": str(src.path),
                "format": src.fmt,
                "table": src.kind,
                "records": counts,
                "problem": None,
                **notes,
            }
        )

    def cross_checks(self) -> dict[str, pa.Table]:
        """Duplicates and reaction targets across all files; returns the accepted canonical tables."""
        ok = {
            name: pa.concat_tables(ts) if ts else empty_checked(name).drop_columns(["_i"])
            for name, ts in self.passed.items()
        }
        final = check_tables(self.con, ok, [(str(s.path), s.unit) for s in self.srcs])
        self.orphans = orphans(final["messages"])
        accepted = {}
        for name in CANONICAL:
            good, bad = split(final[name])
            self._bad(bad, None, name)
            accepted[name] = check_table(good, name, source="ingest")
        return accepted


def _write_outputs(
    out_dir: Path, accepted: dict[str, pa.Table], run: _Run, skipped: list[str], now: datetime, t0: float
) -> dict[str, Any]:
    quarantine, read, files, cfg = run.quarantine, run.read, run.files, run.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, t in accepted.items():
        _write_parquet(t, out_dir / f"{name}.parquet")
    atomic_write_bytes(
        out_dir / "quarantine.jsonl",
        # backslashreplace: a file name that is not UTF-8 holds surrogates; written as their escapes
        "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in quarantine).encode(
            "utf-8", "backslashreplace"
        ),
    )
    tables = {}
    for name in CANONICAL:
        reasons = Counter(q["reason"] for q in quarantine if q["table"] == name)
        tables[name] = {
            "read": read[name],
            "accepted": accepted[name].num_rows,
            "quarantined": sum(reasons.values()),
            "reasons": dict(reasons.most_common()),
        }
        if tables[name]["read"] != tables[name]["accepted"] + tables[name]["quarantined"]:
            raise RuntimeError(f"ingest bug: counts of {name} do not reconcile: {tables[name]}")
    notes: Counter = Counter()
    for f in files:
        notes.update(f.get("notes", {}))
    seconds = time.perf_counter() - t0
    total = sum(read.values())
    report = {
        "out": str(out_dir),
        "now": now.isoformat(),
        "strict": run.strict,
        "tables": tables,
        "files": files,
        "file_problems": sum(1 for f in files if f["problem"]),
        "skipped_files": skipped,
        "notes": dict(notes),
        "orphan_messages": run.orphans,
        "records_read": total,
        "seconds": round(seconds, 3),
        "rows_per_s": round(total / seconds, 1) if seconds > 0 else None,
        "config": cfg.model_dump(mode="json"),
    }
    write_json(out_dir / "ingest.json", report)
    log.info(
        "ingested %d records from %d files in %.2fs: %s",
        total,
        len(files),
        seconds,
        {n: (t["accepted"], t["quarantined"]) for n, t in tables.items()},
    )
    return report
