"""The POP3 client mix of `mailspec load`, free of Locust (docs/load.md).

Each flow is one POP3 session as a real client type runs it, on an account
the caller owns exclusively for the session. Every reply goes through the
suite's driver (conformance/core/driver.py), so the framing oracle
(conformance/pop3/framing.py) judges it; every RETR and TOP is compared with the
fixture. Each command is handed to a `Recorder` with its latency and, when
something was wrong, a `LoadError` whose `kind` names the class of the
problem (Locust groups failures by that text, so the summary counts them by
class). Protocol findings (the server broke a rule or lost/changed mail) are
told apart from operational errors (timeouts, refused connections).

The account model (`AccountState`) is what the maildrop must hold: the
fixture's messages minus those whose deletion a QUIT committed. A deletion
whose QUIT got no answer is *pending*: the next session of the account (or
the final verification) settles whether the server applied it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from conformance.core.driver import ConnectError, Outcome, deadline_after
from conformance.core.fixture import Account, Fixture, FixtureMessage
from conformance.core.transcript import Transcript, show_bytes
from conformance.pop3.framing import UNSOLICITED, finding
from conformance.pop3.session import Pop3Session, Reply

# Load accounts: a copy of the fixture's `main` messages per account, so
# sessions never share a maildrop (RFC 1939 §8: one session holds the lock).
LOAD_USER_TEMPLATE = "msload{n}"
LOAD_PASSWORD_TEMPLATE = "load-Secret-{n}"
WRONG_PASSWORD = "not-the-Password-0"
# The generated 1 MB message stays out of the load unless asked for: it
# would make every RETR measure the reader's throughput, not the server.
MAX_DEFAULT_MESSAGE_OCTETS = 256 * 1024
DELETE_PER_SESSION = 2  # a fetch-and-delete client removes what it processed
TOP_PREVIEWS_PER_SESSION = 3
TOP_MAX_LINES = 5
NOOP_PER_SESSION = 3
NOOP_INTERVAL_SECONDS = 0.2
IN_USE_RETRIES = 20  # the previous session's UPDATE may still hold the lock
IN_USE_RETRY_SECONDS = 0.05
MAX_LINE_OCTETS = 65_536
MAX_BODY_OCTETS = 8 << 20

# Classes of LoadError.kind that are protocol findings; the rest are errors
# of the run (the server was slow, refused or went away).
FINDING_PREFIXES = ("framing", "content", "maildrop", "uidl", "auth", "status", "flood")


class LoadError(Exception):
    """One problem seen by a command; `kind` is its class (no details, so
    that Locust counts occurrences per class), `detail` says what arrived."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail

    @property
    def finding(self) -> bool:
        return is_finding(self.kind)


def is_finding(kind: str) -> bool:
    return kind.split(":", 1)[0] in FINDING_PREFIXES


class Recorder(Protocol):
    def __call__(self, name: str, seconds: float, octets: int, error: LoadError | None) -> None: ...


def load_messages(fixture: Fixture, *, large: bool = False) -> tuple[FixtureMessage, ...]:
    return tuple(
        m
        for m in fixture.account("main").messages
        if large or m.octets <= MAX_DEFAULT_MESSAGE_OCTETS
    )


def load_accounts(fixture: Fixture, count: int, *, large: bool = False) -> list[Account]:
    """`count` accounts msload1..N, each holding the fixture's main messages."""
    messages = load_messages(fixture, large=large)
    return [
        Account(
            f"load{n}",
            LOAD_USER_TEMPLATE.format(n=n),
            LOAD_PASSWORD_TEMPLATE.format(n=n),
            messages,
        )
        for n in range(1, count + 1)
    ]


def load_fixture_of(accounts: Sequence[Account], source: str = "mailspec load") -> Fixture:
    return Fixture(source, {a.role: a for a in accounts})


@dataclass
class AccountState:
    account: Account
    remaining: list[FixtureMessage] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # deletions not known to be applied
    uids: dict[str, str] = field(default_factory=dict)  # unique-id -> message name

    def __post_init__(self) -> None:
        if not self.remaining:
            self.remaining = list(self.account.messages)

    def refill(self) -> None:
        self.remaining = list(self.account.messages)
        self.pending = []
        self.uids = {}

    def ledger(self) -> dict[str, object]:
        return {
            "user": self.account.user,
            "remaining": [m.name for m in self.remaining],
            "pending": list(self.pending),
        }


