"""`mailspec matrix RESULTS.json... [--markdown PATH] [--html PATH]`:
scenarios x targets.

Reads JSON reports written by `mailspec run --json` (docs/results.schema.json;
a JSON shaped like `dataclasses.asdict(RunResult)` is read too) and renders

* Markdown (stdout when no --markdown/--html is given): one table per
  section, a summary of counts per target; and
* a self-contained HTML page (inline CSS and JS, nothing fetched): verdict
  colours, sticky header and first column, sections, a filter for rows
  that are not PASS everywhere, requirement summaries and RFC sections as
  tooltips, and each cell linking to that target's transcript of that
  scenario, with C:/S: coloured and invisible bytes made visible.

A report is named after its file (`interop-dovecot.json` -> `dovecot`) or
explicitly with `LABEL=PATH`.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.errors import ConfigError

VERDICTS = ("PASS", "FAIL", "WARN", "SKIP", "ERROR", "XFAIL", "XPASS")
NOT_RUN = "—"
DEFAULT_TRANSCRIPT_LIMIT = 4096  # octets shown per transcript entry


# --------------------------------------------------------------------------
# Model


@dataclass
class Entry:
    at: float
    session: str
    direction: str  # C | S | *
    data: bytes


@dataclass
class Cell:
    verdict: str
    message: str = ""
    failures: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[Entry] = field(default_factory=list)
    duration: float = 0.0
    expectation_reason: str | None = None


@dataclass
class Row:
    id: str
    title: str
    section: str
    requirements: list[str]
    level: str
    source: str = ""


@dataclass
class Target:
    label: str
    path: str
    address: str
    greeting: str
    capabilities: list[str]
    started_at: str
    duration: float
    tool_version: str
    embedded: bool
    cells: dict[str, Cell]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for c in self.cells.values():
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out


@dataclass
class Matrix:
    targets: list[Target]
    rows: list[Row]  # in section order

    def sections(self) -> list[tuple[str, list[Row]]]:
        out: dict[str, list[Row]] = {}
        for r in self.rows:
            out.setdefault(r.section, []).append(r)
        return list(out.items())

    def cell(self, target: Target, row: Row) -> Cell | None:
        return target.cells.get(row.id)

    def all_pass(self, row: Row) -> bool:
        return all(
            (c := t.cells.get(row.id)) is not None and c.verdict == "PASS" for t in self.targets
        )


# --------------------------------------------------------------------------
# Loading

_UNESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|r|n|t|\\)")


def _unescape(text: str) -> bytes:
    """Escaped transcript text (`\\r\\n`, `\\x00`) back to bytes."""
    raw = text.encode("utf-8", "surrogateescape")

    def sub(m: re.Match[bytes]) -> bytes:
        tok = m.group(1)
        if tok.startswith(b"x"):
            return bytes([int(tok[1:], 16)])
        return {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"\\": b"\\"}[tok]

    return _UNESCAPE.sub(sub, raw)


def _entry(e: dict[str, Any]) -> Entry:
    direction = str(e.get("direction", "*"))
    if "base64" in e:
        data = base64.b64decode(e["base64"])
    else:
        raw = e.get("text", e.get("data", ""))
        if isinstance(raw, list):  # asdict of bytes via a custom encoder
            data = bytes(raw)
        elif direction == "*":
            data = str(raw).encode("utf-8")
        else:
            data = _unescape(str(raw))
    return Entry(float(e.get("at", 0.0)), str(e.get("session", "a")), direction, data)


def default_label(path: Path) -> str:
    stem = path.name
    for suffix in (".json",):
        stem = stem.removesuffix(suffix)
    for prefix in ("interop-", "results-", "mailspec-"):
        stem = stem.removeprefix(prefix)
    return stem or path.name


def load_target(spec: str) -> tuple[Target, list[Row]]:
    label, eq, path_text = spec.partition("=")
    if not eq or not label or "/" in label:
        label, path_text = "", spec
    path = Path(path_text)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"matrix: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"matrix: {path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ConfigError(f"matrix: {path}: not a mailspec results file (no 'results' list)")
    fmt = data.get("format")
    if fmt is not None and fmt != "mailspec-results":
        raise ConfigError(f"matrix: {path}: format {fmt!r} is not mailspec-results")
    target = data.get("target") or {}
    tool = data.get("tool") or {}
    rows: list[Row] = []
    cells: dict[str, Cell] = {}
    for i, r in enumerate(data["results"], start=1):
        try:
            rid = r.get("id") or r["scenario_id"]
            verdict = str(r["verdict"]).upper()
        except (KeyError, AttributeError, TypeError):
            raise ConfigError(f"matrix: {path}: results[{i}] has no id/verdict") from None
        rows.append(
            Row(
                id=rid,
                title=r.get("title", ""),
                section=r.get("section", "") or "(no section)",
                requirements=list(r.get("requirements") or []),
                level=r.get("level", ""),
                source=r.get("source", ""),
            )
        )
        cells[rid] = Cell(
            verdict=verdict,
            message=r.get("message", "") or "",
            failures=list(r.get("failures") or []),
            transcript=[_entry(e) for e in r.get("transcript") or []],
            duration=float(r.get("duration") or 0.0),
            expectation_reason=r.get("expectation_reason"),
        )
    return (
        Target(
            label=label or default_label(path),
            path=str(path),
            address=target.get("address", ""),
            greeting=target.get("greeting", ""),
            capabilities=list(target.get("capabilities") or []),
            started_at=data.get("started_at", ""),
            duration=float(data.get("duration") or 0.0),
            tool_version=str(tool.get("version") or data.get("tool_version") or ""),
            embedded=bool(target.get("embedded", False)),
            cells=cells,
        ),
        rows,
    )


def load_matrix(specs: list[str]) -> Matrix:
    if not specs:
        raise ConfigError("matrix: give at least one results JSON file")
    targets: list[Target] = []
    rows: dict[str, Row] = {}
    sections: list[str] = []
    for spec in specs:
        target, target_rows = load_target(spec)
        base, n = target.label, 2
        while any(t.label == target.label for t in targets):
            target.label = f"{base}-{n}"
            n += 1
        targets.append(target)
        for row in target_rows:
            if row.id not in rows:
                rows[row.id] = row
                if row.section not in sections:
                    sections.append(row.section)
    ordered = sorted(rows.values(), key=lambda r: sections.index(r.section))
    return Matrix(targets, ordered)


def requirement_tip(req_id: str) -> str:
    try:
        from conformance.catalogue import load_catalogue

        req = load_catalogue().get(req_id)
    except Exception:  # catalogue unavailable: the ID alone still helps
        req = None
    if req is None:
        return req_id
    return f"{req_id} ({req.level}, {req.reference}): {req.summary}"


# --------------------------------------------------------------------------
# Markdown


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_cell(cell: Cell | None) -> str:
    if cell is None:
        return NOT_RUN
    return cell.verdict if cell.verdict == "PASS" else f"**{cell.verdict}**"


def render_markdown(matrix: Matrix, *, only_non_pass: bool = False) -> str:
    labels = [t.label for t in matrix.targets]
    out = ["# mailspec vendor matrix", ""]
    out.append("| target | server | " + " | ".join(VERDICTS) + " | wall time |")
    out.append("|---|---|" + "---:|" * len(VERDICTS) + "---:|")
    for t in matrix.targets:
        counts = t.counts()
        server = "reference (embedded)" if t.embedded else _md(t.greeting.strip()[:60])
        out.append(
            f"| {t.label} | {server} | "
            + " | ".join(str(counts.get(v, 0)) for v in VERDICTS)
            + f" | {t.duration:.1f} s |"
        )
    out.append("")
    for section, rows in matrix.sections():
        shown = [r for r in rows if not (only_non_pass and matrix.all_pass(r))]
        if not shown:
            continue
        out.append(f"## {_md(section)}")
        out.append("")
        out.append("| scenario | level | " + " | ".join(_md(x) for x in labels) + " |")
        out.append("|---|---|" + "---|" * len(labels))
        for r in shown:
            cells = [_md_cell(matrix.cell(t, r)) for t in matrix.targets]
            out.append(f"| `{r.id}` | {r.level} | " + " | ".join(cells) + " |")
        out.append("")
    notes = []
    for t in matrix.targets:
        for r in matrix.rows:
            c = matrix.cell(t, r)
            if c is not None and c.verdict not in ("PASS",) and c.message:
                notes.append(f"- **{_md(t.label)}** `{r.id}` {c.verdict}: {_md(c.message)}")
    if notes:
        out.append("## Not PASS: why")
        out.append("")
        out.extend(notes)
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------
# HTML


def anchor(target: str, scenario: str) -> str:
    """The id of a transcript in the HTML page: `t-dovecot--stat.drop-listing`."""
    return (
        "t-"
        + re.sub(r"[^A-Za-z0-9_.-]", "_", target)
        + "--"
        + re.sub(r"[^A-Za-z0-9_.-]", "_", scenario)
    )


_CONTROL_NAMES = {0x00: "NUL", 0x09: "TAB", 0x1B: "ESC", 0x7F: "DEL"}


def render_bytes(data: bytes, limit: int) -> str:
    """HTML for wire bytes: printable ASCII as text, CRLF as a faint ␍␊,
    bare CR/LF and other controls in red boxes, UTF-8 characters shown
    with their octets in the tooltip, other octets as \\xNN."""
    shown, rest = data[:limit], len(data) - limit
    parts: list[str] = []
    i, n = 0, len(shown)
    while i < n:
        b = shown[i]
        if b == 0x0D and i + 1 < n and shown[i + 1] == 0x0A:
            parts.append('<span class="eol" title="CRLF">\\r\\n</span>')
            i += 2
            continue
        if b == 0x0A:
            parts.append('<span class="bad" title="bare LF (0x0a)">\\n</span>')
        elif b == 0x0D:
            parts.append('<span class="bad" title="bare CR (0x0d)">\\r</span>')
        elif 0x20 <= b < 0x7F:
            j = i
            while j < n and 0x20 <= shown[j] < 0x7F:
                j += 1
            parts.append(html.escape(shown[i:j].decode("ascii")))
            i = j
            continue
        elif b >= 0x80:
            # a valid UTF-8 sequence is shown as its character
            for width in (2, 3, 4):
                try:
                    ch = shown[i : i + width].decode("utf-8")
                except UnicodeDecodeError:
                    continue
                hexes = " ".join(f"{x:02x}" for x in shown[i : i + width])
                parts.append(f'<span class="u8" title="UTF-8 {hexes}">{html.escape(ch)}</span>')
                i += width
                break
            else:
                parts.append(f'<span class="bad" title="octet 0x{b:02x}">\\x{b:02x}</span>')
                i += 1
            continue
        else:
            name = _CONTROL_NAMES.get(b, f"\\x{b:02x}")
            parts.append(f'<span class="bad" title="control octet 0x{b:02x}">{name}</span>')
        i += 1
    if rest > 0:
        parts.append(f'<span class="more">… {rest} more octets not shown</span>')
    return "".join(parts)


def _transcript_html(cell: Cell, limit: int) -> str:
    """One row per wire line (a reply body spans several rows); the time,
    session and direction label only the first row of each entry."""
    rows = []
    for e in cell.transcript:
        cls = {"C": "c", "S": "s"}.get(e.direction, "ev")
        label = f"{e.at:7.3f} {html.escape(e.session)} {html.escape(e.direction)}:"
        if cls == "ev":
            text = html.escape(e.data.decode("utf-8", "replace"))
            rows.append(f'<div class="ev"><span class="who">{label}</span>{text}</div>')
            continue
        shown, rest = e.data[:limit], len(e.data) - limit
        lines = shown.splitlines(keepends=True) or [b""]
        for i, line in enumerate(lines):
            who = label if i == 0 else ""
            tail = ""
            if rest > 0 and i == len(lines) - 1:
                tail = f'<span class="more">… {rest} more octets not shown</span>'
            rows.append(
                f'<div class="{cls}"><span class="who">{who}</span>'
                f'<span class="data">{render_bytes(line, len(line))}{tail}</span></div>'
            )
    if not rows:
        rows.append('<div class="ev">(no transcript)</div>')
    return "".join(rows)


CSS = """
:root{--pass:#1f8a3b;--fail:#c62828;--warn:#e08a00;--skip:#7a869a;--error:#6a1b9a;
--xfail:#00838f;--xpass:#ad1457;--bg:#fbfbfc;--line:#dde1e6;--head:#f1f3f6}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232b;background:var(--bg)}
header{padding:18px 24px 8px}
h1{font-size:22px;margin:0 0 4px}
.sub{color:#5b6573;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;padding:8px 24px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:260px;flex:1}
.card h2{font-size:16px;margin:0 0 2px}
.card .greet{font:12px ui-monospace,Menlo,Consolas,monospace;color:#5b6573;word-break:break-all}
.bar{display:flex;height:10px;border-radius:5px;overflow:hidden;margin:8px 0 6px;background:#eee}
.bar span{display:block;height:100%}
.counts{font-size:12px;color:#333}
.counts b{font-weight:600}
.controls{position:sticky;top:0;z-index:5;background:var(--bg);padding:8px 24px;border-bottom:1px solid var(--line);
display:flex;gap:18px;align-items:center;flex-wrap:wrap}
.controls input[type=search]{padding:4px 8px;border:1px solid #c7ccd3;border-radius:6px;width:240px}
.legend span{margin-right:6px}
.wrap{padding:0 24px 24px}
.tablewrap{overflow:auto;max-height:calc(100vh - 70px);margin-top:10px;display:inline-block;max-width:100%;border:1px solid var(--line);border-radius:8px}
table.m{border-collapse:separate;border-spacing:0;background:#fff}
table.m th,table.m td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:left;white-space:nowrap}
table.m thead th{position:sticky;top:0;background:var(--head);z-index:3;font-weight:600}
table.m th.sc{position:sticky;left:0;background:#fff;z-index:2;font-weight:normal;max-width:520px;white-space:normal}
table.m thead th.sc{z-index:4;background:var(--head)}
table.m tr.sec th{background:#e8ecf2;color:#27313d;font-weight:600;position:sticky;left:0;text-align:left;z-index:1}
.sid{font:12.5px ui-monospace,Menlo,Consolas,monospace}
.title{color:#5b6573;font-size:12.5px}
.lvl{font-size:11px;color:#5b6573}
a.v{display:inline-block;min-width:58px;text-align:center;padding:1px 8px;border-radius:10px;color:#fff;
text-decoration:none;font-size:12px;font-weight:600}
.v-PASS{background:var(--pass)}.v-FAIL{background:var(--fail)}.v-WARN{background:var(--warn)}
.v-SKIP{background:var(--skip)}.v-ERROR{background:var(--error)}.v-XFAIL{background:var(--xfail)}
.v-XPASS{background:var(--xpass)}.v-NONE{background:#cfd4da;color:#333}
.req{border-bottom:1px dotted #8a94a3;cursor:help;font-size:11px;color:#3c4757;margin-right:4px}
tr.hidden{display:none}
section.tr{background:#fff;border:1px solid var(--line);border-radius:8px;margin:12px 0}
section.tr>details>summary{cursor:pointer;padding:8px 12px;list-style:none}
section.tr>details>summary::-webkit-details-marker{display:none}
section.tr>details[open]>summary{border-bottom:1px solid var(--line)}
section.tr:target{outline:3px solid #5c8df6}
.msg{padding:6px 12px;color:#333}
.fails{margin:0;padding:6px 12px 6px 30px;font-size:13px}
.fails code{background:#f4f5f7;padding:0 3px;border-radius:3px}
.tx{font:12.5px/1.5 ui-monospace,Menlo,Consolas,monospace;padding:8px 12px;overflow-x:auto;word-break:break-all}
.tx .c{color:#0b4fb3}.tx .s{color:#17612b}.tx .ev{color:#7a869a;font-style:italic}
.tx .who{color:#8a94a3;user-select:none;display:inline-block;width:9.5em;white-space:pre;vertical-align:top}
.tx .data{display:inline-block;max-width:calc(100% - 10em)}
.tx>div{white-space:pre-wrap}
.tx .c .who{color:#6f95d6}.tx .s .who{color:#5f9f70}
.eol{color:#aab2bd;font-size:10.5px;margin-left:1px}
.bad{background:#ffe1e1;color:#b00020;border:1px solid #f3a1a1;border-radius:3px;padding:0 2px;font-size:11px}
.u8{background:#eef4ff;border-bottom:1px dotted #5c8df6}
.more{color:#7a869a;font-style:italic}
h3.tgt{margin:24px 0 0;font-size:17px}
.back{font-size:12px;margin-left:10px}
"""  # noqa: E501

JS = """
function openTarget(){var id=decodeURIComponent(location.hash.slice(1));if(!id)return;
var el=document.getElementById(id);if(!el)return;var d=el.querySelector('details');if(d)d.open=true;
el.scrollIntoView({block:'start'});}
window.addEventListener('hashchange',openTarget);window.addEventListener('load',openTarget);
function applyFilter(){var only=document.getElementById('nonpass').checked;
var q=document.getElementById('q').value.toLowerCase();
document.querySelectorAll('tr.row').forEach(function(tr){var ok=true;
if(only&&tr.dataset.allpass==='1')ok=false;
if(q&&tr.dataset.search.indexOf(q)<0)ok=false;tr.classList.toggle('hidden',!ok);});
document.querySelectorAll('tr.sec').forEach(function(sec){var n=sec.nextElementSibling,any=false;
while(n&&!n.classList.contains('sec')){if(!n.classList.contains('hidden'))any=true;n=n.nextElementSibling;}
sec.classList.toggle('hidden',!any);});
document.querySelectorAll('section.tr').forEach(function(s){var ok=true;
if(only&&s.dataset.verdict==='PASS')ok=false;if(q&&s.dataset.search.indexOf(q)<0)ok=false;
s.style.display=ok?'':'none';});}
document.addEventListener('DOMContentLoaded',function(){
if(location.search.indexOf('nonpass')>=0)document.getElementById('nonpass').checked=true;
document.getElementById('nonpass').addEventListener('change',applyFilter);
document.getElementById('q').addEventListener('input',applyFilter);
document.getElementById('expand').addEventListener('click',function(){
var open=this.dataset.open!=='1';this.dataset.open=open?'1':'0';this.textContent=open?'collapse all':'expand all';
document.querySelectorAll('section.tr details').forEach(function(d){if(d.parentNode.style.display!=='none')d.open=open;});});
applyFilter();});
"""  # noqa: E501

_BAR_COLOURS = {
    "PASS": "var(--pass)",
    "FAIL": "var(--fail)",
    "WARN": "var(--warn)",
    "SKIP": "var(--skip)",
    "ERROR": "var(--error)",
    "XFAIL": "var(--xfail)",
    "XPASS": "var(--xpass)",
}


def render_html(
    matrix: Matrix, *, title: str = "mailspec vendor matrix", limit: int = DEFAULT_TRANSCRIPT_LIMIT
) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}</style><script>{JS}</script></head><body>",
        f"<header><h1>{e(title)}</h1>",
        f'<div class="sub">{len(matrix.rows)} scenarios × {len(matrix.targets)} targets · '
        "click a verdict for its transcript · hover a requirement for its summary</div></header>",
        '<div class="cards">',
    ]
    for t in matrix.targets:
        counts = t.counts()
        total = sum(counts.values()) or 1
        bar = "".join(
            f'<span style="width:{100 * counts[v] / total:.2f}%;background:{_BAR_COLOURS[v]}" '
            f'title="{v}: {counts[v]}"></span>'
            for v in VERDICTS
            if counts.get(v)
        )
        nums = " · ".join(f"<b>{counts[v]}</b> {v}" for v in VERDICTS if counts.get(v))
        server = "bundled reference server (embedded)" if t.embedded else t.greeting.strip()
        parts.append(
            f'<div class="card"><h2>{e(t.label)}</h2>'
            f'<div class="greet" title="greeting">{e(server)}</div>'
            f'<div class="bar">{bar}</div><div class="counts">{nums}</div>'
            f'<div class="sub">{e(t.address)} · {t.duration:.1f} s · {e(t.started_at)} · '
            f"caps: {e(' '.join(t.capabilities)) or '—'}</div></div>"
        )
    parts.append("</div>")
    parts.append(
        '<div class="controls"><label title="or open the page with ?nonpass">'
        '<input type="checkbox" id="nonpass"> only rows that are not PASS everywhere</label>'
        '<input type="search" id="q" placeholder="filter: id, title, requirement…">'
        '<button id="expand" type="button">expand all</button>'
        '<span class="legend">'
        + "".join(f'<a class="v v-{v}" href="#" onclick="return false">{v}</a> ' for v in VERDICTS)
        + "</span></div>"
    )
    parts.append(
        '<div class="wrap"><div class="tablewrap"><table class="m"><thead><tr>'
        '<th class="sc">scenario</th>'
    )
    parts.extend(f"<th>{e(t.label)}</th>" for t in matrix.targets)
    parts.append("</tr></thead><tbody>")
    ncols = len(matrix.targets) + 1
    for section, rows in matrix.sections():
        parts.append(f'<tr class="sec"><th colspan="{ncols}">{e(section)}</th></tr>')
        for r in rows:
            reqs = "".join(
                f'<span class="req" title="{e(requirement_tip(q))}">{e(q)}</span>'
                for q in r.requirements
            )
            search = " ".join([r.id, r.title, section, *r.requirements]).lower()
            parts.append(
                f'<tr class="row" data-allpass="{1 if matrix.all_pass(r) else 0}" '
                f'data-search="{e(search)}"><th class="sc" title="{e(r.source)}">'
                f'<div class="sid">{e(r.id)} <span class="lvl">{e(r.level)}</span></div>'
                f'<div class="title">{e(r.title)}</div><div>{reqs}</div></th>'
            )
            for t in matrix.targets:
                c = matrix.cell(t, r)
                if c is None:
                    parts.append(f'<td><a class="v v-NONE" title="not run">{NOT_RUN}</a></td>')
                    continue
                tip = c.message or c.verdict
                parts.append(
                    f'<td><a class="v v-{e(c.verdict)}" href="#{anchor(t.label, r.id)}" '
                    f'title="{e(tip)}">{e(c.verdict)}</a></td>'
                )
            parts.append("</tr>")
    parts.append("</tbody></table></div>")
    for t in matrix.targets:
        parts.append(f'<h3 class="tgt" id="target-{e(t.label)}">Transcripts: {e(t.label)}</h3>')
        for r in matrix.rows:
            c = matrix.cell(t, r)
            if c is None:
                continue
            search = " ".join([r.id, r.title, r.section, *r.requirements]).lower()
            fails = ""
            if c.failures:
                items = []
                for f in c.failures:
                    where = f"step {f.get('step')} <code>{e(str(f.get('step_text', '')))}</code>: "
                    if not f.get("step"):
                        where = ""
                    req = f" [{e(str(f['requirement']))}]" if f.get("requirement") else ""
                    items.append(
                        f"<li>{where}expected <code>{e(str(f.get('expected', '')))}</code>; "
                        f"got <code>{e(str(f.get('actual', '')))}</code>{req} "
                        f'<span class="lvl">{e(str(f.get("level", "")))} · '
                        f"{e(str(f.get('kind', '')))}</span></li>"
                    )
                fails = f'<ul class="fails">{"".join(items)}</ul>'
            xreason = (
                f'<div class="msg">expectation: {e(c.expectation_reason)}</div>'
                if c.expectation_reason
                else ""
            )
            parts.append(
                f'<section class="tr" id="{anchor(t.label, r.id)}" data-verdict="{e(c.verdict)}" '
                f'data-search="{e(search)}"><details><summary>'
                f'<a class="v v-{e(c.verdict)}">{e(c.verdict)}</a> '
                f'<span class="sid">{e(t.label)} · {e(r.id)}</span> '
                f'<span class="title">{e(r.title)} ({c.duration:.2f} s)</span>'
                f'<a class="back" href="#">top</a></summary>'
                + (f'<div class="msg">{e(c.message)}</div>' if c.message else "")
                + xreason
                + fails
                + f'<div class="tx">{_transcript_html(c, limit)}</div></details></section>'
            )
    parts.append("</div></body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS.json",
        help="reports from `mailspec run --json` (LABEL=PATH names the column)",
    )
    parser.add_argument("--markdown", metavar="PATH", help="write the Markdown table here")
    parser.add_argument("--html", metavar="PATH", help="write the HTML page here")
    parser.add_argument(
        "--non-pass", action="store_true", help="Markdown: only rows not PASS on every target"
    )
    parser.add_argument("--title", default="mailspec vendor matrix", help="HTML page title")
    parser.add_argument(
        "--transcript-limit",
        type=int,
        default=DEFAULT_TRANSCRIPT_LIMIT,
        metavar="OCTETS",
        help=f"octets shown per transcript entry in HTML (default {DEFAULT_TRANSCRIPT_LIMIT})",
    )


def run(args: argparse.Namespace) -> int:
    matrix = load_matrix(list(args.results))
    markdown = render_markdown(matrix, only_non_pass=args.non_pass)
    wrote = False
    if args.markdown:
        _write(args.markdown, markdown)
        wrote = True
    if args.html:
        _write(args.html, render_html(matrix, title=args.title, limit=args.transcript_limit))
        wrote = True
    if not wrote or args.markdown == "-":
        sys.stdout.write(markdown + "\n")
    return 0


def _write(path: str, text: str) -> None:
    if path == "-":
        return
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"matrix: cannot write {p}: {exc.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailspec matrix", description=__doc__.split("\n")[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except ConfigError as exc:
        print(f"mailspec matrix: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
