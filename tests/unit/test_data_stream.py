"""Training streams and the fixed probe batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workers.data import (
    TASK_NAMES,
    Batch,
    DataConfig,
    make_stream,
    probe_batch,
    probe_key,
)
from workers.data.batch import TASK_INDEX

FULL = DataConfig(vocab_size=128, seq_len=48, diversity=1.0)


def _equal(a: Batch, b: Batch) -> bool:
    return all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        for x, y in ((getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    )


def test_streams_are_deterministic_per_seed_and_independent_across_seeds() -> None:
    a, b, c = make_stream(FULL, 0), make_stream(FULL, 0), make_stream(FULL, 1)
    first_a, first_b, first_c = a.next_batch(16), b.next_batch(16), c.next_batch(16)
    assert _equal(first_a, first_b) and not torch.equal(first_a.tokens, first_c.tokens)
    assert not torch.equal(first_a.tokens, a.next_batch(16).tokens)  # fresh every step
    resumed = make_stream(FULL, 0, start_batch=1)
    assert _equal(resumed.next_batch(16), b.next_batch(16))


def test_mixture_batches_mix_families_with_their_ground_truth() -> None:
    batch = make_stream(FULL, 3).next_batch(64)
    assert batch.tokens.shape == (64, 48) and batch.tokens.dtype == torch.int64
    assert (batch.tokens >= 0).all() and (batch.tokens < 128).all()
    present = {TASK_NAMES[i] for i in batch.task.tolist()}
    assert len(present) >= 6
    assert batch.arcs is not None and batch.language is not None
    assert batch.label_pos is not None and batch.keyword_mask is not None
    assert batch.loss_mask is not None
    language_rows = batch.task == TASK_INDEX["languages"]
    assert (batch.language[~language_rows] == -1).all()
    assert (batch.language[language_rows] >= 0).all()
    arcs_rows = batch.task == TASK_INDEX["repeated"]
    assert (batch.arcs[arcs_rows] == -1).all()
    assert not batch.loss_mask[:, 0].any()
    for name in ("tokens", "task", "arcs", "label_pos", "language", "arc_kind"):
        assert getattr(batch, name).dtype == torch.int64, name
    for name in ("keyword_mask", "loss_mask"):
        assert getattr(batch, name).dtype == torch.bool, name


def test_mixture_weights_are_respected() -> None:
    cfg = DataConfig(vocab_size=64, seq_len=16, families={"repeated": 3.0, "copy": 1.0})
    task = make_stream(cfg, 0).next_batch(2000).task
    share = (task == TASK_INDEX["repeated"]).double().mean().item()
    assert 0.70 < share < 0.80


def test_probe_batch_is_fixed_per_data_config() -> None:
    a = probe_batch(FULL)
    b = probe_batch(DataConfig(vocab_size=128, seq_len=48, diversity=1.0))
    assert _equal(a, b) and len(a) == 32
    make_stream(FULL, 7).next_batch(8)  # training draws do not move the probe batch
    assert _equal(a, probe_batch(FULL))
    tasks = a.task.tolist()
    assert set(tasks) == {TASK_INDEX[name] for name in FULL.weights()}
    assert tasks[:4] == [TASK_INDEX["repeated"]] * 4  # repeated first, 32 // 9 + 1 rows
    other = probe_batch(DataConfig(vocab_size=128, seq_len=48, diversity=1.0, seed=1))
    assert not torch.equal(a.tokens, other.tokens)


def test_probe_batch_always_has_repeated_rows_and_a_stable_key() -> None:
    cfg = DataConfig(vocab_size=96, seq_len=32, families={"grammar": 1.0, "keyword": 2.0})
    batch = probe_batch(cfg, batch_size=9)
    assert batch.task.tolist() == [TASK_INDEX["repeated"]] * 3 + [TASK_INDEX["grammar"]] * 3 \
        + [TASK_INDEX["keyword"]] * 3
    # Written differently, same data: same key, same probes.
    same = DataConfig(vocab_size=96, seq_len=32, families={"grammar": 2, "keyword": 4},
                      knobs={"keyword": {"n_keywords": 3}})
    assert probe_key(same) == probe_key(cfg)
    assert _equal(probe_batch(same, batch_size=9), batch)
    changed = DataConfig(vocab_size=96, seq_len=32, families={"grammar": 1.0, "keyword": 2.0},
                         knobs={"keyword": {"n_keywords": 5}})
    assert probe_key(changed) != probe_key(cfg)
    assert len(probe_key(cfg)) == 64
    with pytest.raises(ValueError, match="^batch_size: "):
        probe_batch(cfg, batch_size=2)


def test_text_stream_and_probe(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    cfg = DataConfig(vocab_size=260, seq_len=24, text_path=str(path))
    batch = make_stream(cfg, 0).next_batch(4)
    assert (batch.task == TASK_INDEX["text"]).all()
    probes = probe_batch(cfg, batch_size=4)
    assert probes.task.tolist() == [TASK_INDEX["repeated"]] * 2 + [TASK_INDEX["text"]] * 2
    copy = tmp_path / "elsewhere.txt"
    copy.write_bytes(path.read_bytes())  # same content, other path: same probes
    moved = DataConfig(vocab_size=260, seq_len=24, text_path=str(copy))
    assert probe_key(moved) == probe_key(cfg)
