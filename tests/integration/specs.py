"""The tiny sweep the integration tests run: seconds on a CPU, every probe exercised."""

from __future__ import annotations

import copy
from typing import Any

TINY_BASE: dict[str, Any] = {
    "model": {"n_layers": 2, "n_heads": 2, "d_model": 16, "vocab_size": 40, "n_ctx": 17,
              "attn_only": True},
    "data": {"families": {"repeated": 1.0}},
    "train": {"steps": 6, "batch_size": 4, "probe_every": 3, "warmup_steps": 1, "probe_batch_size": 4},
}


def tiny_spec(name: str, **fields: Any) -> dict[str, Any]:
    """A sweep spec on the tiny base; ``fields`` set factors, seeds, resources, etc."""
    return {"name": name, "base": copy.deepcopy(TINY_BASE), **fields}
