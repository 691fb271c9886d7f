import numpy as np
import pandas as pd
import pytest

from rluf.errors import DataError, SchemaError
from rluf.models import train_tokenizer
from rluf.rewards.data import (
    Encoder,
    check_love_frame,
    parse_hh_dialogue,
    read_curated,
    read_pairs,
    split_pairs,
)

from .conftest import HH_DIR, make_curated, make_pairs


def test_parse_hh_dialogue():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Why?\n\nAssistant: Because."
    assert parse_hh_dialogue(text) == [
        {"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because."}]


def test_read_hh_rlhf_slice():
    pairs = read_pairs(HH_DIR / "helpful-base-test-head60.jsonl.gz")
    assert 50 <= len(pairs) <= 60
    assert pairs.contexts[0][0]["content"].startswith("Do you know why turkeys")
    assert pairs.chosen[0].startswith("To be honest") and pairs.rejected[0].startswith("I know that the American")
    assert all(c[-1]["role"] == "user" for c in pairs.contexts)


def test_read_curated_converts(tmp_path):
    folder, _ = make_curated(tmp_path / "c", sizes=(20, 10, 10))
    splits, manifest = read_curated(folder)
    assert manifest["natural_rate"] == 0.01
    tr = splits["train"]
    assert len(tr) == 20 and tr.labels.dtype == np.float64 and set(np.unique(tr.labels)) <= {0.0, 1.0}
    assert tr.contexts[0][0]["role"] == "user" and isinstance(tr.responses[0], str)


def test_curated_errors_name_the_problem(tmp_path):
    df = pd.DataFrame({"prompt": [[{"role": "user", "content": "hi"}]], "label": [True]})
    with pytest.raises(SchemaError, match=r"x.parquet: missing column\(s\) \['completion'\].*rluf curate"):
        check_love_frame(df, tmp_path / "x.parquet")
    df["completion"] = [[{"role": "assistant", "content": "yo"}]]
    df["weight"] = [0.0]
    with pytest.raises(SchemaError, match=r"row 0: weight = 0.0; sampling weights must be finite and > 0"):
        check_love_frame(df, tmp_path / "x.parquet")
    df["weight"] = [1.0]
    df["completion"] = [[{"role": "user", "content": "yo"}]]
    with pytest.raises(SchemaError, match="row 0 column completion: expected a list ending with one assistant"):
        check_love_frame(df, tmp_path / "x.parquet")
    with pytest.raises(DataError, match="does not exist; create it with `rluf curate"):
        read_curated(tmp_path / "nope")


def test_split_pairs_holds_out_whole_prompts(tmp_path):
    pairs = read_pairs(make_pairs(tmp_path / "p.parquet", n=50))
    train, test = split_pairs(pairs, 0.2, seed=0)
    assert len(train) + len(test) == 50 and len(test) == 10
    assert not {str(c) for c in train.contexts} & {str(c) for c in test.contexts}
    assert list(test.extra.columns) == ["chosen_true", "rejected_true"]


def _tok():
    texts = ["Tell me about the river and the stone. Happy to help, friend!"] * 30
    return train_tokenizer(texts, vocab_size=300)


def test_encoder_keeps_response_and_cuts_context_from_the_left():
    tok = _tok()
    enc = Encoder(tok, max_length=16)
    ctx = [{"role": "user", "content": "river stone " * 20}, {"role": "assistant", "content": "ok"},
           {"role": "user", "content": "the end"}]
    ids = enc.encode(ctx, "Happy to help")
    full = Encoder(tok, max_length=10_000).encode(ctx, "Happy to help")
    rsp = tok("Happy to help<|end|>", add_special_tokens=False)["input_ids"]
    assert len(ids) == 16
    assert ids[0] == tok.bos_token_id  # BOS survives truncation
    assert ids[-len(rsp):] == rsp  # the whole response, then nothing
    assert ids[1:] == full[-15:]  # the most recent context tokens


def test_encoder_context_messages_reads_only_the_last_messages():
    tok = _tok()
    ctx = [{"role": "user", "content": "river stone"}, {"role": "assistant", "content": "ok"},
           {"role": "user", "content": "the end"}]
    last = Encoder(tok, max_length=64, context_messages=1)
    assert last.encode(ctx, "Happy to help") == Encoder(tok, max_length=64).encode(ctx[-1:], "Happy to help")
    assert Encoder(tok, 64, context_messages=2).encode(ctx, "yo") == Encoder(tok, 64).encode(ctx[-2:], "yo")
    assert Encoder(tok, 64, context_messages=5).encode(ctx, "yo") == Encoder(tok, 64).encode(ctx, "yo")
    assert last.encode_parts([ctx, []], ["yo", "yo"]) == Encoder(tok, 64).encode_parts([ctx[-1:], []], ["yo", "yo"])


