"""Small shared helpers: devices, seeds, atomic files, fingerprints, run directories, JSON lines."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rluf.errors import SchemaError

log = logging.getLogger("rluf")


def select_device(device: str = "auto") -> str:
    """'auto' picks cuda, then mps, then cpu. Nothing in rluf requires a GPU."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def length_batches(lengths: list[int], batch_size: int, longest_first: bool = True) -> list[np.ndarray]:
    """Index batches of rows with similar length, so padding costs little (longest first by default, so memory
    peaks at the start). Stable: rows of equal length keep their order."""
    order = np.argsort(-np.asarray(lengths) if longest_first else np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def bf16_supported(device: str) -> bool:
    import torch

    return device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; set it straight back
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode every other output gets
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default, sort_keys=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def iter_json_lines(lines: Iterable[str], path: str | Path,
                    bad_json: str = "{path} line {lineno}: not JSON ({e})") -> Iterator[tuple[int, Any]]:
    """(line number from 1, parsed object) for each non-blank line of a JSON-lines file at `path`; a line
    that is not JSON raises SchemaError with `bad_json` formatted with path, lineno and the decode error e."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise SchemaError(bad_json.format(path=path, lineno=lineno, e=e)) from None
        yield lineno, obj


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if hasattr(o, "isoformat"):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class JsonlLogger:
    """Append one JSON object per line (metrics.jsonl); flushed each write so a kill loses nothing logged."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (configs, file stats)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=_json_default).encode())
    return h.hexdigest()[:16]


def file_fingerprint(paths: list[str | Path]) -> str:
    """Fingerprint of files by name, size and mtime (cheap; enough to detect changed inputs)."""
    stats = []
    for p in sorted(Path(x) for x in paths):
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                st = f.stat()
                stats.append([str(f), st.st_size, int(st.st_mtime)])
    return fingerprint(stats)


def run_name(stage: str, config_name: str, seed: int) -> str:
    return f"{stage}__{config_name}__s{seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB. On Linux, VmHWM of its own address space: getrusage's
    ru_maxrss is carried over from the parent through fork and exec, so a child started by a bigger parent
    would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def chat_key(context: list[dict]) -> str:
    """A hashable identity of a chat: its messages, every key, in order (for caching what is rendered from it)."""
    return json.dumps(context, ensure_ascii=False, sort_keys=True)
