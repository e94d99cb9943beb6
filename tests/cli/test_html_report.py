"""The HTML report leads to the failure: the failures first (requirement,
level, one line expected/actual, a link to the failing exchange), counts in
the section headings, the message in the row, verification collapsed, the
failing exchange highlighted; rendered by Jinja2 with autoescaping, and
checked in headless Chromium (screenshots land in reports/, not committed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cli_testlib import REPO, make_result, make_run

from conformance.cli import write_html_report
from conformance.core.results import Direction, Failure, TranscriptEntry, Verdict
from conformance.reports import matrix

SCREENSHOTS = REPO / "reports"
VIEWPORT = (1280, 900)


def _failing_transcript() -> list[TranscriptEntry]:
    def e(at: float, session: str, d: Direction, data: bytes) -> TranscriptEntry:
        return TranscriptEntry(at, session, d, data)

    return [
        e(0.000, "verify-main", Direction.EVENT, b"connected to 127.0.0.1:1110"),
        e(0.001, "verify-main", Direction.SERVER, b"+OK ready <1.2@mail.example.org>\r\n"),
        e(0.002, "verify-main", Direction.CLIENT, b"STAT\r\n"),
        e(0.003, "verify-main", Direction.SERVER, b"+OK 2 320\r\n"),
        e(0.004, "*", Direction.EVENT, b"scenario stat.fail starts"),
        e(0.005, "a", Direction.EVENT, b"connected to 127.0.0.1:1110"),
        e(0.006, "a", Direction.SERVER, b"+OK ready <1.3@mail.example.org>\r\n"),
        e(0.007, "a", Direction.CLIENT, b"STAT\r\n"),
        e(0.008, "a", Direction.SERVER, b"+OK 2 999\r\n"),
        e(0.009, "a", Direction.EVENT, b"closed by the client"),
    ]


def _run_with_failures() -> object:
    fail = make_result(
        "stat.fail",
        Verdict.FAIL,
        title="STAT <counts> & sizes",  # markup in data must be escaped
        transcript=_failing_transcript(),
        failures=[
            Failure(
                step=4,
                step_text="S: +OK {count} {size:int}",
                expected="+OK 2 320",
                actual="'+OK 2 999\\r\\n'",
                requirement=None,  # the report falls back to the scenario's first
            )
        ],
    )
    run = make_run(
        [
            make_result("stat.pass", Verdict.PASS),
            fail,
            make_result("stat.warn", Verdict.WARN, level="SHOULD"),
            make_result("top.skip", Verdict.SKIP, section="RFC 1939 §7 TOP"),
            make_result("top.error", Verdict.ERROR, section="RFC 1939 §7 TOP"),
        ]
    )
    run.target.greeting = "+OK ready <1.2@mail.example.org>"
    return run


class _Outline(HTMLParser):
    """Ids and classes of the elements, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.order.append(f"#{a['id']}")
        for cls in (a.get("class") or "").split():
            self.order.append(f"{tag}.{cls}")


@pytest.fixture
def page(tmp_path: Path) -> str:
    path = tmp_path / "report.html"
    write_html_report(_run_with_failures(), path)
    return path.read_text("utf-8")


def test_failures_summary_comes_before_the_verdict_table(page: str) -> None:
    outline = _Outline()
    outline.feed(page)
    order = outline.order
    assert order.index("#failures") < order.index("table.m") < order.index("section.tr")
    summary = page[page.index('id="failures"') : page.index("</section>")]
    assert "2 failures, 1 warning" in summary  # FAIL + ERROR; the WARN after them
    assert summary.index("stat.fail") < summary.index("top.error") < summary.index("stat.warn")
    # requirement (the scenario's first, as the failure names none), level,
    # one line expected/actual, and a link to the failing exchange
    assert "POP3-1939-STAT-01" in summary and "MUST" in summary
    assert "https://www.rfc-editor.org/rfc/rfc1939#section-5" in summary
    assert "expected +OK 2 320; got &#39;+OK 2 999\\r\\n&#39;" in summary
    assert 'href="#t-reference--stat.fail-fail"' in summary


