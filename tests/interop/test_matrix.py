"""mailspec matrix: Markdown and HTML from JSON reports (no server needed)."""

from __future__ import annotations

import base64
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sample_reports import SCENARIOS, make_run, write_samples

from conformance.core.errors import ConfigError
from conformance.core.results import Verdict
from conformance.reports import matrix


@pytest.fixture
def samples(tmp_path: Path) -> list[Path]:
    return write_samples(tmp_path)


def labelled(samples: list[Path]) -> list[str]:
    """`dovecot=…/interop-dovecot.json`: the columns interop.run names."""
    return [f"{p.stem.removeprefix('interop-')}={p}" for p in samples]


def test_markdown_has_every_scenario_and_target(samples):
    m = matrix.load_matrix(labelled(samples))
    assert [t.label for t in m.targets] == ["dovecot", "mailutils", "reference"]
    md = matrix.render_markdown(m)
    assert "| scenario | level | dovecot | mailutils | reference |" in md
    for sid, section, *_ in SCENARIOS:
        assert f"`{sid}`" in md
        assert f"## {section}" in md
    assert "| `retr.dot-stuffing` | MUST | PASS | **FAIL** | PASS |" in md
    assert "| `capa.list` | MUST | PASS | **SKIP** | — |" in md  # not run on reference
    assert "| mailutils | +OK POP3 Ready <1.2@vm> | 2 | 1 | 0 | 1 | 1 | 0 | 0 | 12.5 s |" in md
    assert "- **mailutils** `greeting.ok` ERROR: verification: STAT count is 6" in md


def test_markdown_non_pass_filter(samples):
    m = matrix.load_matrix(labelled(samples))
    md = matrix.render_markdown(m, only_non_pass=True)
    assert "`stat.drop-listing`" not in md  # PASS everywhere
    assert "`stat.no-trailing`" in md and "`capa.list`" in md  # capa.list not run somewhere


def test_html_has_every_cell_and_its_transcript_anchor(samples):
    m = matrix.load_matrix(labelled(samples))
    page = matrix.render_html(m)
    assert page.startswith("<!DOCTYPE html>")
    # self-contained: no external resources; the only links out are RFC texts
    assert not re.search(r'src="(https?:)?//', page)
    outside = set(re.findall(r'href="((?:https?:)?//[^/"]*)', page))
    assert outside == {"https://www.rfc-editor.org"}
    assert "<link" not in page
    # no stray control characters (e.g. a "\b" that Python turned into 0x08)
    assert not re.search(r"[\x00-\x08\x0b-\x1f]", page)
    assert "location.search.indexOf('nonpass')" in page  # ?nonpass presets the filter
    for t in m.targets:
        for sid, *_ in SCENARIOS:
            a = matrix.anchor(t.label, sid)
            if t.label == "reference" and sid == "capa.list":
                assert f'id="{a}"' not in page
                continue
            assert f'href="#{a}' in page, a
            assert f'<section class="tr" id="{a}"' in page, a
    # verdict classes and tooltips (requirement summary from the catalogue)
    assert 'class="v v-FAIL"' in page and 'class="v v-SKIP"' in page
    assert "POP3-1939-STAT-01: The positive STAT reply" in page and "RFC 1939 §5" in page


def test_html_transcript_shows_invisible_bytes(samples):
    page = matrix.render_html(matrix.load_matrix([str(samples[0])]))
    assert "<u>\\r\\n</u>" in page  # CRLF, faint
    assert '<b title="bare LF (0x0a)">' in page
    assert 'title="control octet 0x00">NUL</b>' in page
    assert '<s title="UTF-8 e2 80 94">—</s>' in page
    assert 'title="octet 0xff">\\xff</b>' in page
    assert '<tr class="c"><td>' in page and '<tr class="s"><td>' in page
    # a multi-line reply: one row per line, the label only on the first
    assert '<tr class="s"><td></td><td>..' in page


def test_html_transcript_limit(tmp_path):
    run = make_run("h:1", "+OK", {})
    big = run.results[0].transcript[3]
    run.results[0].transcript[3] = type(big)(big.at, big.session, big.direction, b"x" * 10_000)
    from conformance.reports.json_report import write_json

    write_json(run, tmp_path / "big.json")
    page = matrix.render_html(matrix.load_matrix([str(tmp_path / "big.json")]), limit=100)
    assert "… 9900 more octets not shown" in page


def test_labels_and_duplicates(samples):
    m = matrix.load_matrix([f"Dovecot 2.3={samples[0]}", str(samples[0]), str(samples[0])])
    # unnamed columns are named after the target (here its address), not the file
    assert [t.label for t in m.targets] == ["Dovecot 2.3", "127.0.0.1:1110", "127.0.0.1:1110-2"]


def test_reads_asdict_shaped_results(tmp_path):
    run = make_run("h:1", "+OK hi", {"stat.drop-listing": Verdict.FAIL})
    data = asdict(run)

    def fix(obj):
        if isinstance(obj, bytes):
            return obj.decode("latin-1").encode("unicode_escape").decode("ascii")
        if isinstance(obj, dict):
            return {k: fix(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [fix(v) for v in obj]
        return obj

    (tmp_path / "r.json").write_text(json.dumps(fix(data)))
    m = matrix.load_matrix([str(tmp_path / "r.json")])
    cell = m.targets[0].cells["stat.drop-listing"]
    assert cell.verdict == "FAIL"
    assert cell.transcript[1].data == b"+OK ready <1.2@x>\r\n"
    assert m.targets[0].label == "h:1"  # the target's address, not the file name


def test_transcript_bytes_come_from_base64(samples):
    raw = json.loads(samples[0].read_text())
    entry = raw["results"][0]["transcript"][3]
    m = matrix.load_matrix([str(samples[0])])
    assert m.targets[0].cells["greeting.ok"].transcript[3].data == base64.b64decode(entry["base64"])


def test_bad_inputs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        matrix.load_matrix([str(tmp_path / "missing.json")])
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        matrix.load_matrix([str(tmp_path / "x.json")])
    (tmp_path / "y.json").write_text('{"format": "other", "results": []}')
    with pytest.raises(ConfigError, match="not mailspec-results"):
        matrix.load_matrix([str(tmp_path / "y.json")])
    (tmp_path / "z.json").write_text('{"a": 1}')
    with pytest.raises(ConfigError, match="no 'results' list"):
        matrix.load_matrix([str(tmp_path / "z.json")])


def test_cli_writes_files_and_prints_markdown(samples, tmp_path, capsys):
    md, page = tmp_path / "out" / "m.md", tmp_path / "out" / "m.html"
    assert matrix.main([*map(str, samples), "--markdown", str(md), "--html", str(page)]) == 0
    assert md.read_text().startswith("# mailspec vendor matrix")
    assert "</html>" in page.read_text()
    assert capsys.readouterr().out == ""
    assert matrix.main(labelled(samples)[:1]) == 0
    assert "| scenario | level | dovecot |" in capsys.readouterr().out
    assert matrix.main([str(tmp_path / "nope.json")]) == 2


def test_mailspec_matrix_subcommand(samples, capsys):
    from conformance.cli import main

    assert main(["matrix", str(samples[1]), "--non-pass"]) == 0
    out = capsys.readouterr().out
    assert "**FAIL**" in out and "`stat.drop-listing`" not in out
