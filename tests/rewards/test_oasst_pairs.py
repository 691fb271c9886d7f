"""OpenAssistant sibling rankings as helpfulness pairs (rluf.rewards.oasst_pairs), on the real 25-tree sample."""

import json

import pandas as pd
import pytest

from rluf.errors import SchemaError
from rluf.rewards.data import read_pairs
from rluf.rewards.oasst_pairs import ancestor_chats, read_oasst_messages, sibling_pairs, write_sibling_pairs

SAMPLE = __import__("pathlib").Path(__file__).parents[1] / "data" / "oasst_en_25_tree.jsonl"


def tree_to_flat(path, out):
    """The flat export form of the tree file: one message a line, emojis as name / count lists."""
    lines = []
    for line in path.read_text().splitlines():
        tree = json.loads(line)
        stack = [(tree["prompt"], None)]
        while stack:
            node, parent = stack.pop()
            flat = {k: v for k, v in node.items() if k != "replies"}
            flat |= {"parent_id": parent, "message_tree_id": tree["message_tree_id"]}
            e = node.get("emojis") or {}
            flat["emojis"] = {"name": list(e), "count": list(e.values())}
            lines.append(json.dumps(flat))
            stack += [(c, node["message_id"]) for c in node.get("replies") or []]
    out.write_text("\n".join(lines) + "\n")
    return out


def test_pairs_are_ranked_siblings_with_their_ancestor_chain(tmp_path):
    messages = read_oasst_messages(SAMPLE)
    pairs = sibling_pairs(messages)
    assert len(pairs) > 50
    by_id = messages.set_index("message_id")
    for _, p in pairs.head(40).iterrows():
        c, r = by_id.loc[p.chosen_id], by_id.loc[p.rejected_id]
        assert c.parent_id == r.parent_id and c.role == r.role == "assistant"
        assert c["rank"] < r["rank"]
        assert p.chosen == [{"role": "assistant", "content": c.text}]
        chain, cur = [], c.parent_id  # the prompt is the parent chain, oldest first, ending with a user turn
        while isinstance(cur, str):  # a root's parent_id is missing
            chain.insert(0, by_id.loc[cur].text)
            cur = by_id.loc[cur].parent_id
        assert [m["content"] for m in p.prompt] == chain and p.prompt[-1]["role"] == "user"
    flat = read_oasst_messages(tree_to_flat(SAMPLE, tmp_path / "flat.jsonl"))
    assert len(sibling_pairs(flat)) == len(pairs)
    assert sorted(flat.message_id) == sorted(messages.message_id)


def test_pairs_of_chosen_trees_only_and_plain_form(tmp_path):
    messages = read_oasst_messages(SAMPLE)
    trees = set(sorted(messages.tree_id.unique())[:5])
    pairs = sibling_pairs(messages, trees, conversational=False)
    assert set(pairs.tree_id) <= trees and len(pairs) > 0
    assert isinstance(pairs.prompt[0], str) and isinstance(pairs.chosen[0], str)
    n = write_sibling_pairs(SAMPLE, tmp_path / "pairs.parquet", trees)
    assert n == len(pairs)
    loaded = read_pairs(tmp_path / "pairs.parquet")  # trains a helpfulness model as it is
    assert len(loaded) == n and loaded.contexts[0][-1]["role"] == "user"


def test_ancestor_chain_of_a_branching_tree():
    m = pd.DataFrame({"message_id": ["q", "a", "b", "q2", "a2"], "parent_id": [None, "q", "q", "b", "q2"],
                      "role": ["user", "assistant", "assistant", "user", "assistant"],
                      "text": ["q", "a", "b", "q2", "a2"]})
    chats = ancestor_chats(m)
    assert [c["content"] for c in chats["a2"]] == ["q", "b", "q2"]
    assert chats["q"] == [] and [c["content"] for c in chats["a"]] == ["q"]


def test_bad_export_names_the_message(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"message_id": "m1", "role": "robot", "text": "hi"}) + "\n")
    with pytest.raises(SchemaError, match=r"bad.jsonl message 0: .*role 'robot'"):
        read_oasst_messages(path)
