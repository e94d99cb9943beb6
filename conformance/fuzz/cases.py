"""The case grammar of `mailspec fuzz`: seeded generation of short POP3
conversations and their rendering as scenario steps (docs/fuzz.md).

A case starts in one protocol state (just greeted, after `USER`, or logged
in), sends one to three *probes* — a command line mutated with boundary
numbers, boundary lengths, control bytes, odd spacing; sometimes several
lines in one write (a pipelined burst) or one byte per write (a chopped
write) — and ends either by dropping the connection or with `QUIT`. Every
case is then judged by the oracles the scenario language offers: one
well-formed status per command line (framing oracle, unsolicited data),
no silence, `alive_or_closed`, `recover` and `mailbox_same`, and `-ERR`
where every conforming server must refuse (a wrong-state command, a
message number that can never exist: verdict-principles, "always a
finding").

Only `random.Random(seed)` drives generation: the same seed gives the same
cases, whatever the target answers."""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass, replace
from typing import Any

from conformance.core.scenario import AUTHENTICATING_WORD, command_is_multiline

CRLF = b"\r\n"

# -- boundary values -----------------------------------------------------------

#: Message numbers that can never name a message (0, negative, past any
#: 32-bit or 64-bit wrap, 400 digits): judged `-ERR` (RFC 1939 §5-7).
NEVER_VALID_NUMBERS = (
    "0",
    "-1",
    "-2147483648",
    "2147483648",
    "4294967295",
    "4294967296",
    "4294967297",
    "18446744073709551617",
    "9" * 400,
)
#: Numbers whose meaning is allowed to vary (leading zeros, signs, garbage):
#: sent, never judged by the refusal oracle (verdict-principles 8).
LENIENT_NUMBERS = ("01", "+1", "1x", "0x1", "1.0", "1_0", " 1", "")
#: Argument lengths around the limits: RFC 1939 §3's 40-octet argument,
#: RFC 2449 §4's 255-octet line, the 512-octet reply line, common buffers.
BOUNDARY_LENGTHS = (39, 40, 41, 250, 255, 256, 510, 512, 513, 1023, 1024, 1025, 8191, 8192, 8193)
SWEEP_LENGTHS = (40, 255, 256, 512, 513, 1024, 1025, 8192)
FORMAT_STRINGS = ("%s%s%s%s%n", "%x%p%d", "%.4096d", "%#123456x")
#: No bare LF and no empty line: a server may execute a line at LF or wait
#: for CRLF (verdict-principles 7) and may ignore empty lines (catalogue
#: R15), so how many replies are due would not be known.
CONTROL_BYTES = (b"\x00", b"\r", b"\t", b"\x1b", b"\x7f", b"\x80", b"\xff", b"\xfe\xfd")
UNKNOWN_KEYWORDS = ("XYZZY", "FOO", "ABCD", "X", "LISTX", "RETRR")

#: Commands the fuzzer sends in the middle of a case. QUIT ends a case and
#: is not in here; AUTH and STLS start exchanges that are not POP3 status
#: replies (a `+ ` continuation, a TLS handshake) and are left to the
#: security scenarios.
TRANSACTION_ONLY = ("STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL")
AUTHORIZATION_ONLY = ("USER", "PASS", "APOP")
VERBS = (*TRANSACTION_ONLY, *AUTHORIZATION_ONLY, "CAPA")
MESSAGE_NUMBER_VERBS = ("LIST", "RETR", "DELE", "TOP", "UIDL")

