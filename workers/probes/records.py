"""Tidy columnar records: one row per (variant, step, layer, head, metric, value).

This is the shape the store ingests. Per-variant scalars (``[V]`` tensors, e.g. icl_score)
use ``layer = head = -1``. NaN values (a metric the probe batch could not measure) are
dropped by default rather than stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

VARIANT_LEVEL = -1  # layer and head of a per-variant scalar record

COLUMNS = ("variant_id", "step", "layer", "head", "metric", "value")


def probe_records(
    variant_ids: Sequence[object],
    step: int,
    scores: Mapping[str, torch.Tensor],
    *,
    drop_nan: bool = True,
) -> dict[str, np.ndarray]:
    """Columnar records of ``{metric: [V, L, H] or [V]}`` for the pack's variants.

    Returns numpy arrays ``variant_id`` (as given), ``step``/``layer``/``head`` (int64),
    ``metric`` (str), ``value`` (float64), all of one length, ordered by metric then variant,
    layer, head.
    """
    ids = np.asarray(list(variant_ids))
    V = len(ids)
    parts: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
    for metric, tensor in scores.items():
        values = tensor.detach().to("cpu", torch.float64).numpy()
        if values.shape[0] != V or values.ndim not in (1, 3):
            raise ValueError(f"{metric}: expected [V={V}, L, H] or [V], got {values.shape}")
        if values.ndim == 3:
            v_idx, layer, head = np.indices(values.shape).reshape(3, -1)
        else:
            v_idx = np.arange(V)
            layer = head = np.full(V, VARIANT_LEVEL)
        flat = values.reshape(-1)
        keep = ~np.isnan(flat) if drop_nan else np.ones(flat.shape, dtype=bool)
        parts["variant_id"].append(ids[v_idx][keep])
        parts["layer"].append(layer[keep].astype(np.int64))
        parts["head"].append(head[keep].astype(np.int64))
        parts["metric"].append(np.full(int(keep.sum()), metric, dtype=object))
        parts["value"].append(flat[keep])
    n = sum(len(v) for v in parts["value"])
    out = {
        "variant_id": np.concatenate(parts["variant_id"]) if n else ids[:0],
        "step": np.full(n, int(step), dtype=np.int64),
        "layer": np.concatenate(parts["layer"]) if n else np.zeros(0, np.int64),
        "head": np.concatenate(parts["head"]) if n else np.zeros(0, np.int64),
        "metric": np.concatenate(parts["metric"]) if n else np.zeros(0, dtype=object),
        "value": np.concatenate(parts["value"]) if n else np.zeros(0),
    }
    return out
