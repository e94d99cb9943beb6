"""Which reply codes may answer which command: RFC 5321 §4.3.2's table, the
extensions' own codes, and the codes §4.3.2 allows for any command.

The standing code-set oracle (conformance.smtp.engine) holds every reply to
a known command to this table. A positive code (2yz/3yz) outside the set
claims a success the RFC does not define for that command — the seed's
"220 ok" to MAIL — and breaks the command's own requirement (MUST). An
unlisted 4yz/5yz still refuses, which a client handles by its first digit
(RFC 5321 §4.2.1); that is the SHOULD of SMTP-5321-REPLY-05, a WARN.
"""

from __future__ import annotations

from dataclasses import dataclass

#: RFC 5321 §4.3.2: "any SMTP command can return" 500 (not recognised, line
#: too long), 501 (syntax) and 421 (service shutting down); 502/504 are the
#: not-implemented codes §4.2.4 allows for any command the server lacks.
ANY_COMMAND = frozenset({421, 500, 501, 502, 504})
#: RFC 4954 §6 (530 authentication required, 538 encryption required for
#: the mechanism) and RFC 3207 §4 (530 "must issue STARTTLS first"): a
#: server whose policy demands AUTH or TLS answers them to most commands.
POLICY = frozenset({530})
#: Replies to the end of the mail data (RFC 5321 §4.3.2 "DATA ... -> S: 250
#: E: 552, 554, 451, 452" and "E: 450, 550 (rejections for policy reasons)").
END_OF_DATA = frozenset({250, 450, 451, 452, 550, 552, 554})


@dataclass(frozen=True)
class CommandCodes:
    verb: str
    success: frozenset[int]
    errors: frozenset[int]
    #: the requirement a wrong positive code breaks (the command's own rule)
    requirement: str
    policy: bool = True  # 530 allowed (not for EHLO/HELO/NOOP/RSET/QUIT, RFC 4954 §6)

    def allowed(self) -> frozenset[int]:
        codes = self.success | self.errors | ANY_COMMAND
        return codes | POLICY if self.policy else codes


def _codes(*values: int) -> frozenset[int]:
    return frozenset(values)


TABLE: dict[str, CommandCodes] = {
    c.verb: c
    for c in (
        # RFC 5321 §4.3.2
        CommandCodes("EHLO", _codes(250), _codes(550), "SMTP-5321-EHLO-02", policy=False),
        CommandCodes("HELO", _codes(250), _codes(550), "SMTP-5321-HELO-01", policy=False),
        CommandCodes(
            "MAIL",
            _codes(250),
            _codes(552, 451, 452, 550, 553, 503, 455, 555),
            "SMTP-5321-MAIL-01",
        ),
        CommandCodes(
            "RCPT",
            _codes(250, 251),
            _codes(550, 551, 552, 553, 450, 451, 452, 503, 455, 555),
            "SMTP-5321-RCPT-01",
        ),
        CommandCodes(
            "DATA", _codes(354), _codes(503, 554, 451, 452, 450, 550, 552), "SMTP-5321-DATA-01"
        ),
        CommandCodes("RSET", _codes(250), _codes(), "SMTP-5321-RSET-01", policy=False),
        CommandCodes("VRFY", _codes(250, 251, 252), _codes(550, 551, 553), "SMTP-5321-VRFY-01"),
        CommandCodes("EXPN", _codes(250, 252), _codes(550), "SMTP-5321-EXPN-01"),
        CommandCodes("HELP", _codes(211, 214), _codes(), "SMTP-5321-HELP-01"),
        CommandCodes("NOOP", _codes(250), _codes(), "SMTP-5321-NOOP-01", policy=False),
        CommandCodes("QUIT", _codes(221), _codes(), "SMTP-5321-QUIT-01", policy=False),
        # RFC 3207 §4: 220 ready, 454 TLS not available; 501 syntax
        CommandCodes("STARTTLS", _codes(220), _codes(454, 503), "SMTP-3207-TLS-02"),
        # RFC 4954 §4, §6: 334 challenge, 235 success; 432, 454, 500, 501, 503,
        # 504, 534, 535, 538 failures
        CommandCodes(
            "AUTH",
            _codes(235, 334),
            _codes(432, 454, 503, 534, 535, 538),
            "SMTP-4954-AUTH-19",
            policy=False,
        ),
        # RFC 3030 §2: BDAT answers like the end of data
        CommandCodes("BDAT", _codes(250), END_OF_DATA | _codes(503, 554), "SMTP-3030-BDAT-03"),
    )
}


def codes_for(verb: str) -> CommandCodes | None:
    """The table row of a command verb (case-insensitive); None for a verb
    the table does not know (an unknown or private command: no code set)."""
    return TABLE.get(verb.upper())


def is_positive(code: int) -> bool:
    return 200 <= code < 400
