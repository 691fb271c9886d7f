import pytest

from rluf.sim import World, WorldConfig


def micro_config(**sections) -> WorldConfig:
    """A world small enough for unit tests (seconds)."""
    data = {
        "seed": 3,
        "population": {"n_users": 300},
        "content": {"n_entities": 120, "n_items": 150, "n_eval": 60, "n_train_prompts": 40},
        "baseline": {"preset": "tiny", "vocab_size": 600, "corpus_size": 400, "steps": 30, "batch_size": 16},
        "pool": {"answers_per_message": 2, "max_new_tokens": 24},
        "pairs": {"n_helpfulness": 60, "n_safety": 30},
    }
    for k, v in sections.items():
        data.setdefault(k, {}).update(v) if isinstance(v, dict) else data.__setitem__(k, v)
    return WorldConfig.model_validate(data)


@pytest.fixture(scope="session")
def micro_world() -> World:
    return World(micro_config())


@pytest.fixture(scope="session")
def tiny_baseline(tmp_path_factory, micro_world):
    """The tiny baseline, trained once per test run: (folder, Policy)."""
    from rluf.sim.baseline import train_baseline

    out = tmp_path_factory.mktemp("baseline") / "policy"
    return out, train_baseline(micro_world, out, device="cpu")
