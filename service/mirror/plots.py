"""The layer × head role / specialization map of one variant, as a PNG.

Drawn by :func:`analysis.plots.role_map` (the report draws the same map per factor level).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.plots import png, role_map


def write_role_map(path: Path, role: np.ndarray, specialization: np.ndarray, *, title: str) -> Path:
    """Write the map of ``role`` (``[L, H]`` indexes into the role names, NaN = unknown)
    coloured by role and annotated with the specialization index (``[L, H]``) to ``path``."""
    path.write_bytes(png(role_map(role, specialization, title=title)))
    return path


def role_grid(
    layers: np.ndarray, heads: np.ndarray, values: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """``[L, H]`` float grid from per-head columns; NaN where a head has no value."""
    grid = np.full(shape, np.nan)
    grid[layers.astype(int), heads.astype(int)] = values
    return grid
