"""SMTP framing rules: what every reply is held to, whatever the scenario
asks. A broken rule is a finding (FAIL), like the POP3 rules in
:mod:`conformance.pop3.framing`; the rule and finding types are :mod:`conformance.core.framing`.

The SHOULD of RFC 5321 section 4.2.1 (send the SP after the code even
without text, SMTP-5321-REPLY-03) is not a framing rule: a bare code is
still a well-framed reply, so the reader marks it on the reply
(:attr:`conformance.smtp.reader.Reply.bare_code`) for a scenario to judge.
"""

from __future__ import annotations

from conformance.core.framing import FramingFinding, FramingRule, finding

LINE_END = FramingRule(
    "smtp-line-end",
    "every reply line ends in CRLF; no bare CR or LF (RFC 5321 §2.3.8, §4.2)",
    ("SMTP-5321-LINE-01", "SMTP-5321-REPLY-02"),
)
CODE = FramingRule(
    "smtp-code",
    "a reply line starts with a three-digit code, first digit 2-5, second 0-5 (RFC 5321 §4.2)",
    ("SMTP-5321-REPLY-01",),
)
CONTINUATION = FramingRule(
    "smtp-continuation",
    "after the code comes '-' (more lines follow), SP or CRLF (last line) (RFC 5321 §4.2.1)",
    ("SMTP-5321-REPLY-02",),
)
SAME_CODE = FramingRule(
    "smtp-same-code",
    "every line of a multi-line reply carries the same code (RFC 5321 §4.2.1)",
    ("SMTP-5321-REPLY-02",),
)
LINE_LENGTH = FramingRule(
    "smtp-line-length",
    "a reply line is at most 512 octets with its CRLF (RFC 5321 §4.5.3.1.5)",
    ("SMTP-5321-LEN-05",),
)
TEXT = FramingRule(
    "smtp-text",
    "reply text holds no control characters other than HT (RFC 5321 §4.2 textstring)",
    ("SMTP-5321-REPLY-06",),
)
UNSOLICITED = FramingRule(
    "smtp-unsolicited",
    "each command gets exactly one reply; nothing arrives that no command asked for "
    "(RFC 5321 §4.2)",
    ("SMTP-5321-SEQ-03",),
)
INCOMPLETE = FramingRule(
    "smtp-incomplete",
    "a multi-line reply ends with a last line (code SP) before the connection closes "
    "(RFC 5321 §4.2.1)",
    ("SMTP-5321-REPLY-02",),
)

RULES = (LINE_END, CODE, CONTINUATION, SAME_CODE, LINE_LENGTH, TEXT, UNSOLICITED, INCOMPLETE)

__all__ = [
    "CODE",
    "CONTINUATION",
    "INCOMPLETE",
    "LINE_END",
    "LINE_LENGTH",
    "RULES",
    "SAME_CODE",
    "TEXT",
    "UNSOLICITED",
    "FramingFinding",
    "FramingRule",
    "finding",
]
