"""The quirks probe (interop/smtp_quirks.py) reads whole replies within its
bounds and reports what a real server answered; shown on aiosmtpd, the
fastest server to start, whose HELP answer (250, not 211/214 as RFC 5321
section 4.2.3 lists) and end-of-data handling are pinned here."""

from __future__ import annotations

import socket

import pytest

from interop import smtp_quirks
from interop.smtp_servers import AiosmtpdServer, ServerUnavailable

pytestmark = pytest.mark.interop


def _collected(data: bytes, close: bool) -> list[str]:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(data)
        if close:
            left.shutdown(socket.SHUT_WR)
        return smtp_quirks._collect(right)


def test_collect_folds_a_multiline_reply_and_marks_the_close():
    data = b"250-mx\r\n250-SIZE 1\r\n250 HELP\r\n221 bye\r\n"
    assert _collected(data, close=True) == ["250 HELP (3 lines)", "221 bye", "[closed]"]


def test_collect_stops_when_the_server_is_quiet_and_flags_a_cut_reply():
    assert _collected(b"250-mx\r\n250-SIZE", close=False) == ["250-SIZE (unterminated)"]


@pytest.fixture(scope="module")
def aiosmtpd():
    server = AiosmtpdServer()
    try:
        server.start()
    except ServerUnavailable as exc:
        server.stop()
        pytest.skip(f"aiosmtpd unavailable: {exc}")
    yield server
    server.stop()


def probe(name: str) -> smtp_quirks.Probe:
    return next(p for p in smtp_quirks.PROBES if p.name == name)


def test_aiosmtpd_answers_help_with_250(aiosmtpd):
    outcome = smtp_quirks.run_probe(aiosmtpd, probe("HELP"))
    assert outcome.summary().startswith("250 Supported commands")


def test_aiosmtpd_does_not_end_data_at_lf_dot_lf(aiosmtpd):
    outcome = smtp_quirks.run_probe(aiosmtpd, probe("`\\n.\\n` inside DATA (smuggling)"))
    # one 250 for the whole message, and one message stored holding both halves
    assert outcome.replies[-1] == ["250 2.0.0 OK: queued"]
    assert outcome.delivered == 1
    assert b"before\n.\nNOOP\r\nafter\r\n" in outcome.stored[0]
