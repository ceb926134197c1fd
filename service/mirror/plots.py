"""The layer × head role / specialization map of one variant, as a PNG.

Built on a bare ``Figure`` with the Agg canvas — no pyplot, so no global figure state and
no display backend: safe in a worker thread and on a headless server.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from workers.probes.roles import ROLES

# One colour per role (tab10 has exactly ten); "none" is light grey.
ROLE_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#e8e8e8",
)  # fmt: skip
MISSING_COLOUR = "white"


def role_grid(
    layers: np.ndarray, heads: np.ndarray, values: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """``[L, H]`` float grid from per-head columns; NaN where a head has no value."""
    grid = np.full(shape, np.nan)
    grid[layers.astype(int), heads.astype(int)] = values
    return grid


def write_role_map(
    path: Path,
    role: np.ndarray,
    specialization: np.ndarray,
    *,
    title: str,
) -> Path:
    """Write the map of ``role`` (``[L, H]`` indexes into ``ROLES``, NaN = unknown) coloured
    by role and annotated with the specialization index (``[L, H]``) to ``path``."""
    n_layers, n_heads = role.shape
    width = min(3.5 + 1.1 * n_heads, 30.0)
    height = min(1.6 + 0.75 * n_layers, 24.0)
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    cmap = ListedColormap(list(ROLE_COLOURS)).with_extremes(bad=MISSING_COLOUR)
    masked = np.ma.masked_invalid(role)
    ax.imshow(masked, cmap=cmap, vmin=-0.5, vmax=len(ROLES) - 0.5, aspect="auto", origin="upper")
    for layer in range(n_layers):
        for head in range(n_heads):
            r, s = role[layer, head], specialization[layer, head]
            if np.isnan(r) and np.isnan(s):
                continue
            label = ROLES[int(r)] if not np.isnan(r) else "?"
            text = f"{label}\nSI {s:.2f}" if not np.isnan(s) else label
            dark = not np.isnan(r) and int(r) in (0, 3, 4, 5, 7)
            ax.text(head, layer, text, ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(n_heads))
    ax.set_yticks(range(n_layers))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    present = sorted({int(r) for r in role[~np.isnan(role)]})
    handles = [Patch(facecolor=ROLE_COLOURS[i], edgecolor="black", label=ROLES[i]) for i in present]
    if handles:
        ax.legend(handles=handles, title="role", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize=7, title_fontsize=8, frameon=False)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path
