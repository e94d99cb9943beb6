"""Helpers shared by the reference server tests (imported by name: pytest puts
this directory on sys.path, as for tests/cli/cli_testlib.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from reference_server.pop3.protocol import Pop3Session

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret word"
APOP_USER = "carol"  # logs in by APOP only (RFC 1939 section 13)


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
        host, _, port = self.ready_line[len(prefix) :].strip().rpartition(":")
        self.host, self.port = host, int(port)

    def stop(self, stop_signal: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Signal the server; returns exit status, the rest of stdout, and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
        stdout, stderr = self.process.communicate(timeout=10)
        return self.process.returncode, stdout.decode(), stderr.decode()

    def kill(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=10)
