"""bursty, keyword and text data: labels follow their rule, bytes come from the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from workers.data import BOS, QUERY, DataConfig
from workers.data.classification import BurstyGenerator, KeywordGenerator


def _gen(family: str, seq_len: int = 32, vocab_size: int = 128, **knobs: Any) -> Any:
    cfg = DataConfig(vocab_size=vocab_size, seq_len=seq_len, families={family: 1.0},
                     knobs={family: dict(knobs)})
    return cfg.build_generators()[family]


def test_keyword_label_is_the_majority_of_the_marked_keywords() -> None:
    gen = _gen("keyword", n_keywords=5, n_keyword_vocab=4, n_distractor_vocab=20)
    assert isinstance(gen, KeywordGenerator)
    a = gen.sample(50, np.random.default_rng(0))
    assert torch.equal(a.tokens, gen.sample(50, np.random.default_rng(0)).tokens)
    assert a.keyword_mask is not None and a.label_pos is not None and a.loss_mask is not None
    keywords = set(gen.positive) | set(gen.negative)
    labels = []
    for row, mask, pos, loss in zip(a.tokens.tolist(), a.keyword_mask.tolist(),
                                    a.label_pos.tolist(), a.loss_mask.tolist(), strict=True):
        assert row[0] == BOS and row[pos] == QUERY and pos == len(row) - 2
        marked = [t for t, m in zip(row, mask, strict=True) if m]
        assert len(marked) == 5 and all(t in keywords for t in marked)
        assert not any(t in keywords for t, m in zip(row, mask, strict=True) if not m)
        positive = sum(t in gen.positive for t in marked)
        expected = gen.positive_label if positive > 2 else gen.negative_label
        assert row[pos + 1] == expected
        assert [i for i, m in enumerate(loss) if m] == [pos + 1]
        labels.append(row[pos + 1])
    assert len(set(labels)) == 2


def test_bursty_labels_follow_classes_and_bursts_hold_the_query() -> None:
    gen = _gen("bursty", seq_len=27, n_classes=10, exemplars_per_class=2, burstiness=1.0,
               burst_size=3, zipf_exponent=1.0)
    assert isinstance(gen, BurstyGenerator) and gen.n_context == 12
    batch = gen.sample(40, np.random.default_rng(1))
    assert batch.label_pos is not None and batch.loss_mask is not None
    start, e = gen.vocab.start, 2
    for row, pos, loss in zip(batch.tokens.tolist(), batch.label_pos.tolist(),
                              batch.loss_mask.tolist(), strict=True):
        assert pos == 25 and [i for i, m in enumerate(loss) if m] == [26]
        classes = [(t - start) // e for t in row[1:pos + 1:2]]
        labels = [t - gen.label_start for t in row[2:pos + 2:2]]
        assert labels == [c % gen.n_labels for c in classes]  # the fixed class -> label map
        assert classes[:-1].count(classes[-1]) >= 3  # bursty: query class in the context


def test_bursty_zipf_skews_classes_and_diversity_sets_class_count() -> None:
    gen = _gen("bursty", seq_len=41, n_classes=20, burstiness=0.0, zipf_exponent=1.5)
    tokens = gen.sample(200, np.random.default_rng(2)).tokens
    classes = ((tokens[:, 1::2] - gen.vocab.start) // 2).flatten()
    counts = torch.bincount(classes[classes < 20], minlength=20)
    assert counts[0] > 3 * counts[10] > 0
    small = DataConfig(vocab_size=132, seq_len=33, diversity=0.0, families={"bursty": 1.0})
    large = DataConfig(vocab_size=132, seq_len=33, diversity=1.0, families={"bursty": 1.0})
    n_small = small.build_generators()["bursty"].n_classes
    n_large = large.build_generators()["bursty"].n_classes
    assert n_small == 128 // 8 // 3 and n_large == 128 // 3


def test_text_windows_come_from_the_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4 + "héllo wörld\n".encode()
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    cfg = DataConfig(vocab_size=260, seq_len=17, text_path=str(path))
    gen = cfg.build_generators()["text"]
    batch = gen.sample(8, np.random.default_rng(0))
    assert torch.equal(batch.tokens, gen.sample(8, np.random.default_rng(0)).tokens)
    assert (batch.tokens[:, 0] == BOS).all()
    for row in batch.tokens.tolist():
        window = bytes(t - 4 for t in row[1:])
        assert window in data