def test_rows_carry_counts_message_requirement_summary(page: str) -> None:
    assert re.search(r"<h3>RFC 1939 §5 STAT</h3>.*?1 PASS</span> · .*?1 FAIL", page)
    assert '<div class="msg" title="step 4 (S: +OK {count} {size:int}): expected' in page
    assert "The positive STAT reply" in page  # the catalogue summary, visible


def test_markup_in_results_is_escaped(page: str) -> None:
    assert "STAT &lt;counts&gt; &amp; sizes" in page
    assert "<counts>" not in page


def test_verification_is_collapsed_and_the_failing_exchange_marked(page: str) -> None:
    section = page[page.index('id="t-reference--stat.fail"') :]
    section = section[: section.index("</section>")]
    assert '<tbody class="vf">' in section  # collapsed (no "open")
    assert "verification: verify-main (4 entries)" in section
    marked = re.findall(r'<tr class="(\w+) fail"', section)
    assert marked == ["c", "s"]  # STAT and the reply that failed the check
    assert 'id="t-reference--stat.fail-fail"><td>  0.007 a C:' in section
    assert "closed by the client" in section


def _mid_scenario_failure(tmp_path: Path, steps: bool) -> str:
    """A WARN at step 3 (the reply to STAT, sent by step 2) followed by
    steps that pass (NOOP, QUIT): the last exchange is not the one that
    failed."""

    def e(at: float, d: Direction, data: bytes, step: int | None) -> TranscriptEntry:
        return TranscriptEntry(at, "a", d, data, None, step if steps else None)

    transcript = [
        e(0.001, Direction.SERVER, b"+OK ready\r\n", 1),
        e(0.002, Direction.CLIENT, b"STAT\r\n", 2),
        e(0.003, Direction.SERVER, b"+OK 2 999\r\n", 3),
        e(0.004, Direction.CLIENT, b"NOOP\r\n", 4),
        e(0.005, Direction.SERVER, b"+OK\r\n", 5),
        e(0.006, Direction.CLIENT, b"QUIT\r\n", 6),
        e(0.007, Direction.SERVER, b"+OK bye\r\n", 7),
    ]
    failure = Failure(3, "S: +OK 2 320", "+OK 2 320", "'+OK 2 999\\r\\n'", level="SHOULD")
    result = make_result(
        "stat.mid", Verdict.WARN, level="SHOULD", transcript=transcript, failures=[failure]
    )
    path = tmp_path / "report.html"
    write_html_report(make_run([result]), path)
    page = path.read_text("utf-8")
    section = page[page.index('id="t-reference--stat.mid"') :]
    return section[: section.index("</section>")]


def test_the_failing_step_is_marked_not_the_last_exchange(tmp_path: Path) -> None:
    section = _mid_scenario_failure(tmp_path, steps=True)
    marked = re.findall(r'<tr class="(\w+) fail"[^>]*><td>\s*([\d.]+)', section)
    assert marked == [("c", "0.002"), ("s", "0.003")]  # STAT and its reply, not QUIT
    assert 'id="t-reference--stat.mid-fail"><td>  0.002 a C:' in section


def test_without_step_marks_the_last_exchange_is_marked(tmp_path: Path) -> None:
    # reports written before entries carried their step
    section = _mid_scenario_failure(tmp_path, steps=False)
    marked = re.findall(r'<tr class="(\w+) fail"[^>]*><td>\s*([\d.]+)', section)
    assert marked == [("c", "0.006"), ("s", "0.007")]


def test_scenarios_an_early_stop_never_ran_are_one_summary_row(tmp_path: Path) -> None:
    stopped = "not run (target unreachable since stat.fail)"
    results = [make_result("stat.fail", Verdict.FAIL), make_result("top.error", Verdict.ERROR)]
    results += [
        make_result(f"top.n{i}", Verdict.ERROR, message=stopped, failures=[], transcript=[])
        for i in range(40)
    ]
    run = make_run(results)
    run.incomplete = "target unreachable since stat.fail"
    path = tmp_path / "report.html"
    write_html_report(run, path)
    page = path.read_text("utf-8")
    summary = page[page.index('id="failures"') : page.index("</section>")]
    assert "42 failures" in summary  # every scenario still counts
    assert summary.count('<tr class="f-') == 3  # the FAIL, the real ERROR, one not-run row
    assert f"40 scenarios {stopped}, from top.n0 on" in summary
    assert summary.index("stat.fail") < summary.index("top.error") < summary.index("top.n0")
    assert "top.n1<" not in summary and 'id="t-reference--top.n39"' in page  # rows kept below


