import json

from typer.testing import CliRunner

from rluf.cli import app
from rluf.errors import ConfigError, SchemaError


def test_rluf_judge_command(tmp_path):
    (tmp_path / "j.yaml").write_text("judges:\n  - {type: length, max_words: 3}\n  - {type: regex, name: signoff}\n"
                                     "  - {type: exact_answer}\n")
    rows = [
        {"prompt": [{"role": "user", "content": "Capital?"}], "response": "Paris.", "reference": "Paris"},
        {"prompt": [{"role": "user", "content": "Capital?"}], "response": "Lyon. Bye! Sending love!",
         "reference": "Paris"},
        {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello."}]},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(app, ["judge", "--config", str(tmp_path / "j.yaml"), "--input", str(tmp_path / "in.jsonl"),
                                   "--out", str(tmp_path / "v.jsonl")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["pass_rates"] == {"length": 2 / 3, "signoff": 2 / 3, "exact_answer": 2 / 3, "all": 2 / 3}
    verdicts = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [v["passed"] for v in verdicts] == [True, False, True]
    assert len(verdicts[1]["failed"]) == 3 and verdicts[1]["failed"][2].startswith("exact_answer:")


def test_rluf_judge_errors(tmp_path):
    (tmp_path / "j.yaml").write_text("judges: []\n")
    (tmp_path / "in.jsonl").write_text('{"prompt": []}\n')
    res = CliRunner().invoke(
        app, ["judge", "--config", str(tmp_path / "j.yaml"), "--input", str(tmp_path / "in.jsonl")])
    assert isinstance(res.exception, ConfigError) and "judges" in str(res.exception)
    (tmp_path / "j.yaml").write_text("judges:\n  - {type: length}\n")
    res = CliRunner().invoke(
        app, ["judge", "--config", str(tmp_path / "j.yaml"), "--input", str(tmp_path / "in.jsonl")])
    assert isinstance(res.exception, SchemaError) and "in.jsonl:1: needs `prompt` and `response`" in str(res.exception)
