"""Reading reward-model data and turning (context, response) into token ids.

Three inputs, each checked at the boundary by a `check_*`/`read_*` function that returns converted data:
- curated folders from `rluf curate`: train/validation/test.parquet in TRL's unpaired preference form
  (`prompt` messages, `completion` = [one assistant message], bool `label`, float `weight`) + manifest.json;
- preference pairs, read with `datasets` from Parquet, JSON(L)(.gz), a `save_to_disk` folder or a `Dataset`:
  TRL's preference form, conversational (`prompt`, `chosen`, `rejected` message lists, e.g.
  SIMDIR/pairs/*.parquet) or plain (strings), or with an implicit prompt (`chosen`/`rejected` whole
  conversations); and Anthropic HH-RLHF (`chosen`/`rejected` dialogues "\\n\\nHuman: ...\\n\\nAssistant: ...").
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rluf.errors import DataError, SchemaError
from rluf.utils import chat_key, read_json

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


def _require_columns(df: pd.DataFrame, path: Path, required: tuple[str, ...], hint: str) -> None:
    """SchemaError naming the missing ones of `required`, then `hint` (formatted with got=the columns)."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {missing}; " + hint.format(got=list(df.columns)))


def _cells(df: pd.DataFrame, path: Path, column: str, parse: Callable[[Any, str], Any]) -> list:
    """`parse(value, where)` on each cell of `column`, where = "<path> row <i> column <column>"."""
    return [parse(v, f"{path} row {i} column {column}") for i, v in enumerate(df[column])]


def check_love_frame(df: pd.DataFrame, path: Path) -> LoveSplit:
    """Validate a curated split (columns prompt, completion, label; optional weight, message_id)."""
    _require_columns(df, path, ("prompt", "completion", "label"),
                     "a curated split has prompt, completion, label (got {got}). "
                     "Produce it with `rluf curate`.")
    if len(df) == 0:
        raise DataError(f"{path}: the split is empty")
    contexts = _cells(df, path, "prompt", _messages)
    responses = _cells(df, path, "completion", _response)
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
    _require_columns(df, path, ("prompt", "chosen", "rejected"),
                     "preference pairs have prompt, chosen, rejected (TRL's preference format), got {got}")
    if len(df) == 0:
        raise DataError(f"{path}: no preference pairs")
    contexts = _cells(df, path, "prompt", _messages)
    chosen = _cells(df, path, "chosen", _response)
    rejected = _cells(df, path, "rejected", _response)
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


def _pair_row(row: dict, where: str) -> dict | None:
    """One preference row in TRL's conversational form ({prompt, chosen, rejected}: message lists, the last two
    one assistant message each), or None when its two conversations differ before the last turn (skipped).
    Accepts the conversational and plain forms, the implicit-prompt form and HH-RLHF dialogues."""
    chosen, rejected, prompt = row.get("chosen"), row.get("rejected"), row.get("prompt")
    if isinstance(chosen, str) and isinstance(rejected, str) and prompt is None:
        if not _HH_TURN.search(chosen):
            raise SchemaError(f"{where}: chosen is text without a prompt column and not an HH-RLHF dialogue "
                              "('\\n\\nHuman: ...\\n\\nAssistant: ...'); give a prompt column")
        chosen, rejected = parse_hh_dialogue(chosen), parse_hh_dialogue(rejected)
    elif isinstance(prompt, str):  # plain form: the prompt is the user's message
        prompt = [{"role": "user", "content": prompt}]
    if isinstance(chosen, str) or isinstance(rejected, str):
        if not (isinstance(chosen, str) and isinstance(rejected, str)):
            raise SchemaError(f"{where}: chosen and rejected must both be text or both message lists")
        chosen, rejected = ([{"role": "assistant", "content": t}] for t in (chosen, rejected))
    c, r = _messages(chosen, f"{where} column chosen"), _messages(rejected, f"{where} column rejected")
    context = _messages(prompt, f"{where} column prompt") if prompt is not None else []
    if prompt is None:  # implicit prompt: the shared turns before the last
        if c[:-1] != r[:-1]:
            return None
        context, c, r = c[:-1], c[-1:], r[-1:]
    if not c or not r or c[-1]["role"] != "assistant" or r[-1]["role"] != "assistant" or len(c) > 1 or len(r) > 1:
        if prompt is not None:
            raise SchemaError(f"{where}: chosen and rejected must each be one assistant message after the prompt, "
                              f"got roles {[m['role'] for m in c]} and {[m['role'] for m in r]}")
        return None
    return {"prompt": context, "chosen": c, "rejected": r}