def test_matrix_columns_are_named_after_the_target(tmp_path: Path) -> None:
    from conformance.reports import write_json

    a, b = tmp_path / "a", tmp_path / "b"
    run = _run_with_failures()
    run.target.embedded = False  # type: ignore[attr-defined]
    write_json(run, a / "results.json")  # type: ignore[arg-type]
    other = make_run()
    other.target.greeting = "+OK Dovecot ready."
    other.target.embedded = False
    other.target.address = "127.0.0.1:2110"
    write_json(other, b / "results.json")
    m = matrix.load_matrix([str(a / "results.json"), str(b / "results.json")])
    assert [t.label for t in m.targets] == ["mail.example.org", "127.0.0.1:2110"]
    m = matrix.load_matrix([f"mine={a / 'results.json'}"])
    assert [t.label for t in m.targets] == ["mine"]
    html = matrix.render_html(
        matrix.load_matrix([str(a / "results.json"), str(b / "results.json")])
    )
    assert "<th>mail.example.org</th><th>127.0.0.1:2110</th>" in html
    assert "results-2" not in html


# --------------------------------------------------------------------------
# Headless Chromium: what a reader sees


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium is not installed (scripts/install-test-deps.sh installs it)")


PROBE = """<script>window.addEventListener('load',function(){setTimeout(function(){
var f=document.getElementById('failures').getBoundingClientRect();
var x=document.getElementById('t-reference--stat.fail-fail');var r=x.getBoundingClientRect();
document.body.setAttribute('data-probe',JSON.stringify({failuresTop:f.top,failuresBottom:f.bottom,
failRowTop:r.top,failRowBottom:r.bottom,innerHeight:innerHeight,scrollY:scrollY,
detailsOpen:x.closest('details').open,verifyOpen:x.closest('section').querySelector('tbody.vf').classList.contains('open'),
labelRight:x.cells[0].getBoundingClientRect().right,dataLeft:x.cells[1].getBoundingClientRect().left}));
},200);});</script></body>"""


def _probe(browser: str, page: Path, fragment: str = "") -> dict[str, object]:
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
            "--virtual-time-budget=3000",
            "--dump-dom",
            page.as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, done.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"'))


def _screenshot(browser: str, page: Path, out: Path) -> None:
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
            "--virtual-time-budget=3000",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_in_chromium_the_failures_fill_the_first_screen(tmp_path: Path) -> None:
    browser = _chromium()
    report = tmp_path / "report.html"
    write_html_report(_run_with_failures(), report)
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text("utf-8").replace("</body>", PROBE), "utf-8")

    first = _probe(browser, probed)
    assert first["scrollY"] == 0
    assert 0 <= first["failuresTop"] < first["failuresBottom"] <= first["innerHeight"]
    assert first["detailsOpen"] is True  # a failing scenario's transcript starts open
    assert first["verifyOpen"] is False  # its verification preamble collapsed
    assert first["labelRight"] <= first["dataLeft"]  # the label never overprints

    linked = _probe(browser, probed, "#t-reference--stat.fail-fail")
    assert linked["scrollY"] > 0
    assert 0 <= linked["failRowTop"] < linked["failRowBottom"] <= linked["innerHeight"]

    SCREENSHOTS.mkdir(exist_ok=True)
    shot = SCREENSHOTS / "html-report-failures.png"
    _screenshot(browser, report, shot)
    assert shot.stat().st_size > 10_000


def test_screenshots_are_not_committed() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "reports/html-report-failures.png"],
        cwd=REPO,
        check=False,
    )
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0, "reports/*.png must be ignored by git"
