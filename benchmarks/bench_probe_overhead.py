"""How much a probe costs next to training: ratios against a training step of the same pack.

Baseline (measured in the same run, same process, same pack): one training step —
forward, mean loss, backward — on a training batch. Then ``probe_pack`` on the probe batch,
without and with the L·H ablations, and ``js_distance`` of one variant. Prints each median
time and its ratio to the baseline, i.e. how many training steps one probe costs.

Then the whole loop, the number the issue asks for: ``train_pack`` for ``--loop-steps``
steps with the real prober every ``--probe-every`` steps, against the same loop whose
prober does nothing (baseline, same run), and the overhead as a percentage.

    .venv/bin/python benchmarks/bench_probe_overhead.py [--variants 4 --layers 2 --heads 4 ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch

from workers.model import ModelConfig, PackedTransformer, mean_loss
from workers.probes import ProbeSettings, js_distance, make_prober, probe_pack
from workers.train import ProbeResult, TrainConfig, VariantRun, train_pack


class _NullSink:
    def on_step(self, step: int, losses: torch.Tensor) -> None:
        pass

    def on_probe(self, step: int, result: object) -> None:
        pass


def loop_seconds(cfg: ModelConfig, args: argparse.Namespace, prober: Callable) -> float:
    train = TrainConfig(steps=args.loop_steps, batch_size=args.batch, probe_every=args.probe_every,
                        warmup_steps=1)
    g = torch.Generator().manual_seed(1)

    def next_batch(v: int, b: int) -> tuple[torch.Tensor, None]:
        return torch.randint(0, args.vocab, (b, args.seq), generator=g), None

    variants = [VariantRun(seed=i, data_seed=i, lr=1e-3) for i in range(args.variants)]
    start = time.perf_counter()
    train_pack(cfg, train, variants, next_batch, prober, _NullSink())
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=64)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--probe-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--probe-every", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = ModelConfig(
        n_layers=args.layers,
        n_heads=args.heads,
        d_model=args.d_model,
        vocab_size=args.vocab,
        n_ctx=args.seq,
        attn_only=True,
    )
    model = PackedTransformer(cfg, seeds=list(range(args.variants)))
    g = torch.Generator().manual_seed(0)
    train_tokens = torch.randint(0, args.vocab, (args.variants, args.batch, args.seq), generator=g)
    probe = SimpleNamespace(  # the fields of workers.data.batch.Batch that probes read
        tokens=torch.randint(0, args.vocab, (args.probe_batch, args.seq), generator=g),
        task=torch.zeros(args.probe_batch, dtype=torch.long),
    )

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        mean_loss(model(train_tokens), train_tokens).sum().backward()

    def probe_plain() -> None:
        probe_pack(model, probe, 0, ProbeSettings())

    def probe_ablation() -> None:
        probe_pack(model, probe, 0, ProbeSettings(compute_ablation=True))

    def js_one_variant() -> None:
        with torch.no_grad():
            _, patterns = model.run_with_patterns(probe.tokens.expand(args.variants, -1, -1))
        js_distance(patterns[0])

    base = median_seconds(train_step, args.repeats)
    print(f"pack: V={args.variants} L={args.layers} H={args.heads} d={args.d_model} "
          f"S={args.seq}; train batch {args.batch}, probe batch {args.probe_batch}")
    print(f"{'baseline: train step':32s} {base * 1e3:9.2f} ms   1.00x")
    for name, fn in (
        ("probe_pack (importance)", probe_plain),
        ("probe_pack (+ L·H ablations)", probe_ablation),
        ("js_distance (one variant)", js_one_variant),
    ):
        t = median_seconds(fn, args.repeats)
        print(f"{name:32s} {t * 1e3:9.2f} ms  {t / base:5.2f}x")

    def no_probe(model: PackedTransformer, step: int) -> ProbeResult:
        return ProbeResult(head={}, scalar={})

    bare = loop_seconds(cfg, args, no_probe)
    probed = loop_seconds(cfg, args, make_prober(probe, ProbeSettings()))
    print(f"loop of {args.loop_steps} steps, probes every {args.probe_every}: "
          f"baseline {bare:.2f} s, with probes {probed:.2f} s, ratio {probed / bare:.3f} "
          f"(overhead {100 * (probed / bare - 1):+.1f}%)")


if __name__ == "__main__":
    main()