#: The requirement a refusal enforces.
WRONG_STATE_RULE = {
    "STAT": "POP3-1939-STAT-05",
    "LIST": "POP3-1939-LIST-09",
    "RETR": "POP3-1939-RETR-05",
    "DELE": "POP3-1939-DELE-06",
    "NOOP": "POP3-1939-NOOP-02",
    "RSET": "POP3-1939-RSET-03",
    "TOP": "POP3-1939-TOP-08",
    "UIDL": "POP3-1939-UIDL-14",
    "USER": "POP3-1939-AUTH-USER-05",
    "PASS": "POP3-1939-AUTH-PASS-06",
    "APOP": "POP3-1939-AUTH-APOP-08",
}
NO_SUCH_MESSAGE_RULE = {
    "LIST": "POP3-1939-LIST-08",
    "RETR": "POP3-1939-RETR-04",
    "DELE": "POP3-1939-DELE-04",
    "TOP": "POP3-1939-TOP-06",
    "UIDL": "POP3-1939-MSGNUM-01",
}
PASS_WITHOUT_USER_RULE = "POP3-1939-AUTH-PASS-01"
WRONG_PASSWORD_RULE = "POP3-1939-AUTH-PASS-03"
TOP_NEGATIVE_LINES_RULE = "POP3-1939-TOP-07"
SILENCE_RULE = "POP3-1939-RESP-01"  # every command gets a response
RECOVER_RULE = "POP3-1939-GREET-01"  # a new connection is greeted
NO_UPDATE_WITHOUT_QUIT = "POP3-1939-UPDATE-02"
UPDATE_REMOVES_ONLY_MARKED = "POP3-1939-UPDATE-04"


class Start(enum.StrEnum):
    GREETED = "greeted"  # AUTHORIZATION, nothing sent
    USER = "user"  # AUTHORIZATION after `USER <the account>`
    TRANSACTION = "transaction"  # logged in


class End(enum.StrEnum):
    DROP = "drop"  # close without QUIT: nothing may be removed (RFC 1939 §6)
    QUIT = "quit"  # only when no line could legitimately mark a message


@dataclass(frozen=True)
class Line:
    data: bytes  # as sent, line end included
    clean: bool  # a well-formed command line (its refusal can be judged)


@dataclass(frozen=True)
class Probe:
    lines: tuple[Line, ...]  # several: a pipelined burst in one write
    chop: bool = False  # one byte per write

    @property
    def data(self) -> bytes:
        return b"".join(line.data for line in self.lines)


@dataclass(frozen=True)
class Case:
    start: Start
    probes: tuple[Probe, ...]
    end: End

    def replace(self, **changes: Any) -> Case:
        return replace(self, **changes)


# -- generation ----------------------------------------------------------------


