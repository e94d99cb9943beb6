"""Shared helpers for the reference server tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from reference_server.protocol import Pop3Session, SessionConfig, UserDirectory

# The fixture under test, imported here so these tests run even when the
# package is not installed (the pytest11 entry point then does not exist).
from reference_server.pytest_plugin import pop3_server, pop3_server_session  # noqa: F401
from reference_server.storage import MaildirStore, MaildropStore

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret word"


def write_maildir(root: Path, user: str, messages: Sequence[bytes]) -> Path:
    """Store messages as new/0001.test, new/0002.test ... (POP3 order = list order)."""
    maildir = root / user
    for subdirectory in ("cur", "new", "tmp"):
        (maildir / subdirectory).mkdir(parents=True, exist_ok=True)
    for number, content in enumerate(messages, start=1):
        (maildir / "new" / f"{number:04d}.test").write_bytes(content)
    return maildir


def maildir_names(maildir: Path) -> list[str]:
    return sorted(p.name for d in ("cur", "new") for p in (maildir / d).iterdir())


class Conversation:
    """Drives a Pop3Session directly, one command at a time."""

    def __init__(self, session: Pop3Session) -> None:
        self.session = session
        self.greeting = session.greeting()

    def send(self, command: str | bytes) -> bytes:
        raw = command.encode() if isinstance(command, str) else command
        return self.session.receive_data(raw + b"\r\n")

    def status(self, command: str | bytes) -> str:
        """The first reply line, without CRLF."""
        return self.send(command).split(b"\r\n", 1)[0].decode()

    def login(self, user: str = "alice", password: str = PASSWORD) -> None:
        assert self.status(f"USER {user}").startswith("+OK")
        reply = self.status(f"PASS {password}")
        assert reply.startswith("+OK"), reply


SAMPLE_MESSAGES = [
    b"Subject: one\r\n\r\nfirst body\r\n",
    b"Subject: two\n\n.leading dot\n.\nlast line\n",
    b"Subject: three\r\n\r\nline1\r\nline2\r\nno final newline",
]


@pytest.fixture
def maildir_root(tmp_path: Path) -> Path:
    root = tmp_path / "maildrops"
    root.mkdir()
    return root


@pytest.fixture
def store(maildir_root: Path) -> MaildropStore:
    write_maildir(maildir_root, "alice", SAMPLE_MESSAGES)
    write_maildir(maildir_root, "bob", [b"Subject: bob\r\n\r\nhi bob\r\n"])
    return MaildirStore(str(maildir_root / "{user}"))


@pytest.fixture
def users() -> UserDirectory:
    return UserDirectory({"alice": PASSWORD, "bob": "bobpw"})


@pytest.fixture
def converse(
    store: MaildropStore, users: UserDirectory
) -> Iterator[Callable[..., Conversation]]:
    """Factory of conversations; every session is closed at teardown."""
    sessions: list[Pop3Session] = []

    def make(config: SessionConfig | None = None, cls: type[Pop3Session] = Pop3Session):
        session = cls(store, users, config or SessionConfig(hostname="test.invalid"))
        sessions.append(session)
        return Conversation(session)

    yield make
    for session in sessions:
        session.connection_lost()


class LineClient:
    """A minimal blocking POP3 client over a real socket."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.greeting = self.readline()

    def readline(self) -> bytes:
        return self.file.readline(2048)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str) -> bytes:
        self.send(line.encode() + b"\r\n")
        return self.readline()

    def multiline(self) -> list[bytes]:
        lines = []
        while (line := self.readline()) != b".\r\n":
            assert line, "connection closed inside a multi-line reply"
            lines.append(line)
        return lines

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class ServerProcess:
    """``python -m reference_server`` as a subprocess, ready when it says so."""

    def __init__(self, *arguments: str) -> None:
        environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reference_server", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        )
        assert self.process.stdout is not None
        started = time.monotonic()
        self.ready_line = self.process.stdout.readline().decode()
        self.startup_seconds = time.monotonic() - started
        prefix = "mailspec-reference-server listening on "
        assert self.ready_line.startswith(prefix), (
            self.ready_line,
            self.process.stderr.read().decode() if self.process.stderr else "",
        )
        host, _, port = self.ready_line[len(prefix):].strip().rpartition(":")
        self.host, self.port = host, int(port)

    def stop(self) -> tuple[int, str, str]:
        """SIGTERM; returns exit status, the rest of stdout, and stderr."""
        if self.process.poll() is None:
            self.process.terminate()
        stdout, stderr = self.process.communicate(timeout=10)
        return self.process.returncode, stdout.decode(), stderr.decode()

    def kill(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=10)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(*arguments: str) -> ServerProcess:
        process = ServerProcess(*arguments)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.kill()


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    path.write_text(f"# test users\n\nalice:{PASSWORD}\nbob:bobpw\n")
    return path
