"""Reading reward-model data and turning (context, response) into token ids.

Three inputs, each checked at the boundary by a `check_*`/`read_*` function that returns converted data:
- curated folders from `rluf curate`: train/validation/test.parquet in TRL's unpaired preference form
  (`prompt` messages, `completion` = [one assistant message], bool `label`, float `weight`) + manifest.json;
- preference pairs in TRL's form (`prompt`, `chosen`, `rejected` message lists), e.g. SIMDIR/pairs/*.parquet;
- Anthropic HH-RLHF jsonl(.gz) (`chosen`/`rejected` whole dialogues "\\n\\nHuman: ...\\n\\nAssistant: ...").
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rluf.errors import DataError, SchemaError
from rluf.utils import read_json

log = logging.getLogger(__name__)

Chat = list[dict[str, str]]
SPLITS = ("train", "validation", "test")
# A chat template for tokenizers that have none (e.g. BERT encoders): "role: content" lines.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


# -- curated folders ---------------------------------------------------------------------------------
@dataclass
class LoveSplit:
    """One curated split, converted: contexts, response texts, labels (0/1), sampling weights, ids."""

    contexts: list[Chat]
    responses: list[str]
    labels: np.ndarray  # (N,) float 0/1
    weights: np.ndarray  # (N,) float > 0
    message_ids: list[str]
    path: Path

    def __len__(self) -> int:
        return len(self.responses)

    def head(self, n: int) -> LoveSplit:
        return LoveSplit(self.contexts[:n], self.responses[:n], self.labels[:n], self.weights[:n],
                         self.message_ids[:n], self.path)

    def take(self, idx: np.ndarray, weights: np.ndarray | None = None) -> LoveSplit:
        """The rows at `idx` (in that order), with `weights` (full length) in place of the split's own."""
        w = self.weights if weights is None else weights
        return LoveSplit([self.contexts[i] for i in idx], [self.responses[i] for i in idx], self.labels[idx],
                         w[idx], [self.message_ids[i] for i in idx], self.path)


