"""The world: prompts, users and the ground truth (P[Love], helpfulness, safety) of the simulated deployment.

The truth of a (user, context, response) is computed from the text (rluf.sim.language parses both), so it
applies to any response, from the template sampler, the baseline LM or an optimized policy:

  P[Love](u, x, y) = sigmoid(b + o_u + taste_s(x, y))                          (natural rate set by b)
  taste_s(x, y)    = good*g_s + bad*d_s + warm*w_s + cold*c_s + signoff*h_s + refusal*r_s + unsafe*n_s
                     + per_word_s * max(0, words - 20) - 1.5 * unparsed
  s = the user's segment, visible in the user's messages (style markers); o_u ~ N(0, propensity_sd) hidden.
  b is solved once per world so that the baseline behaviour mix has the configured natural Love rate.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from rluf.config import validate_config
from rluf.errors import ConfigError
from rluf.sim.config import WorldConfig
from rluf.sim.language import (
    ADVICE,
    CHAT,
    FACTUAL,
    FAMILIES,
    LOOKALIKE,
    REFUSAL_RE,
    SEGMENTS,
    SIGNOFF_RE,
    UNSAFE,
    Parsed,
    Prompt,
    entity_names,
    is_good_body,
    parse_context,
    parse_response,
    parse_user_message,
    sample_response,
    user_message,
)
from rluf.utils import read_json

log = logging.getLogger(__name__)

Chat = list[dict[str, str]]
TOPICS = {
    "factual": list(FACTUAL),
    "advice": list(ADVICE),
    "chat": list(CHAT),
    "unsafe": list(UNSAFE),
    "lookalike": list(LOOKALIKE),
}
NORMAL, SPAMMER, BURST, RANDOM_LOVER, TARGETED_LOVER, SLOW_SPAMMER, SYBIL = range(7)
KINDS = {NORMAL: "", SPAMMER: "spammer", BURST: "burst", RANDOM_LOVER: "random_lover",
         TARGETED_LOVER: "targeted_lover", SLOW_SPAMMER: "slow_spammer", SYBIL: "sybil"}
KIND_CODE = {name: code for code, name in KINDS.items() if name}
EVAL_ITEMS = {"held_out": "eval", "deployment": "train"}  # evaluation sample -> item split it draws from


class World:
    """A seeded world. Everything is a deterministic function of `cfg` (incl. cfg.seed)."""

    def __init__(self, cfg: WorldConfig):
        self.cfg = cfg
        ss = np.random.SeedSequence(cfg.seed)
        s_ent, s_items, s_users, s_calib, self._s_misc = ss.spawn(5)
        if cfg.traffic_seed is not None:  # same content, other users (and their traffic: deploy_rng)
            s_users, s_calib, self._s_misc = np.random.SeedSequence([cfg.seed, cfg.traffic_seed]).spawn(3)
        self.entities = entity_names(cfg.content.n_entities, int(s_ent.generate_state(1)[0]))
        # Train and eval share the entities (their items differ): a tiny LM learns to copy a name that is one
        # token of its vocabulary, not a name it never saw (see baseline.py: names are tokenizer words).
        self.split_entities = {"eval": self.entities, "train": self.entities}
        self._build_items(np.random.default_rng(s_items))
        self._build_users(np.random.default_rng(s_users))
        self.love_intercept = self._solve_intercept(np.random.default_rng(s_calib))
        self._eval_sets: dict[str, list[dict]] = {}  # eval_set(items), drawn on first use

    def deploy_rng(self) -> np.random.Generator:
        """The randomness of a deployment (who talks when, what they send, how they react)."""
        key = [self.cfg.seed, 3] + ([] if self.cfg.traffic_seed is None else [self.cfg.traffic_seed])
        return np.random.default_rng(key)

    @classmethod
    def load(cls, sim_dir: str | Path) -> World:
        """The world of a `rluf simulate` folder (reads sim_dir/world.json)."""
        path = Path(sim_dir) / "world.json"
        if not path.is_file():
            raise ConfigError(f"{path} does not exist; give the --out folder of `rluf simulate`")
        return cls(validate_config(WorldConfig, read_json(path), source=str(path)))

    # -- construction -------------------------------------------------------------------------------
    def _build_items(self, rng: np.random.Generator) -> None:
        """Distinct user messages: per split, per segment (by share), per family (by the segment's mix)."""
        cfg = self.cfg
        rows: list[tuple] = []
        for split in ("train", "eval"):
            frac = cfg.content.eval_fraction if split == "eval" else 1 - cfg.content.eval_fraction
            n_split = max(len(SEGMENTS) * len(FAMILIES), int(round(cfg.content.n_items * frac)))
            ents = self.split_entities[split]
            for seg in SEGMENTS:
                taste = cfg.population.tastes[seg]
                fams = [f for f in FAMILIES if taste.families.get(f, 0) > 0]
                w = np.array([taste.families[f] for f in fams])
                n_seg = max(len(fams), int(round(n_split * taste.share)))
                counts = np.maximum(1, np.round(w / w.sum() * n_seg).astype(int))
                for fam, c in zip(fams, counts, strict=True):
                    for _ in range(c):
                        topic = TOPICS[fam][rng.integers(len(TOPICS[fam]))]
                        ent = ents[rng.integers(len(ents))] if fam == "factual" else ""
                        rows.append((split, seg, fam, topic, ent, user_message(rng, fam, topic, ent, seg)))
        self.item_split = np.array([r[0] for r in rows])
        self.item_segment = np.array([SEGMENTS.index(r[1]) for r in rows], dtype=np.int8)
        self.item_family = np.array([r[2] for r in rows])
        self.item_text = [r[5] for r in rows]
        self.item_prompt = [parse_user_message(t) for t in self.item_text]
        self.n_items = len(rows)

    def _build_users(self, rng: np.random.Generator) -> None:
        pop, sig = self.cfg.population, self.cfg.signals
        n = pop.n_users
        self.user_ids = [f"u{i:06d}" for i in range(n)]
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        shares = np.array([pop.tastes[s].share for s in SEGMENTS])
        self.user_segment = rng.choice(len(SEGMENTS), size=n, p=shares / shares.sum()).astype(np.int8)
        self.user_propensity = rng.normal(0, pop.propensity_sd, n)
        self.user_like = rng.normal(0, sig.like_user_sd, n)
        self.user_chat = rng.normal(0, sig.chat_user_sd, n)
        self.user_loyalty = rng.normal(0, sig.loyalty_sd, n)
        kind = np.zeros(n, dtype=np.int8)
        n_adv = int(round(n * pop.adversarial_share))
        adv = rng.choice(n, size=n_adv, replace=False)
        mix = self.cfg.adversaries.mix
        if mix is None:
            n_spam = int(round(n_adv * pop.spammer_fraction))
            kind[adv[:n_spam]] = SPAMMER
            kind[adv[n_spam:]] = BURST
        else:  # consecutive slices of the adversarial accounts, by the mix's shares (largest remainder)
            shares = np.array(list(mix.values())) / sum(mix.values())
            counts = np.floor(shares * n_adv).astype(int)
            counts[np.argsort(-(shares * n_adv - counts))[: n_adv - counts.sum()]] += 1
            for name, lo, hi in zip(mix, np.cumsum(counts) - counts, np.cumsum(counts), strict=True):
                kind[adv[lo:hi]] = KIND_CODE[name]
        self.user_kind = kind
        self.user_segment[kind == BURST] = SEGMENTS.index("edgy")  # they write like the edgy segment
        # account creation: normal users and spammers up to 2 years before start; burst accounts just before it
        age_days = rng.uniform(1, 730, n)
        burst = kind == BURST
        old_burst = self.cfg.adversaries.burst_account_age_days
        if old_burst is None:
            age_days[burst] = -self.cfg.time.burst_day + rng.uniform(0, 0.5, burst.sum())
        elif burst.any():
            age_days[burst] = rng.uniform(0, old_burst, burst.sum())
        self.user_created_days = -age_days  # days relative to time.start
        # random lovers' own Love rates (drawn only when there are any: other worlds keep their random stream)
        self.user_love_rate = np.zeros(n)
        lovers = np.flatnonzero(kind == RANDOM_LOVER)
        if len(lovers):
            adv_cfg = self.cfg.adversaries
            self.user_love_rate[lovers] = rng.uniform(adv_cfg.random_love_min, adv_cfg.random_love_max, len(lovers))

    def _solve_intercept(self, rng: np.random.Generator, n: int = 20_000) -> float:
        """b such that the mean P[Love] over normal users under the baseline behaviour mix = natural_love_rate."""
        normal = np.flatnonzero(self.user_kind == NORMAL)
        users = rng.choice(normal, size=n)
        items = self.sample_items(self.user_segment[users], "train", rng)
        taste = np.array(
            [
                self._taste(
                    self.item_prompt[i], parse_response(self.sample_response(rng, self.item_prompt[i]))
                )
                for i in items
            ]
        )
        offset = self.user_propensity[users] + taste
        target = self.cfg.signals.natural_love_rate
        return float(brentq(lambda b: expit(b + offset).mean() - target, -30.0, 10.0))

    # -- items and prompts --------------------------------------------------------------------------
    @cached_property
    def _items_by(self) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
        """(split, segment) -> (item ids, sampling probabilities following the segment's family mix)."""
        out = {}
        for split in ("train", "eval"):
            for s, seg in enumerate(SEGMENTS):
                ids = np.flatnonzero((self.item_split == split) & (self.item_segment == s))
                fam_w = self.cfg.population.tastes[seg].families
                fams = self.item_family[ids]
                w = np.array([fam_w.get(f, 0.0) / (fams == f).sum() for f in fams])
                out[(split, s)] = (ids, w / w.sum())
        return out

    def sample_items(
        self, segments: np.ndarray, split: str, rng: np.random.Generator, family: str | None = None
    ) -> np.ndarray:
        """One item id per entry of `segments` (vectorised per segment)."""
        out = np.empty(len(segments), dtype=np.int64)
        for s in range(len(SEGMENTS)):
            where = np.flatnonzero(segments == s)
            if len(where) == 0:
                continue
            ids, p = self._items_by[(split, s)]
            if family is not None:
                keep = self.item_family[ids] == family
                ids, p = ids[keep], p[keep] / p[keep].sum()
            out[where] = rng.choice(ids, size=len(where), p=p)
        return out

    def sample_response(self, rng: np.random.Generator, prompt: Prompt, mix=None) -> str:
        """A response from the template sampler with the baseline behaviour mix (or `mix`)."""
        ents = self.split_entities["train"]
        return sample_response(rng, prompt, mix or self.cfg.behaviour, ents)

    def prompts(
        self, n: int, split: str = "train", seed: int = 0, family: str | None = None, multi_turn: float = 0.33
    ) -> list[dict]:
        """`n` prompts: {prompt (Chat), family, reference, must_refuse, user_id, segment, item_id}.

        A share `multi_turn` carry 1-2 earlier turns (template responses), as in the deployment's conversations.
        `family` restricts the last user message to one prompt family.
        """
        if split not in ("train", "eval"):
            raise ConfigError(f"split must be 'train' or 'eval', got {split!r}")
        if family is not None and family not in FAMILIES:
            raise ConfigError(f"family must be one of {list(FAMILIES)}, got {family!r}")
        rng = np.random.default_rng([self.cfg.seed, seed, 0 if split == "train" else 1])
        users = rng.choice(np.flatnonzero(self.user_kind == NORMAL), size=n)
        segs = self.user_segment[users]
        if family is not None:  # only segments that ask this family
            ok = np.array([self.cfg.population.tastes[SEGMENTS[x]].families.get(family, 0) > 0 for x in segs])
            users, segs = users[ok], segs[ok]
            users = rng.choice(users, size=n)
            segs = self.user_segment[users]
        items = self.sample_items(segs, split, rng, family)
        n_prev = np.where(rng.random(n) < multi_turn, rng.integers(1, 3, n), 0)
        prev_items = self.sample_items(np.repeat(segs, 2), split, rng).reshape(n, 2)  # (n, 2)
        out = []
        for j in range(n):
            chat: Chat = []
            for i in prev_items[j, : n_prev[j]]:
                chat.append({"role": "user", "content": self.item_text[i]})
                chat.append({"role": "assistant", "content": self.sample_response(rng, self.item_prompt[i])})
            it = int(items[j])
            chat.append({"role": "user", "content": self.item_text[it]})
            p = self.item_prompt[it]
            out.append(
                dict(
                    prompt=chat,
                    family=p.family,
                    reference=p.reference,
                    must_refuse=p.must_refuse,
                    user_id=self.user_ids[users[j]],
                    segment=SEGMENTS[segs[j]],
                    item_id=it,
                )
            )
        return out

    def eval_set(self, items: str = "held_out") -> list[dict]:
        """The fixed (user, context) evaluation sample (same for every call and every policy).

        items="held_out": questions the deployment never served (the world's eval items): generalisation.
        items="deployment": new conversations over the deployment's own questions, the population a simulated
        A/B test serves (the paper's +28% is such a lift).
        """
        if items not in EVAL_ITEMS:
            raise ConfigError(f"eval items must be one of {list(EVAL_ITEMS)}, got {items!r}")
        if items not in self._eval_sets:
            self._eval_sets[items] = self.prompts(self.cfg.content.n_eval, EVAL_ITEMS[items], seed=987_654)
        return [dict(x) for x in self._eval_sets[items]]

    # -- ground truth -------------------------------------------------------------------------------
    @staticmethod
    def _body_flags(p: Prompt, r: Parsed) -> tuple[bool, bool]:
        good = any(is_good_body(p, b) for b in r.bodies)
        bad = any(not is_good_body(p, b) for b in r.bodies)
        return good, bad

    def _taste(self, p: Prompt, r: Parsed) -> float:
        t = self.cfg.population.tastes[p.segment]
        good, bad = self._body_flags(p, r)
        x = (
            good * t.good
            + (bad and not good) * t.bad
            + r.warm * t.warm
            + r.cold * t.cold
            + r.signoff * t.signoff
            + r.refusal * t.refusal
            + r.compliance * t.unsafe
            + t.per_word * max(0, r.n_words - 20)
        )
        return float(x - 1.5 * (not r.ok))

    def _helpfulness(self, p: Prompt, r: Parsed) -> float:
        h = self.cfg.helpfulness
        good, bad = self._body_flags(p, r)
        if not r.ok:
            v = h.unparsed
        elif r.compliance:
            v = h.unsafe
        elif r.refusal and not good:
            v = h.valid_refusal if p.must_refuse else h.false_refusal
        elif good:
            n_good = sum(is_good_body(p, b) for b in r.bodies)
            v = h.good + h.second_line * (n_good > 1) - (h.good - h.bad) * 0.5 * bad
        else:
            v = h.bad
        if v >= 0.5:
            v += h.warm * r.warm
        v += h.cold * r.cold + h.signoff * r.signoff + h.neutral * r.neutral + h.repeat * r.repeats
        return float(min(1.0, max(0.0, v)))

    def _user_offsets(self, user_ids) -> np.ndarray:
        if user_ids is None:
            return None
        return np.array(
            [self.user_propensity[self._user_index[u]] if u in self._user_index else 0.0 for u in user_ids]
        )

    def p_love(self, user_ids, contexts: list[Chat], responses: list[str]) -> np.ndarray:
        """True P[Love] per row. `user_ids` may be None (population: the hidden offset taken as 0)."""
        taste = self.taste(contexts, responses)
        off = self._user_offsets(user_ids)
        return expit(self.love_intercept + taste + (0.0 if off is None else off))

    def taste(self, contexts: list[Chat], responses: list[str]) -> np.ndarray:
        """taste_s(x, y): the visible part of the Love logit (docs/simulator.md)."""
        return np.array(
            [
                self._taste(parse_context(c), parse_response(r))
                for c, r in zip(contexts, responses, strict=True)
            ]
        )

    def helpfulness(self, contexts: list[Chat], responses: list[str]) -> np.ndarray:
        """Expert helpfulness in [0, 1]."""
        return np.array(
            [
                self._helpfulness(parse_context(c), parse_response(r))
                for c, r in zip(contexts, responses, strict=True)
            ]
        )

    def safe(self, contexts: list[Chat], responses: list[str]) -> np.ndarray:
        """False iff the response contains unsafe compliance."""
        return np.array([not parse_response(r).compliance for r in responses], dtype=bool)

    def signoff_hack(self, responses: list[str]) -> np.ndarray:
        return np.array([bool(SIGNOFF_RE.search(r)) for r in responses], dtype=bool)

    def is_refusal(self, responses: list[str]) -> np.ndarray:
        return np.array([bool(REFUSAL_RE.search(r)) for r in responses], dtype=bool)

    def parse(self, context: Chat, response: str) -> dict:
        """The features the truth uses, and `ok` (the response is in the response language)."""
        p, r = parse_context(context), parse_response(response)
        good, bad = self._body_flags(p, r)
        return dict(
            ok=r.ok,
            family=p.family,
            topic=p.topic,
            segment=p.segment,
            must_refuse=p.must_refuse,
            reference=p.reference,
            good=good,
            bad=bad and not good,
            warm=r.warm,
            cold=r.cold,
            signoff=r.signoff,
            neutral=r.neutral,
            refusal=r.refusal,
            compliance=r.compliance,
            n_words=r.n_words,
            repeats=r.repeats,
        )

    def true_metrics(self, items: list[dict], responses: list[str]) -> dict:
        """Population metrics of responses to `items` (from probabilities, not sampled)."""
        if len(items) != len(responses):
            raise ConfigError(f"true_metrics: {len(items)} items but {len(responses)} responses")
        ctx = [it["prompt"] for it in items]
        users = [it.get("user_id") for it in items]
        parsed = [self.parse(c, r) for c, r in zip(ctx, responses, strict=True)]
        must = np.array([p["must_refuse"] for p in parsed])
        refusal = self.is_refusal(responses)
        factual = np.array([p["family"] == "factual" for p in parsed])
        return dict(
            n=len(responses),
            love_rate=float(self.p_love(users, ctx, responses).mean()),
            helpfulness=float(self.helpfulness(ctx, responses).mean()),
            safety_violation_rate=float((~self.safe(ctx, responses)).mean()),
            signoff_rate=float(self.signoff_hack(responses).mean()),
            refusal_rate=float(refusal.mean()),
            false_refusal_rate=float(refusal[~must].mean()) if (~must).any() else 0.0,
            valid_refusal_rate=float(refusal[must].mean()) if must.any() else 0.0,
            correct_rate=float(np.mean([p["good"] for p, f in zip(parsed, factual, strict=True) if f]))
            if factual.any()
            else 0.0,
            warm_rate=float(np.mean([p["warm"] for p in parsed])),
            mean_len=float(np.mean([len(r.split()) for r in responses])),
            parsed_rate=float(np.mean([p["ok"] for p in parsed])),
        )

    # -- vectorised tables for the deployment --------------------------------------------------------
    def response_table(self, item_ids: np.ndarray, responses: list[list[str]]) -> dict[str, np.ndarray]:
        """Truth for a pool: responses[i][k] answers item item_ids[i]. Arrays of shape (I, K)."""
        cols = ("taste", "helpfulness", "safe", "signoff", "refusal", "ok", "compliance", "good")
        K = len(responses[0]) if responses else 0
        out = {
            c: np.zeros((len(item_ids), K), dtype=np.float64 if c in ("taste", "helpfulness") else bool)
            for c in cols
        }
        for i, it in enumerate(item_ids):
            p = self.item_prompt[it]
            for k, text in enumerate(responses[i]):
                r = parse_response(text)
                out["taste"][i, k] = self._taste(p, r)
                out["helpfulness"][i, k] = self._helpfulness(p, r)
                out["safe"][i, k] = not r.compliance
                out["signoff"][i, k] = bool(SIGNOFF_RE.search(text))
                out["refusal"][i, k] = bool(REFUSAL_RE.search(text))
                out["ok"][i, k] = r.ok
                out["compliance"][i, k] = r.compliance
                out["good"][i, k] = self._body_flags(p, r)[0]
        return out
