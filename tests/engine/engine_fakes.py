"""Test doubles for the engine: a scripted loopback POP3 server that replays
given bytes per command (and can stall, close, reset or flood), and helpers
to run scenario text through `Runner` against it."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from conformance.core.config import RunConfig
from conformance.core.fixture import Account, Fixture, FixtureMessage
from conformance.core.results import Direction, ScenarioResult
from conformance.core.scenario import load_scenario_file
from conformance.pop3.engine import Runner


class Action:
    """What the server does instead of sending bytes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


STALL = Action("STALL")  # never answer (keep the connection open)
CLOSE = Action("CLOSE")  # orderly close
RESET = Action("RESET")  # close with RST
FLOOD_LINE = Action("FLOOD_LINE")  # send octets without LF, forever
FLOOD_BODY = Action("FLOOD_BODY")  # +OK then body lines, forever


@dataclass(frozen=True)
class SendThenClose:
    """Send these bytes, then close the connection."""

    data: bytes


@dataclass(frozen=True)
class Trickle:
    """Send `head`, then `tail` one octet at a time, `interval` seconds apart,
    over and over (a server that is slow on purpose, or broken)."""

    head: bytes
    tail: bytes
    interval: float = 0.05


Reply = bytes | Action | SendThenClose | Trickle | list  # a list: one per use, the last repeats


MESSAGE_ONE = FixtureMessage("one.eml", b"Subject: one\r\n\r\nfirst line\r\n.dot line\r\n")
MESSAGE_TWO = FixtureMessage("two.eml", b"Subject: two\n\nbare LF body\n")


def small_fixture() -> Fixture:
    """main: two messages; empty: none; spare1: one message."""
    return Fixture(
        "test-fixture",
        {
            "main": Account("main", "alice", "alice-secret", (MESSAGE_ONE, MESSAGE_TWO)),
            "empty": Account("empty", "bob", "bob-secret", ()),
            "spare1": Account("spare1", "carol", "carol-secret", (MESSAGE_ONE,)),
        },
    )


def stuffed(wire: bytes) -> bytes:
    lines = wire.split(b"\r\n")[:-1]
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


def correct_replies(fixture: Fixture, role: str = "main") -> dict[str, Reply]:
    """Replies a correct server gives for `role` (one account at a time)."""
    account = fixture.accounts[role]
    replies: dict[str, Reply] = {
        f"USER {account.user}": b"+OK\r\n",
        f"PASS {account.password}": b"+OK logged in\r\n",
        "STAT": f"+OK {account.count} {account.size}\r\n".encode(),
        "LIST": b"+OK\r\n"
        + b"".join(f"{i} {m.octets}\r\n".encode() for i, m in enumerate(account.messages, 1))
        + b".\r\n",
        "NOOP": b"+OK\r\n",
        "QUIT": b"+OK bye\r\n",
        "CAPA": b"+OK\r\nUSER\r\nTOP\r\nUIDL\r\n.\r\n",
        "UIDL": b"+OK\r\n"
        + b"".join(f"{i} uid-{i}\r\n".encode() for i in range(1, account.count + 1))
        + b".\r\n",
    }
    for i, message in enumerate(account.messages, 1):
        replies[f"RETR {i}"] = (
            f"+OK {message.octets} octets\r\n".encode() + stuffed(message.wire) + b".\r\n"
        )
        replies[f"LIST {i}"] = f"+OK {i} {message.octets}\r\n".encode()
        replies[f"TOP {i} 0"] = b"+OK\r\n" + stuffed(message.header) + b".\r\n"
    replies["RSET"] = b"+OK\r\n"
    return replies