def _messages(value, where: str) -> Chat:
    """Convert a stored message list (list of {role, content}) to plain dicts, or raise naming `where`."""
    if value is None or isinstance(value, str):
        raise SchemaError(f"{where}: expected a list of {{role, content}} messages, got {type(value).__name__}")
    out = []
    for m in list(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise SchemaError(f"{where}: every message needs 'role' and 'content', got {m!r:.80}")
        out.append({"role": str(m["role"]), "content": str(m["content"] or "")})
    return out


def _response(value, where: str) -> str:
    msgs = _messages(value, where)
    if not msgs or msgs[-1]["role"] != "assistant":
        raise SchemaError(f"{where}: expected a list ending with one assistant message, got roles "
                          f"{[m['role'] for m in msgs]}; write completions as [{{'role': 'assistant', ...}}]")
    return msgs[-1]["content"]


def check_love_frame(df: pd.DataFrame, path: Path) -> LoveSplit:
    """Validate a curated split (columns prompt, completion, label; optional weight, message_id)."""
    missing = [c for c in ("prompt", "completion", "label") if c not in df.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {missing}; a curated split has prompt, completion, label "
                          f"(got {list(df.columns)}). Produce it with `rluf curate`.")
    if len(df) == 0:
        raise DataError(f"{path}: the split is empty")
    contexts = [_messages(v, f"{path} row {i} column prompt") for i, v in enumerate(df["prompt"])]
    responses = [_response(v, f"{path} row {i} column completion") for i, v in enumerate(df["completion"])]
    if df["label"].isna().any():
        row = int(np.flatnonzero(df["label"].isna().to_numpy())[0])
        raise SchemaError(f"{path} row {row}: label is null; labels must be true/false")
    labels = df["label"].astype(bool).to_numpy().astype(np.float64)
    weights = df["weight"].to_numpy(dtype=np.float64) if "weight" in df.columns else np.ones(len(df))
    bad = ~np.isfinite(weights) | (weights <= 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise SchemaError(f"{path} row {row}: weight = {float(weights[row])}; sampling weights must be finite and > 0")
    ids = df["message_id"].astype(str).tolist() if "message_id" in df.columns else [str(i) for i in range(len(df))]
    return LoveSplit(contexts, responses, labels, weights, ids, path)


def read_curated(folder: str | Path) -> tuple[dict[str, LoveSplit], dict]:
    """Read train/validation/test.parquet and manifest.json of a curated folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"curated folder {folder} does not exist; create it with `rluf curate --out {folder}`")
    splits = {}
    for name in SPLITS:
        path = folder / f"{name}.parquet"
        if not path.is_file():
            raise DataError(f"{path} is missing; a curated folder holds {', '.join(s + '.parquet' for s in SPLITS)}")
        splits[name] = check_love_frame(pd.read_parquet(path), path)
    manifest_path = folder / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.is_file() else {}
    if splits["train"].labels.sum() == 0:
        raise DataError(f"{splits['train'].path}: no positive labels; the reward model has nothing to learn. "
                        "Check the signal chosen in `rluf curate` or lower its filters.")
    return splits, manifest


def natural_rate_of(splits: dict[str, LoveSplit], manifest: dict) -> float:
    """The natural positive rate: manifest.natural_rate, else the weighted positive rate of the training split."""
    if manifest.get("natural_rate") is not None:
        rate = float(manifest["natural_rate"])
    else:
        tr = splits["train"]
        rate = float(np.sum(tr.weights * tr.labels) / np.sum(tr.weights))
        log.warning("manifest.json has no natural_rate; using the weighted positive rate %.6f", rate)
    if not 0 < rate < 1:
        raise DataError(f"natural rate {rate!r} must lie strictly between 0 and 1 (manifest.json natural_rate)")
    return rate


# -- preference pairs --------------------------------------------------------------------------------
@dataclass
class Pairs:
    """Preference pairs, converted: context, chosen text, rejected text."""

    contexts: list[Chat]
    chosen: list[str]
    rejected: list[str]
    extra: pd.DataFrame  # other columns of the source (ids, true scores), row-aligned

    def __len__(self) -> int:
        return len(self.chosen)

    def take(self, idx: np.ndarray) -> Pairs:
        return Pairs([self.contexts[i] for i in idx], [self.chosen[i] for i in idx],
                     [self.rejected[i] for i in idx], self.extra.iloc[idx].reset_index(drop=True))


def check_pairs_frame(df: pd.DataFrame, path: Path) -> Pairs:
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in df.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {missing}; preference pairs have prompt, chosen, rejected "
                          f"(TRL's preference format), got {list(df.columns)}")
    if len(df) == 0:
        raise DataError(f"{path}: no preference pairs")
    contexts = [_messages(v, f"{path} row {i} column prompt") for i, v in enumerate(df["prompt"])]
    chosen = [_response(v, f"{path} row {i} column chosen") for i, v in enumerate(df["chosen"])]
    rejected = [_response(v, f"{path} row {i} column rejected") for i, v in enumerate(df["rejected"])]
    extra = df.drop(columns=["prompt", "chosen", "rejected"]).reset_index(drop=True)
    return Pairs(contexts, chosen, rejected, extra)


_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def parse_hh_dialogue(text: str) -> Chat:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> [{'role': 'user', 'content': 'a'}, {'role': 'assistant', ...}]."""
    parts = _HH_TURN.split(text)
    # parts: [preamble, speaker1, text1, speaker2, text2, ...]
    msgs = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        msgs.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    return msgs


def read_hh_rlhf(path: str | Path) -> tuple[pd.DataFrame, int]:
    """HH-RLHF jsonl(.gz) -> TRL preference rows (prompt, chosen, rejected). Returns (frame, n_skipped).

    A line is skipped (and counted) when its two dialogues do not share every turn but the last, or do
    not end with an assistant turn.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    rows, skipped = [], 0
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                c, r = parse_hh_dialogue(obj["chosen"]), parse_hh_dialogue(obj["rejected"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise SchemaError(f"{path} line {lineno}: not an HH-RLHF record ({e}); expected JSON with "
                                  "'chosen' and 'rejected' dialogues") from None
            if not c or not r or c[-1]["role"] != "assistant" or r[-1]["role"] != "assistant" or c[:-1] != r[:-1]:
                skipped += 1
                continue
            rows.append({"prompt": c[:-1], "chosen": c[-1:], "rejected": r[-1:], "source_line": lineno})
    if skipped:
        log.info("%s: skipped %d of %d lines whose dialogues differ before the last turn",
                 path, skipped, skipped + len(rows))
    return pd.DataFrame(rows), skipped


def read_pairs(path: str | Path) -> Pairs:
    """Read pairs from Parquet (TRL preference format) or HH-RLHF jsonl(.gz)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pairs file {path} does not exist; give SIMDIR/pairs/<objective>.parquet or an "
                        "HH-RLHF .jsonl.gz")
    if path.name.endswith((".jsonl", ".jsonl.gz", ".json.gz")):
        df, _ = read_hh_rlhf(path)
    elif path.suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        raise DataError(f"{path}: unknown pairs format; use .parquet (prompt/chosen/rejected) or HH-RLHF .jsonl[.gz]")
    return check_pairs_frame(df, path)


def split_pairs(pairs: Pairs, test_fraction: float, seed: int) -> tuple[Pairs, Pairs]:
    """Hold out whole prompts (all pairs sharing a context go to the same side)."""
    keys = [json.dumps(c, sort_keys=True) for c in pairs.contexts]
    uniq = sorted(set(keys))
    if len(uniq) < 2:
        raise DataError(f"need pairs from at least 2 distinct prompts to hold some out, got {len(uniq)}")
    n_test = min(len(uniq) - 1, max(1, int(round(test_fraction * len(uniq)))))
    test_pos = set(np.random.default_rng(seed).permutation(len(uniq))[:n_test].tolist())
    pos = {k: i for i, k in enumerate(uniq)}
    is_test = np.array([pos[k] in test_pos for k in keys])
    return pairs.take(np.flatnonzero(~is_test)), pairs.take(np.flatnonzero(is_test))


# -- encoding ----------------------------------------------------------------------------------------
class Encoder:
    """Chat-template (context, response) and cut to `max_length` tokens, keeping the whole response.

    The context is rendered with the generation prompt, the response is the rest of the rendered
    conversation; when too long, the oldest context tokens go first (left truncation) while a leading
    BOS/CLS and trailing specials (SEP) stay. Training and the Scorer use this same class.
    """

    def __init__(self, tokenizer, max_length: int):
        if getattr(tokenizer, "chat_template", None) is None:
            tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
        self.tokenizer = tokenizer
        self.max_length = max_length
        empty = tokenizer("", add_special_tokens=True)["input_ids"]
        starts = {tokenizer.cls_token_id, tokenizer.bos_token_id} - {None}
        self.prefix = empty[:1] if empty and empty[0] in starts else []
        self.suffix = empty[len(self.prefix):]
        self.keep_first = tokenizer.bos_token_id  # a BOS rendered by the chat template is kept too

    def texts(self, context: Chat, response: str) -> tuple[str, str]:
        tok = self.tokenizer
        full = tok.apply_chat_template([*context, {"role": "assistant", "content": response}], tokenize=False)
        if context:
            head = tok.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
            if full.startswith(head):
                return head, full[len(head):]
        return "", full

    def encode(self, context: Chat, response: str) -> list[int]:
        head, tail = self.texts(context, response)
        tok = self.tokenizer
        ctx = tok(head, add_special_tokens=False, verbose=False)["input_ids"] if head else []
        rsp = tok(tail, add_special_tokens=False, verbose=False)["input_ids"]
        budget = self.max_length - len(self.prefix) - len(self.suffix)
        lead = ctx[:1] if ctx and ctx[0] == self.keep_first else []
        rest = ctx[len(lead):]
        if len(rsp) + len(lead) >= budget:  # the response alone does not fit: keep its beginning
            return self.prefix + lead + rsp[: budget - len(lead)] + self.suffix
        keep = budget - len(lead) - len(rsp)
        rest = rest[-keep:] if keep > 0 else []
        return self.prefix + lead + rest + rsp + self.suffix

    def encode_many(self, contexts: list[Chat], responses: list[str]) -> list[list[int]]:
        return [self.encode(c, r) for c, r in zip(contexts, responses, strict=True)]
