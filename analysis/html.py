"""A self-contained HTML document: headings, paragraphs, tables and PNG figures embedded as
data URIs, so one file opens anywhere. The PNGs are also kept (``images``) for MLflow."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from analysis.plots import png

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; max-width: 36em; }
.note { color: #555; font-size: 0.9em; }
"""


@dataclass
class Document:
    title: str
    parts: list[str] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, css: str | None = None) -> None:
        cls = f' class="{css}"' if css else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def table(self, frame: pd.DataFrame, *, digits: int = 3, caption: str | None = None) -> None:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        rows = []
        for values in frame.itertuples(index=False):
            cells = []
            for v in values:
                text = _fmt(v, digits)
                css = ' class="text"' if isinstance(v, str) else ""
                cells.append(f"<td{css}>{html.escape(text)}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")

    def figure(self, fig: Figure, name: str, caption: str) -> None:
        """Embed ``fig`` as PNG; ``name`` (unique, becomes ``<name>.png``) keys ``images``."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "figure"
        if slug + ".png" in self.images:
            raise ValueError(f"duplicate figure name {slug!r}")
        data = png(fig)
        self.images[slug + ".png"] = data
        encoded = base64.b64encode(data).decode()
        self.parts.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head>\n"
                f"<body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n")


def _fmt(value: object, digits: int) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)
