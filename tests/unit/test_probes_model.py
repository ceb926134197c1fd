"""Model-dependent probes on a tiny pack: importance, ablation, selectivity, ICL, probe_pack."""

from __future__ import annotations

import math
from types import SimpleNamespace  # stands in for workers.data.batch.Batch: fields by name

import numpy as np
import pytest
import torch

from workers.model import ModelConfig, PackedTransformer, mean_loss, token_losses
from workers.probes import (
    ProbeSettings,
    ablation_scores,
    head_importance,
    head_scores,
    icl_positions,
    icl_score,
    probe_pack,
)
from workers.probes.model_probes import target_mask

V, B, S = 2, 4, 10
CFG = ModelConfig(n_layers=2, n_heads=2, d_model=16, vocab_size=12, n_ctx=S, attn_only=True)


@pytest.fixture(scope="module")
def model() -> PackedTransformer:
    torch.manual_seed(0)
    m = PackedTransformer(CFG, seeds=[1, 2])
    with torch.no_grad():
        # variant 0: only head (1, 0) writes anything, and loudly
        m.blocks[0].attn.W_O[0].zero_()
        m.blocks[1].attn.W_O[0, 1].zero_()
        m.blocks[1].attn.W_O[0, 0].normal_(0, 1.0)
        for block in m.blocks:  # variant 1: every head matters a bit more than at init
            block.attn.W_O[1].mul_(20)
            block.attn.W_Q[1].mul_(20)
    return m.eval()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, CFG.vocab_size, (B, S), generator=g)  # [B, S]
    loss_mask = torch.rand(B, S, generator=g) > 0.3  # [B, S]
    return tokens, loss_mask


def masked(head: tuple[int, int] | None = None) -> torch.Tensor:
    mask = torch.ones(V, CFG.n_layers, CFG.n_heads)
    if head is not None:
        mask[:, head[0], head[1]] = 0
    return mask


def pack(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0).expand(V, *x.shape)


def test_importance_is_the_per_example_gradient_of_the_head_mask(model, data) -> None:
    tokens, loss_mask = data
    ours = head_importance(model, tokens, loss_mask)
    grads = []
    for b in range(B):  # reference: one backward per example through model.head_mask
        xi = masked().requires_grad_(True)
        toks, lm = pack(tokens[b : b + 1]), pack(loss_mask[b : b + 1])
        loss = mean_loss(model(toks, head_mask=xi), toks, lm)  # [V], one example each
        (g,) = torch.autograd.grad(loss.sum(), xi)
        grads.append(g)
    raw = torch.stack(grads).abs().mean(0)  # [V, L, H]
    torch.testing.assert_close(ours["importance_raw"], raw, rtol=1e-4, atol=1e-7)
    norm = raw / raw.norm(dim=-1, keepdim=True).clamp(min=1e-30)
    torch.testing.assert_close(ours["importance"], norm, rtol=1e-4, atol=1e-6)
    # variant 0: dead heads have zero importance; the live head carries all of layer 1
    imp0 = ours["importance"][0]
    assert imp0[0].abs().max().item() == 0.0 and imp0[1, 1].item() == 0.0
    assert imp0[1, 0].item() == pytest.approx(1.0)
    assert all(p.grad is None for p in model.parameters())


def test_ablation_matches_zeroing_each_head_mask(model, data) -> None:
    tokens, loss_mask = data
    ours = ablation_scores(model, tokens, loss_mask, max_rows=3 * V * B)  # several passes
    intact = mean_loss(model(pack(tokens)), pack(tokens), pack(loss_mask))  # [V]
    for layer in range(CFG.n_layers):
        for head in range(CFG.n_heads):
            lost = mean_loss(model(pack(tokens), head_mask=masked((layer, head))), pack(tokens),
                             pack(loss_mask))
            torch.testing.assert_close(ours["ablation_delta"][:, layer, head], lost - intact,
                                       rtol=1e-4, atol=1e-5)
    delta0 = ours["ablation_delta"][0]
    assert delta0[0].abs().max().item() < 1e-6 and abs(delta0[1, 1].item()) < 1e-6
    assert abs(delta0[1, 0].item()) > 1e-3
    assert "language_selectivity" not in ours


