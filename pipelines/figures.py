"""Figures and pages for the human-readable reports (exploration, model cards).

matplotlib runs on the Agg backend (no display needed) and PNGs are written without
metadata that changes between runs, so the same data gives byte-identical reports.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 80
# No "Software" stamp: the PNG bytes depend on the data and the figure only.
PNG_METADATA: dict[str, Any] = {"Software": None}

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f4f4f4}img{max-width:100%}h2{margin-top:2em}
.note{color:#555}
"""


def new_figure(width: float = 8, height: float = 5) -> Figure:
    """A figure outside pyplot's global state (nothing leaks between reports)."""
    return Figure(figsize=(width, height), dpi=DPI, layout="tight")


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA)
    plt.close(figure)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def escape(text: object) -> str:
    return html.escape(str(text))


def table_html(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; every cell escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, sections: Iterable[str]) -> str:
    """A complete self-contained HTML document."""
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def section(heading: str, *parts: str) -> str:
    return f"<h2>{html.escape(heading)}</h2>\n" + "\n".join(parts)


def paragraph(text: str, css_class: str = "") -> str:
    attribute = f" class='{css_class}'" if css_class else ""
    return f"<p{attribute}>{html.escape(text)}</p>"


def image(png: bytes, alt: str) -> str:
    return f"<img src='{data_uri(png)}' alt='{html.escape(alt)}'>"
