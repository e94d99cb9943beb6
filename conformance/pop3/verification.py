"""Set-up checks of a maildrop: does the target's store hold the fixture,
and did a scenario change it when it must not have?

Verification is not a judge (verdict-principles, "Never behind a
precondition"). It identifies messages by their content — the Message-ID
header each fixture message carries, read with `TOP n 0` (or `RETR n` when
TOP is not offered) — never by the server's own size figures, so a server
that miscounts octets or misnumbers a listing is judged by the scenarios
that check those rules instead of hiding behind an ERROR here.

Two checks:

* `identify` (after provisioning, or the first time an account is used):
  messages 1..N carry the fixture's Message-IDs in order and N+1 does not
  exist. A difference means the store does not hold the fixture: an ERROR
  of provisioning. The same session records a cheap `Signature` (UIDL
  listing, STAT figures) of the maildrop.
* `signature` (after every scenario that must not commit): the same
  figures again. A change means that scenario altered the maildrop without
  a QUIT-committed deletion: a FAIL of that scenario (RFC 1939 §6, §8).

Every read has the run's deadline; a reply that never ends (a listing
without its terminator) costs one deadline and that method is not used
again in the run (`Methods`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from conformance.core.config import RunConfig
from conformance.core.driver import Outcome
from conformance.core.errors import TargetUnreachable
from conformance.core.fixture import Account, FixtureMessage
from conformance.core.transcript import Transcript, show_bytes
from conformance.pop3.capabilities import (
    connect_and_greet,
    describe_reply,
    is_complete_positive,
    login,
)
from conformance.pop3.session import Reply

T = TypeVar("T")
MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(<[^>\r\n]*>)")


class VerificationError(Exception):
    """The maildrop could not be checked, or does not hold the fixture.

    `kind` says which: "unreachable" (no connection or greeting), "login"
    (the account's login was refused), "content" (the store does not hold
    the fixture: a provisioning problem) or "unverifiable" (the server's
    replies left no way to identify the messages)."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Signature:
    """What a maildrop looks like, cheaply: the figures the server gave."""

    uidl: tuple[str, ...] | None = None  # unique-ids in message order
    stat: tuple[int, int] | None = None  # (count, octets)

    def differences(self, later: Signature) -> list[str]:
        """How `later` differs in what a session must not change: which
        messages there are (count, unique-ids). Octet totals are not
        compared: a server may rewrite its own bookkeeping headers in stored
        messages between sessions (verdict-principles 12)."""
        diffs: list[str] = []
        if self.uidl is not None and later.uidl is not None and self.uidl != later.uidl:
            gone = [u for u in self.uidl if u not in later.uidl]
            diffs.append(
                f"UIDL lists {len(later.uidl)} messages where it listed {len(self.uidl)}"
                + (f" (gone: {', '.join(gone[:5])})" if gone else " (unique-ids changed)")
            )
        if self.stat is not None and later.stat is not None and self.stat[0] != later.stat[0]:
            diffs.append(f"STAT says {later.stat[0]} messages where it said {self.stat[0]}")
        return diffs

    @property
    def empty(self) -> bool:
        return self.uidl is None and self.stat is None

    @property
    def count(self) -> int | None:
        if self.uidl is not None:
            return len(self.uidl)
        return self.stat[0] if self.stat is not None else None


@dataclass
class Methods:
    """Which verification commands work on this target. A command whose
    reply was unusable once (refused, malformed, never ended) is not tried
    again in the run: one deadline, not one per scenario."""

    top: bool = True
    retr: bool = True
    uidl: bool = True
    stat: bool = True
    notes: list[str] = field(default_factory=list)

    def drop(self, name: str, why: str) -> None:
        if getattr(self, name):
            setattr(self, name, False)
            self.notes.append(f"{name.upper()} not used by verification: {why}")


def message_id(header: bytes) -> str | None:
    match = MESSAGE_ID.search(header)
    return match.group(1).decode("latin-1") if match else None


