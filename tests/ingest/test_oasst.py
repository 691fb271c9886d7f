"""The real OpenAssistant sample, nested and flat (derived here), maps onto the canonical schema."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rluf.ingest import ingest

from .conftest import DATA, NOW, read_quarantine, write_jsonl

TREES = DATA / "oasst_en_25_tree.jsonl"
KEPT = {"+1": "like", "-1": "dislike", "red_flag": "red_flag"}


def _walk(node: dict, tree_id: str, parent: str | None, depth: int):
    yield {
        **{k: v for k, v in node.items() if k != "replies"},
        "message_tree_id": tree_id,
        "parent_id": parent,
        "_depth": depth,
    }
    for child in node.get("replies", []):
        yield from _walk(child, tree_id, node["message_id"], depth + 1)


@pytest.fixture(scope="module")
def flat() -> list[dict]:
    out = []
    for line in TREES.read_text(encoding="utf-8").splitlines():
        tree = json.loads(line)
        out += list(_walk(tree["prompt"], tree["message_tree_id"], None, 0))
    return out


def _expected_reactions(flat: list[dict], role: str) -> Counter:
    c: Counter = Counter()
    for m in flat:
        if m["role"] == role:
            for name, n in (m.get("emojis") or {}).items():
                if name in KEPT:
                    c[KEPT[name]] += n
    return c


@pytest.fixture(scope="module")
def nested_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("oasst") / "out"
    return out, ingest([TREES], out, now=NOW)


def test_nested_trees(nested_out, flat):
    out, report = nested_out
    msgs = pq.read_table(out / "messages.parquet").to_pylist()
    assert len(msgs) == len(flat) == report["tables"]["messages"]["accepted"]
    by_id = {m["message_id"]: m for m in msgs}
    for m in flat:
        got = by_id[m["message_id"]]
        assert got["role"] == {"prompter": "user", "assistant": "assistant"}[m["role"]]
        assert (got["conversation_id"], got["parent_id"], got["turn_index"], got["text"]) == (
            m["message_tree_id"],
            m["parent_id"],
            m["_depth"],
            m["text"],
        )
        if m["role"] == "assistant":  # the conversation's human is the prompter it answers
            assert got["user_id"] == by_id[m["parent_id"]]["user_id"]
            assert got["model_id"] == (m.get("model_name") or "oasst-human")
        else:
            assert got["user_id"] == f"oasst-anon:{m['message_id']}"
        # this sample has no created_date: root = oasst1 release date, each reply its parent + 1 s
        assert got["created_at"].timestamp() == datetime(2023, 4, 15, tzinfo=UTC).timestamp() + m["_depth"]
    assert report["notes"]["synthetic_times"] == len(flat)


def test_nested_reactions(nested_out, flat):
    out, report = nested_out
    reacts = pq.read_table(out / "reactions.parquet").to_pylist()
    assert Counter(r["type"] for r in reacts) == _expected_reactions(flat, "assistant")
    assert len({r["user_id"] for r in reacts}) == len(reacts)  # one synthetic anonymous user per count
    on_prompts = sum(_expected_reactions(flat, "prompter").values())
    assert report["tables"]["reactions"]["reasons"] == {"reaction_on_user_message": on_prompts}
    skips = sum(n for m in flat for k, n in (m.get("emojis") or {}).items() if k.startswith("_skip"))
    assert report["notes"]["oasst_skip_emojis"] == skips
    assert not {r["type"] for r in reacts} & {"_skip_reply", "_skip_labeling", "_skip_ranking"}


def _to_lists(emojis: dict | None) -> dict | None:
    return None if emojis is None else {"name": list(emojis), "count": list(emojis.values())}


def test_flat_form_matches_nested(tmp_path, nested_out, flat):
    """One message a line, emojis as parallel name/count lists, as JSONL and as Parquet (the HF form)."""
    rows = [
        {**{k: v for k, v in m.items() if k != "_depth"}, "emojis": _to_lists(m.get("emojis"))} for m in flat
    ]
    rows.reverse()  # children before parents: turn_index and times must not depend on file order
    want_m = pq.read_table(nested_out[0] / "messages.parquet").sort_by("message_id")
    want_r = pq.read_table(nested_out[0] / "reactions.parquet").sort_by(
        [("message_id", "ascending"), ("user_id", "ascending")]
    )
    jsonl = write_jsonl(tmp_path / "oasst_flat.jsonl", rows)
    keys = sorted({k for r in rows for k in r})  # from_pylist takes its columns from the first row only
    pq.write_table(
        pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), tmp_path / "oasst_flat.parquet"
    )
    for f in (jsonl, tmp_path / "oasst_flat.parquet"):
        report = ingest([f], tmp_path / f.suffix, now=NOW)
        assert report["files"][0]["table"] == "oasst-flat"
        assert pq.read_table(tmp_path / f.suffix / "messages.parquet").sort_by("message_id").equals(want_m)
        got_r = pq.read_table(tmp_path / f.suffix / "reactions.parquet")
        assert got_r.sort_by([("message_id", "ascending"), ("user_id", "ascending")]).equals(want_r)


def test_deleted_bad_emojis_and_real_times(tmp_path, flat):
    rows = [dict(m) for m in flat[:4]]
    for m in rows:
        m.pop("_depth")
    rows[0]["created_date"] = "2023-02-05T10:00:00+00:00"
    rows[1]["deleted"] = True
    rows[2]["emojis"] = {"name": ["+1"], "count": [1, 2]}
    f = write_jsonl(tmp_path / "oasst.jsonl", rows)
    report = ingest([f], tmp_path / "out", now=NOW)
    q = {x["reason"]: x for x in read_quarantine(tmp_path / "out")}
    assert q["deleted"]["line"] == 2 and q["wrong_type"]["field"] == "emojis"
    msgs = {m["message_id"]: m for m in pq.read_table(tmp_path / "out" / "messages.parquet").to_pylist()}
    assert msgs[rows[0]["message_id"]]["created_at"] == datetime(2023, 2, 5, 10, tzinfo=UTC)
    for name, t in report["tables"].items():
        assert t["read"] == t["accepted"] + t["quarantined"], name


def test_reactions_are_marked_as_not_click_times(nested_out):
    """OpenAssistant keeps counts, not clicks: every reaction row carries its message's time, marked so."""
    reacts = pq.read_table(nested_out[0] / "reactions.parquet")
    assert reacts.num_rows > 0 and set(reacts["time_is_click"].to_pylist()) == {False}
