"""INFO results: facts about the target measured once per run, after the
capability probe (docs/cli.md, *INFO measurements*; issue 13 "INFO results").

Each measurement has a stable id, a value with its unit, the method and the
bounds it used. None of them is a verdict: they never change the exit code,
and one that cannot be made says why instead of giving a number.

* ``info.longest-command-line`` — the longest NOOP line (octets, CRLF
  included) the target answers in AUTHORIZATION: a bounded binary search,
  each length on a fresh connection. *Answered* means one well-formed status
  line (``+OK`` or ``-ERR``, CRLF-terminated) and the connection still
  usable afterwards (QUIT gets a status line too). RFC 2449 §4 lets servers
  refuse lines over 255 octets; refusing with ``-ERR`` counts as answering,
  so the note says where the reply changed.
* ``info.bad-command-limit`` — how many unknown commands in a row the target
  answers in AUTHORIZATION before it closes (verdict-principles 3: error
  budgets), bounded.
* ``info.failed-login-delay`` — how long a wrong PASS (APOP for an APOP-only
  account) takes to be answered, the median of three fresh connections,
  each bounded by the configured auth timeout.
* ``info.bare-lf-line-end`` — whether a bare LF ends a command line
  (security catalogue R08): after login, ``NOOP<LF>STAT<CR><LF>`` then a
  sentinel ``NOOP<CR><LF>`` in one write; 2 commands when a STAT reply
  comes back (the LF ended ``NOOP``), 1 when the line was taken whole.
  RFC 1939 §3 ends commands with CRLF; accepting LF alone is a common
  leniency, not a verdict.
* ``info.connections-per-address`` — how many connections from this address
  the target greets at once (catalogue C03), bounded at 16 and counted
  from zero, then all closed and one more opened (the target recovers).

Every read has a deadline, and each measurement has a time budget of its own."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from conformance.core.config import RunConfig
from conformance.core.driver import Outcome, deadline_after
from conformance.core.errors import TargetUnreachable
from conformance.core.expressions import apop_digest_of
from conformance.core.fixture import Account
from conformance.core.results import Measurement, MeasurementOutcome
from conformance.core.transcript import Transcript, show_bytes
from conformance.pop3.capabilities import ProbeSession, connect_and_greet, greeting_timestamp
from conformance.pop3.session import Reply

LONGEST_LINE = "info.longest-command-line"
LINE_REFUSAL = "info.line-length-refusal"
BAD_COMMAND_LIMIT = "info.bad-command-limit"
FAILED_LOGIN_DELAY = "info.failed-login-delay"
BARE_LF = "info.bare-lf-line-end"
CONNECTIONS = "info.connections-per-address"
MEASUREMENT_IDS = (
    LONGEST_LINE,
    LINE_REFUSAL,
    BAD_COMMAND_LIMIT,
    FAILED_LOGIN_DELAY,
    BARE_LF,
    CONNECTIONS,
)

#: The line-length search: from a line well inside RFC 2449 §4's 255 octets
#: to 64 KiB, the largest line the issue asks about.
MIN_LINE_OCTETS = 64
MAX_LINE_OCTETS = 64 * 1024
#: The padded command: NOOP and one argument of this octet (RFC 1939 §5 NOOP
#: takes none, so a server may refuse it with -ERR: still an answer).
LINE_VERB = b"NOOP "
PAD_OCTET = b"X"
#: Unknown commands sent at most (a server that answers this many and stays
#: open has no limit up to the bound; RFC 1939 sets none).
MAX_BAD_COMMANDS = 50
#: A keyword no POP3 extension defines (RFC 2449 §3 keywords are 3-4 letters).
UNKNOWN_COMMAND = b"XQZV"
#: Wrong PASS samples; the value is their median.
LOGIN_SAMPLES = 3
WRONG_PASSWORD_SUFFIX = "-not-the-password"
#: A measurement's whole budget, in read deadlines: a server that answers
#: every probe only at the deadline does not make the run wait for all of them.
BUDGET_READ_TIMEOUTS = 3.0
#: info.bare-lf-line-end: a LF alone inside the first line, then a sentinel
BARE_LF_WRITE = b"NOOP\nSTAT\r\nNOOP\r\n"
_STAT_REPLY = re.compile(rb"^\+OK \d+ \d+")
#: info.connections-per-address: held at once, at most (catalogue C03's default)
MAX_CONNECTIONS = 16
WELL_FORMED = frozenset({"+OK", "-ERR"})
_DIGITS = re.compile(r"\d+")
_PAD_RUN = re.compile(r"X{2,}…?")


class _Unavailable(Exception):
    """A measurement cannot be made; the message says why."""


def skipped(reason: str) -> list[Measurement]:
    """Every measurement, not measured, for `reason` (e.g. `--no-measure`)."""
    return [_not_measured(spec, reason) for spec in _SPECS]


def measure(host: str, port: int, config: RunConfig, account: Account) -> list[Measurement]:
    """The measurements against the target, in id order. Never raises
    for target misbehaviour: what could not be measured says why."""
    target = _Target(host, port, config, account)
    probes = _LineProbes(target)
    steps: list[tuple[_Spec, Callable[[], Measurement]]] = [
        (_LINE_SPEC, lambda: _longest_line(probes)),
        (_REFUSAL_SPEC, lambda: _line_refusal(probes)),
        (_BAD_COMMAND_SPEC, lambda: _bad_command_limit(target)),
        (_DELAY_SPEC, lambda: _failed_login_delay(target)),
        (_BARE_LF_SPEC, lambda: _bare_lf_line_end(target)),
        (_CONNECTIONS_SPEC, lambda: _connections_per_address(target)),
    ]
    out = []
    for spec, run in steps:
        try:
            out.append(run())
        except _Unavailable as why:
            out.append(_not_measured(spec, str(why)))
    return out


# --------------------------------------------------------------------------
# What each measurement is


@dataclass(frozen=True)
class _Spec:
    id: str
    title: str
    unit: str
    method: str
    bounds: dict[str, float]

    def result(
        self,
        outcome: MeasurementOutcome,
        value: float | None,
        note: str = "",
        samples: list[float] | None = None,
        bounds: dict[str, float] | None = None,
    ) -> Measurement:
        return Measurement(
            id=self.id,
            title=self.title,
            unit=self.unit,
            method=self.method,
            bounds=dict(bounds if bounds is not None else self.bounds),
            outcome=outcome,
            value=value,
            note=note,
            samples=list(samples or []),
        )


_LINE_SPEC = _Spec(
    LONGEST_LINE,
    "longest command line answered",
    "octets",
    "binary search over 'NOOP XXX…' lines (length with CRLF) before login, each on a fresh "
    "connection; answered = one well-formed +OK/-ERR status line and QUIT still answered",
    {"min": MIN_LINE_OCTETS, "max": MAX_LINE_OCTETS},
)
_REFUSAL_SPEC = _Spec(
    LINE_REFUSAL,
    "shortest command line refused for its length",
    "octets",
    "the same lines: the shortest whose reply differs from the 64-octet line's (digits and "
    "echoed padding ignored), or is no answer at all; RFC 2449 §4 allows refusing above 255",
    {"min": MIN_LINE_OCTETS, "max": MAX_LINE_OCTETS},
)
_BAD_COMMAND_SPEC = _Spec(
    BAD_COMMAND_LIMIT,
    "unknown commands answered before the server closes",
    "commands",
    f"'{UNKNOWN_COMMAND.decode()}' sent one at a time before login on one fresh connection "
    "until the server closes it",
    {"min": 1, "max": MAX_BAD_COMMANDS},
)
_DELAY_SPEC = _Spec(
    FAILED_LOGIN_DELAY,
    "failed-login delay",
    "seconds",
    f"time from a wrong PASS (APOP for an APOP account) to its reply, median of "
    f"{LOGIN_SAMPLES} fresh connections",
    {"min": 0, "max": 0},  # max: the auth timeout, filled in per run
)


_BARE_LF_SPEC = _Spec(
    BARE_LF,
    "commands run from one line with a bare LF inside",
    "commands",
    "after login, 'NOOP<LF>STAT<CR><LF>' and a sentinel 'NOOP<CR><LF>' in one write: 2 when a "
    "STAT reply (+OK n m) comes back, 1 when the line was answered once; RFC 1939 §3 ends "
    "a command with CRLF",
    {"min": 1, "max": 2},
)
_CONNECTIONS_SPEC = _Spec(
    CONNECTIONS,
    "connections from one address greeted at once",
    "connections",
    f"fresh connections opened one after another and held, each greeted +OK, up to "
    f"{MAX_CONNECTIONS}; then all closed and one more opened",
    {"min": 0, "max": MAX_CONNECTIONS},
)


_SPECS = (
    _LINE_SPEC,
    _REFUSAL_SPEC,
    _BAD_COMMAND_SPEC,
    _DELAY_SPEC,
    _BARE_LF_SPEC,
    _CONNECTIONS_SPEC,
)


def _not_measured(spec: _Spec, reason: str) -> Measurement:
    return spec.result(MeasurementOutcome.NOT_MEASURED, None, reason)


# --------------------------------------------------------------------------
# Sessions


@dataclass
class _Target:
    host: str
    port: int
    config: RunConfig
    account: Account

    def open(self) -> ProbeSession:
        """A fresh session past its greeting (and STLS under --tls stls)."""
        try:
            probe, _ = connect_and_greet(self.host, self.port, self.config, Transcript(), "measure")
        except TargetUnreachable as exc:
            raise _Unavailable(f"a fresh connection failed: {exc}") from None
        return probe

    def budget(self) -> float:
        return deadline_after(self.config.read_timeout * BUDGET_READ_TIMEOUTS)


def _well_formed(reply: Reply) -> bool:
    return (
        reply.outcome is Outcome.COMPLETE
        and reply.status is not None
        and reply.status.status in WELL_FORMED
        and reply.status.raw.endswith(b"\r\n")
        and not reply.findings
    )


def _send(probe: ProbeSession, line: bytes, deadline: float, *, auth: bool = False) -> Reply:
    probe.session.send(line)
    timeout = probe.config.auth_timeout if auth else probe.config.read_timeout
    return probe.session.read_reply(False, min(deadline_after(timeout), deadline))


def _shape(reply: Reply) -> str:
    """A reply as the note shows it, digits folded so lengths do not differ."""
    if reply.status is None:
        if reply.outcome is Outcome.TIMEOUT:
            return "no reply before the deadline"
        return f"connection {reply.outcome}"
    text = _PAD_RUN.sub("X…", show_bytes(reply.status.line[:80]))
    return _DIGITS.sub("N", text)


# --------------------------------------------------------------------------
# info.longest-command-line


def padded_line(octets: int) -> bytes:
    """A NOOP line of exactly `octets` octets, CRLF included."""
    return LINE_VERB + PAD_OCTET * (octets - len(LINE_VERB) - 2) + b"\r\n"


class _LineProbes:
    """One padded line per length, each on a fresh session, remembered so
    both line measurements share them; within one time budget."""

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.deadline = target.budget()
        self.seen: dict[int, tuple[bool, str]] = {}

    def answered(self, octets: int) -> bool:
        return self.at(octets)[0]

    def shape(self, octets: int) -> str:
        return self.at(octets)[1]

    def at(self, octets: int) -> tuple[bool, str]:
        if octets not in self.seen:
            self.seen[octets] = _line_answered(self.target, octets, self.deadline)
        return self.seen[octets]

    def bisect(self, low: int, high: int, holds: Callable[[int], bool]) -> tuple[int, int, bool]:
        """`holds(low)` and not `holds(high)`: (the last length that holds,
        the first that does not, whether the budget ran out first). Assumes
        one change between them, as a length limit gives."""
        while high - low > 1:
            if time.monotonic() >= self.deadline:
                return low, high, True
            middle = (low + high) // 2
            if holds(middle):
                low = middle
            else:
                high = middle
        return low, high, False


def _longest_line(probes: _LineProbes) -> Measurement:
    if not probes.answered(MIN_LINE_OCTETS):
        return _LINE_SPEC.result(
            MeasurementOutcome.BELOW,
            MIN_LINE_OCTETS,
            f"{MIN_LINE_OCTETS} octets: {probes.shape(MIN_LINE_OCTETS)}",
        )
    if probes.answered(MAX_LINE_OCTETS):
        return _LINE_SPEC.result(
            MeasurementOutcome.AT_LEAST, MAX_LINE_OCTETS, _line_note(probes.seen, MAX_LINE_OCTETS)
        )
    low, high, out_of_time = probes.bisect(MIN_LINE_OCTETS, MAX_LINE_OCTETS, probes.answered)
    if out_of_time:
        return _LINE_SPEC.result(
            MeasurementOutcome.AT_LEAST,
            low,
            f"the search stopped at its time budget; {high} octets were not answered",
        )
    return _LINE_SPEC.result(MeasurementOutcome.MEASURED, low, _line_note(probes.seen, low, high))


def _line_refusal(probes: _LineProbes) -> Measurement:
    """The shortest line whose reply is not the one a 64-octet line gets
    (digits and runs of the pad octet folded, so an echo does not count)."""
    if not probes.answered(MIN_LINE_OCTETS):
        raise _Unavailable(f"{MIN_LINE_OCTETS} octets: {probes.shape(MIN_LINE_OCTETS)}")
    base = probes.shape(MIN_LINE_OCTETS)

    def same(octets: int) -> bool:
        return probes.answered(octets) and probes.shape(octets) == base

    if same(MAX_LINE_OCTETS):
        return _REFUSAL_SPEC.result(
            MeasurementOutcome.AT_LEAST,
            MAX_LINE_OCTETS,
            f"every length got {base}",
        )
    low, high, out_of_time = probes.bisect(MIN_LINE_OCTETS, MAX_LINE_OCTETS, same)
    if out_of_time:
        raise _Unavailable(f"the search stopped at its time budget between {low} and {high} octets")
    return _REFUSAL_SPEC.result(
        MeasurementOutcome.MEASURED,
        high,
        f"{low} octets: {base}; {high} octets: {probes.shape(high)}",
    )


def _line_answered(target: _Target, octets: int, deadline: float) -> tuple[bool, str]:
    """(answered, what came back) for one line of `octets` on a fresh session."""
    probe = target.open()
    try:
        reply = _send(probe, padded_line(octets), deadline)
        if not _well_formed(reply):
            return False, _shape(reply)
        quit_reply = _send(probe, b"QUIT\r\n", deadline)
        if not _well_formed(quit_reply):
            return False, f"{_shape(reply)}, then QUIT: {_shape(quit_reply)}"
        return True, _shape(reply)
    finally:
        probe.session.close()


def _line_note(seen: dict[int, tuple[bool, str]], longest: int, refused: int = 0) -> str:
    """The replies at the shortest and the longest line answered, and to
    the shortest line that was not."""
    shortest = min(n for n, (ok, _) in seen.items() if ok)
    base = seen[shortest][1]
    parts = [f"{shortest} octets: {base}"]
    if longest != shortest:
        last = seen[longest][1]
        parts.append(f"{longest} octets: {last}" if last != base else f"the same at {longest}")
    if refused:
        parts.append(f"{refused} octets: {seen[refused][1]}")
    return "; ".join(parts)


# --------------------------------------------------------------------------
# info.bad-command-limit


def _bad_command_limit(target: _Target) -> Measurement:
    deadline = target.budget()
    probe = target.open()
    try:
        for sent in range(1, MAX_BAD_COMMANDS + 1):
            reply = _send(probe, UNKNOWN_COMMAND + b"\r\n", deadline)
            if reply.status is None and reply.outcome in (Outcome.CLOSED, Outcome.RESET):
                return _BAD_COMMAND_SPEC.result(
                    MeasurementOutcome.MEASURED,
                    sent - 1,
                    f"unknown command {sent} found the connection {reply.outcome}",
                )
            if reply.status is None:
                raise _Unavailable(f"unknown command {sent}: {_shape(reply)}")
            if reply.status.looks_positive:
                raise _Unavailable(
                    f"{UNKNOWN_COMMAND.decode()} was answered {show_bytes(reply.status.line)}"
                )
        return _BAD_COMMAND_SPEC.result(
            MeasurementOutcome.AT_LEAST,
            MAX_BAD_COMMANDS,
            f"the connection was still open after {MAX_BAD_COMMANDS} -ERR replies",
        )
    finally:
        probe.session.close()


# --------------------------------------------------------------------------
# info.failed-login-delay


def _failed_login_delay(target: _Target) -> Measurement:
    limit = target.config.auth_timeout
    bounds = {"min": 0, "max": limit}
    samples: list[float] = []
    for _ in range(LOGIN_SAMPLES):
        elapsed = _one_failed_login(target)
        if elapsed is None:
            return _DELAY_SPEC.result(
                MeasurementOutcome.AT_LEAST,
                limit,
                f"no reply to the wrong password within the auth timeout ({limit:g} s)",
                samples=samples,
                bounds=bounds,
            )
        samples.append(round(elapsed, 3))
    return _DELAY_SPEC.result(
        MeasurementOutcome.MEASURED,
        round(statistics.median(samples), 3),
        # a spread shows a delay that grows per address (Dovecot's auth penalty)
        "samples " + ", ".join(f"{x:.3f}" for x in samples) + " s",
        samples=samples,
        bounds=bounds,
    )


def _credential_line(target: _Target, probe: ProbeSession, password: str, deadline: float) -> bytes:
    """The line that proves `password` for the measuring account: APOP with
    its digest, or PASS once USER was accepted (sent here)."""
    account = target.account
    if account.login == "apop":
        timestamp = greeting_timestamp(probe.session.greeting)
        if timestamp is None:
            raise _Unavailable(f"{account.user} logs in with APOP; the greeting has no stamp")
        return f"APOP {account.user} {apop_digest_of(timestamp, password)}\r\n".encode()
    user = _send(probe, f"USER {account.user}\r\n".encode(), deadline, auth=True)
    if not (user.status is not None and user.status.looks_positive):
        raise _Unavailable(f"USER {account.user} answered {_shape(user)}")
    return f"PASS {password}\r\n".encode()


def _one_failed_login(target: _Target) -> float | None:
    """Seconds from the wrong credential's write to its reply; None when no
    reply came within the auth timeout."""
    probe = target.open()
    account = target.account
    wrong = account.password + WRONG_PASSWORD_SUFFIX
    no_limit = deadline_after(target.config.auth_timeout + target.config.read_timeout)
    try:
        line = _credential_line(target, probe, wrong, no_limit)
        started = time.monotonic()
        reply = _send(probe, line, no_limit, auth=True)
        elapsed = time.monotonic() - started
        if reply.status is None:
            if reply.outcome is Outcome.TIMEOUT:
                return None
            raise _Unavailable(f"the wrong password found the connection {reply.outcome}")
        if reply.status.looks_positive:
            raise _Unavailable("the wrong password was accepted")
        return elapsed
    finally:
        probe.session.close()


# --------------------------------------------------------------------------
# info.bare-lf-line-end


def _login(target: _Target, probe: ProbeSession, deadline: float) -> None:
    """Log the measuring account in on `probe` (USER/PASS, or APOP)."""
    line = _credential_line(target, probe, target.account.password, deadline)
    reply = _send(probe, line, deadline, auth=True)
    if not (reply.status is not None and reply.status.looks_positive):
        verb = line.split(b" ", 1)[0].decode()
        raise _Unavailable(f"the login ({verb}) was answered {_shape(reply)}")


def _bare_lf_line_end(target: _Target) -> Measurement:
    deadline = target.budget()
    probe = target.open()
    try:
        _login(target, probe, deadline)
        probe.session.send(BARE_LF_WRITE)
        first = probe.session.read_reply(False, deadline)
        second = probe.session.read_reply(False, deadline)
        for n, reply in ((1, first), (2, second)):
            if reply.status is None:
                raise _Unavailable(f"reply {n} to {show_bytes(BARE_LF_WRITE)}: {_shape(reply)}")
        stat = second.status
        if stat is not None and stat.looks_positive and _STAT_REPLY.match(stat.raw):
            sentinel = probe.session.read_reply(False, deadline)
            if sentinel.status is None:
                raise _Unavailable(f"no reply to the sentinel NOOP: {_shape(sentinel)}")
            return _BARE_LF_SPEC.result(
                MeasurementOutcome.MEASURED,
                2,
                f"a bare LF ended 'NOOP' ({_shape(first)}), STAT ran ({_shape(second)}): "
                "lenient, RFC 1939 §3 ends commands with CRLF",
            )
        return _BARE_LF_SPEC.result(
            MeasurementOutcome.MEASURED,
            1,
            f"'NOOP<LF>STAT' was one line, answered {_shape(first)}",
        )
    finally:
        probe.session.close()


# --------------------------------------------------------------------------
# info.connections-per-address


def _connections_per_address(target: _Target) -> Measurement:
    held: list[ProbeSession] = []
    refused = ""
    try:
        while len(held) < MAX_CONNECTIONS:
            try:
                held.append(target.open())
            except _Unavailable as why:
                refused = str(why)
                break
    finally:
        for probe in held:
            probe.session.close()
    if not held:
        raise _Unavailable(refused)  # not even one: nothing about a limit is known
    try:
        target.open().session.close()
        recovered = "a new connection after closing them all was greeted"
    except _Unavailable as why:
        recovered = f"a new connection after closing them all failed too: {why}"
    if refused:
        return _CONNECTIONS_SPEC.result(
            MeasurementOutcome.MEASURED,
            len(held),
            f"connection {len(held) + 1}: {refused}; {recovered}",
        )
    return _CONNECTIONS_SPEC.result(
        MeasurementOutcome.AT_LEAST,
        MAX_CONNECTIONS,
        f"all {MAX_CONNECTIONS} held at once were greeted; {recovered}",
    )