class Generator:
    """Seeded cases for one account (`user`, and its message `count`)."""

    def __init__(self, seed: int, user: str, count: int) -> None:
        self.rng = random.Random(seed)
        self.user = user
        self.count = count
        self._sweep = sweep(user, count)
        self.rng.shuffle(self._sweep)

    def case(self) -> Case:
        """The boundary sweep first (in a seeded order), then random cases."""
        if self._sweep:
            return self._sweep.pop()
        return self.random_case()

    def random_case(self) -> Case:
        rng = self.rng
        start = rng.choices(list(Start), weights=(3, 2, 5))[0]
        probes: list[Probe] = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            roll = rng.random()
            if roll < 0.15:
                probes.append(Probe(tuple(self.line(start) for _ in range(rng.randint(2, 4)))))
            else:
                probes.append(Probe((self.line(start),)))
        if probes and len(probes[-1].lines) == 1 and len(probes[-1].data) <= 64:
            if rng.random() < 0.15:  # a chopped write, always the last probe
                probes[-1] = replace(probes[-1], chop=True)
        end = End.QUIT if rng.random() < 0.4 and may_quit(probes) else End.DROP
        return Case(start, tuple(probes), end)

    def line(self, start: Start) -> Line:
        rng = self.rng
        roll = rng.random()
        if roll < 0.08:
            text = rng.choice(UNKNOWN_KEYWORDS) + rng.choice(("", " " + self.argument()))
        elif roll < 0.2 and start is not Start.TRANSACTION:
            text = rng.choice(TRANSACTION_ONLY) + rng.choice(("", " 1", " " + self.number()))
        elif roll < 0.3 and start is Start.TRANSACTION:
            text = rng.choice(AUTHORIZATION_ONLY) + " " + self.user
        elif roll < 0.55 and start is Start.TRANSACTION:
            verb = rng.choice(MESSAGE_NUMBER_VERBS)
            text = verb + " " + self.number() + (" 0" if verb == "TOP" else "")
        else:
            verb = rng.choice(VERBS)
            text = verb + self.arguments(verb)
        if rng.random() < 0.2:
            text = self.respell(text)
        data = text.encode("latin-1") + CRLF
        if rng.random() < 0.3:
            return Line(self.mutate(data), clean=False)
        return Line(data, clean=_is_clean(data))

    def arguments(self, verb: str) -> str:
        rng = self.rng
        if verb in ("STAT", "NOOP", "RSET", "CAPA"):
            return rng.choice(("", "", "", " " + self.argument()))
        if verb in ("LIST", "UIDL"):
            return rng.choice(("", " " + self.number(), " " + self.number()))
        if verb in ("RETR", "DELE"):
            return " " + self.number()
        if verb == "TOP":
            lines = rng.choice(("0", "1", "-1", "99999999", self.number()))
            return " " + self.number() + rng.choice((" " + lines, " " + lines, ""))
        if verb == "USER":
            return " " + rng.choice((self.user, self.argument()))
        if verb == "PASS":
            return rng.choice(("", " " + self.argument(), " x\tmaster_user=root"))
        return " " + rng.choice((self.user, self.argument())) + " " + self.argument()  # APOP

    def number(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:  # just outside the range: 0, -1, count + 1
            return rng.choice(("0", "-1", str(self.count + 1)))
        if roll < 0.6:  # past a 32- or 64-bit wrap, or 400 digits
            return rng.choice(NEVER_VALID_NUMBERS[2:])
        if roll < 0.9:
            return str(rng.randint(1, max(self.count, 1)))
        return rng.choice(LENIENT_NUMBERS).strip() or "1"

    def argument(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.45:
            return rng.choice("A9./%") * rng.choice(BOUNDARY_LENGTHS)
        if roll < 0.65:
            return rng.choice(FORMAT_STRINGS)
        if roll < 0.85:
            return self.number()
        return "x"

    def respell(self, text: str) -> str:
        """Spelling variants that conforming servers may treat either way."""
        rng = self.rng
        verb, _, rest = text.partition(" ")
        choice = rng.randrange(4)
        if choice == 0:
            return verb.lower() + (" " + rest if rest else "")
        if choice == 1:
            return verb + "  " + rest
        if choice == 2:
            return " " + text
        return verb + "\t" + rest

    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        body = data[:-2]
        choice = rng.randrange(6)
        if choice == 0:  # a control or 8-bit byte somewhere in the line
            at = rng.randint(0, len(body))
            body = body[:at] + rng.choice(CONTROL_BYTES) + body[at:]
            if body.endswith(b"\r"):  # CR CR LF would end in an empty-looking line
                body += b"x"
        elif choice == 1:  # a run of 8-bit bytes
            body += b" " + bytes(rng.randint(0x80, 0xFF) for _ in range(rng.choice((1, 40, 256))))
        elif choice == 2:  # TAB-separated tail
            body += b"\t" + body
        elif choice == 3:  # bare CR splitting a second command into the line
            return body + b"\r" + rng.choice((b"NOOP", b"CAPA", b"STAT")) + CRLF
        elif choice == 4:  # NUL then a tail that is a command of its own
            return body + b"\x00" + rng.choice((b"CAPA", b" x")) + CRLF
        else:  # a long tail without spaces
            body += b"A" * rng.choice(BOUNDARY_LENGTHS)
        return body + CRLF


def sweep(user: str, count: int) -> list[Case]:
    """Every boundary once, each where a server is most exposed (BED/Doona's
    templates, re-derived): message numbers after login, wrong-state
    commands in both AUTHORIZATION states, long lines and odd bytes as the
    first command, a burst and a chopped write."""

    def one(start: Start, *lines: bytes, end: End = End.DROP, chop: bool = False) -> Case:
        probes = tuple(Probe((Line(data, _is_clean(data)),), chop) for data in lines)
        return Case(start, probes, end if may_quit(probes) else End.DROP)

    numbers = ["0", "-1", str(count + 1), *NEVER_VALID_NUMBERS[2:]]
    numbers += [str(n) for n in range(1, count + 1)]
    cases = []
    for verb in MESSAGE_NUMBER_VERBS:
        suffix = " 0" if verb == "TOP" else ""
        cases += [
            one(Start.TRANSACTION, f"{verb} {n}{suffix}\r\n".encode(), end=End.QUIT)
            for n in numbers
        ]
    cases.append(one(Start.TRANSACTION, b"TOP 1 -1\r\n", end=End.QUIT))
    for start in (Start.GREETED, Start.USER):
        cases += [one(start, f"{verb} 1\r\n".encode(), end=End.QUIT) for verb in TRANSACTION_ONLY]
    cases.append(one(Start.GREETED, b"PASS x\r\n", end=End.QUIT))
    cases += [
        one(Start.TRANSACTION, f"{verb} {user}\r\n".encode(), end=End.QUIT)
        for verb in ("USER", "PASS")
    ]
    for length in SWEEP_LENGTHS:
        cases += [
            one(Start.GREETED, b"USER " + b"A" * length + CRLF),
            one(Start.USER, b"PASS " + b"A" * length + CRLF),
            one(Start.TRANSACTION, b"NOOP " + b"A" * length + CRLF),
            one(Start.GREETED, b"XYZZY " + b"A" * length + CRLF),
        ]
    for byte in CONTROL_BYTES:
        cases += [
            one(Start.GREETED, b"CA" + byte + b"PA\r\n"),
            one(Start.TRANSACTION, b"NOOP" + byte + b"\r\n"),
        ]
    cases += [
        one(Start.GREETED, b"CAPA\rNOOP\r\n"),
        one(Start.TRANSACTION, b"NOOP\rRSET\r\n"),
        one(Start.GREETED, b"USER a\x00b\r\n"),
        one(Start.TRANSACTION, b"DELE 1\x00x\r\n"),
        one(Start.GREETED, b"XYZZY\r\n"),
        one(Start.TRANSACTION, b"XYZZY\r\n"),
        one(Start.GREETED, b"USER %s%s%s%s%n%x%p%.4096d\r\n"),
        one(Start.GREETED, b"CAPA\r\n", chop=True),
        one(Start.TRANSACTION, b"RETR 2\r\n", chop=True),
        Case(
            Start.GREETED,
            (Probe(tuple(Line(d, True) for d in (b"CAPA\r\n", b"NOOP\r\n"))),),
            End.DROP,
        ),
        Case(
            Start.TRANSACTION,
            (Probe((Line(b"STAT\r\n", True), Line(b"RETR 2\r\n", True))),),
            End.DROP,
        ),
    ]
    return cases


def may_quit(probes: list[Probe] | tuple[Probe, ...]) -> bool:
    """QUIT may end the case only if no line could mark a message for
    deletion on a conforming server: every DELE is a clean line naming a
    message that can never exist."""
    for probe in probes:
        for line in probe.lines:
            if b"DELE" not in line.data.upper():
                continue
            if not (line.clean and _never_valid_number(_words(line)[1:2])):
                return False
    return True


def _is_clean(data: bytes) -> bool:
    """A command line as RFC 1939 §3 writes one: a keyword and single-space
    separated printable arguments, CRLF."""
    return re.fullmatch(rb"[A-Za-z]{3,4}( [\x21-\x7e]+)*\r\n", data) is not None


def _words(line: Line) -> list[str]:
    return line.data[:-2].decode("latin-1").split(" ")


def _never_valid_number(args: list[str], count: int | None = None) -> bool:
    if not args or not re.fullmatch(r"-?[0-9]+", args[0]):
        return False
    value = int(args[0])
    return value <= 0 or (count is not None and value > count) or value >= 2**31


# -- expectations ----------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    multiline: bool  # a positive reply carries a body
    refuse: str | None  # requirement: every conforming server answers -ERR


class _StateModel:
    """What is certain about the session state, line by line. Mutated lines
    cannot log in (the fuzzer never sends the password), so only these
    facts are tracked: logged in or not, and whether a USER may be pending."""

    def __init__(self, start: Start) -> None:
        self.transaction = start is Start.TRANSACTION
        self.user_maybe_pending = start is Start.USER

    def expect(self, line: Line, count: int) -> Expect:
        text = line.data.decode("latin-1")
        multiline = command_is_multiline(text)
        words = text[:-2].split(" ") if line.clean else []
        verb = words[0].upper() if words else ""
        refuse: str | None = None
        if line.clean and not self.transaction:
            if verb in TRANSACTION_ONLY:
                refuse = WRONG_STATE_RULE[verb]
            elif verb == "PASS":  # the fuzzer never sends the password
                refuse = WRONG_PASSWORD_RULE if self.user_maybe_pending else PASS_WITHOUT_USER_RULE
        elif line.clean and self.transaction:
            if verb in AUTHORIZATION_ONLY:
                refuse = WRONG_STATE_RULE[verb]
            elif verb in MESSAGE_NUMBER_VERBS and _never_valid_number(words[1:2], count):
                refuse = NO_SUCH_MESSAGE_RULE[verb]
            elif verb == "TOP" and len(words) == 3 and re.fullmatch(r"-[0-9]+", words[2]):
                refuse = TOP_NEGATIVE_LINES_RULE
        if not self.transaction:
            # any line may be a USER (accepted or not); PASS then ends it
            self.user_maybe_pending = verb == "USER" or not line.clean
        return Expect(multiline, refuse)


# -- rendering -------------------------------------------------------------------


def expectations(case: Case, count: int) -> list[list[Expect]]:
    model = _StateModel(case.start)
    return [
        [model.expect(line, count) for line in probe.lines for _ in range(line.data.count(b"\n"))]
        for probe in case.probes
    ]


def steps_of(case: Case, count: int) -> list[Any]:
    """The scenario steps of `case`."""
    steps: list[Any] = ["open", {"S": "+OK", "requirement": RECOVER_RULE}]
    if case.start is Start.USER:
        steps += [{"C": "USER {user}"}, {"S": ["+OK", "-ERR"]}]
    elif case.start is Start.TRANSACTION:
        steps.append("login")
    for probe, expects in zip(case.probes, expectations(case, count), strict=True):
        send: dict[str, Any] = {"send": send_text(probe.data)}
        if probe.chop:
            send.update(chop=1, pause=0)  # one octet per write, as fast as they go
        steps.append(send)
        for expect in expects:
            step: dict[str, Any]
            if expect.refuse:
                step = {"S": "-ERR", "requirement": expect.refuse}
            else:
                step = {"S": ["+OK", "-ERR"]}
                if expect.multiline:
                    step["multiline"] = True
            step["or_close"] = True
            steps.append(step)
    steps.append("alive_or_closed")
    if case.end is End.QUIT:
        steps += [{"C": "QUIT"}, {"S": ["+OK", "-ERR"]}]
    steps += ["drop", {"recover": None, "requirement": RECOVER_RULE}]
    sees_maildrop = any(AUTHENTICATING_WORD.search(p.data.decode("latin-1")) for p in case.probes)
    if case.start is not Start.GREETED or sees_maildrop:  # what Scenario.logs_in() finds
        rule = UPDATE_REMOVES_ONLY_MARKED if case.end is End.QUIT else NO_UPDATE_WITHOUT_QUIT
        steps.append({"mailbox_same": None, "requirement": rule})
    return steps


def requirements_of(steps: list[Any]) -> list[str]:
    found = [SILENCE_RULE]
    for step in steps:
        if isinstance(step, dict) and step.get("requirement") not in (None, *found):
            found.append(step["requirement"])
    return found


_RUN = re.compile(r"([A-Za-z0-9./%])\1{15,}")


def send_text(data: bytes) -> str:
    """The `send:` value for `data`: each octet one character (U+0000 to
    U+00FF), braces doubled, long runs of one printable character written
    as an expression (`{"A" * 1024}`) so a file stays readable."""
    text = data.decode("latin-1").replace("{", "{{").replace("}", "}}")
    return _RUN.sub(lambda m: '{"' + m.group(1) + '" * ' + str(len(m.group(0))) + "}", text)
