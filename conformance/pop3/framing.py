"""The framing oracle: rules every reply is held to, whatever the scenario
asks (docs/scenario-format.md, *Framing oracle*). A broken rule is always
a finding (FAIL), at any scenario level."""

from __future__ import annotations

from conformance.core.framing import FramingFinding, FramingRule, finding

LINE_END = FramingRule(
    "line-end",
    "every reply line ends in CRLF; no bare CR or LF",
    ("POP3-1939-RESP-01", "POP3-1939-SIZE-03"),
)
STATUS = FramingRule(
    "status",
    "the status is exactly +OK or -ERR, followed by SP or CRLF",
    ("POP3-1939-RESP-03", "POP3-1939-RESP-04"),
)
STATUS_LENGTH = FramingRule(
    "status-length",
    "a status line is at most 512 octets with its CRLF",
    ("POP3-1939-RESP-02", "POP3-2449-LEN-03"),
)
TERMINATOR = FramingRule(
    "terminator",
    "a multi-line body ends with exactly one '.' CRLF line",
    ("POP3-1939-MULTI-01",),
)
STUFFING = FramingRule(
    "stuffing",
    "a body line starting with '.' is stuffed (starts '..')",
    ("POP3-1939-MULTI-02",),
)
UNSOLICITED = FramingRule(
    "unsolicited",
    "nothing arrives that no command asked for",
    ("POP3-1939-GREET-02", "POP3-1939-RESP-01"),
)

RULES = (LINE_END, STATUS, STATUS_LENGTH, TERMINATOR, STUFFING, UNSOLICITED)

__all__ = ["RULES", "FramingFinding", "FramingRule", "finding"]
