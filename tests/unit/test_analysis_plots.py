"""Every report figure has a title, labelled axes and a legend, and renders to a PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis.html import Document
from analysis.plots import curves, level_means, movement, png, role_map


def _figures() -> list[Figure]:
    summary = pd.DataFrame({"level": [1, 2], "mean": [0.1, 0.5], "ci_low": [0.05, 0.4],
                            "ci_high": [0.2, 0.6]})
    series = pd.DataFrame({"step": [0, 50, 0, 50], "score": [0.0, 0.1, 0.0, 0.4], "lvl": ["a", "a", "b", "b"],
                           "lo": [0, 0, 0, 0.3], "hi": [0, 0.2, 0, 0.5]})
    history = pd.DataFrame({"factor": ["f"], "level": [1], "metric": ["m"], "previous_mean": [0.1],
                            "previous_low": [0.0], "previous_high": [0.2], "current_mean": [0.5],
                            "current_low": [0.4], "current_high": [0.6]})
    role = np.array([[1.0, 8.0], [0.0, np.nan]])
    return [
        level_means(summary, factor="f", metric="m", unit="nats"),
        curves(series, x="step", y="score", group="lvl", title="t", xlabel="x", ylabel="y",
               band=("lo", "hi")),
        movement(history, metric="m", factors=["f"]),
        role_map(role, np.array([[0.5, 0.1], [0.9, np.nan]]), title="roles"),
    ]


@pytest.mark.parametrize("index", range(4))
def test_figures_are_labelled(index: int) -> None:
    fig = _figures()[index]
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert ax.get_legend() is not None and ax.get_legend().get_texts()
    assert png(fig).startswith(b"\x89PNG")


def test_document_escapes_text_and_refuses_duplicate_figure_names() -> None:
    doc = Document("a <b> & c")
    doc.paragraph("<script>")
    doc.table(pd.DataFrame({"x": [1.0, np.nan], "name": ["<i>", "ok"]}))
    doc.figure(_figures()[0], "one", "caption")
    with pytest.raises(ValueError, match="duplicate"):
        doc.figure(_figures()[0], "one", "again")
    html = doc.render()
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;i&gt;" in html
    assert list(doc.images) == ["one.png"]