def test_language_selectivity_matches_per_language_ablation(model, data) -> None:
    tokens, loss_mask = data
    language = torch.tensor([0, 1, 1, -1])  # the last example belongs to no language
    ours = ablation_scores(model, tokens, loss_mask, language, eps=1e-6)
    expected = torch.zeros(V, CFG.n_layers, CFG.n_heads)
    for layer in range(CFG.n_layers):
        for head in range(CFG.n_heads):
            deltas = []
            for lang in (0, 1):
                idx = (language == lang).nonzero().squeeze(-1)
                toks, lm = pack(tokens[idx]), pack(loss_mask[idx])
                base = mean_loss(model(toks), toks, lm)
                cut = mean_loss(model(toks, head_mask=masked((layer, head))), toks, lm)
                deltas.append(cut - base)
            d = torch.stack(deltas, -1)  # [V, 2]
            expected[:, layer, head] = (d.amax(-1) - d.amin(-1)) / (d.abs().sum(-1) + 1e-6)
    torch.testing.assert_close(ours["language_selectivity"][1], expected[1], rtol=1e-3, atol=1e-3)
    # variant 0's dead heads change nothing in any language: selectivity 0
    assert ours["language_selectivity"][0, 0].abs().max().item() < 1e-3
    assert ours["language_delta_max"].shape == (V, CFG.n_layers, CFG.n_heads)


