"""The role vocabulary shared by the probes that assign roles (``workers.probes.roles``) and
the analysis that reads them back: one definition, no dependencies.

The stored ``role`` head metric is an index into :data:`ROLE_NAMES`. Each role but ``none``
is scored by one head metric (:data:`ROLE_METRIC`) against one ``RoleThresholds`` field
(:data:`ROLE_THRESHOLD`). For ``positional`` and ``language`` the score is conditional on a
second metric (the offset; the largest per-language delta), so only the other roles'
scores can be read straight from the store (:data:`DIRECT_ROLES`).
"""

from __future__ import annotations

ROLE_NAMES = (
    "induction",
    "previous_token",
    "positional",
    "duplicate",
    "syntactic",
    "keyword",
    "language",
    "sink",
    "broad",
    "none",
)
ROLE_METRIC = {
    "induction": "induction",
    "previous_token": "prev_token",
    "positional": "positional",
    "duplicate": "duplicate_token",
    "syntactic": "syntactic",
    "keyword": "keyword",
    "language": "language_selectivity",
    "sink": "sink",
    "broad": "entropy_norm",
}
ROLE_THRESHOLD = {  # role -> RoleThresholds field
    "induction": "induction",
    "previous_token": "prev_token",
    "positional": "positional",
    "duplicate": "duplicate",
    "syntactic": "syntactic",
    "keyword": "keyword",
    "language": "language_selectivity",
    "sink": "sink",
    "broad": "broad",
}
DIRECT_ROLES = ("induction", "previous_token", "duplicate", "syntactic", "keyword", "sink")
