"""Several synthetic languages: one abstract grammar, disjoint vocabularies, different orders.

The shared abstract grammar: a sentence has a subject noun phrase, a verb and, with
probability ``p_transitive``, an object noun phrase; each noun takes an adjective with
probability ``p_adjective``. Lexeme choices are abstract (noun #i, verb #j), so the same
abstract sentence can be rendered in every language (translation equivalents share an index).

Language ``l`` renders it with word order ``ORDERS[l % 6]`` (SVO, SOV, VSO, VOS, OVS, OSV)
and adjectives before the noun when ``(l + l // 6)`` is even, after it otherwise, so the first
12 languages differ in (order, adjective placement) and later ones repeat a grammar with a
fresh vocabulary. Each sequence is monolingual: ``BOS`` then sentences ending with the
language's own period token, cut at ``seq_len``; ``Batch.language`` holds ``l``.

Vocabulary: language ``l`` owns the tokens ``[start + l * lexicon_size, start + (l + 1) *
lexicon_size)``: nouns (half of ``lexicon_size - 1``), verbs (a quarter), adjectives (the
rest), then the period. Needs ``n_languages * lexicon_size`` tokens and ``seq_len >= 6``.

Arcs always point from the later word of a dependency to the earlier one: adjective <-> noun
(kind adj), subject <-> verb (subj), object <-> verb (obj). A word keeps only its first arc
in that priority order (e.g. in SOV the verb points to the subject, not the object).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.data.batch import ARC_KIND_INDEX
from workers.data.common import (
    BOS,
    Arrays,
    FamilyGenerator,
    VocabSlice,
    check_float,
    check_int,
    knob_field,
)
from workers.data.sentences import Skeleton, SkeletonBuilder, SkeletonTable, assemble

ORDERS = ["SVO", "SOV", "VSO", "VOS", "OVS", "OSV"]
_K_ADJ, _K_SUBJ, _K_OBJ = ARC_KIND_INDEX["adj"], ARC_KIND_INDEX["subj"], ARC_KIND_INDEX["obj"]


@dataclass(frozen=True)
class LanguagesKnobs:
    n_languages: int = 3
    lexicon_size: int = 24  # tokens per language, period included
    p_adjective: float = 0.5
    p_transitive: float = 0.5

    def __post_init__(self) -> None:
        check_int(knob_field("languages", "n_languages"), self.n_languages, 1)
        check_int(knob_field("languages", "lexicon_size"), self.lexicon_size, 8)
        check_float(knob_field("languages", "p_adjective"), self.p_adjective, 0.0, 1.0)
        check_float(knob_field("languages", "p_transitive"), self.p_transitive, 0.0, 1.0)


@dataclass(frozen=True)
class Language:
    index: int
    order: str  # e.g. "SOV"
    adjective_first: bool
    nouns: range
    verbs: range
    adjectives: range
    period: int


_NOUN, _VERB, _ADJ, _PERIOD = range(4)  # word classes of a language; code = 1 + 4 l + class


def make_languages(knobs: LanguagesKnobs, start: int) -> list[Language]:
    words = knobs.lexicon_size - 1
    n_nouns, n_verbs = words // 2, words // 4
    out = []
    for index in range(knobs.n_languages):
        base = start + index * knobs.lexicon_size
        out.append(Language(
            index=index,
            order=ORDERS[index % len(ORDERS)],
            adjective_first=(index + index // len(ORDERS)) % 2 == 0,
            nouns=range(base, base + n_nouns),
            verbs=range(base + n_nouns, base + n_nouns + n_verbs),
            adjectives=range(base + n_nouns + n_verbs, base + words),
            period=base + words,
        ))
    return out


def render(lang: Language, transitive: bool, subject_adj: bool, object_adj: bool) -> Skeleton:
    """The skeleton of one abstract sentence shape in ``lang``'s word order."""
    code = 1 + 4 * lang.index
    out = SkeletonBuilder()
    order = lang.order if transitive else lang.order.replace("O", "")
    where: dict[str, int] = {}
    for role in order:
        if role == "V":
            where["V"] = out.emit(code + _VERB)
            continue
        words = ["N", "A"] if (subject_adj if role == "S" else object_adj) else ["N"]
        for word in (reversed(words) if lang.adjective_first else words):
            where[role + word] = out.emit(code + (_NOUN if word == "N" else _ADJ))
    out.emit(code + _PERIOD)
    for a, b, kind in (("SA", "SN", _K_ADJ), ("OA", "ON", _K_ADJ), ("SN", "V", _K_SUBJ),
                       ("ON", "V", _K_OBJ)):
        if a in where and b in where:
            early, late = sorted((where[a], where[b]))
            out.link(late, early, kind)
    return out.freeze()


class LanguagesGenerator(FamilyGenerator):
    name = "languages"

    def __init__(self, knobs: LanguagesKnobs, vocab: VocabSlice, seq_len: int,
                 structure_rng: np.random.Generator) -> None:
        super().__init__(vocab, seq_len)
        self.knobs = knobs
        self.need_vocab(knobs.n_languages * knobs.lexicon_size,
                        f"{knob_field('languages', 'n_languages')} or lexicon_size")
        self.need_seq_len(6, "nothing: languages needs room for one sentence")
        self.languages = make_languages(knobs, vocab.start)
        self.table = SkeletonTable(self._build)
        self.table.rows(np.arange(8 * knobs.n_languages))  # every shape, built up front
        base, size = [BOS], [1]
        for lang in self.languages:
            for words in (lang.nouns, lang.verbs, lang.adjectives, range(lang.period,
                                                                         lang.period + 1)):
                base.append(words.start)
                size.append(len(words))
        self._code_base = np.array(base, dtype=np.int64)  # [1 + 4 L]
        self._code_size = np.array(size, dtype=np.int64)  # [1 + 4 L]

    def _build(self, choice: int) -> Skeleton:
        """Choice id = 8 * language + 4 * transitive + 2 * subject_adj + object_adj."""
        return render(self.languages[choice // 8], bool(choice & 4), bool(choice & 2),
                      bool(choice & 1))

    def sample_arrays(self, n: int, rng: np.random.Generator) -> Arrays:
        knobs = self.knobs
        language = rng.integers(0, knobs.n_languages, size=n)  # [n]
        m = -(-(self.seq_len - 1) // 3)  # sentences have >= 3 words
        u = rng.random((n, m, 3))  # [n, M, 3]
        transitive = u[..., 0] < knobs.p_transitive  # [n, M]
        subject_adj = u[..., 1] < knobs.p_adjective
        object_adj = transitive & (u[..., 2] < knobs.p_adjective)
        choice = 8 * language[:, None] + 4 * transitive + 2 * subject_adj + object_adj
        tokens, arcs, kinds = assemble(choice, self.table, self.seq_len, rng,
                                       self._code_base, self._code_size)
        return {"tokens": tokens, "arcs": arcs, "arc_kind": kinds, "language": language}
