"""Batch: shape validation, moving, selecting, concatenating and stacking."""

from __future__ import annotations

import pytest
import torch

from workers.data import TASK_NAMES, Batch, concat_batches, stack_batches
from workers.data.batch import TASK_INDEX


def _plain(n: int, s: int = 6, task: str = "repeated") -> Batch:
    tokens = torch.arange(n * s, dtype=torch.int64).reshape(n, s)  # [n, s]
    return Batch(tokens=tokens, task=torch.full((n,), TASK_INDEX[task]))


def _labelled(n: int, s: int = 6) -> Batch:
    plain = _plain(n, s, "keyword")
    keyword_mask = torch.zeros(n, s, dtype=torch.bool)
    keyword_mask[:, 2] = True
    loss_mask = torch.zeros(n, s, dtype=torch.bool)
    loss_mask[:, -1] = True
    return Batch(tokens=plain.tokens, task=plain.task, keyword_mask=keyword_mask,
                 label_pos=torch.full((n,), s - 2), loss_mask=loss_mask)


def test_task_names_are_unique_and_cover_the_families() -> None:
    assert len(set(TASK_NAMES)) == len(TASK_NAMES)
    for name in ("repeated", "markov", "grammar", "copy", "reverse", "brackets", "bursty",
                 "keyword", "languages", "text"):
        assert name in TASK_NAMES


def test_shape_mismatch_names_the_field() -> None:
    with pytest.raises(ValueError, match="arcs"):
        Batch(tokens=torch.zeros(2, 5, dtype=torch.int64), task=torch.zeros(2, dtype=torch.int64),
              arcs=torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="tokens"):
        Batch(tokens=torch.zeros(2, 5), task=torch.zeros(2, dtype=torch.int64))


def test_concat_fills_absent_fields() -> None:
    out = concat_batches([_plain(2), _labelled(3)])
    assert out.tokens.shape == (5, 6)
    assert out.task.tolist() == [TASK_INDEX["repeated"]] * 2 + [TASK_INDEX["keyword"]] * 3
    assert out.label_pos is not None and out.label_pos.tolist() == [-1, -1, 4, 4, 4]
    assert out.keyword_mask is not None and not out.keyword_mask[:2].any()
    # A batch without a loss mask counts every target: all but BOS.
    assert out.loss_mask is not None
    assert out.loss_mask[:2, 1:].all() and not out.loss_mask[:2, 0].any()
    assert out.loss_mask[2:].sum().item() == 3
    assert out.arcs is None and out.language is None


def test_stack_adds_a_leading_axis_and_select_to_of_task() -> None:
    stacked = stack_batches([_labelled(3), _labelled(3)])
    assert stacked.tokens.shape == (2, 3, 6) and stacked.label_pos is not None
    assert stacked.label_pos.shape == (2, 3)
    mixed = concat_batches([_plain(2), _labelled(3)])
    assert len(mixed.of_task("keyword")) == 3
    assert len(mixed.select(slice(0, 1))) == 1
    moved = mixed.to("cpu")
    assert torch.equal(moved.tokens, mixed.tokens)
    with pytest.raises(ValueError, match="batches"):
        stack_batches([_plain(2), _plain(3)])
    with pytest.raises(ValueError, match="seq_len"):
        concat_batches([_plain(2, 6), _plain(2, 7)])