def load_pairs_dataset(source):
    """A `datasets.Dataset` from a preference file (Parquet, JSON/JSONL, optionally .gz), a `save_to_disk`
    folder, or a Dataset as it is."""
    import datasets

    if isinstance(source, datasets.Dataset):
        return source
    path = Path(source)
    if path.is_dir():
        return datasets.load_from_disk(str(path))
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        return datasets.Dataset.from_parquet(str(path), keep_in_memory=True)
    if name.endswith((".jsonl", ".json")):
        return datasets.Dataset.from_json(str(path), keep_in_memory=True)
    raise DataError(f"{path}: unknown pairs format; use .parquet or .json[l][.gz] (prompt/chosen/rejected, or "
                    "HH-RLHF chosen/rejected dialogues) or a `datasets` save_to_disk folder")


def pairs_frame(source) -> tuple[pd.DataFrame, int]:
    """Preference data (`load_pairs_dataset`) as TRL conversational rows (prompt, chosen, rejected, plus the other
    columns). Returns (frame, n_skipped): rows whose two conversations differ before the last turn are skipped
    and counted."""
    ds = load_pairs_dataset(source)
    where = str(source) if not hasattr(source, "column_names") else "the given dataset"
    missing = [c for c in ("chosen", "rejected") if c not in ds.column_names]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {missing}; preference pairs have prompt, chosen, rejected "
                          f"(TRL's preference format) or HH-RLHF's chosen and rejected, got {ds.column_names}")
    rows, skipped = [], 0
    for i, row in enumerate(ds):
        pair = _pair_row(row, f"{where} row {i}")
        if pair is None:
            skipped += 1
            continue
        rows.append({**{k: v for k, v in row.items() if k not in pair}, **pair, "source_row": i})
    if skipped:
        log.info("%s: skipped %d of %d rows whose conversations differ before the last turn", where, skipped,
                 len(ds))
    return pd.DataFrame(rows), skipped