# --------------------------------------------------------------------------
# One session


def content_difference(expected: bytes, got: bytes, *, byte_exact: bool) -> str | None:
    if not byte_exact:  # a delivery path may add headers: compare bodies
        expected = expected.partition(b"\r\n\r\n")[2]
        got = got.partition(b"\r\n\r\n")[2]
    if expected == got:
        return None
    at = next(
        (i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    return (
        f"{len(got)} octets where the fixture has {len(expected)}; first difference at "
        f"octet {at}: expected {show_bytes(expected[at : at + 24])}, "
        f"got {show_bytes(got[at : at + 24])}"
    )


def reply_octets(reply: Reply) -> int:
    status = len(reply.status.raw) if reply.status else 0
    return status + sum(len(line) + 2 for line in reply.lines)


class Client:
    """One POP3 session through the suite's driver, recording each command."""

    def __init__(
        self,
        host: str,
        port: int,
        record: Recorder,
        *,
        timeout: float,
        byte_exact: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.record = record
        self.timeout = timeout
        self.byte_exact = byte_exact
        self.session: Pop3Session | None = None

    def open(self) -> None:
        started = time.perf_counter()
        try:
            self.session = Pop3Session.connect(
                "load",
                self.host,
                self.port,
                Transcript(),
                timeout=self.timeout,
                max_line_octets=MAX_LINE_OCTETS,
                max_body_octets=MAX_BODY_OCTETS,
            )
        except ConnectError as exc:
            error = LoadError("connect failed", str(exc))
            self.record("connect", time.perf_counter() - started, 0, error)
            raise error from None
        reply = self.session.read_reply(False, deadline_after(self.timeout))
        self._judge("greeting", started, reply, expect_ok=True)

    def command(
        self,
        name: str,
        line: str,
        *,
        multiline: bool = False,
        expect_ok: bool | None = True,
        closed_ok: bool = False,
    ) -> Reply:
        """Send `line`, read the reply, record it; raise the LoadError that
        was recorded (the session is then abandoned). `closed_ok`: the
        connection ending instead of a reply is fine."""
        assert self.session is not None
        started = time.perf_counter()
        self.session.send(line.encode() + b"\r\n")
        reply = self.session.read_reply(multiline, deadline_after(self.timeout))
        if closed_ok and reply.status is None and reply.outcome in (Outcome.CLOSED, Outcome.RESET):
            self.record(name, time.perf_counter() - started, 0, None)
            return reply
        if multiline and reply.outcome is Outcome.COMPLETE and not reply.findings:
            extra = self.session.drain_unsolicited()
            if extra:  # e.g. the rest of a body whose "." line was not stuffed
                reply.findings.append(
                    finding(UNSOLICITED, f"after {line}: {show_bytes(extra, 80)}")
                )
        return self._judge(name, started, reply, expect_ok=expect_ok)

    def _judge(self, name: str, started: float, reply: Reply, *, expect_ok: bool | None) -> Reply:
        seconds = time.perf_counter() - started
        error = classify(name, reply, expect_ok)
        self.record(name, seconds, reply_octets(reply), error)
        if error is not None:
            raise error
        return reply

    def check_content(
        self, name: str, started: float, reply: Reply, expected: bytes, what: str
    ) -> None:
        """Record a content finding against `name` when the body differs."""
        difference = content_difference(expected, reply.body, byte_exact=self.byte_exact)
        if difference is not None:
            error = LoadError(f"content: {name} differs from the fixture", f"{what}: {difference}")
            self.record(name, time.perf_counter() - started, reply_octets(reply), error)
            raise error

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def classify(name: str, reply: Reply, expect_ok: bool | None) -> LoadError | None:
    if reply.findings:
        first = reply.findings[0]
        return LoadError(
            f"framing: {first.rule.key} ({first.requirement})", f"{name}: {first.detail}"
        )
    if reply.outcome is Outcome.TIMEOUT:
        return LoadError("timeout", f"{name}: no complete reply before the deadline")
    if reply.outcome is Outcome.FLOOD:
        return LoadError("flood: reply over the size bound", f"{name}: {reply.detail}")
    if reply.outcome is not Outcome.COMPLETE:
        return LoadError(f"connection {reply.outcome.value}", f"{name}: {reply.detail}".strip())
    assert reply.status is not None
    if expect_ok is True and not reply.status.positive:
        if b"[IN-USE]" in reply.status.line:
            return LoadError("maildrop in use", f"{name}: {show_bytes(reply.status.raw)}")
        return LoadError(f"status: -ERR to {name}", f"{name}: {show_bytes(reply.status.raw)}")
    if expect_ok is False and reply.status.positive:
        return LoadError(f"auth: {name} accepted", f"{name}: {show_bytes(reply.status.raw)}")
    return None


# --------------------------------------------------------------------------
# The flows


Ledger = Callable[[AccountState], None]


@dataclass
class FlowContext:
    client: Client
    state: AccountState
    ledger: Ledger  # called whenever the account model changed
    rng: random.Random
    sleep: Callable[[float], None] = time.sleep


def login(ctx: FlowContext) -> None:
    account = ctx.state.account
    ctx.client.open()
    ctx.client.command("USER", f"USER {account.user}")
    for attempt in range(IN_USE_RETRIES):
        try:
            ctx.client.command("PASS", f"PASS {account.password}")
            break
        except LoadError as exc:
            if exc.kind != "maildrop in use" or attempt == IN_USE_RETRIES - 1:
                raise
            ctx.sleep(IN_USE_RETRY_SECONDS)
            ctx.client.command("USER", f"USER {account.user}")
    settle_pending(ctx)


def stat(ctx: FlowContext) -> int:
    reply = ctx.client.command("STAT", "STAT")
    assert reply.status is not None
    fields = reply.status.line.split()
    if len(fields) < 3 or not fields[1].isdigit():
        error = LoadError("status: STAT malformed", show_bytes(reply.status.raw))
        ctx.client.record("STAT", 0.0, 0, error)
        raise error
    return int(fields[1])


def settle_pending(ctx: FlowContext) -> None:
    """After login: the maildrop holds the expected count (and a pending
    deletion is settled by it)."""
    state = ctx.state
    count = stat(ctx)
    if state.pending:
        applied = [m for m in state.remaining if m.name not in state.pending]
        if count == len(applied):
            state.remaining, state.pending = applied, []
            ctx.ledger(state)
            return
        if count == len(state.remaining):
            state.pending = []
            ctx.ledger(state)
            return
    if count != len(state.remaining):
        error = LoadError(
            "maildrop: message count differs from the messages not deleted",
            f"{state.account.user}: STAT says {count}, {len(state.remaining)} expected",
        )
        ctx.client.record("STAT", 0.0, 0, error)
        raise error


def quit_session(ctx: FlowContext, deleted: Sequence[str] = ()) -> None:
    state = ctx.state
    if deleted:
        state.pending = list(deleted)
        ctx.ledger(state)  # before QUIT: its answer may never arrive
    ctx.client.command("QUIT", "QUIT")
    if deleted:
        state.remaining = [m for m in state.remaining if m.name not in deleted]
        state.pending = []
        for uid, name in list(state.uids.items()):
            if name in deleted:
                del state.uids[uid]
        ctx.ledger(state)


def retr(ctx: FlowContext, number: int) -> None:
    message = ctx.state.remaining[number - 1]
    started = time.perf_counter()
    reply = ctx.client.command("RETR", f"RETR {number}", multiline=True)
    ctx.client.check_content(
        "RETR", started, reply, message.wire, f"RETR {number} ({message.name})"
    )


def fetch_delete(ctx: FlowContext) -> None:
    """Download everything, delete what was processed (up to
    DELETE_PER_SESSION, so the maildrop is not empty after one session)."""
    login(ctx)
    listing = ctx.client.command("LIST", "LIST", multiline=True)
    if len(listing.lines) != len(ctx.state.remaining):
        error = LoadError(
            "maildrop: LIST differs from the messages not deleted",
            f"{len(listing.lines)} listed, {len(ctx.state.remaining)} expected",
        )
        ctx.client.record("LIST", 0.0, 0, error)
        raise error
    numbers = list(range(1, len(ctx.state.remaining) + 1))
    for number in numbers:
        retr(ctx, number)
    chosen = ctx.rng.sample(numbers, min(DELETE_PER_SESSION, len(numbers)))
    for number in sorted(chosen):
        ctx.client.command("DELE", f"DELE {number}")
    quit_session(ctx, [ctx.state.remaining[n - 1].name for n in chosen])


def parse_uidl(ctx: FlowContext, reply: Reply) -> list[str]:
    uids: list[str] = []
    for number, line in enumerate(reply.lines, start=1):
        parts = line.split()
        if len(parts) != 2 or parts[0] != str(number).encode():
            raise _finding(ctx, "UIDL", "uidl: malformed listing line", show_bytes(line))
        uids.append(parts[1].decode("latin-1"))
    return uids


def leave_on_server(ctx: FlowContext) -> None:
    """A client that keeps mail on the server: UIDL, RETR only the
    unique-ids it has not seen, remember them (RFC 1939 §7: a unique-id
    stays the same across sessions)."""
    login(ctx)
    state = ctx.state
    uids = parse_uidl(ctx, ctx.client.command("UIDL", "UIDL", multiline=True))
    repeated = [u for u, n in Counter(uids).items() if n > 1]
    if repeated:
        raise _finding(ctx, "UIDL", "uidl: one unique-id for two messages", repeated[0])
    if len(uids) != len(state.remaining):
        raise _finding(
            ctx,
            "UIDL",
            "maildrop: UIDL differs from the messages not deleted",
            f"{len(uids)} listed, {len(state.remaining)} expected",
        )
    for number, uid in enumerate(uids, start=1):
        message = state.remaining[number - 1]
        known = state.uids.get(uid)
        if known is None:
            if message.name in state.uids.values():
                raise _finding(
                    ctx,
                    "UIDL",
                    "uidl: unique-id changed between sessions",
                    f"message {number} ({message.name}) now has {uid!r}",
                )
            retr(ctx, number)
            state.uids[uid] = message.name
        elif known != message.name:
            raise _finding(
                ctx,
                "UIDL",
                "uidl: unique-id moved to another message",
                f"{uid!r} was {known}, is now message {number} ({message.name})",
            )
    quit_session(ctx)


def top_preview(ctx: FlowContext) -> None:
    """A client showing previews: TOP n L of a few messages."""
    login(ctx)
    remaining = ctx.state.remaining
    ctx.client.command("LIST", "LIST", multiline=True)
    numbers = list(range(1, len(remaining) + 1))
    for number in ctx.rng.sample(numbers, min(TOP_PREVIEWS_PER_SESSION, len(numbers))):
        lines = ctx.rng.randint(0, TOP_MAX_LINES)
        message = remaining[number - 1]
        started = time.perf_counter()
        reply = ctx.client.command("TOP", f"TOP {number} {lines}", multiline=True)
        ctx.client.check_content(
            "TOP", started, reply, message.top(lines), f"TOP {number} {lines} ({message.name})"
        )
    quit_session(ctx)


def noop_keepalive(ctx: FlowContext) -> None:
    """A client that keeps its session open with NOOPs, then checks STAT."""
    login(ctx)
    for _ in range(NOOP_PER_SESSION):
        ctx.sleep(NOOP_INTERVAL_SECONDS)
        ctx.client.command("NOOP", "NOOP")
    if stat(ctx) != len(ctx.state.remaining):
        raise _finding(ctx, "STAT", "maildrop: message count changed during the session")
    quit_session(ctx)


def failed_login(ctx: FlowContext) -> None:
    """A misconfigured client: the right user, a wrong password (-ERR due;
    a +OK is a finding). The maildrop must stay untouched."""
    ctx.client.open()
    ctx.client.command("USER", f"USER {ctx.state.account.user}", expect_ok=None)
    ctx.client.command("PASS (wrong)", f"PASS {WRONG_PASSWORD}", expect_ok=False)
    session = ctx.client.session
    if session is not None and session.usable:  # a server may hang up after a failed login
        ctx.client.command("QUIT", "QUIT", expect_ok=None, closed_ok=True)


FLOW_FUNCTIONS: dict[str, Callable[[FlowContext], None]] = {
    "fetch-delete": fetch_delete,
    "leave-on-server": leave_on_server,
    "top-preview": top_preview,
    "noop-keepalive": noop_keepalive,
    "failed-login": failed_login,
}


def _finding(ctx: FlowContext, name: str, kind: str, detail: str = "") -> LoadError:
    error = LoadError(kind, detail)
    ctx.client.record(name, 0.0, 0, error)
    return error


def run_flow(flow: str, ctx: FlowContext) -> LoadError | None:
    """One session of `flow`; the first problem (already recorded), or None."""
    try:
        FLOW_FUNCTIONS[flow](ctx)
    except LoadError as exc:
        return exc
    finally:
        ctx.client.close()
    return None
