"""SCIENCE.md, published finding 1 (Olsson et al. 2022; Elhage et al. 2021): depth is
required for induction heads. Attention-only models on repeated random tokens: a 2-layer
model forms an induction head in layer 1, with a previous-token head in layer 0, and the
icl_score falls abruptly when it does; a 1-layer model forms no induction head.

Recipe (CPU, ~1 min): no layer norm, init_std = 1/sqrt(d_model), lr 2e-2, batch 32, and data
where at least half the targets are predictable only by induction, with a random repeat period
and a random start, so no positional shortcut exists.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from workers.model import ModelConfig
from workers.probes import ProbeSettings
from workers.probes.pack import make_prober
from workers.probes.roles import RoleThresholds, emergence_step
from workers.train import TrainConfig, VariantRun, train_pack

pytestmark = pytest.mark.slow

VOCAB, SEQ, R = 64, 49, 24  # probe: BOS + 2 x 24 random tokens, as long as the training data
N_MIN, N_MAX = 8, 24  # repeat period of the training data
SEEDS = (1, 2)
TRAIN = TrainConfig(steps=400, batch_size=32, lr=2e-2, warmup_steps=50, weight_decay=0.0,
                    grad_clip=1.0, probe_every=25)
UNIFORM_INDUCTION = 0.03  # a uniform causal head on this probe (vocab 64: chance matches count)


def model_cfg(n_layers: int) -> ModelConfig:
    return ModelConfig(n_layers=n_layers, n_heads=4, d_model=64, vocab_size=VOCAB, n_ctx=SEQ,
                       attn_only=True, layer_norm=False, init_std=64**-0.5)


def repeated_batch(gen: torch.Generator, b: int) -> torch.Tensor:
    """BOS, a random prefix of p tokens, then a random segment of n tokens tiled to the end.

    n ~ U{8..24}, p ~ U{0..S-1-2n}: at least two copies, period and start vary per sequence.
    Tokens uniform over 1..63 (0 = BOS).
    """
    n = torch.randint(N_MIN, N_MAX + 1, (b,), generator=gen)  # [b]
    p = (torch.rand(b, generator=gen) * (SEQ - 2 * n)).long()  # [b] U{0..S-1-2n}
    fresh = torch.randint(1, VOCAB, (b, SEQ - 1), generator=gen)  # [b, S-1]
    pos = torch.arange(SEQ - 1)[None]  # [1, S-1]
    src = torch.where(pos < p[:, None], pos, p[:, None] + (pos - p[:, None]) % n[:, None])
    body = torch.gather(fresh, 1, src)  # [b, S-1]
    return torch.cat([torch.zeros(b, 1, dtype=torch.long), body], 1)  # [b, S]


def probe_tokens() -> torch.Tensor:
    seg = torch.randint(1, VOCAB, (64, R), generator=torch.Generator().manual_seed(7))
    return torch.cat([torch.zeros(64, 1, dtype=torch.long), seg, seg], 1)  # [64, 49]


class Recorder:
    def __init__(self) -> None:
        self.steps: list[int] = []
        self.probes: list = []

    def on_step(self, step: int, losses: torch.Tensor) -> None:
        pass

    def on_probe(self, step: int, probe) -> None:
        self.steps.append(step)
        self.probes.append(probe)

    def series(self, metric: str, layer: int | None = None) -> torch.Tensor:
        """[n_probes, V]: the layer's max over heads for a head metric, or the scalar."""
        if layer is None:
            return torch.stack([p.scalar[metric] for p in self.probes])
        return torch.stack([p.head[metric][:, layer].amax(-1) for p in self.probes])


def run(n_layers: int) -> Recorder:
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: 2 threads gain little and thrash on a busy box
    try:
        return _run(n_layers)
    finally:
        torch.set_num_threads(threads)


