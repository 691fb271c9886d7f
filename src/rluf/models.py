"""Local Hugging Face models and tokenizers, built from scratch since no model hub is reachable.

`train_tokenizer` trains a byte-level BPE tokenizer with the `tokenizers` library and gives it a chat
template; `build_causal_lm` and `build_classifier` make tiny Llama models from a named preset. All are
ordinary `transformers` objects saved with `save_pretrained` (safetensors) and loaded with
`from_pretrained` (never `trust_remote_code`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rluf.errors import ConfigError

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|end|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [PAD, BOS, EOS, *ROLE_TOKENS]

# One turn is `<|role|>text<|end|>`; generation stops at <|end|> (the eos token).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# Model sizes. "tiny" is for tests (seconds); "small" is the CPU default (minutes).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
    "small": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4),
    "base": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=6, num_attention_heads=8),
}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048, model_max_length: int = 1024):
    """Train a byte-level BPE tokenizer on `texts` and wrap it as a PreTrainedTokenizerFast with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS,
        model_max_length=model_max_length,
        padding_side="left",  # left padding for batched generation; scorers pass their own side
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _llama_config(tokenizer, preset: str, max_positions: int, **overrides):
    from transformers import LlamaConfig

    if preset not in PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)} or give a model folder")
    kw = dict(PRESETS[preset])
    kw.update(overrides)
    return LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_positions,
        num_key_value_heads=kw["num_attention_heads"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **kw,
    )


def build_causal_lm(tokenizer, preset: str = "small", max_positions: int = 1024, seed: int = 0, **overrides):
    """A freshly initialised LlamaForCausalLM sized by `preset`."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(_llama_config(tokenizer, preset, max_positions, **overrides))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def build_classifier(tokenizer, preset: str = "small", max_positions: int = 1024, seed: int = 0, **overrides):
    """A freshly initialised LlamaForSequenceClassification with one scalar output (num_labels=1)."""
    import torch
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(seed)
    config = _llama_config(tokenizer, preset, max_positions, **overrides)
    config.num_labels = 1
    return LlamaForSequenceClassification(config)


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"tokenizer folder {path} does not exist")
    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)


def load_causal_lm(path: str | Path, device: str = "cpu", dtype=None):
    """Load a local HF causal LM folder (safetensors, no remote code)."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path} is not a Hugging Face model folder (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(str(path), trust_remote_code=False, dtype=dtype)
    return model.to(device)
