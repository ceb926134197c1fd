"""A sweep written straight into the store whose every analysis answer is known.

Factors ``model.n_layers`` ∈ {1, 2} (raises induction and makes it emerge) and ``train.lr``
∈ {0.001, 0.01} (no effect), four seeds; every variant has 2 layers × 2 heads (the factor is
nominal here). Probe steps 0, 50, 100, 150, 200.

- induction: head (1, 0) of a depth-2 variant jumps 0.04 → 0.35 at step 100 (abrupt) and ends
  at 0.42 + seed noise + ``shift``; every other head stays at 0.03; depth 1 never emerges.
- prev_token: head (0, 1) rises 0.1, 0.3, 0.6, 0.7, 0.7 in every variant (emerges at 100).
- roles at the last step: (0, 1) previous_token, (1, 0) induction at depth 2 (none at depth
  1), (0, 0) broad, (1, 1) sink; odd seeds swap the two heads of every layer (heads have no
  identity across runs) — in the roles, the metrics and the stored attention patterns alike.
- pruning: importance order loss 2 + f, random order 2 + 2f (+ seed noise).
"""

from __future__ import annotations

import numpy as np

from service.store import NewVariant, Store

STEPS = (0, 50, 100, 150, 200)
SEED_NOISE = (0.0, 0.02, -0.015, 0.01)
FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
THRESHOLDS = {"induction": 0.2, "prev_token": 0.5, "sink": 0.6, "abrupt_fraction": 0.5}
ROLE = {"induction": 0, "previous_token": 1, "sink": 7, "broad": 8, "none": 9}
Q = 6


def _patterns(kinds: list[list[str]]) -> np.ndarray:
    """[B=2, L, H, Q, Q] causal attention patterns of the named kinds."""
    rows = np.tril(np.ones((Q, Q)))
    out = np.zeros((2, len(kinds), len(kinds[0]), Q, Q))
    for layer, names in enumerate(kinds):
        for head, kind in enumerate(names):
            if kind == "uniform":
                p = rows / rows.sum(-1, keepdims=True)
            elif kind == "prev":
                p = np.eye(Q, k=-1)
                p[0, 0] = 1.0
            elif kind == "self":
                p = np.eye(Q)
            else:  # sink
                p = np.zeros((Q, Q))
                p[:, 0] = 1.0
            out[:, layer, head] = p
    return out


def fill_known_sweep(store: Store, name: str = "known", *, shift: float = 0.0) -> int:
    new = [NewVariant(factors={"model.n_layers": depth, "train.lr": lr},
                      config={"seed": seed, "train": {"lr": lr}, "probe": {"thresholds": THRESHOLDS}},
                      pack_key=f"p{depth}")
           for depth in (1, 2) for lr in (0.001, 0.01) for seed in range(4)]
    sweep, variants = store.create_sweep(name, {"name": name}, new)
    cols: dict[str, list] = {k: [] for k in ("variant_id", "step", "layer", "head", "metric", "value")}
    scalars: dict[str, list] = {"variant_id": [], "step": [], "name": [], "value": []}

    def put(vid: int, step: int, metric: str, layer: int, head: int, value: float) -> None:
        for k, x in zip(cols, (vid, step, layer, head, metric, value), strict=True):
            cols[k].append(x)

    def scalar(vid: int, step: int, metric: str, value: float) -> None:
        for k, x in zip(scalars, (vid, step, metric, value), strict=True):
            scalars[k].append(x)

    for v in variants:
        seed, deep = v.config["seed"], v.factors["model.n_layers"] == 2
        noise = SEED_NOISE[seed]
        swap = seed % 2 == 1

        def h(head: int, swap: bool = swap) -> int:  # the head index this run gives a head
            return 1 - head if swap else head

        for i, step in enumerate(STEPS):
            induction = [0.02, 0.04, 0.35, 0.40, 0.42 + noise + shift][i] if deep else 0.03
            for layer in (0, 1):
                for head in (0, 1):
                    value = induction if (layer, head) == (1, 0) else 0.03
                    put(v.id, step, "induction", layer, h(head), value)
                    prev = [0.1, 0.3, 0.6, 0.7, 0.7][i] if (layer, head) == (0, 1) else 0.05
                    put(v.id, step, "prev_token", layer, h(head), prev)
            scalar(v.id, step, "train_loss", 3.0 - 0.005 * step)
            scalar(v.id, step, "icl_score", -0.01 * step * (2 if deep else 1))
        last = STEPS[-1]
        roles = {(0, 0): "broad", (0, 1): "previous_token", (1, 0): "induction" if deep else "none",
                 (1, 1): "sink"}
        spec = {(0, 0): 0.1, (0, 1): 0.8, (1, 0): 0.9 if deep else 0.0, (1, 1): 0.3}
        for (layer, head), role in roles.items():
            put(v.id, last, "role", layer, h(head), float(ROLE[role]))
            put(v.id, last, "specialization", layer, h(head), spec[(layer, head)])
        for f in FRACTIONS:
            scalar(v.id, last, f"prune.importance.f{f:.2f}", 2.0 + f + noise)
            scalar(v.id, last, f"prune.random.f{f:.2f}", 2.0 + 2 * f + noise)
        kinds = [["uniform", "prev"], ["self", "sink"]]
        if swap:
            kinds = [names[::-1] for names in kinds]
        store.write_head_patterns(v.id, last, "batch-a", _patterns(kinds))
    store.write_head_metrics({k: np.asarray(c, dtype=object if k == "metric" else None)
                              for k, c in cols.items()}, mirror=False)
    store.write_scalar_metrics(scalars, mirror=False)
    return sweep.id
