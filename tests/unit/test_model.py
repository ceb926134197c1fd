import pytest
import torch

from workers.model import ConfigError, ModelConfig, PackedTransformer, mean_loss, token_losses
from workers.optim import PackedAdamW

CFG = ModelConfig(n_layers=2, n_heads=4, d_model=32, vocab_size=50, n_ctx=16)


def tokens(v: int, b: int = 3, s: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 50, (v, b, s), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_heads": 3}, "model.d_model=32 is not divisible by model.n_heads=3"),
        ({"n_heads": 0}, "model.n_heads"),
        ({"n_layers": -1}, "model.n_layers"),
        ({"d_head": 0}, "model.d_head"),
        ({"vocab_size": 2.5}, "model.vocab_size"),
    ],
)
def test_config_refuses_what_cannot_work(kwargs, field):
    base = dict(n_layers=2, n_heads=4, d_model=32, vocab_size=50, n_ctx=16)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        ModelConfig(**{**base, **kwargs})


def test_explicit_d_head_allows_any_head_count():
    cfg = ModelConfig(n_layers=1, n_heads=3, d_model=32, d_head=8, vocab_size=10, n_ctx=8)
    model = PackedTransformer(cfg, [0])
    assert model.blocks[0].attn.W_Q.shape == (1, 3, 32, 8)


def test_from_dict_names_unknown_fields():
    with pytest.raises(ConfigError, match="n_head"):
        ModelConfig.from_dict({"n_layers": 1, "n_head": 2, "d_model": 8, "vocab_size": 5, "n_ctx": 4})


def test_param_count_matches_modules():
    for attn_only in (False, True):
        for layer_norm in (False, True):
            cfg = ModelConfig(**{**CFG.to_dict(), "attn_only": attn_only, "layer_norm": layer_norm})
            model = PackedTransformer(cfg, [0])
            assert cfg.n_params() == sum(p.numel() for p in model.parameters())


def test_variant_init_does_not_depend_on_its_pack():
    alone = PackedTransformer(CFG, [7])
    packed = PackedTransformer(CFG, [3, 7, 11])
    for (name, p_alone), p_packed in zip(alone.named_parameters(), packed.parameters(), strict=True):
        assert torch.equal(p_alone[0], p_packed[1]), name
    assert not torch.equal(packed.W_E[0], packed.W_E[1])


def test_pack_output_equals_each_variant_alone():
    packed = PackedTransformer(CFG, [1, 2])
    toks = tokens(2)
    logits = packed(toks)
    for v, seed in enumerate([1, 2]):
        alone = PackedTransformer(CFG, [seed])
        torch.testing.assert_close(logits[v], alone(toks[v : v + 1])[0], rtol=1e-5, atol=1e-5)


def test_patterns_are_causal_rows_and_match_fast_path():
    model = PackedTransformer(CFG, [0, 1])
    toks = tokens(2)
    logits, patterns = model.run_with_patterns(toks)
    assert patterns.shape == (2, 3, 2, 4, 16, 16)
    torch.testing.assert_close(patterns.sum(-1), torch.ones(2, 3, 2, 4, 16))
    upper = torch.ones(16, 16, dtype=torch.bool).triu(1)
    assert patterns[..., upper].abs().max() == 0
    torch.testing.assert_close(logits, model(toks), rtol=1e-5, atol=1e-5)


def test_hook_point_sees_each_layer_pattern():
    model = PackedTransformer(CFG, [0])
    seen = []
    handle = model.blocks[1].attn.hook_pattern.register_forward_hook(lambda m, i, o: seen.append(o))
    model(tokens(1))
    handle.remove()
    assert len(seen) == 1 and seen[0].shape == (1, 3, 4, 16, 16)
    model(tokens(1))
    assert len(seen) == 1


def test_head_mask_removes_exactly_that_head():
    model = PackedTransformer(CFG, [0])
    toks = tokens(1)
    mask = torch.ones(1, 2, 4)
    mask[0, 1, 2] = 0
    masked = model(toks, head_mask=mask)
    # zeroing W_O of that head is the same intervention
    with torch.no_grad():
        model.blocks[1].attn.W_O[0, 2] = 0
    torch.testing.assert_close(masked, model(toks), rtol=1e-5, atol=1e-5)


def test_head_mask_gradient_reaches_every_head():
    model = PackedTransformer(CFG, [0, 1])
    toks = tokens(2)
    mask = torch.ones(2, 2, 4, requires_grad=True)
    mean_loss(model(toks, head_mask=mask), toks).sum().backward()
    assert mask.grad is not None and (mask.grad.abs() > 0).all()


def test_loss_mask_counts_only_marked_targets():
    model = PackedTransformer(CFG, [0])
    toks = tokens(1)
    logits = model(toks)
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[:, 5] = True
    per_pos = token_losses(logits, toks)
    torch.testing.assert_close(mean_loss(logits, toks, mask), per_pos[:, :, 4].mean(1))


def test_packed_adamw_keeps_variants_independent():
    """Training variant 0 only must leave variant 1 bit-for-bit unchanged."""
    model = PackedTransformer(CFG, [0, 1])
    before = [p.detach().clone() for p in model.parameters()]
    opt = PackedAdamW(list(model.parameters()), torch.tensor([1e-2, 1e-2]))
    toks = tokens(2)
    mean_loss(model(toks), toks)[0].backward()
    opt.step()
    changed0 = any(not torch.equal(p[0], b[0]) for p, b in zip(model.parameters(), before, strict=True))
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p[1], b[1])
    assert changed0


def test_per_variant_learning_rate_scales_the_step():
    model = PackedTransformer(CFG, [5, 5])
    opt = PackedAdamW(list(model.parameters()), torch.tensor([1e-3, 2e-3]), grad_clip=None)
    w0 = model.W_U.detach().clone()
    toks = tokens(1).expand(2, -1, -1)
    mean_loss(model(toks), toks).sum().backward()
    opt.step()
    delta = (model.W_U.detach() - w0).abs().flatten(1).sum(1)
    torch.testing.assert_close(delta[1] / delta[0], torch.tensor(2.0), rtol=1e-3, atol=0)
