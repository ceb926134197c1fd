"""Packed training against its baselines, all measured in one run on one device.

K same-shape variants (default: 2 layers, d_model 128, 4 heads, context 64, batch 32, with
MLPs), the same number of steps each, probes on (every ``--probe-every`` steps, on the
fixed probe batch of the data config):

- ``packed``:      one process trains all K at once (parameters stacked on a variant axis);
- ``sequential``:  one process trains them one after another (a pack of one each);
- ``processes``:   K one-variant processes share the device at once (what fractional-GPU
                   trials give).

Prints variant-steps/s and model TFLOP/s (6·N·tokens + attention, see
``ModelConfig.flops_per_token``) for each, and the ratios packed/sequential and
packed/processes. No Ray: it trains packs directly.

    .venv/bin/python benchmarks/bench_pack.py --ks 1 8 32 --steps 20      # CPU, a few minutes
    python benchmarks/bench_pack.py --device cuda --compile --ks 1 8 32 128 512 --steps 300
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch

from workers.data import DataConfig, make_stream, probe_batch
from workers.model import ModelConfig
from workers.probes import ProbeSettings, make_prober
from workers.train import TrainConfig, VariantRun, train_pack


class _NullSink:
    def on_step(self, step: int, losses: torch.Tensor) -> None:
        pass

    def on_probe(self, step: int, result: object) -> None:
        pass


def configs(args: argparse.Namespace) -> tuple[ModelConfig, DataConfig, TrainConfig]:
    model = ModelConfig(n_layers=2, n_heads=4, d_model=128, vocab_size=args.vocab, n_ctx=64)
    data = DataConfig(vocab_size=args.vocab, seq_len=64, families={"repeated": 1.0},
                      knobs={"repeated": {"segment_length": 31, "min_segment_length": 8}})
    train = TrainConfig(steps=args.steps, batch_size=32, probe_every=args.probe_every, warmup_steps=1)
    return model, data, train


def train_variants(args: argparse.Namespace, seeds: list[int]) -> float:
    """Seconds to train one pack of ``len(seeds)`` variants for ``args.steps`` steps."""
    model_cfg, data_cfg, train_cfg = configs(args)
    device = torch.device(args.device)
    streams = [make_stream(data_cfg, s) for s in seeds]
    # data generation is not what is measured: pre-generate a few batches and cycle them
    cache = [[streams[v].next_batch(32).tokens.to(device) for _ in range(4)] for v in range(len(seeds))]
    counter = [0] * len(seeds)

    def next_batch(v: int, b: int) -> tuple[torch.Tensor, None]:
        counter[v] += 1
        return cache[v][counter[v] % 4], None

    prober = make_prober(probe_batch(data_cfg, 32).to(device), ProbeSettings())
    variants = [VariantRun(seed=s, data_seed=s, lr=1e-3) for s in seeds]
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_pack(model_cfg, train_cfg, variants, next_batch, prober, _NullSink(), device=device,
               compile_model=args.compile)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _process_entry(args: argparse.Namespace, seed: int, barrier, out) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    barrier.wait()
    out.put(train_variants(args, [seed]))


def run_processes(args: argparse.Namespace, k: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(k + 1), ctx.Queue()
    procs = [ctx.Process(target=_process_entry, args=(args, s, barrier, out)) for s in range(k)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--probe-every", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-sequential", type=int, default=4,
                        help="time at most this many variants one after another; the rate is per variant")
    parser.add_argument("--max-processes", type=int, default=16)
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads of the in-process modes (each process uses 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_cfg, _, _ = configs(args)
    flops_per_step = model_cfg.flops_per_token(64) * 32 * 64  # one variant, one step
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"device: {name} ({torch.get_num_threads()} threads); steps {args.steps}, probes every "
          f"{args.probe_every}; {model_cfg.n_params():,} params/variant")
    print(f"{'K':>5} {'mode':>11} {'variant-steps/s':>16} {'TFLOP/s':>9} {'packed ÷ this':>14}")
    for k in args.ks:
        rates: dict[str, float] = {}
        rates["packed"] = k * args.steps / train_variants(args, list(range(k)))
        n_seq = min(k, args.max_sequential)
        rates["sequential"] = n_seq * args.steps / sum(train_variants(args, [s]) for s in range(n_seq))
        if k <= args.max_processes:
            rates["processes"] = k * args.steps / run_processes(args, k)
        for mode, rate in rates.items():
            print(f"{k:>5} {mode:>11} {rate:>16.1f} {rate * flops_per_step / 1e12:>9.3f} "
                  f"{rates['packed'] / rate:>13.2f}x", flush=True)


if __name__ == "__main__":
    main()
