"""The baseline policy: a tiny Llama SFT-trained from scratch on the world's own response corpus.

1. corpus: (context, response) pairs from `World.prompts` + the template sampler (the behaviour mix of
   `cfg.behaviour`: right and wrong answers, warm and cold, some sign-offs, unsafe compliance, false refusals);
2. tokenizer: byte-level BPE trained on the corpus (`rluf.models.train_tokenizer`, with the chat template);
3. model: `rluf.models.build_causal_lm(preset)`, trained with next-token cross-entropy on response tokens
   only (context tokens are labelled -100), AdamW with linear warm-up and cosine decay;
4. saved with `save_pretrained` (safetensors) plus `rluf_baseline.json`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rluf.models import build_causal_lm, train_tokenizer
from rluf.policy import Policy, Sampling
from rluf.sim.world import Chat, World
from rluf.utils import seed_everything, select_device, write_json

log = logging.getLogger(__name__)
EMPTY = "(no answer)"  # placeholder for an empty generation: outside the response language (unparsed)
Progress = Callable[[int, int, dict], None]  # (done, total, info)


def build_corpus(world: World, n: int, seed: int = 1) -> list[tuple[Chat, str]]:
    """`n` SFT examples: a train prompt (1-3 turns) and a template response with the baseline mix."""
    rng = np.random.default_rng([world.cfg.seed, seed, 7])
    items = world.prompts(n, "train", seed=seed, multi_turn=0.1)  # short sequences train faster
    return [(it["prompt"], world.sample_response(rng, world.item_prompt[it["item_id"]])) for it in items]


def _encode(tok, corpus: list[tuple[Chat, str]], max_length: int) -> list[tuple[list[int], int]]:
    """Token ids of context + response + eos, and the number of (left-truncated) context tokens."""
    ctx_text = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c, _ in corpus]
    ctx_ids = tok(ctx_text, add_special_tokens=False)["input_ids"]
    rsp_ids = tok([r for _, r in corpus], add_special_tokens=False)["input_ids"]
    out = []
    for c, r in zip(ctx_ids, rsp_ids, strict=True):
        r = r + [tok.eos_token_id]
        keep = max(1, max_length - len(r))
        c = c if len(c) <= keep else [tok.bos_token_id] + c[-(keep - 1) :]
        out.append((c + r, len(c)))
    return out


def _batch(examples: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 on context and padding (loss on response tokens only)."""
    T = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), T), pad_id, dtype=torch.long)  # (B, T)
    attn = torch.zeros((len(examples), T), dtype=torch.long)
    labels = torch.full((len(examples), T), -100, dtype=torch.long)
    for i, (ids, n_ctx) in enumerate(examples):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attn[i, : len(ids)] = 1
        labels[i, n_ctx : len(ids)] = torch.tensor(ids[n_ctx:])
    return dict(input_ids=input_ids, attention_mask=attn, labels=labels)


def _length_grouped_batches(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of similar length (sorted with jitter, then cut): about a third of the padding of random
    batches on this corpus, so a third of the compute. Steps draw batches at random."""
    order = np.argsort(np.asarray(lengths) + rng.uniform(0, 8, len(lengths)), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _response_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over response tokens. The LM head runs only where a label is predicted
    (response positions): most positions are context or padding, and the head is a third of the model's FLOPs."""
    hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]  # position t predicts token t + 1
    keep = targets != -100
    logits = model.lm_head(hidden[:, :-1][keep])  # (n_response_tokens, vocab)
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


def train_baseline(
    world: World, out_dir: str | Path, progress: Progress | None = None, device: str = "auto"
) -> Policy:
    """Build, train and save the baseline policy to `out_dir`; returns it (on `device`)."""
    from transformers import get_cosine_schedule_with_warmup

    cfg = world.cfg.baseline
    t0 = time.perf_counter()
    seed_everything(world.cfg.seed)
    corpus = build_corpus(world, cfg.corpus_size)
    texts = [m["content"] for ctx, _ in corpus for m in ctx] + [r for _, r in corpus]
    texts += [" ".join([e] * 20) for e in world.entities]  # every entity name becomes a token (copyable)
    tok = train_tokenizer(texts, vocab_size=cfg.vocab_size, model_max_length=512)
    model = build_causal_lm(tok, cfg.preset, max_positions=512, seed=world.cfg.seed)
    device = select_device(device)
    model.to(device).train()
    examples = _encode(tok, corpus, cfg.max_length)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, int(cfg.warmup * cfg.steps), cfg.steps)
    rng = np.random.default_rng([world.cfg.seed, 11])
    batches = _length_grouped_batches([len(ids) for ids, _ in examples], cfg.batch_size, rng)
    losses = []
    for step in range(cfg.steps):
        idx = batches[rng.integers(len(batches))]
        batch = {k: v.to(device) for k, v in _batch([examples[i] for i in idx], tok.pad_token_id).items()}
        loss = _response_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, cfg.steps, {"loss": losses[-1]})
    policy = Policy(model.eval(), tok, device=device)
    out_dir = Path(out_dir)
    policy.save_pretrained(out_dir)
    info = dict(
        preset=cfg.preset,
        steps=cfg.steps,
        corpus_size=len(corpus),
        vocab_size=len(tok),
        n_params=sum(p.numel() for p in model.parameters()),
        first_loss=losses[0],
        final_loss=float(np.mean(losses[-20:])),
        build_s=time.perf_counter() - t0,
        tokens_per_example=float(np.mean([len(ids) for ids, _ in examples])),
        seed=world.cfg.seed,
    )
    write_json(out_dir / "rluf_baseline.json", info)
    log.info(
        "baseline %s: loss %.3f -> %.3f in %.1fs",
        cfg.preset,
        info["first_loss"],
        info["final_loss"],
        info["build_s"],
    )
    return policy


def generate_pool(
    world: World, policy: Policy, item_ids: np.ndarray, seed: int = 0, progress: Progress | None = None
) -> list[list[str]]:
    """K responses per item (the item's user message as a one-turn context), sampled once."""
    pc = world.cfg.pool
    sampling = Sampling(max_new_tokens=pc.max_new_tokens, temperature=pc.temperature, top_p=pc.top_p)
    chunk = max(1, math.ceil(pc.batch_size / pc.answers_per_message))
    out: list[list[str]] = []  # an empty generation is logged as EMPTY (the log schema needs text)
    for c, start in enumerate(range(0, len(item_ids), chunk)):
        ctx = [[{"role": "user", "content": world.item_text[i]}] for i in item_ids[start : start + chunk]]
        gens = policy.generate(
            ctx, n=pc.answers_per_message, sampling=sampling, batch_size=pc.batch_size,
            generator_seed=seed * 1_000_003 + c
        )
        out.extend([[r if r.strip() else EMPTY for r in rs] for rs in gens])
        if progress is not None:
            progress(min(start + chunk, len(item_ids)), len(item_ids), {})
    return out
