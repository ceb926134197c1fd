"""grammar, languages, copy, reverse and brackets: arcs and the structure they encode."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from workers.data import BOS, PAD, SEP, DataConfig
from workers.data.batch import ARC_KIND_INDEX, Batch
from workers.data.grammar import ADJ, DET, NOUN, PERIOD, PREP, REL, VERB, GrammarGenerator
from workers.data.languages import LanguagesGenerator


def _gen(family: str, seq_len: int = 48, vocab_size: int = 128, **knobs: Any) -> Any:
    cfg = DataConfig(vocab_size=vocab_size, seq_len=seq_len, families={family: 1.0},
                     knobs={family: dict(knobs)})
    return cfg.build_generators()[family]


def _same(gen: Any) -> None:
    a = gen.sample(6, np.random.default_rng(5))
    b = gen.sample(6, np.random.default_rng(5))
    c = gen.sample(6, np.random.default_rng(6))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.arcs, b.arcs)
    assert not torch.equal(a.tokens, c.tokens)


def _arcs_point_back(batch: Batch) -> None:
    assert batch.arcs is not None and batch.arc_kind is not None
    positions = torch.arange(batch.seq_len)
    has = batch.arcs >= 0
    assert (batch.arcs[has] < positions.expand_as(batch.arcs)[has]).all()
    assert torch.equal(has, batch.arc_kind >= 0)


def test_grammar_arcs_and_agreement() -> None:
    gen = _gen("grammar", seq_len=64, max_distractors=3)
    assert isinstance(gen, GrammarGenerator)
    _same(gen)
    batch = gen.sample(40, np.random.default_rng(0))
    _arcs_point_back(batch)
    assert batch.arcs is not None and batch.arc_kind is not None
    lex = gen.lexicon
    attracted = 0
    for row, arc_row, kind_row in zip(batch.tokens.tolist(), batch.arcs.tolist(),
                                      batch.arc_kind.tolist(), strict=True):
        assert row[0] == BOS
        for i in range(1, len(row)):
            cat, j = lex.category(row[i]), arc_row[i]
            if cat == NOUN:
                assert lex.category(row[j]) == DET and kind_row[i] == ARC_KIND_INDEX["det"]
                assert lex.number(row[j]) == lex.number(row[i])
            elif cat == VERB:
                assert lex.category(row[j]) == NOUN and kind_row[i] == ARC_KIND_INDEX["subj"]
                assert lex.number(row[j]) == lex.number(row[i])  # agreement
                between = [lex.number(t) for t in row[j + 1:i] if lex.category(t) == NOUN]
                attracted += any(n != lex.number(row[i]) for n in between)
            elif cat in (PREP, REL):
                assert lex.category(row[j]) == NOUN
            else:
                assert cat in (DET, ADJ, PERIOD) and j == -1
    assert attracted > 0  # agreement across attractors of the other number does occur


def test_grammar_single_template_is_det_noun_verb() -> None:
    gen = _gen("grammar", seq_len=41, n_templates=1)
    tokens = gen.sample(3, np.random.default_rng(0)).tokens
    cats = [[gen.lexicon.category(t) for t in row[1:]] for row in tokens.tolist()]
    assert all(c == [DET, NOUN, VERB, PERIOD] * 10 for c in cats)


def test_languages_have_disjoint_vocabularies_and_their_word_order() -> None:
    gen = _gen("languages", seq_len=40, n_languages=6, lexicon_size=10)
    assert isinstance(gen, LanguagesGenerator)
    _same(gen)
    batch = gen.sample(60, np.random.default_rng(1))
    _arcs_point_back(batch)
    assert batch.language is not None
    seen: dict[int, set[int]] = {}
    for row, lang_id in zip(batch.tokens.tolist(), batch.language.tolist(), strict=True):
        lang = gen.languages[lang_id]
        lo, hi = lang.nouns.start, lang.period + 1
        assert all(lo <= t < hi for t in row[1:])
        seen.setdefault(lang_id, set()).update(row[1:])
        if lang.order.endswith("V"):  # SOV / OSV: the verb closes every sentence
            for i, t in enumerate(row[:-1]):
                if row[i + 1] == lang.period:
                    assert t in lang.verbs
        if lang.order.startswith("V"):  # VSO / VOS: every sentence opens with the verb
            starts = [i + 1 for i, t in enumerate(row[:-1]) if t == lang.period] + [1]
            assert all(row[i] in lang.verbs for i in starts)
    ids = sorted(seen)
    assert len(ids) == 6
    for a in ids:
        for b in ids:
            assert a == b or not seen[a] & seen[b]


def test_copy_and_reverse() -> None:
    for family in ("copy", "reverse"):
        gen = _gen(family, seq_len=30, min_length=3, max_length=12)
        _same(gen)
        batch = gen.sample(20, np.random.default_rng(2))
        _arcs_point_back(batch)
        assert batch.arcs is not None and batch.loss_mask is not None
        lengths = set()
        for row, arcs, mask in zip(batch.tokens.tolist(), batch.arcs.tolist(),
                                   batch.loss_mask.tolist(), strict=True):
            sep = row.index(SEP)
            n = sep - 1
            lengths.add(n)
            x, y = row[1:sep], row[sep + 1:sep + 1 + n]
            assert y == (x if family == "copy" else x[::-1])
            assert all(t == PAD for t in row[sep + 1 + n:])
            assert [i for i, m in enumerate(mask) if m] == list(range(sep + 1, sep + 1 + n))
            for i in range(sep + 1, sep + 1 + n):
                assert row[arcs[i]] == row[i] and 1 <= arcs[i] < sep
        assert len(lengths) > 1 and min(lengths) >= 3 and max(lengths) <= 12


def test_brackets_are_balanced_and_arcs_match() -> None:
    gen = _gen("brackets", seq_len=32, n_types=3)
    _same(gen)
    batch = gen.sample(30, np.random.default_rng(4))
    _arcs_point_back(batch)
    assert batch.arcs is not None
    start = gen.vocab.start
    for row, arcs in zip(batch.tokens.tolist(), batch.arcs.tolist(), strict=True):
        stack: list[int] = []
        assert row[-1] == PAD  # 31 positions after BOS: 15 pairs and one pad
        for i, t in enumerate(row[1:-1], start=1):
            if (t - start) % 2 == 0:
                stack.append(i)
                assert arcs[i] == -1
            else:
                opened = stack.pop()
                assert arcs[i] == opened and row[opened] == t - 1  # same type
        assert not stack