class MaildropCheck:
    """One verification session against one account."""

    def __init__(
        self,
        host: str,
        port: int,
        config: RunConfig,
        account: Account,
        transcript: Transcript,
        methods: Methods,
        *,
        name: str,
    ) -> None:
        self.account = account
        self.methods = methods
        self.transcript = transcript
        self.name = name
        try:
            self.probe, _ = connect_and_greet(host, port, config, transcript, name)
        except TargetUnreachable as exc:
            raise VerificationError(str(exc), kind="unreachable") from None

    def __enter__(self) -> MaildropCheck:
        problem = login(self.probe, self.account)
        if problem:
            self.probe.session.close()
            raise VerificationError(
                f"cannot log in as {self.account.user} (role {self.account.role}): {problem}",
                kind="login",
            )
        return self

    def __exit__(self, *exc: object) -> None:
        # RSET: nothing read here counts as accessed (RFC 1225 LAST); QUIT
        # from TRANSACTION then commits no deletion.
        if self.probe.session.usable:
            self.probe.command("RSET")
            self.probe.command("QUIT")
        self.probe.session.close()

    # -- identity ----------------------------------------------------------------

    def identify(self, *, written: bool = False) -> None:
        """Messages 1..N are the fixture's, in order, and — unless the suite
        just `written` exactly those N itself, when a message N+1 would be
        the server's numbering fault for the scenarios to judge — N+1 does
        not exist."""
        messages = self.account.messages
        for number, message in enumerate(messages, start=1):
            self._check_message(number, message)
        if written:
            return
        beyond = self._header_of(len(messages) + 1)
        if beyond is not None and is_complete_positive(beyond):
            raise VerificationError(
                f"account {self.account.role} ({self.account.user}) holds more than the "
                f"fixture's {len(messages)} messages: message {len(messages) + 1} exists",
                kind="content",
            )

    def _check_message(self, number: int, message: FixtureMessage) -> None:
        want = message_id(message.header)
        reply = self._header_of(number)
        who = f"account {self.account.role} ({self.account.user})"
        if reply is None or not is_complete_positive(reply):
            # refused: the store lacks it; no reply: nothing can be concluded
            kind = "content" if reply is not None else "unverifiable"
            shown = describe_reply(reply) if reply is not None else "no complete reply"
            raise VerificationError(
                f"{who}: message {number} ({message.name}) could not be read: {shown}",
                kind=kind,
            )
        header = reply.body.partition(b"\r\n\r\n")[0]
        if want is not None:
            got = message_id(header)
            if got != want:
                raise VerificationError(
                    f"{who}: message {number} should be {message.name} (Message-ID {want}), "
                    f"the server sent one with Message-ID {got or 'none'}",
                    kind="content",
                )
            return
        # no Message-ID: every header line of the fixture's must be there
        # (a delivery path may add trace headers, verdict-principles 12)
        sent = set(header.split(b"\r\n"))
        missing = [line for line in message.header.split(b"\r\n") if line and line not in sent]
        if missing:
            raise VerificationError(
                f"{who}: message {number} should be {message.name}; the server's lacks the "
                f"header line {show_bytes(missing[0])}",
                kind="content",
            )

    def _header_of(self, number: int) -> Reply | None:
        """`TOP n 0`, or `RETR n` when TOP is not offered or did not work."""
        if self.methods.top:
            reply = self.probe.command(f"TOP {number} 0", multiline=True)
            if reply.outcome is Outcome.COMPLETE and reply.status is not None:
                if reply.status.looks_positive or number > self.account.count:
                    return reply
            self.methods.drop("top", f"TOP {number} 0 answered {describe_reply(reply)}")
            if not self.probe.session.usable:
                return None
        if not self.methods.retr or not self.probe.session.usable:
            return None
        reply = self.probe.command(f"RETR {number}", multiline=True)
        if reply.outcome is not Outcome.COMPLETE:
            self.methods.drop("retr", f"RETR {number} answered {describe_reply(reply)}")
            return None
        return reply

    # -- signature ---------------------------------------------------------------

    def signature(self) -> Signature:
        return Signature(
            uidl=self._attempt("uidl", self._uidl), stat=self._attempt("stat", self._stat)
        )

    def _attempt(self, name: str, read: Callable[[], T | str]) -> T | None:
        if not getattr(self.methods, name) or not self.probe.session.usable:
            return None
        value = read()
        if isinstance(value, str):
            self.methods.drop(name, value)
            return None
        return value

    def _uidl(self) -> tuple[str, ...] | str:
        reply = self.probe.command("UIDL", multiline=True)
        if not is_complete_positive(reply):
            return f"UIDL answered {describe_reply(reply)}"
        uids: list[str] = []
        for number, line in enumerate(reply.lines, start=1):
            parts = line.split()
            if len(parts) != 2 or parts[0] != str(number).encode():
                return f"UIDL sent the listing line {show_bytes(line)}"
            uids.append(parts[1].decode("latin-1"))
        return tuple(uids)

    def _stat(self) -> tuple[int, int] | str:
        reply = self.probe.command("STAT")
        fields = reply.status.line.split() if is_complete_positive(reply) and reply.status else []
        if len(fields) < 3 or not (fields[1].isdigit() and fields[2].isdigit()):
            return f"STAT answered {describe_reply(reply)}"
        return int(fields[1]), int(fields[2])
