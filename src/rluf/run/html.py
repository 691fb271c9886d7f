"""A self-contained HTML report: tables, key figures and PNG images embedded as base64 data URIs."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
  padding:0 1em;color:#222}
h1{border-bottom:2px solid #c33;padding-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5em 0} .note{color:#666;font-size:13px}
.kv td{text-align:left} .warn{color:#b00;font-weight:bold} .ok{color:#070;font-weight:bold}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top} figcaption{font-size:13px;color:#555}
"""


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "–"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 0.01 or v == 0:
            return f"{v:.3f}"
        return f"{v:.2e}"
    if v is None:
        return "–"
    return str(v)


@dataclass
class Report:
    title: str
    parts: list[str] = field(default_factory=list)

    def heading(self, text: str, anchor: str | None = None) -> None:
        a = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h2{a}>{html.escape(text)}</h2>")

    def paragraph(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def table(self, rows: list[dict[str, Any]], columns: list[str] | None = None, table_id: str = "") -> None:
        if not rows:
            self.paragraph("(no rows)", "note")
            return
        columns = columns or list(rows[0].keys())
        tid = f' id="{html.escape(table_id)}"' if table_id else ""
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows
        )
        self.parts.append(f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def key_values(self, items: dict[str, Any], table_id: str = "") -> None:
        tid = f' id="{html.escape(table_id)}"' if table_id else ""
        body = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(fmt(v))}</td></tr>" for k, v in items.items()
        )
        self.parts.append(f'<table class="kv"{tid}>{body}</table>')

    def image(self, path: str | Path, caption: str, why_missing: str | None = None) -> None:
        """Embed the PNG at `path`; if it was not drawn, say so in words (`why_missing`, or which stage's file
        is absent)."""
        path = Path(path)
        if not path.is_file():
            why = why_missing or f"Its stage did not write {path.parent.name}/{path.name}."
            self.paragraph(f"{caption}: not drawn. {why}", "warn")
            return
        data = base64.b64encode(path.read_bytes()).decode()
        self.parts.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def render(self) -> str:
        return (
            f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(self.title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"
            + "\n".join(self.parts)
            + "</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        from rluf.utils import atomic_write_bytes

        atomic_write_bytes(path, self.render().encode("utf-8"))
        return Path(path)
