"""The scalar ``diversity`` in [0, 1] and the explicit knobs it stands for.

``resolve_diversity(d)`` is pure and every knob it returns is monotone non-decreasing in ``d``
(``markov_n_chains = None`` means fresh chains, i.e. infinitely many, at ``d = 1``):

=================== ====== ====== ====== ====== ============ =================================
knob                d=0    d=0.25 d=0.5  d=0.75 d=1          formula
=================== ====== ====== ====== ====== ============ =================================
n_families          1      3      5      7      9            ``1 + round(8 d)``
families            rep.   +mar., +gra., +bur., +bra.,       first ``n_families`` of
                           copy   keyw.  rev.   lang.        ``DIVERSITY_ORDER``, equal weight
vocab_fraction      0.125  0.210  0.354  0.595  1.0          ``0.125 * 8 ** d``
markov_n_chains     8      64     512    4096   None (fresh) ``round(8 * 4096 ** d)``, d<1
grammar_n_templates 1      3      5      6      8            ``1 + round(7 d)``
zipf_exponent       0.0    0.25   0.5    0.75   1.0          ``d``
burstiness          0.0    0.225  0.45   0.675  0.9          ``0.9 d``
=================== ====== ====== ====== ====== ============ =================================

``DIVERSITY_ORDER`` = repeated, markov, copy, grammar, keyword, bursty, reverse, brackets,
languages (``text`` is never added by diversity: name it in ``families``).

Where each knob goes (see :func:`diversity_family_knobs`):

- ``vocab_fraction`` -> the share of the family's token range drawn from by ``repeated``,
  ``copy``, ``reverse`` and ``bursty`` (for bursty it sets how many classes fit, so more
  diversity = more, rarer classes);
- ``markov_n_chains`` -> ``markov.n_chains`` (size of the fixed pool of transition matrices;
  Raventós et al. 2023: below a task-diversity threshold the model memorises the pool);
- ``grammar_n_templates`` -> ``grammar.n_templates``;
- ``zipf_exponent``, ``burstiness`` -> the same ``bursty`` knobs. Following Chan et al. 2022,
  a Zipfian long tail of rare classes (exponent ~1) plus bursty contexts is the data regime
  in which in-context learning emerges; uniform classes without bursts (d = 0) is the
  in-weights regime.

The ``d = 1`` values equal the knob dataclasses' defaults, which follow the published setups
(fresh chains as Edelman et al. 2024, Zipf 1 and burstiness 0.9 as Chan et al. 2022, the full
vocabulary as the TransformerLens induction batch). Explicit ``DataConfig.knobs`` and
``DataConfig.families`` override whatever diversity implies.
"""

from __future__ import annotations

import math
from typing import Any

from workers.data.common import check_float

DIVERSITY_ORDER: tuple[str, ...] = (
    "repeated",
    "markov",
    "copy",
    "grammar",
    "keyword",
    "bursty",
    "reverse",
    "brackets",
    "languages",
)
MIN_CHAINS = 8
MAX_POOL_CHAINS = 8 * 4096
MIN_VOCAB_FRACTION = 0.125
MAX_TEMPLATES = 8
MAX_BURSTINESS = 0.9


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))  # half up, not Python's half-to-even


def resolve_diversity(diversity: float) -> dict[str, Any]:
    """The explicit knobs the scalar ``diversity`` in [0, 1] maps onto (table above)."""
    d = check_float("diversity", diversity, 0.0, 1.0)
    n_families = 1 + _round(8 * d)
    families = DIVERSITY_ORDER[:n_families]
    return {
        "n_families": n_families,
        "families": {name: 1.0 / n_families for name in families},
        "vocab_fraction": MIN_VOCAB_FRACTION * (1 / MIN_VOCAB_FRACTION) ** d,
        "markov_n_chains": None if d >= 1.0 else _round(MIN_CHAINS * (MAX_POOL_CHAINS
                                                                      / MIN_CHAINS) ** d),
        "grammar_n_templates": 1 + _round((MAX_TEMPLATES - 1) * d),
        "zipf_exponent": d,
        "burstiness": MAX_BURSTINESS * d,
    }


def diversity_family_knobs(diversity: float) -> dict[str, dict[str, Any]]:
    """The per-family knob values implied by ``diversity`` (before explicit overrides)."""
    r = resolve_diversity(diversity)
    fraction = {"vocab_fraction": r["vocab_fraction"]}
    return {
        "repeated": dict(fraction),
        "copy": dict(fraction),
        "reverse": dict(fraction),
        "markov": {"n_chains": r["markov_n_chains"]},
        "grammar": {"n_templates": r["grammar_n_templates"]},
        "bursty": {**fraction, "zipf_exponent": r["zipf_exponent"],
                   "burstiness": r["burstiness"]},
    }
