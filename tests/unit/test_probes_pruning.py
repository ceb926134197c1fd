"""Pruning curves (workers.probes.pruning) and the settings that drive them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from workers.model import ModelConfig, PackedTransformer, mean_loss
from workers.probes import ProbeSettings, probe_pack
from workers.probes.pruning import importance_order, pruned_heads, pruning_curves, random_orders

V, B, S = 2, 6, 12
CFG = ModelConfig(n_layers=2, n_heads=2, d_model=16, vocab_size=12, n_ctx=S, attn_only=True,
                  init_std=0.5)  # large weights: every head changes the loss visibly
N = CFG.n_layers * CFG.n_heads


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> PackedTransformer:
    return PackedTransformer(CFG, seeds=[3, 4]).eval()


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (B, S), generator=torch.Generator().manual_seed(1))  # [B, S]


def pack(x: torch.Tensor, v: int = V) -> torch.Tensor:
    return x.unsqueeze(0).expand(v, *x.shape)  # [V, B, S]


def loss_without(model: PackedTransformer, tokens: torch.Tensor, removed: list[list[int]]) -> torch.Tensor:
    """Loss [V] with the flat heads ``removed[v]`` of each variant zeroed, one loop per head."""
    mask = torch.ones(model.n_variants, CFG.n_layers, CFG.n_heads)
    for v, heads in enumerate(removed):
        for i in heads:
            mask[v, i // CFG.n_heads, i % CFG.n_heads] = 0.0
    with torch.no_grad():
        t = pack(tokens, model.n_variants)
        return mean_loss(model(t, head_mask=mask), t)  # [V]


def test_heads_removed_per_fraction_round_half_up() -> None:
    assert [pruned_heads(f, 16) for f in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)] == [0, 2, 3, 5, 6, 8]
    assert pruned_heads(0.125, 4) == 1  # 0.5 rounds up, not to even
    assert pruned_heads(0.3, 10) == 3  # 0.3 · 10 = 3.0000000000000004
    assert pruned_heads(0.99, 4) == 4


def test_fraction_zero_is_the_intact_probe_loss(model, tokens) -> None:
    result = probe_pack(model, SimpleNamespace(tokens=tokens), step=5, final=True)
    for order in ("importance", "random"):
        torch.testing.assert_close(result.scalar[f"prune.{order}.f0.00"], result.scalar["probe_loss"])
    intact = loss_without(model, tokens, [[], []])
    torch.testing.assert_close(result.scalar["prune.importance.f0.00"], intact)
    # and the pipeline prunes by the importance it measured at that probe
    again = pruning_curves(model, tokens, None, result.head["importance"], ProbeSettings())
    for name, value in again.items():
        torch.testing.assert_close(result.scalar[name], value)


def test_removing_every_head_is_the_zero_head_mask(model, tokens) -> None:
    settings = ProbeSettings(pruning_fractions=(0.9,))  # round(0.9 · 4) = 4: all heads
    curves = pruning_curves(model, tokens, None, torch.rand(V, CFG.n_layers, CFG.n_heads), settings)
    with torch.no_grad():
        zero_mask = torch.zeros(V, CFG.n_layers, CFG.n_heads)
        zero = mean_loss(model(pack(tokens), head_mask=zero_mask), pack(tokens))  # [V]
    torch.testing.assert_close(curves["prune.importance.f0.90"], zero)
    torch.testing.assert_close(curves["prune.random.f0.90"], zero)
    assert (zero - loss_without(model, tokens, [[], []])).abs().min() > 1e-3  # the heads did matter


def test_importance_order_removes_exactly_the_least_important_heads(model, tokens) -> None:
    importance = torch.tensor([[[0.9, 0.1], [0.5, 0.3]],  # variant 0: least first 1, 3, 2, 0
                               [[0.2, 0.8], [0.6, 0.2]]])  # variant 1: 0, 3 (tie: lower index first), 2, 1
    assert importance_order(importance).tolist() == [[1, 3, 2, 0], [0, 3, 2, 1]]
    fractions = (0.0, 0.25, 0.5, 0.75)
    curves = pruning_curves(model, tokens, None, importance, ProbeSettings(pruning_fractions=fractions))
    flat = importance.reshape(V, N).tolist()
    for f in fractions:
        k = pruned_heads(f, N)
        least = [sorted(range(N), key=lambda i, v=v: (flat[v][i], i))[:k] for v in range(V)]
        torch.testing.assert_close(curves[f"prune.importance.f{f:.2f}"], loss_without(model, tokens, least))
    # a different importance gives a different curve: the order is really used
    flipped = pruning_curves(model, tokens, None, -importance, ProbeSettings(pruning_fractions=(0.25,)))
    assert not torch.allclose(flipped["prune.importance.f0.25"], curves["prune.importance.f0.25"])


def test_random_orders_are_seeded_shared_and_averaged(model, tokens) -> None:
    settings = ProbeSettings(pruning_fractions=(0.25, 0.5), pruning_random_orders=3, pruning_seed=7)
    importance = torch.rand(V, CFG.n_layers, CFG.n_heads)
    curves = pruning_curves(model, tokens, None, importance, settings)
    repeat = pruning_curves(model, tokens, None, importance, settings)
    for name in curves:
        torch.testing.assert_close(curves[name], repeat[name], rtol=0, atol=0)
    perms = random_orders(N, 3, 7)
    torch.testing.assert_close(perms, random_orders(N, 3, 7), rtol=0, atol=0)
    gen = torch.Generator().manual_seed(7)
    explicit = [torch.randperm(N, generator=gen).tolist() for _ in range(3)]
    assert perms.tolist() == explicit
    for f in (0.25, 0.5):
        k = pruned_heads(f, N)
        mean = torch.stack([loss_without(model, tokens, [p[:k]] * V) for p in explicit]).mean(0)
        torch.testing.assert_close(curves[f"prune.random.f{f:.2f}"], mean)
    other = pruning_curves(model, tokens, None, importance, ProbeSettings(
        pruning_fractions=(0.25, 0.5), pruning_random_orders=3, pruning_seed=8))
    assert any(not torch.allclose(other[n], curves[n]) for n in curves if n.startswith("prune.random"))


def test_curves_do_not_depend_on_the_pack(model, tokens) -> None:
    alone = PackedTransformer(CFG, seeds=[4]).eval()  # variant 1 of ``model``, on its own
    importance = torch.rand(V, CFG.n_layers, CFG.n_heads, generator=torch.Generator().manual_seed(2))
    both = pruning_curves(model, tokens, None, importance, ProbeSettings())
    one = pruning_curves(alone, tokens, None, importance[1:], ProbeSettings())
    assert set(both) == set(one) == {f"prune.{o}.f{f:.2f}" for o in ("importance", "random")
                                     for f in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)}
    for name in both:
        torch.testing.assert_close(both[name][1:], one[name])


def test_curves_respect_the_loss_mask_and_the_models_own_head_mask(tokens) -> None:
    m = PackedTransformer(CFG, seeds=[3, 4]).eval()
    loss_mask = torch.rand(B, S, generator=torch.Generator().manual_seed(3)) > 0.4  # [B, S]
    m.head_mask[0, 1, 1] = 0.0  # a head switched off by the caller stays off
    settings = ProbeSettings(pruning_fractions=(0.0,))
    curves = pruning_curves(m, tokens, loss_mask, torch.rand(V, 2, 2), settings)
    with torch.no_grad():
        want = mean_loss(m(pack(tokens)), pack(tokens), pack(loss_mask))  # [V]
        all_on = mean_loss(m(pack(tokens), head_mask=torch.ones(V, 2, 2)), pack(tokens), pack(loss_mask))
    torch.testing.assert_close(curves["prune.random.f0.00"], want)
    assert abs(float(want[0] - all_on[0])) > 1e-3 and float(want[1] - all_on[1]) == 0.0


# -- settings -------------------------------------------------------------------------------


def test_pruning_settings_round_trip_through_json() -> None:
    settings = ProbeSettings(pruning_fractions=(0.0, 0.25, 0.5), pruning_random_orders=2, pruning_seed=3,
                             pattern_examples=0, compute_pruning=False)
    data = json.loads(json.dumps(settings.to_dict()))
    assert data["pruning_fractions"] == [0.0, 0.25, 0.5]
    back = ProbeSettings.from_dict(data)
    assert back == settings and isinstance(back.pruning_fractions, tuple)
    assert ProbeSettings.from_dict(json.loads(json.dumps(ProbeSettings().to_dict()))) == ProbeSettings()
    assert ProbeSettings(pruning_fractions=[0, 0.5]).pruning_fractions == (0.0, 0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value"), [
    ("pruning_fractions", (0.1, 1.0)),
    ("pruning_fractions", (-0.1,)),
    ("pruning_fractions", "0.1"),
    ("pruning_fractions", (0.1, True)),
    ("pruning_fractions", (0.1, 0.101)),  # both would be named f0.10
    ("pruning_random_orders", 0),
    ("pruning_random_orders", 1.5),
    ("pruning_seed", -1),
    ("pattern_examples", -1),
    ("pattern_examples", None),
    ("compute_pruning", "yes"),
])
def test_bad_pruning_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^probe\.{field} "):
        ProbeSettings(**{field: value})
    with pytest.raises(ValueError, match=rf"^probe\.{field} "):
        ProbeSettings.from_dict({field: list(value) if isinstance(value, tuple) else value})
