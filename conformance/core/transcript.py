"""The exact bytes of a scenario, both directions, with timestamps; the
redaction of secrets; and the printable form of bytes used in every
failure message (invisible octets escaped: `\\r\\n`, `\\x00`)."""

from __future__ import annotations

import re
import time

from conformance.core.results import Direction, TranscriptEntry

REDACTED = b"***"
# Commands whose arguments are secrets (RFC 1939 §7 PASS/APOP, RFC 5034 AUTH).
_SECRET_ARGUMENT = re.compile(rb"^(?P<verb>PASS|APOP)(?P<sep>[ \t]+)(?P<arg>[^\r\n]*)", re.I)
_AUTH_INITIAL_RESPONSE = re.compile(
    rb"^(?P<verb>AUTH[ \t]+[^ \t\r\n]+)(?P<sep>[ \t]+)(?P<arg>[^\r\n]*)", re.I
)
_AUTH_START = re.compile(rb"^AUTH[ \t]+[^ \t\r\n]+", re.I)
# Where a line may start one of those commands (bytes.splitlines starts a
# line after CR, LF or CRLF): data without it has nothing to redact.
_MAY_START_SECRET = re.compile(rb"(?:^|[\r\n])(?:PASS|APOP|AUTH)", re.I)

_ESCAPES = {0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t", 0x5C: "\\\\"}
# Every octet's printable form, and a pattern for the octets that need one
# (all but printable ASCII other than the backslash): reports escape whole
# transcripts, so the common, printable case must not go octet by octet.
_ESCAPED = {
    chr(octet): _ESCAPES.get(octet, f"\\x{octet:02x}")
    for octet in range(256)
    if octet in _ESCAPES or not 0x20 <= octet < 0x7F
}
_NEEDS_ESCAPE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")


def escape_bytes(data: bytes) -> str:
    """Printable ASCII kept; CR, LF, TAB, backslash and every other octet
    escaped (`\\r`, `\\n`, `\\x00`, `\\xc3`), so invisible bytes show."""
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPED[m.group()], data.decode("latin-1"))


def show_bytes(data: bytes, limit: int = 300) -> str:
    """Printable ASCII as is, everything else escaped; long data shortened."""
    text = escape_bytes(data[:limit])
    if len(data) > limit:
        text += f"... ({len(data)} octets)"
    return f"'{text}'"


class ClientRedactor:
    """Hides secrets in the bytes a client session sends.

    PASS and APOP lose their whole argument; AUTH keeps its mechanism name
    and loses the initial response; every line sent while an AUTH exchange
    is in progress (until the next status line arrives) is a secret."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.in_auth_exchange = False

    def redact(self, data: bytes) -> bytes:
        if not self.enabled:
            return data
        if not self.in_auth_exchange and _MAY_START_SECRET.search(data) is None:
            return data  # the common case, a turn's command: no line to look at
        return b"".join(self._redact_line(line) for line in data.splitlines(keepends=True))

    def status_received(self) -> None:
        self.in_auth_exchange = False

    def _redact_line(self, line: bytes) -> bytes:
        body = line.rstrip(b"\r\n")
        ending = line[len(body) :]
        if self.in_auth_exchange:
            return (REDACTED if body else b"") + ending
        if _AUTH_START.match(body):
            self.in_auth_exchange = True
            return _replace_argument(_AUTH_INITIAL_RESPONSE, body) + ending
        return _replace_argument(_SECRET_ARGUMENT, body) + ending


def _replace_argument(pattern: re.Pattern[bytes], line: bytes) -> bytes:
    found = pattern.match(line)
    if not found or not found.group("arg"):
        return line
    return found.group("verb") + found.group("sep") + REDACTED


class Transcript:
    """Entries of one scenario, all sessions, in the order they happened."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.entries: list[TranscriptEntry] = []
        # The step being executed: each entry names the step that caused it,
        # so a report can show the exchange of the step that failed.
        self.step: int | None = None

    def record(self, session: str, direction: Direction, data: bytes) -> None:
        at = round(time.monotonic() - self.started, 6)
        self.entries.append(TranscriptEntry(at, session, direction, data, None, self.step))

    def event(self, session: str, text: str) -> None:
        self.record(session, Direction.EVENT, text.encode("utf-8"))
