"""What the POP3 engine keeps per session of a scenario, and the rules and
limits its steps share (reply deadlines, the [IN-USE] retry, the replies
with a rule of their own)."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from conformance.core.fixture import Account
from conformance.pop3.session import Pop3Session as Session

AUTH_COMMANDS = frozenset({"USER", "PASS", "APOP", "AUTH"})  # replies use auth_timeout
BOGUS_USER = "mailspec-no-such-user"
#: Slack after the target's autologout before `timeout: autologout` gives up:
#: timers are checked periodically by many servers (RFC 1939 §3 sets no precision).
AUTOLOGOUT_GRACE_SECONDS = 60.0
#: A `login` answered -ERR [IN-USE] while no other session of the scenario
#: uses the account is retried this long: a server may still be finishing the
#: previous session (its UPDATE, its process exit) and hold the lock a moment.
IN_USE_RETRY_SECONDS = 5.0
IN_USE_RETRY_PAUSE = 0.1
WRONG_PASSWORD_SUFFIX = "-not-the-password"
#: RFC 4648 §4 base64, padded; empty allowed (an empty challenge, RFC 5034 §4).
BASE64_TEXT = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
#: How long a farewell `-ERR` line may precede the close it announces.
FAREWELL_CLOSE_SECONDS = 1.0
#: Refusals that say "not now" rather than "no" (RFC 2449 §8.1.1, RFC 3206 §4).
TEMPORARY_REFUSAL = re.compile(rb"^-ERR \[(LOGIN-DELAY|SYS/TEMP)\b", re.IGNORECASE)
#: Rules of the replies every scenario reads (default requirement, and the
#: prefix of the scenario's own requirements that take precedence).
GREETING_LABEL = "connect (the greeting)"
UNSOLICITED_AFTER_GREETING = "POP3-1939-RESP-01"
GREETING_RULE = ("POP3-1939-GREET-02", "POP3-1939-GREET-")
QUIT_REPLY_RULE = ("POP3-1939-UPDATE-03", "POP3-1939-UPDATE-")
QUIT_CLOSE_RULE = ("POP3-1939-UPDATE-05", "POP3-1939-UPDATE-")
QUIT_AUTHORIZATION_RULE = ("POP3-1939-QUIT-01", "POP3-1939-QUIT-")
QUIT_AUTHORIZATION_CLOSE_RULE = ("POP3-1939-QUIT-02", "POP3-1939-QUIT-")
#: A reply before a chopped command's line end was written: the server
#: acted on a TCP read, not on a CRLF-ended line (RFC 1939 §3).
CHOPPED_COMMAND_RULE = "POP3-1939-SYNTAX-02"
#: How much of an unfinished `send:` line is kept for the label of its reply.
SEND_LABEL_OCTETS = 1024
#: What a failed `login` step breaks: the login rule of the account's method.
PASS_LOGIN_REQUIREMENT = "POP3-1939-AUTH-PASS-02"
APOP_LOGIN_REQUIREMENT = "POP3-1939-AUTH-APOP-04"


# --------------------------------------------------------------------------
# Verdicts


# --------------------------------------------------------------------------
# Sessions as the engine sees them


@dataclass
class _PendingCommand:
    label: str  # "C: RETR 1" (redacted) for messages
    multiline: bool
    auth: bool
    verb: str = ""  # upper-cased keyword ("USER"), "" for greetings and raw sends
    continuation: bool = False  # AUTH or a SASL response: a "+ …" challenge may answer


@dataclass
class _EngineSession:
    session: Session
    account: Account
    awaiting_greeting: bool = True
    pending: deque[_PendingCommand] = field(default_factory=deque)
    replies_unknown: bool = False  # after send:, how many replies are due is unknown
    gone: bool = False  # closed as or_close allowed: its remaining steps are skipped
    last_was_multiline: bool = False
    pending_label: str = ""  # what the reply being read answers, for messages
    pending_verb: str = ""  # the keyword of that command
    step_timeout: float = 0.0  # the deadline used for that reply
    #: The label of the reply after which the server may close the session
    #: (`or_close`, or a refused PASS/APOP/AUTH: verdict-principles 3, 17).
    may_close_after: str | None = None
    #: USER was just answered +OK (so `login` sends only PASS: a second
    #: USER would be refused by a conforming server).
    user_accepted: bool = False
    authenticated: bool = False  # PASS/APOP/AUTH answered +OK: TRANSACTION
    commands_sent: int = 0  # before the first, unsolicited data breaks the greeting rule
    auto_stls: bool = False  # --tls stls: STLS right after a positive greeting
    in_sasl: bool = False  # the last reply was a SASL challenge: lines sent are responses
    #: `send:` bytes with no line end yet (their head, for the reply's label)
    unfinished_send: bytes = b""

    @property
    def quiet_expected(self) -> bool:
        """True when nothing may arrive: no reply is due."""
        return not (self.awaiting_greeting or self.pending or self.replies_unknown)