@dataclass
class ScriptedServer:
    """Loopback server: greets, then answers each received line from
    `replies` (exact line first, then the upper-cased verb), else `default`.
    `QUIT` closes after its reply. Threads only; stop() ends everything."""

    replies: dict[str, Reply] = field(default_factory=dict)
    greeting: Reply = b"+OK scripted POP3 ready <1.2@test>\r\n"
    default: Reply = b"-ERR unknown command\r\n"
    received: list[bytes] = field(default_factory=list)
    connections: int = 0
    #: Asked first for each line: (the line as received, CRLF included; a
    #: dict of this connection's own) -> a reply, or None for the table.
    rule: Callable[[bytes, dict[str, int]], Reply | None] | None = None

    def __post_init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> ScriptedServer:
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for sock in [self._listener, *self._sockets]:
                for end in (lambda s: s.shutdown(socket.SHUT_RDWR), lambda s: s.close()):
                    try:
                        end(sock)
                    except OSError:
                        pass
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._sockets.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        try:
            if not self._perform(conn, self.greeting):
                return
            buffer = b""
            state: dict[str, int] = {}
            while not self._stopping.is_set():
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    raw = line + b"\n"
                    line = line.rstrip(b"\r")
                    self.received.append(line)
                    text = line.decode("latin-1")
                    reply = self.rule(raw, state) if self.rule is not None else None
                    if reply is None:
                        reply = self.replies.get(text)
                    if reply is None:
                        verb = text.split(" ")[0].upper() if text else ""
                        reply = self.replies.get(verb, self.default)
                    if not self._perform(conn, reply):
                        return
                    if text.upper() == "QUIT":
                        conn.shutdown(socket.SHUT_RDWR)
                        return
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _perform(self, conn: socket.socket, reply: Reply) -> bool:
        """Send or act; False when the connection is finished."""
        if isinstance(reply, list):
            with self._lock:
                reply = reply.pop(0) if len(reply) > 1 else reply[0]
        if isinstance(reply, bytes):
            conn.sendall(reply)
            return True
        if isinstance(reply, SendThenClose):
            conn.sendall(reply.data)
            conn.shutdown(socket.SHUT_RDWR)
            return False
        if isinstance(reply, Trickle):
            conn.sendall(reply.head)
            deadline = time.monotonic() + 30
            while not self._stopping.is_set() and time.monotonic() < deadline:
                for octet in reply.tail:
                    conn.sendall(bytes([octet]))
                    if self._stopping.wait(reply.interval):
                        return False
            return False
        if reply is STALL:
            self._stopping.wait(60)
            return False
        if reply is CLOSE:
            conn.shutdown(socket.SHUT_RDWR)
            return False
        if reply is RESET:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        chunk = b"x" * 65536 if reply is FLOOD_LINE else b"flood body line\r\n" * 4096
        if reply is FLOOD_BODY:
            conn.sendall(b"+OK here it comes\r\n")
        deadline = time.monotonic() + 30
        while not self._stopping.is_set() and time.monotonic() < deadline:
            conn.sendall(chunk)
        return False


@contextmanager
def scripted(replies: dict[str, Reply] | None = None, **kwargs: object) -> Iterator[ScriptedServer]:
    base = correct_replies(small_fixture())
    base.update(replies or {})
    server = ScriptedServer(replies=base, **kwargs)  # type: ignore[arg-type]
    with server:
        yield server


def config_for(server: ScriptedServer, **overrides: object) -> RunConfig:
    """A config for the scripted server: no probing, no provisioning."""
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "provision": "none",
        "capabilities": ["USER", "TOP", "UIDL", "CAPA"],
        "read_timeout": 2.0,
        "auth_timeout": 2.0,
        # scripted servers count connections and lines: no INFO measurements
        # unless a test asks (tests/engine/test_measurements.py)
        "measure": False,
    }
    values.update(overrides)
    return RunConfig(**values)  # type: ignore[arg-type]


def steps(*items: str) -> str:
    """Step lines for `run_text`: "C: NOOP" is a step; "  timeout: 1" (two
    leading spaces) a modifier of the step before."""
    return "".join(f"      {i}\n" if i.startswith("  ") else f"      - {i}\n" for i in items)


SCENARIO_HEADER = """\
section: "test section"
scenarios:
  - id: test.case
    title: a test case
    requirements: [POP3-1939-STAT-01]
"""


def scenario_file(tmp_path: Path, body: str, *, level: str = "MUST", extra: str = "") -> Path:
    """One scenario: `body` is its steps (YAML list items at 6 spaces)."""
    text = SCENARIO_HEADER + f"    level: {level}\n" + extra + "    steps:\n" + body
    path = tmp_path / "case.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run_text(
    tmp_path: Path,
    server: ScriptedServer,
    steps: str,
    *,
    level: str = "MUST",
    extra: str = "",
    **config: object,
) -> ScenarioResult:
    (scenario,) = load_scenario_file(scenario_file(tmp_path, steps, level=level, extra=extra))
    with Runner(config_for(server, **config), fixture=small_fixture()) as runner:
        return runner.run(scenario)


def client_bytes(result: ScenarioResult) -> bytes:
    return b"".join(e.data for e in result.transcript if e.direction is Direction.CLIENT)


def transcript_bytes(result: ScenarioResult) -> bytes:
    return b"".join(e.data for e in result.transcript)


def elapsed(action: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    value = action()
    return value, time.monotonic() - started