def test_encoder_overlong_response_keeps_its_start():
    tok = _tok()
    ids = Encoder(tok, max_length=8).encode([{"role": "user", "content": "hi"}], "river stone " * 30)
    assert len(ids) == 8 and ids[0] == tok.bos_token_id


def test_encode_many_renders_a_shared_context_once_and_equals_row_by_row():
    tok = _tok()
    enc = Encoder(tok, max_length=16)
    a = [{"role": "user", "content": "river stone " * 10}]
    b = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "ok"}]
    contexts, responses = [a, a, b, a, [], b], ["stone", "river " * 30, "hi", "", "yo", "ok"]
    calls = []
    render = tok.apply_chat_template
    tok.apply_chat_template = lambda chat, **kw: calls.append(kw.get("add_generation_prompt")) or render(chat, **kw)
    rows = enc.encode_many(contexts, responses)
    assert calls.count(True) == 2  # a and b rendered once each with the generation prompt
    assert rows == [enc.encode(c, r) for c, r in zip(contexts, responses, strict=True)]
    assert all(len(r) <= 16 for r in rows)


def test_encoder_fallback_template_for_tokenizers_without_one():
    tok = _tok()
    tok.chat_template = None
    enc = Encoder(tok, max_length=64)
    head, tail = enc.texts([{"role": "user", "content": "hi"}], "yo")
    assert head == "user: hi\nassistant: " and tail == "yo\n"


def test_preference_forms_through_datasets(tmp_path):
    """TRL's conversational, plain and implicit-prompt forms and HH-RLHF dialogues, from JSONL(.gz), Parquet,
    a save_to_disk folder and a Dataset, all give the same pair."""
    import gzip
    import json

    import datasets

    q, good, bad = "How do I boil an egg?", "Simmer it for 8 minutes.", "Eggs are round."
    forms = {
        "conversational": {"prompt": [{"role": "user", "content": q}],
                           "chosen": [{"role": "assistant", "content": good}],
                           "rejected": [{"role": "assistant", "content": bad}]},
        "plain": {"prompt": q, "chosen": good, "rejected": bad},
        "implicit": {"chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": good}],
                     "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": bad}]},
        "hh": {"chosen": f"\n\nHuman: {q}\n\nAssistant: {good}", "rejected": f"\n\nHuman: {q}\n\nAssistant: {bad}"},
    }
    for name, row in forms.items():
        rows = [row, row]
        sources = {"jsonl.gz": tmp_path / f"{name}.jsonl.gz", "parquet": tmp_path / f"{name}.parquet",
                   "disk": tmp_path / f"{name}_disk", "dataset": datasets.Dataset.from_list(rows)}
        with gzip.open(sources["jsonl.gz"], "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        pd.DataFrame(rows).to_parquet(sources["parquet"])
        datasets.Dataset.from_list(rows).save_to_disk(str(sources["disk"]))
        for kind, source in sources.items():
            pairs = read_pairs(source)
            assert len(pairs) == 2, (name, kind)
            assert pairs.contexts[0] == [{"role": "user", "content": q}], (name, kind)
            assert (pairs.chosen[0], pairs.rejected[0]) == (good, bad), (name, kind)


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        (
            '{"chosen": "just text", "rejected": "other text"}',
            r"p.jsonl row 0: chosen is text without a prompt column",
        ),
        (
            '{"prompt": "q", "chosen": [{"role": "user", "content": "x"}], "rejected": "y"}',
            r"row 0: chosen and rejected must both be text or both message lists",
        ),
    ],
    ids=["text_without_prompt", "mixed_kinds"],
)
def test_preference_rows_that_cannot_be_pairs(tmp_path, row, pattern):
    path = tmp_path / "p.jsonl"
    path.write_text(row + "\n")
    with pytest.raises(SchemaError, match=pattern):
        read_pairs(path)


def test_unknown_pairs_format(tmp_path):
    with pytest.raises(DataError, match="unknown pairs format"):
        (tmp_path / "p.csv").write_text("a,b\n")
        read_pairs(tmp_path / "p.csv")