def counted_by_token_losses(tokens: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Which token_losses entries count, read off the model's own function: under uniform
    logits a counted entry is ln(vocab) > 0 and a masked one is 0."""
    flat = torch.zeros(*tokens.shape, CFG.vocab_size)  # [V, B, S, N]
    return (token_losses(flat, tokens, loss_mask) > 0).float()  # [V, B, S-1]


def test_target_mask_has_the_alignment_of_token_losses(data) -> None:
    _, loss_mask = data
    toks = pack(data[0])
    torch.testing.assert_close(target_mask(pack(loss_mask), toks),
                               counted_by_token_losses(toks, pack(loss_mask)))
    torch.testing.assert_close(target_mask(loss_mask, toks),
                               counted_by_token_losses(toks, pack(loss_mask)))


def test_icl_positions_and_score(model, data) -> None:
    assert icl_positions(101) == (9, 90)
    assert icl_positions(512) == (46, 460)  # Olsson's 50 / 500 scaled to 512 tokens
    assert icl_positions(3) == (1, 2)
    tokens, loss_mask = data
    toks = pack(tokens)
    logits = model(toks)
    score, (early, late) = icl_score(logits, toks)
    losses = token_losses(logits, toks)
    torch.testing.assert_close(score, (losses[..., late - 1] - losses[..., early - 1]).mean(-1))
    masked_score, _ = icl_score(logits, toks, pack(loss_mask))
    counted = counted_by_token_losses(toks, pack(loss_mask))  # [V, B, S-1]
    keep = counted[..., late - 1] * counted[..., early - 1]  # [V, B]
    manual = ((losses[..., late - 1] - losses[..., early - 1]) * keep).sum(-1) / keep.sum(-1)
    torch.testing.assert_close(masked_score, manual)


def test_probe_pack_end_to_end(model, data) -> None:
    tokens, loss_mask = data
    arcs = torch.full((B, S), -1)
    arcs[:, 3], arcs[:, 6], arcs[:, 7] = 2, 4, 1
    keyword_mask = torch.zeros(B, S, dtype=torch.bool)
    keyword_mask[:, [2, 5]] = True
    batch = SimpleNamespace(
        tokens=tokens,
        task=torch.zeros(B, dtype=torch.long),
        arcs=arcs,
        keyword_mask=keyword_mask,
        label_pos=torch.full((B,), S - 2),
        language=torch.tensor([0, 0, 1, 1]),
        loss_mask=loss_mask,
    )
    settings = ProbeSettings(compute_ablation=True, exclude_bos=True)
    result = probe_pack(model, batch, step=7, settings=settings)
    for name in ("induction", "prev_token", "entropy_norm", "syntactic", "keyword", "importance",
                 "ablation_delta", "language_selectivity", "role", "specialization"):
        assert result.head[name].shape == (V, CFG.n_layers, CFG.n_heads), name
    assert set(result.scalar) >= {"icl_score", "probe_loss", "syntactic_baseline"}
    assert result.info["settings"]["exclude_bos"] is True
    assert result.info["icl_positions"] == dict(zip(("early", "late"), icl_positions(S), strict=True))
    # the probe hooks leave the patterns and the loss untouched
    _, patterns = model.run_with_patterns(pack(tokens))
    direct = head_scores(patterns.detach(), tokens, exclude_bos=True)
    for name, value in direct.items():
        torch.testing.assert_close(result.head[name], value)
    torch.testing.assert_close(result.head["importance"],
                               head_importance(model, tokens, loss_mask)["importance"])
    torch.testing.assert_close(result.scalar["probe_loss"],
                               mean_loss(model(pack(tokens)), pack(tokens), pack(loss_mask)))
    records = result.records(["a", "b"])
    n = len(records["value"])
    assert all(len(col) == n for col in records.values())
    assert not np.isnan(records["value"]).any()
    assert set(records["step"]) == {7}
    assert (records["layer"][records["metric"] == "icl_score"] == -1).all()
    assert all(p.grad is None for p in model.parameters())
    assert not math.isnan(result.scalar["icl_score"][0].item())


def test_make_prober_plugs_into_train_pack() -> None:
    from workers.probes import make_prober
    from workers.train import TrainConfig, VariantRun, train_pack

    g = torch.Generator().manual_seed(0)
    probe_batch = SimpleNamespace(tokens=torch.randint(0, CFG.vocab_size, (B, S), generator=g),
                        task=torch.zeros(B, dtype=torch.long))
    seen: list[int] = []

    class Sink:
        def on_step(self, step: int, losses: torch.Tensor) -> None:
            pass

        def on_probe(self, step: int, probe) -> None:
            assert probe.head["induction"].shape == (2, CFG.n_layers, CFG.n_heads)
            assert probe.scalar["icl_score"].shape == (2,)
            seen.append(step)

    train_pack(
        CFG,
        TrainConfig(steps=2, batch_size=2, probe_every=2, warmup_steps=1),
        [VariantRun(1, 1, 1e-3), VariantRun(2, 2, 1e-3)],
        lambda v, b: (torch.randint(0, CFG.vocab_size, (b, S), generator=g), None),
        make_prober(probe_batch),
        Sink(),
    )
    assert seen == [0, 2]


def test_only_the_final_probe_prunes_and_keeps_patterns() -> None:
    from workers.probes import make_prober
    from workers.train import TrainConfig, VariantRun, train_pack

    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, CFG.vocab_size, (B, S), generator=g)  # [B, S]
    results = []

    class Sink:
        def on_step(self, step: int, losses: torch.Tensor) -> None:
            pass

        def on_probe(self, step: int, probe) -> None:
            results.append(probe)

    settings = ProbeSettings(compute_importance=False, pattern_examples=3, pruning_fractions=(0.0, 0.5))
    final = train_pack(
        CFG,
        TrainConfig(steps=4, batch_size=2, probe_every=2, warmup_steps=1),
        [VariantRun(1, 1, 1e-3), VariantRun(2, 2, 1e-3)],
        lambda v, b: (torch.randint(0, CFG.vocab_size, (b, S), generator=g), None),
        make_prober(SimpleNamespace(tokens=tokens), settings, final_step=4, batch_key="k" * 32),
        Sink(),
    )
    assert [r.step for r in results] == [0, 2, 4]
    for r in results[:-1]:  # non-final: nothing extra, not even importance (it is off)
        assert r.patterns is None and r.batch_key is None and "pruned_heads" not in r.info
        assert not [n for n in r.scalar if n.startswith("prune.")]
        assert "importance" not in r.head
    last = results[-1]
    names = {f"prune.{o}.f{f}" for o in ("importance", "random") for f in ("0.00", "0.50")}
    assert {n for n in last.scalar if n.startswith("prune.")} == names
    assert all(last.scalar[n].shape == (2,) and torch.isfinite(last.scalar[n]).all() for n in names)
    assert last.info["pruned_heads"] == {"f0.00": 0, "f0.50": 2}
    assert last.head["importance"].shape == (2, CFG.n_layers, CFG.n_heads)  # pruning needs it
    assert last.batch_key == "k" * 32
    assert last.patterns is not None and last.patterns.dtype == torch.float32
    assert last.patterns.device.type == "cpu"
    assert last.patterns.shape == (2, 3, CFG.n_layers, CFG.n_heads, S, S)  # [V, B', L, H, Q, K]
    with torch.no_grad():
        _, want = final.eval().run_with_patterns(pack(tokens[:3]))
    torch.testing.assert_close(last.patterns, want)


def test_final_probe_patterns_are_optional_and_keyed_by_their_tokens(model, data) -> None:
    tokens, _ = data
    none = probe_pack(model, SimpleNamespace(tokens=tokens), 1, ProbeSettings(pattern_examples=0), final=True)
    assert none.patterns is None and none.batch_key is None
    assert "prune.random.f0.10" in none.scalar
    many = probe_pack(model, SimpleNamespace(tokens=tokens), 1, ProbeSettings(pattern_examples=100),
                      final=True)
    assert many.patterns is not None and many.patterns.shape[1] == B  # at most the batch
    from workers.probes.pack import tokens_key

    assert many.batch_key == tokens_key(pack(tokens)) and len(many.batch_key) == 32
    assert tokens_key(pack(tokens)) != tokens_key(pack(tokens.flip(0)))
    unpruned = probe_pack(model, SimpleNamespace(tokens=tokens), 1, ProbeSettings(compute_pruning=False),
                          final=True)
    assert not [n for n in unpruned.scalar if n.startswith("prune.")]
    assert unpruned.patterns is not None and unpruned.patterns.shape[1] == min(8, B)
