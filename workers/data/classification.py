"""Classification in context: bursty Zipfian few-shot sequences and keyword classification.

``bursty`` (Chan et al. 2022): ``BOS e_1 l_1 .. e_N l_N e_q l_q PAD..`` with exemplar tokens
``e`` and label tokens ``l``. Classes are drawn from Zipf(``zipf_exponent``) over
``n_classes`` (exponent 0 = uniform). With probability ``burstiness`` a sequence is bursty:
``burst_size`` context items are of the query's class and ``burst_size`` of one other class;
otherwise every context class is an independent Zipf draw. Class ``c`` has
``exemplars_per_class`` exemplar tokens (within-class variation); with probability ``noise``
an exemplar is replaced by a uniformly random exemplar token of any class. Class ``c`` has
label ``c % n_labels`` (a fixed mapping, so in-weights learning is possible too).
``label_pos`` is the query exemplar's position; only the query label counts for the loss
unless ``loss_on_context_labels``. Layout: class ``c``'s exemplars at ``start + c*E ..``, then
the ``n_labels`` labels. Needs ``n_classes * exemplars_per_class + n_labels`` tokens (default
``n_classes``: as many as fit in ``vocab_fraction`` of the range) and ``seq_len >= 5``.

``keyword``: ``BOS`` + ``seq_len - 3`` distractor tokens, ``n_keywords`` of which are replaced
by keywords drawn from a positive or a negative set (polarity a fair coin per keyword), then
``QUERY`` and the label: the positive label token if positive keywords are the majority, else
the negative one (``n_keywords`` is odd, so there are no ties). ``keyword_mask`` marks the
keywords, ``label_pos = seq_len - 2`` (the ``QUERY``), only the label counts for the loss.
Layout: ``n_distractor_vocab`` distractors, ``n_keyword_vocab`` positive and as many negative
keywords, then the positive and the negative label. Needs ``n_distractor_vocab +
2 * n_keyword_vocab + 2`` tokens and ``seq_len >= n_keywords + 3``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workers.data.common import (
    BOS,
    PAD,
    QUERY,
    Arrays,
    FamilyGenerator,
    VocabSlice,
    check_float,
    check_int,
    config_error,
    knob_field,
)


@dataclass(frozen=True)
class BurstyKnobs:
    n_classes: int | None = None  # None: as many as fit in vocab_fraction of the range
    exemplars_per_class: int = 2
    n_labels: int | None = None  # None: n_classes (every class has its own label)
    zipf_exponent: float = 1.0
    burstiness: float = 0.9
    burst_size: int = 3
    noise: float = 0.0
    n_context: int | None = None  # None: (seq_len - 3) // 2 pairs
    vocab_fraction: float = 1.0
    loss_on_context_labels: bool = False

    def __post_init__(self) -> None:
        f = "bursty"
        for knob, low in (("n_classes", 2), ("n_labels", 2), ("n_context", 1)):
            if getattr(self, knob) is not None:
                check_int(knob_field(f, knob), getattr(self, knob), low)
        check_int(knob_field(f, "exemplars_per_class"), self.exemplars_per_class, 1)
        check_int(knob_field(f, "burst_size"), self.burst_size, 1)
        check_float(knob_field(f, "zipf_exponent"), self.zipf_exponent, 0.0)
        check_float(knob_field(f, "burstiness"), self.burstiness, 0.0, 1.0)
        check_float(knob_field(f, "noise"), self.noise, 0.0, 1.0)
        check_float(knob_field(f, "vocab_fraction"), self.vocab_fraction, 0.0, 1.0,
                    low_open=True)
        if not isinstance(self.loss_on_context_labels, bool):
            raise config_error(knob_field(f, "loss_on_context_labels"), "must be a bool",
                               "pass true or false")


class BurstyGenerator(FamilyGenerator):
    name = "bursty"

    def __init__(self, knobs: BurstyKnobs, vocab: VocabSlice, seq_len: int,
                 structure_rng: np.random.Generator) -> None:
        super().__init__(vocab, seq_len)
        self.knobs = knobs
        e = knobs.exemplars_per_class
        if knobs.n_classes is not None:
            self.n_classes = knobs.n_classes
        else:
            budget = int(math.floor(knobs.vocab_fraction * vocab.size))
            per_class = e + (1 if knobs.n_labels is None else 0)
            self.n_classes = max(2, (budget - (knobs.n_labels or 0)) // per_class)
        self.n_labels = knobs.n_labels or self.n_classes
        self.need_vocab(self.n_classes * e + self.n_labels,
                        f"{knob_field('bursty', 'n_classes')} or exemplars_per_class")
        self.n_context = knobs.n_context or max((seq_len - 3) // 2, 1)
        self.need_seq_len(3 + 2 * self.n_context, knob_field("bursty", "n_context"))
        ranks = np.arange(1, self.n_classes + 1, dtype=np.float64)
        weights = ranks ** -knobs.zipf_exponent
        self.class_probs = weights / weights.sum()  # [C], class c has Zipf rank c + 1
        self.label_start = vocab.start + self.n_classes * e

    def _classes(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.n_classes, size=shape, p=self.class_probs)

    def sample_arrays(self, n: int, rng: np.random.Generator) -> Arrays:
        knobs, c_n, e = self.knobs, self.n_context, self.knobs.exemplars_per_class
        classes = self._classes((n, c_n + 1), rng)  # [n, N+1], last column = query
        query, other = classes[:, -1], self._classes((n,), rng)  # [n], [n]
        other = np.where(other == query, (other + 1) % self.n_classes, other)
        bursty = rng.random(n) < knobs.burstiness  # [n]
        rank = np.argsort(rng.random((n, c_n)), axis=1)  # [n, N] a random permutation
        burst = min(knobs.burst_size, c_n)
        context = classes[:, :-1]
        context = np.where(bursty[:, None] & (rank < burst), query[:, None], context)
        second = bursty[:, None] & (rank >= burst) & (rank < 2 * burst)
        context = np.where(second, other[:, None], context)
        classes = np.concatenate([context, query[:, None]], axis=1)  # [n, N+1]
        exemplar = classes * e + rng.integers(0, e, size=classes.shape)  # [n, N+1]
        noisy = rng.random(classes.shape) < knobs.noise
        exemplar = np.where(noisy, rng.integers(0, self.n_classes * e, classes.shape),
                            exemplar)
        labels = classes % self.n_labels + self.label_start  # [n, N+1]
        tokens = np.full((n, self.seq_len), PAD, dtype=np.int64)  # [n, S]
        tokens[:, 0] = BOS
        tokens[:, 1:2 * c_n + 3:2] = exemplar + self.vocab.start
        tokens[:, 2:2 * c_n + 4:2] = labels
        label_pos = np.full(n, 2 * c_n + 1, dtype=np.int64)  # [n]
        loss_mask = np.zeros((n, self.seq_len), dtype=np.bool_)  # [n, S]
        loss_mask[:, 2 * c_n + 2] = True  # the query label is the target
        if knobs.loss_on_context_labels:
            loss_mask[:, 2:2 * c_n + 1:2] = True
        return {"tokens": tokens, "label_pos": label_pos, "loss_mask": loss_mask}


@dataclass(frozen=True)
class KeywordKnobs:
    n_keywords: int = 3  # odd, so the majority is always defined
    n_keyword_vocab: int = 8  # per polarity
    n_distractor_vocab: int = 32

    def __post_init__(self) -> None:
        check_int(knob_field("keyword", "n_keywords"), self.n_keywords, 1)
        if self.n_keywords % 2 == 0:
            raise config_error(knob_field("keyword", "n_keywords"),
                               f"must be odd so the majority label is defined, got "
                               f"{self.n_keywords}", "use an odd number such as 3")
        check_int(knob_field("keyword", "n_keyword_vocab"), self.n_keyword_vocab, 1)
        check_int(knob_field("keyword", "n_distractor_vocab"), self.n_distractor_vocab, 1)


class KeywordGenerator(FamilyGenerator):
    name = "keyword"

    def __init__(self, knobs: KeywordKnobs, vocab: VocabSlice, seq_len: int,
                 structure_rng: np.random.Generator) -> None:
        super().__init__(vocab, seq_len)
        self.knobs = knobs
        d, k = knobs.n_distractor_vocab, knobs.n_keyword_vocab
        self.need_vocab(d + 2 * k + 2, f"{knob_field('keyword', 'n_distractor_vocab')} "
                                       "or n_keyword_vocab")
        self.need_seq_len(knobs.n_keywords + 3, knob_field("keyword", "n_keywords"))
        self.positive = range(vocab.start + d, vocab.start + d + k)
        self.negative = range(vocab.start + d + k, vocab.start + d + 2 * k)
        self.positive_label = vocab.start + d + 2 * k
        self.negative_label = self.positive_label + 1

    def sample_arrays(self, n: int, rng: np.random.Generator) -> Arrays:
        s, knobs = self.seq_len, self.knobs
        body = s - 3
        tokens = np.empty((n, s), dtype=np.int64)  # [n, S]
        tokens[:, 0] = BOS
        distractors = rng.integers(0, knobs.n_distractor_vocab, (n, body))  # [n, S-3]
        tokens[:, 1:s - 2] = distractors + self.vocab.start
        slots = np.argsort(rng.random((n, body)), axis=1)[:, :knobs.n_keywords] + 1  # [n, K]
        negative = rng.random((n, knobs.n_keywords)) < 0.5  # [n, K]
        word = rng.integers(0, knobs.n_keyword_vocab, (n, knobs.n_keywords))  # [n, K]
        keyword = np.where(negative, self.negative.start, self.positive.start) + word
        np.put_along_axis(tokens, slots, keyword, axis=1)
        keyword_mask = np.zeros((n, s), dtype=np.bool_)  # [n, S]
        np.put_along_axis(keyword_mask, slots, True, axis=1)
        positive_wins = (~negative).sum(axis=1) * 2 > knobs.n_keywords  # [n]
        tokens[:, s - 2] = QUERY
        tokens[:, s - 1] = np.where(positive_wins, self.positive_label, self.negative_label)
        loss_mask = np.zeros((n, s), dtype=np.bool_)  # [n, S]
        loss_mask[:, s - 1] = True  # only the label is a target
        return {"tokens": tokens, "keyword_mask": keyword_mask,
                "label_pos": np.full(n, s - 2, dtype=np.int64), "loss_mask": loss_mask}
