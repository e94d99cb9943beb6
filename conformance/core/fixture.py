"""The mailbox fixture: accounts and messages a run starts from.

A fixture is a directory with `fixture.yaml` and message files. It is the
suite's knowledge of what a correctly provisioned target holds: scenarios
compare what the server sends against it, and provisioners write it into a
target's store. Sizes here are the sizes RFC 1939 §11 asks servers to
report: the message as sent, with every line end as CRLF, without the
byte-stuffing dots and without the terminating line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

import yaml

ROLES_REQUIRED = ("main", "empty")
LARGE_MESSAGE_OCTETS = 1_100_000  # issue: "one >= 1 MB" message


class FixtureError(Exception):
    """The fixture directory is malformed; the message names file and field."""


def to_crlf(raw: bytes) -> bytes:
    """Every line end as CRLF (bare LF and bare CR both become CRLF)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class FixtureMessage:
    name: str
    raw: bytes  # as stored on disk: may use LF, may lack a final newline
    #: Delivered in the same second as the message before it in its account
    #: (`same_second: true`): servers that derive UIDs or order from the
    #: delivery time must still tell the two apart (RFC 1939 §7 UIDL).
    same_second: bool = False

    @cached_property
    def wire(self) -> bytes:
        """The content as a server must send it, unstuffed: CRLF line ends,
        and a final CRLF appended when the stored message lacks one."""
        crlf = to_crlf(self.raw)
        return crlf if crlf.endswith(b"\r\n") or not crlf else crlf + b"\r\n"

    @property
    def octets(self) -> int:
        return len(self.wire)

    @cached_property
    def accepted_octets(self) -> frozenset[int]:
        """Sizes a server may report: with or without the CRLF it appends to a
        message that has no final newline (verdict-principles 13)."""
        return frozenset({self.octets, len(to_crlf(self.raw))})

    @property
    def header(self) -> bytes:
        """Header section including the empty separator line (CRLF form)."""
        head, sep, _ = self.wire.partition(b"\r\n\r\n")
        return head + sep if sep else self.wire

    @property
    def body(self) -> bytes:
        _, sep, rest = self.wire.partition(b"\r\n\r\n")
        return rest if sep else b""

    def top(self, lines: int) -> bytes:
        """What `TOP msg lines` must return (RFC 1939 §7)."""
        body_lines = self.body.split(b"\r\n")[:-1] if self.body else []
        kept = body_lines[:lines]
        return self.header + b"".join(line + b"\r\n" for line in kept)


LOGIN_METHODS = ("pass", "apop")


@dataclass(frozen=True)
class Account:
    role: str
    user: str
    password: str
    messages: tuple[FixtureMessage, ...] = field(default_factory=tuple)
    #: How the account logs in: "pass" (USER/PASS) or "apop". RFC 1939 §13
    #: recommends one method per user, so servers may refuse the other one.
    login: str = "pass"

    @property
    def count(self) -> int:
        return len(self.messages)

    @cached_property
    def size(self) -> int:
        return sum(m.octets for m in self.messages)


@dataclass(frozen=True)
class Fixture:
    source: str
    accounts: dict[str, Account]

    def account(self, role: str) -> Account:
        try:
            return self.accounts[role]
        except KeyError:
            known = ", ".join(sorted(self.accounts))
            raise FixtureError(
                f"{self.source}: no account role {role!r} (known: {known})"
            ) from None