def read_pairs(source) -> Pairs:
    """Read preference pairs (see `load_pairs_dataset` for the sources and `_pair_row` for the forms)."""
    if not hasattr(source, "column_names") and not Path(source).exists():
        raise DataError(f"pairs file {source} does not exist; give SIMDIR/pairs/<objective>.parquet, TRL "
                        "preference data or an HH-RLHF .jsonl.gz")
    df, _ = pairs_frame(source)
    where = Path(source) if not hasattr(source, "column_names") else Path("<dataset>")
    if df.empty:
        raise DataError(f"{where}: no preference pairs (every row's conversations differ before the last turn)")
    return check_pairs_frame(df.drop(columns=["source_row"]), where)


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
    BOS/CLS and trailing specials (SEP) stay. `context_messages` keeps only the context's last messages
    (None: all that fit). Training and the Scorer use this same class.
    """

    def __init__(self, tokenizer, max_length: int, context_messages: int | None = None):
        if getattr(tokenizer, "chat_template", None) is None:
            tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.context_messages = context_messages
        empty = tokenizer("", add_special_tokens=True)["input_ids"]
        starts = {tokenizer.cls_token_id, tokenizer.bos_token_id} - {None}
        self.prefix = empty[:1] if empty and empty[0] in starts else []
        self.suffix = empty[len(self.prefix):]
        self.keep_first = tokenizer.bos_token_id  # a BOS rendered by the chat template is kept too

    def texts(self, context: Chat, response: str, head: str | None = None) -> tuple[str, str]:
        """The rendered context (with the generation prompt; `head` if already rendered) and the rest."""
        tok = self.tokenizer
        full = tok.apply_chat_template([*context, {"role": "assistant", "content": response}], tokenize=False)
        if context:
            if head is None:
                head = tok.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
            if full.startswith(head):
                return head, full[len(head):]
        return "", full

    def encode(self, context: Chat, response: str) -> list[int]:
        return self.encode_many([context], [response])[0]

    def encode_many(self, contexts: list[Chat], responses: list[str]) -> list[list[int]]:
        """`encode` of every row. A context shared by several rows (K answers to one prompt, a chosen and a
        rejected answer) is rendered once, and the texts go through the tokenizer in two batched calls."""
        return [self._cut(c, r) for c, r in zip(*self._token_parts(contexts, responses), strict=True)]

    def encode_pairs(self, contexts: list[Chat], chosen: list[str],
                     rejected: list[str]) -> list[tuple[list[int], list[int], list[int]]]:
        """(shared, chosen tail, rejected tail) per pair: shared + tail is exactly the answer's `encode`
        sequence, and shared is the two sequences' common start (the context, unless `max_length` cuts it
        differently for answers of different lengths), which a causal model computes once
        (`SharedPromptPairCollator`). Each tail keeps at least one token."""
        n = len(contexts)
        if not len(chosen) == len(rejected) == n:
            raise DataError(f"encode_pairs: {n} contexts, {len(chosen)} chosen, {len(rejected)} rejected")
        seqs = self.encode_many(contexts + contexts, chosen + rejected)
        out = []
        for c, r in zip(seqs[:n], seqs[n:], strict=True):
            k = 0
            while k < min(len(c), len(r)) - 1 and c[k] == r[k]:
                k += 1
            out.append((c[:k], c[k:], r[k:]))
        return out

    def _token_parts(self, contexts: list[Chat], responses: list[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids of each row's rendered context (with the generation prompt) and of the rest."""
        if len(contexts) != len(responses):
            raise DataError(f"encode_many: {len(contexts)} contexts but {len(responses)} responses")
        tok = self.tokenizer
        rendered: dict[str, str] = {}
        heads, tails = [], []
        if self.context_messages is not None:
            contexts = [c[-self.context_messages:] for c in contexts]
        for c, r in zip(contexts, responses, strict=True):
            key = chat_key(c)
            if c and key not in rendered:
                rendered[key] = tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
            head, tail = self.texts(c, r, rendered.get(key))
            heads.append(head)
            tails.append(tail)
        unique = list(dict.fromkeys(h for h in heads if h))
        head_ids = dict(zip(unique, tok(unique, add_special_tokens=False, verbose=False)["input_ids"] if unique
                            else [], strict=True))
        tail_ids = tok(tails, add_special_tokens=False, verbose=False)["input_ids"] if tails else []
        return [head_ids[h] if h else [] for h in heads], list(tail_ids)

    def encode_parts(self, contexts: list[Chat], responses: list[str]) -> list[tuple[list[int], list[int]]]:
        """`encode_many`'s sequences split into (context part, answer part): rows whose context parts are equal
        can share that prefix's computation in a causal model (`Scorer.score`)."""
        return [self._cut_parts(c, r) for c, r in zip(*self._token_parts(contexts, responses), strict=True)]

    def _cut(self, ctx: list[int], rsp: list[int]) -> list[int]:
        head, tail = self._cut_parts(ctx, rsp)
        return head + tail

    def _cut_parts(self, ctx: list[int], rsp: list[int]) -> tuple[list[int], list[int]]:
        """prefix + context, response + suffix, within max_length together: the oldest context tokens go first."""
        budget = self.max_length - len(self.prefix) - len(self.suffix)
        lead = ctx[:1] if ctx and ctx[0] == self.keep_first else []
        rest = ctx[len(lead):]
        if len(rsp) + len(lead) >= budget:  # the response alone does not fit: keep its beginning
            return self.prefix + lead, rsp[: budget - len(lead)] + self.suffix
        keep = budget - len(lead) - len(rsp)
        rest = rest[-keep:] if keep > 0 else []
        return self.prefix + lead + rest, rsp + self.suffix
