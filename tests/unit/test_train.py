import pytest
import torch

from workers.model import ModelConfig
from workers.train import ProbeResult, TrainConfig, VariantRun, train_pack

CFG = ModelConfig(n_layers=1, n_heads=2, d_model=16, vocab_size=20, n_ctx=8, attn_only=True)


class Losses:
    def __init__(self) -> None:
        self.by_step: dict[int, torch.Tensor] = {}
        self.probed: list[int] = []

    def on_step(self, step: int, losses: torch.Tensor) -> None:
        self.by_step[step] = losses.detach().clone()

    def on_probe(self, step: int, result: object) -> None:
        self.probed.append(step)


def _train(compile_model: bool = False, steps: int = 5) -> tuple[Losses, torch.nn.Module]:
    gen = torch.Generator().manual_seed(0)
    sink = Losses()
    model = train_pack(
        CFG, TrainConfig(steps=steps, batch_size=4, probe_every=2, warmup_steps=1),
        [VariantRun(seed=0, data_seed=0, lr=1e-2), VariantRun(seed=1, data_seed=1, lr=3e-3)],
        lambda v, b: (torch.randint(0, 20, (b, 8), generator=gen), None),
        lambda model, step: ProbeResult(head={}, scalar={}), sink, compile_model=compile_model,
    )
    return sink, model


def test_training_lowers_the_loss_and_probes_on_schedule():
    sink, _ = _train(steps=30)
    assert sink.probed == [0, *range(2, 31, 2)]
    assert (sink.by_step[30] < sink.by_step[1]).all()


@pytest.mark.slow
def test_compiled_training_matches_eager():
    eager, m1 = _train()
    compiled, m2 = _train(compile_model=True)
    for step in eager.by_step:
        torch.testing.assert_close(compiled.by_step[step], eager.by_step[step], rtol=1e-4, atol=1e-4)
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p1, p2, rtol=1e-3, atol=1e-4)