def _run(n_layers: int) -> Recorder:
    gens = [torch.Generator().manual_seed(100 + s) for s in SEEDS]
    rec = Recorder()
    prober = make_prober(SimpleNamespace(tokens=probe_tokens()), ProbeSettings(compute_importance=False))
    variants = [VariantRun(seed=s, data_seed=100 + s, lr=TRAIN.lr) for s in SEEDS]
    train_pack(model_cfg(n_layers), TRAIN, variants,
               lambda v, b: (repeated_batch(gens[v], b), None), prober, rec)
    return rec


@pytest.fixture(scope="module")
def two_layer() -> Recorder:
    return run(2)


@pytest.fixture(scope="module")
def one_layer() -> Recorder:
    return run(1)


def emergence(rec: Recorder, series: torch.Tensor, threshold: float) -> list[int]:
    """Per variant: index of the probe at which ``workers.probes.emergence_step`` says the
    score starts staying >= threshold (-1: never). The detector under test, not a copy."""
    out = []
    for v in range(series.shape[1]):
        found = emergence_step(rec.steps, series[:, v].tolist(), threshold)
        out.append(-1 if found is None else rec.steps.index(found.step))
    return out


INDUCTION_THRESHOLD = RoleThresholds().induction


def test_two_layer_forms_induction_head_in_layer_1(two_layer: Recorder) -> None:
    ind = two_layer.series("induction", layer=1)  # [P, V]
    assert (ind[0] < 2 * UNIFORM_INDUCTION).all()
    assert (ind[-1] > 10 * UNIFORM_INDUCTION).all(), ind[-1]  # ideal ≈ 0.49
    assert (two_layer.series("induction", layer=0)[-1] < 2 * UNIFORM_INDUCTION).all()


def test_previous_token_head_in_layer_0_is_there_first(two_layer: Recorder) -> None:
    prev = two_layer.series("prev_token", layer=0)  # [P, V]; ≈ 0.07 at init
    ind_at = emergence(two_layer, two_layer.series("induction", layer=1), INDUCTION_THRESHOLD)
    prev_at = emergence(two_layer, prev, 2 * float(prev[0].max()))
    assert (prev[-1] > 0.4).all(), prev[-1]
    for v, (i, p) in enumerate(zip(ind_at, prev_at, strict=True)):
        assert i > 0 and 0 < p <= i, (v, p, i)


def test_icl_score_falls_abruptly_with_the_induction_head(two_layer: Recorder) -> None:
    icl = two_layer.series("icl_score")  # [P, V]
    ind_at = emergence(two_layer, two_layer.series("induction", layer=1), INDUCTION_THRESHOLD)
    for v, i in enumerate(ind_at):
        fall = float(icl[0, v] - icl[-1, v])
        assert fall > 2.5, icl[:, v]  # ≈ 3.8 nats; a 1-layer model gets ≈ 1
        half = int((icl[:, v] <= icl[0, v] - 0.5 * fall).nonzero()[0])  # first probe past half
        assert abs(half - i) <= 1, (v, half, i, icl[:, v])
        # before the head: only the ≈ -1 a 1-layer model also reaches (in-context unigrams)
        assert icl[max(i - 3, 0), v] > -1.5, icl[:, v]
        # abrupt: 4 probe intervals (100 of 400 steps) around the emergence carry most of it
        window = float(icl[max(i - 2, 0), v] - icl[min(i + 2, len(icl) - 1), v])
        assert window > 0.5 * fall, (window, fall, icl[:, v])  # 0.62–0.93 over 12 seeds


def test_one_layer_forms_no_induction_head(one_layer: Recorder, two_layer: Recorder) -> None:
    ind = one_layer.series("induction", layer=0)  # [P, V]
    assert (ind.amax(0) < 0.1).all(), ind.amax(0)  # the 2-layer model reaches ≈ 0.45
    assert (ind[-1] < 2 * UNIFORM_INDUCTION).all(), ind[-1]
    assert (one_layer.series("icl_score")[-1] > two_layer.series("icl_score")[-1] + 1.5).all()
