"""The report's figures, each a bare matplotlib ``Figure`` on the Agg canvas (no pyplot: no
global state, no display; safe in threads and on headless servers).

Every figure has a title, labelled axes (with units where there are any) and a legend.
:func:`png` turns one into PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analysis.roles import ROLE_NAMES

# One colour per role (tab10 has exactly ten); "none" is light grey.
ROLE_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#e8e8e8",
)  # fmt: skip
MISSING_COLOUR = "white"
DARK_ROLES = (0, 3, 4, 5, 7)  # role colours that need white text


def figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def role_map(role: np.ndarray, specialization: np.ndarray, *, title: str) -> Figure:
    """Layer × head map: colour = role (``[L, H]`` indexes into ROLE_NAMES, NaN unknown),
    text = role name and specialization index."""
    n_layers, n_heads = role.shape
    fig = figure(min(3.5 + 1.1 * n_heads, 30.0), min(1.6 + 0.75 * n_layers, 24.0))
    ax = fig.add_subplot()
    cmap = ListedColormap(list(ROLE_COLOURS)).with_extremes(bad=MISSING_COLOUR)
    ax.imshow(np.ma.masked_invalid(role), cmap=cmap, vmin=-0.5, vmax=len(ROLE_NAMES) - 0.5, aspect="auto",
              origin="upper")
    for layer in range(n_layers):
        for head in range(n_heads):
            r, s = role[layer, head], specialization[layer, head]
            if np.isnan(r) and np.isnan(s):
                continue
            label = ROLE_NAMES[int(r)] if not np.isnan(r) else "?"
            text = f"{label}\nSI {s:.2f}" if not np.isnan(s) else label
            dark = not np.isnan(r) and int(r) in DARK_ROLES
            colour = "white" if dark else "black"
            ax.text(head, layer, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(n_heads))
    ax.set_yticks(range(n_layers))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    present = sorted({int(r) for r in role[~np.isnan(role)]})
    handles = [Patch(facecolor=ROLE_COLOURS[i], edgecolor="black", label=ROLE_NAMES[i]) for i in present]
    if handles:
        ax.legend(handles=handles, title="role", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
                  title_fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def level_means(summary: pd.DataFrame, *, factor: str, metric: str, unit: str = "") -> Figure:
    """Mean of ``metric`` per level of ``factor`` with its CI (a ``level_summary`` frame)."""
    fig = figure(5.5, 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(summary))
    means = summary["mean"].to_numpy(dtype=float)
    low = means - summary["ci_low"].to_numpy(dtype=float)
    high = summary["ci_high"].to_numpy(dtype=float) - means
    ax.errorbar(x, means, yerr=np.nan_to_num(np.vstack([low, high])), fmt="o-", capsize=4,
                label="mean over seeds, 95% bootstrap CI")
    ax.set_xticks(x, [str(v) for v in summary["level"]])
    ax.set_xlabel(factor)
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.set_title(f"{metric} by {factor}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def curves(
    frame: pd.DataFrame, *, x: str, y: str, group: str, title: str, xlabel: str, ylabel: str,
    band: tuple[str, str] | None = None, styles: dict[str, str] | None = None,
    legend_title: str | None = None,
) -> Figure:
    """One line per value of ``group`` (optionally with a shaded ``band`` of two columns)."""
    fig = figure(6.0, 3.8)
    ax = fig.add_subplot()
    for name, part in frame.groupby(group, sort=True):
        part = part.sort_values(x)
        style = (styles or {}).get(str(name), "-")
        line = ax.plot(part[x], part[y], style, marker="o", markersize=3, label=str(name))[0]
        if band is not None:
            ax.fill_between(part[x], part[band[0]], part[band[1]], alpha=0.2, color=line.get_color())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(title=legend_title or group, fontsize=8, title_fontsize=8)
    fig.tight_layout()
    return fig


def movement(history: pd.DataFrame, *, metric: str, factors: Sequence[str]) -> Figure:
    """Previous vs current firing: per (factor, level), both means with their CIs."""
    part = history[(history["metric"] == metric) & history["factor"].isin(list(factors))]
    fig = figure(6.0, 3.6)
    ax = fig.add_subplot()
    labels = [f"{f}={lv}" for f, lv in zip(part["factor"], part["level"], strict=True)]
    x = np.arange(len(part))
    for offset, name in ((-0.1, "previous"), (0.1, "current")):
        mean = part[f"{name}_mean"].to_numpy(dtype=float)
        err = np.vstack([mean - part[f"{name}_low"].to_numpy(dtype=float),
                         part[f"{name}_high"].to_numpy(dtype=float) - mean])
        ax.errorbar(x + offset, mean, yerr=np.nan_to_num(err), fmt="o", capsize=4, label=f"{name} firing")
    ax.set_xticks(x, labels, rotation=20, fontsize=8)
    ax.set_xlabel("factor level")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: this firing against the previous one (95% CIs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
