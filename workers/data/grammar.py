"""A small agreement grammar with dependency arcs (for syntactic heads).

Each sequence is ``BOS`` then sentences separated by a period token, cut at ``seq_len``
(arcs point backwards and stay inside a sentence, so the cut never breaks one). A sentence
follows one of the first ``n_templates`` templates::

    0  DET N V                      4  DET N that V DET N V          (subject relative)
    1  DET N V DET N                5  DET N that DET N V V          (object relative)
    2  DET ADJ.. N V                6  DET ADJ.. N [PP].. V DET N
    3  DET N [P DET N].. V          7  any of adj / PP / subject rel / object rel, + object

Templates 2-7 insert 1..``max_distractors`` distractors of their kinds: adjectives go between
the subject's determiner and noun, the others between the subject and its verb. Attractor
nouns (in PPs and relatives) draw their own number, so the verb must skip them to agree.

Arcs (kind in brackets): every noun -> its determiner (det; the determiner agrees in number),
every verb -> its subject noun (subj; number agreement), preposition and relative pronoun ->
the subject noun they modify (prep, rel). Adjectives and periods have none.

Token layout in the family's range (offsets from its start): ``n_dets`` singular and
``n_dets`` plural determiners, ``n_nouns`` singular then ``n_nouns`` plural nouns, the same for
verbs, ``n_adjs`` adjectives, ``n_preps`` prepositions, the relative pronoun, the period.
Needs ``2 n_dets + 2 n_nouns + 2 n_verbs + n_adjs + n_preps + 2`` tokens and ``seq_len >= 6``.
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
    check_int,
    knob_field,
)
from workers.data.sentences import Skeleton, SkeletonBuilder, SkeletonTable, assemble

DET, NOUN, VERB, ADJ, PREP, REL, PERIOD = range(7)
CATEGORY_NAMES = ["det", "noun", "verb", "adj", "prep", "rel", "period"]

TEMPLATES: list[tuple[tuple[str, ...], bool]] = [
    ((), False),
    ((), True),
    (("adj",), False),
    (("pp",), False),
    (("src",), False),
    (("orc",), False),
    (("adj", "pp"), True),
    (("adj", "pp", "src", "orc"), True),
]
_K_DET, _K_SUBJ = ARC_KIND_INDEX["det"], ARC_KIND_INDEX["subj"]
_K_PREP, _K_REL = ARC_KIND_INDEX["prep"], ARC_KIND_INDEX["rel"]
_KINDS_BASE = 4  # at most 4 distractor kinds per template (choice ids encode them base 4)
MAX_DISTRACTORS = 12  # keeps choice ids inside int64


@dataclass(frozen=True)
class GrammarKnobs:
    n_nouns: int = 16
    n_verbs: int = 16
    n_adjs: int = 8
    n_preps: int = 4
    n_dets: int = 2  # per number
    n_templates: int = len(TEMPLATES)
    max_distractors: int = 2

    def __post_init__(self) -> None:
        for knob in ("n_nouns", "n_verbs", "n_dets", "n_adjs", "n_preps"):
            check_int(knob_field("grammar", knob), getattr(self, knob), 1)
        check_int(knob_field("grammar", "n_templates"), self.n_templates, 1, len(TEMPLATES))
        check_int(knob_field("grammar", "max_distractors"), self.max_distractors, 0,
                  MAX_DISTRACTORS)

    def vocab_need(self) -> int:
        return (2 * self.n_dets + 2 * self.n_nouns + 2 * self.n_verbs + self.n_adjs
                + self.n_preps + 2)


class GrammarLexicon:
    """Token ids of each category and number, and the inverse lookup for checks."""

    def __init__(self, knobs: GrammarKnobs, start: int) -> None:
        self.start = start
        # Word classes in token order: (category, number, size); class code = index + 1.
        classes = [(DET, 0, knobs.n_dets), (DET, 1, knobs.n_dets),
                   (NOUN, 0, knobs.n_nouns), (NOUN, 1, knobs.n_nouns),
                   (VERB, 0, knobs.n_verbs), (VERB, 1, knobs.n_verbs),
                   (ADJ, -1, knobs.n_adjs), (PREP, -1, knobs.n_preps),
                   (REL, -1, 1), (PERIOD, -1, 1)]
        self.code = {(cat, num): i + 1 for i, (cat, num, _) in enumerate(classes)}
        sizes = [size for _, _, size in classes]
        bases = start + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.code_base = np.concatenate([[BOS], bases]).astype(np.int64)  # [n_codes]
        self.code_size = np.array([1, *sizes], dtype=np.int64)  # [n_codes]
        self._category = np.repeat([c for c, _, _ in classes], sizes)  # per content offset
        self._number = np.repeat([n for _, n, _ in classes], sizes)

    def tokens(self, category: int, number: int = -1) -> range:
        """The token ids of one word class."""
        code = self.code[(category, number)]
        base = int(self.code_base[code])
        return range(base, base + int(self.code_size[code]))

    def category(self, token: int) -> int:
        """Category index (see CATEGORY_NAMES) of a content token of this family."""
        return int(self._category[token - self.start])

    def number(self, token: int) -> int:
        """0 singular, 1 plural, -1 for categories without number."""
        return int(self._number[token - self.start])


class GrammarGenerator(FamilyGenerator):
    name = "grammar"

    def __init__(self, knobs: GrammarKnobs, vocab: VocabSlice, seq_len: int,
                 structure_rng: np.random.Generator) -> None:
        super().__init__(vocab, seq_len)
        self.knobs = knobs
        self.need_vocab(knobs.vocab_need(), f"{knob_field('grammar', 'n_nouns')}/n_verbs/n_adjs")
        self.need_seq_len(6, "nothing: grammar needs room for one sentence")
        self.lexicon = GrammarLexicon(knobs, vocab.start)
        self.table = SkeletonTable(self._build)
        self._n_allowed = np.array([len(kinds) for kinds, _ in TEMPLATES], dtype=np.int64)

    def _decode(self, choice: int) -> tuple[tuple[str, ...], bool, int]:
        """(distractor kinds in order, transitive, number bits) of a choice id."""
        d = self.knobs.max_distractors
        template, rest = choice % len(TEMPLATES), choice // len(TEMPLATES)
        count, rest = rest % (d + 1), rest // (d + 1)
        kinds_code, numbers = rest % _KINDS_BASE ** d, rest // _KINDS_BASE ** d
        allowed, transitive = TEMPLATES[template]
        chosen = tuple(allowed[(kinds_code // _KINDS_BASE ** j) % _KINDS_BASE]
                       for j in range(count))
        return chosen, transitive, numbers

    def _choice_ids(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Sentence choices ``[n, M]`` with enough sentences (of >= 4 words) to fill a row."""
        d = self.knobs.max_distractors
        m = -(-(self.seq_len - 1) // 4)
        u = rng.random((n, m, 3 + d))  # [n, M, 3 + D]
        template = (u[..., 0] * self.knobs.n_templates).astype(np.int64)  # [n, M]
        n_allowed = self._n_allowed[template]  # [n, M]
        count = np.where(n_allowed > 0, 1 + (u[..., 1] * d).astype(np.int64), 0)
        count = np.minimum(count, d)  # [n, M]; 0 when the template has no distractors
        kind = (u[..., 3:] * n_allowed[..., None]).astype(np.int64)  # [n, M, D]
        kind = np.where(np.arange(d) < count[..., None], kind, 0)
        kinds_code = (kind * _KINDS_BASE ** np.arange(d, dtype=np.int64)).sum(axis=-1)
        numbers = (u[..., 2] * (1 << (2 + count))).astype(np.int64)  # one bit per noun phrase
        return template + len(TEMPLATES) * (
            count + (d + 1) * (kinds_code + _KINDS_BASE ** d * numbers))

    def _build(self, choice: int) -> Skeleton:
        chosen, transitive, numbers = self._decode(choice)
        code, out = self.lexicon.code, SkeletonBuilder()
        pending = [(numbers >> i) & 1 for i in range(2 + len(chosen))]  # one per noun phrase

        def noun_phrase(number: int, n_adj: int = 0) -> int:
            det = out.emit(code[(DET, number)])
            for _ in range(n_adj):
                out.emit(code[(ADJ, -1)])
            return out.emit(code[(NOUN, number)], det, _K_DET)

        number = pending.pop()
        subject = noun_phrase(number, chosen.count("adj"))
        for kind in chosen:
            if kind == "pp":
                out.emit(code[(PREP, -1)], subject, _K_PREP)
                noun_phrase(pending.pop())
            elif kind == "src":  # "the dog that chases the cats barks"
                out.emit(code[(REL, -1)], subject, _K_REL)
                out.emit(code[(VERB, number)], subject, _K_SUBJ)
                noun_phrase(pending.pop())
            elif kind == "orc":  # "the dog that the cats chase barks"
                out.emit(code[(REL, -1)], subject, _K_REL)
                inner = pending.pop()
                out.emit(code[(VERB, inner)], noun_phrase(inner), _K_SUBJ)
        out.emit(code[(VERB, number)], subject, _K_SUBJ)
        if transitive:
            noun_phrase(pending.pop())
        out.emit(code[(PERIOD, -1)])
        return out.freeze()

    def sample_arrays(self, n: int, rng: np.random.Generator) -> Arrays:
        lex = self.lexicon
        tokens, arcs, kinds = assemble(self._choice_ids(n, rng), self.table, self.seq_len, rng,
                                       lex.code_base, lex.code_size)
        return {"tokens": tokens, "arcs": arcs, "arc_kind": kinds}