def generate_large_message(octets: int = LARGE_MESSAGE_OCTETS) -> bytes:
    """A deterministic message of at least `octets` octets (CRLF form).

    Lines vary in length, every 97th line starts with '.', so stuffing is
    exercised deep inside a large transfer. Line n is its number and 20 + n
    mod 45 hex digits, taken in turn from one SHAKE-256 stream: one hash for
    the whole message (a hash a line cost ~20 ms a run), and a stream longer
    than the digits can use (every line adds its digits and >= 9 octets)."""
    head = (
        b"From: Sender <sender@mailspec.test>\r\n"
        b"To: Main <msmain@mailspec.test>\r\n"
        b"Subject: large message\r\n"
        b"Date: Sat, 28 Nov 2026 00:00:07 +0000\r\n"
        b"Message-ID: <large.7@mailspec.test>\r\n\r\n"
    )
    digits = hashlib.shake_256(b"mailspec large message").hexdigest(octets // 2 + 1)
    lines = []
    size = len(head)
    n = position = 0
    while size < octets:
        n += 1
        width = 20 + n % 45
        stuffing = "." if n % 97 == 0 else ""
        line = f"{stuffing}{n:06d} {digits[position : position + width]}\r\n"
        position += width
        lines.append(line)
        size += len(line)
    return head + "".join(lines).encode("ascii")


GENERATORS = {"large": generate_large_message}
#: Delivery time of message 1 written by the file provisioners; message n is
#: delivered n - 1 seconds later, unless it shares its predecessor's second.
DELIVERY_EPOCH = 1_700_000_001


def delivery_seconds(messages: Sequence[FixtureMessage]) -> list[int]:
    """The delivery time (Unix seconds) of each message of an account, in
    order: one second apart, except that a `same_second` message shares the
    second of the message before it. Never decreasing, so names built from
    it with the message number appended still sort in fixture order."""
    seconds: list[int] = []
    for index, message in enumerate(messages):
        if message.same_second and seconds:
            seconds.append(seconds[-1])
        else:
            seconds.append(DELIVERY_EPOCH + index)
    return seconds


def default_fixture_dir() -> Path:
    return Path(str(resources.files("conformance") / "data" / "fixtures" / "default"))


def load_fixture(directory: str | os.PathLike[str] | None = None) -> Fixture:
    base = Path(directory) if directory else default_fixture_dir()
    spec_path = base / "fixture.yaml"
    try:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FixtureError(f"{spec_path}: cannot read fixture: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise FixtureError(f"{spec_path}: not valid YAML: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("accounts"), dict):
        raise FixtureError(f"{spec_path}: field 'accounts' must be a mapping of role -> account")
    accounts: dict[str, Account] = {}
    users: set[str] = set()
    for role, entry in spec["accounts"].items():
        where = f"{spec_path}: accounts.{role}"
        if not isinstance(entry, dict):
            raise FixtureError(f"{where}: must be a mapping with user, password, messages")
        unknown = set(entry) - {"user", "password", "messages", "login"}
        if unknown:
            raise FixtureError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        for key in ("user", "password"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise FixtureError(f"{where}.{key}: required non-empty string")
        if entry["user"] in users:
            raise FixtureError(f"{where}.user: {entry['user']!r} used by two roles")
        users.add(entry["user"])
        login = entry.get("login", "pass")
        if login not in LOGIN_METHODS:
            raise FixtureError(f"{where}.login: expected one of {', '.join(LOGIN_METHODS)}")
        messages = []
        for i, item in enumerate(entry.get("messages") or [], start=1):
            messages.append(_load_message(base, item, f"{where}.messages[{i}]"))
        accounts[str(role)] = Account(
            str(role), entry["user"], entry["password"], tuple(messages), login
        )
    for role in ROLES_REQUIRED:
        if role not in accounts:
            raise FixtureError(f"{spec_path}: accounts.{role}: required role missing")
    return Fixture(str(spec_path), accounts)


def _load_message(base: Path, item: object, where: str) -> FixtureMessage:
    if isinstance(item, str):
        return _read_message(base, item, where)
    if isinstance(item, dict) and "file" in item:
        unknown = set(item) - {"file", "same_second"}
        if unknown:
            raise FixtureError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        if not isinstance(item["file"], str) or not item["file"]:
            raise FixtureError(f"{where}.file: required non-empty string")
        same_second = item.get("same_second", False)
        if not isinstance(same_second, bool):
            raise FixtureError(f"{where}.same_second: expected true or false")
        if same_second and where.endswith(".messages[1]"):
            raise FixtureError(f"{where}.same_second: the first message has no predecessor")
        message = _read_message(base, item["file"], where)
        return dataclasses.replace(message, same_second=same_second)
    if isinstance(item, dict) and set(item) == {"generate"}:
        kind = item["generate"]
        if kind not in GENERATORS:
            raise FixtureError(f"{where}.generate: unknown generator {kind!r}")
        return FixtureMessage(f"generated-{kind}", GENERATORS[kind]())
    raise FixtureError(
        f"{where}: expected a file name, {{file: NAME, same_second: BOOL}} or {{generate: KIND}}"
    )


def _read_message(base: Path, name: str, where: str) -> FixtureMessage:
    path = base / name
    try:
        return FixtureMessage(name, path.read_bytes())
    except OSError as exc:
        raise FixtureError(f"{where}: cannot read {path}: {exc.strerror}") from None


def write_maildir(root: str | os.PathLike[str], messages: tuple[FixtureMessage, ...]) -> None:
    """Replace the Maildir at `root` with `messages`, byte-exact, in order.

    File names sort in fixture order (servers number Maildir messages by
    name); each file is written to tmp/ and renamed into new/ (the Maildir
    delivery protocol), so a reader never sees a partial message."""
    root = Path(root)
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for old in (root / sub).iterdir():
            if old.is_file():
                old.unlink()
    seconds = delivery_seconds(messages)
    for index, message in enumerate(messages, start=1):
        name = f"{seconds[index - 1]}.M{index:06d}P0.mailspec"
        tmp = root / "tmp" / name
        tmp.write_bytes(message.raw)
        os.replace(tmp, root / "new" / name)
