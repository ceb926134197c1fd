"""Synthetic data with known structure (and plain text) for studying head specialization.

Public API::

    cfg = DataConfig(vocab_size=256, seq_len=64, diversity=0.5)
    stream = make_stream(cfg, seed=0)        # training batches, independent per seed
    batch = stream.next_batch(32)            # Batch: tokens [B, S] + ground truth
    probes = probe_batch(cfg, batch_size=32)  # fixed per data config, any training seed

Vocabulary layout: :mod:`workers.data.common`. Diversity table: :mod:`workers.data.diversity`.
Families: :mod:`workers.data.induction` (repeated, markov), :mod:`workers.data.grammar`,
:mod:`workers.data.algorithmic` (copy, reverse, brackets), :mod:`workers.data.classification`
(bursty, keyword), :mod:`workers.data.languages`, :mod:`workers.data.text`.
"""

from workers.data.batch import (
    ARC_KINDS,
    TASK_NAMES,
    Batch,
    concat_batches,
    stack_batches,
)
from workers.data.common import BOS, N_SPECIAL, PAD, QUERY, SEP
from workers.data.config import DataConfig
from workers.data.diversity import DIVERSITY_ORDER, resolve_diversity
from workers.data.stream import DataStream, Mixture, make_stream, probe_batch, probe_key

__all__ = [
    "ARC_KINDS",
    "BOS",
    "DIVERSITY_ORDER",
    "N_SPECIAL",
    "PAD",
    "QUERY",
    "SEP",
    "TASK_NAMES",
    "Batch",
    "DataConfig",
    "DataStream",
    "Mixture",
    "concat_batches",
    "make_stream",
    "probe_batch",
    "probe_key",
    "resolve_diversity",
    "stack_batches",
]
