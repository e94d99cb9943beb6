"""Helpers shared by the SMTP reference server tests (imported by name, like
pop3_testlib)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from reference_server.pop3.protocol import UserDirectory
from reference_server.smtp.delivery import Deliverer
from reference_server.smtp.protocol import SmtpConfig, SmtpSession
from reference_server.store.maildrop import MaildirStore

DOMAIN = "example.test"
PASSWORD = "s3cret word"
TRACE_HEADERS = re.compile(
    rb"\AReturn-Path: <[^>\r\n]*>\r\nReceived: [^\r\n]*(?:\r\n\t[^\r\n]*)*\r\n"
)


def plain_credentials(user: str = "alice", password: str = PASSWORD) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def strip_trace_headers(stored: bytes) -> bytes:
    """The message as the client sent it: the two prepended trace fields removed."""
    match = TRACE_HEADERS.match(stored)
    assert match, f"no Return-Path/Received prefix in {stored[:200]!r}"
    return stored[match.end() :]


def stored_messages(root: Path, user: str) -> list[bytes]:
    new = root / user / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []


class SmtpConversation:
    """Drives an SmtpSession directly; replies split into (code, text) lines."""

    def __init__(self, root: Path, config: SmtpConfig | None = None, *, tls: bool = False) -> None:
        self.root = root
        self.store = MaildirStore(str(root / "{user}"))
        self.users = UserDirectory({"alice": PASSWORD, "bob": "bobpw"})
        self.session = SmtpSession(
            Deliverer(self.store),
            self.users,
            config or SmtpConfig(domain=DOMAIN, starttls_available=True, auth_without_tls=True),
            peer="127.0.0.1:40000",
            tls=tls,
        )
        self.greeting = self.session.greeting()

    def raw(self, data: bytes) -> bytes:
        return self.session.receive_data(data)

    def send(self, command: str | bytes) -> bytes:
        data = command.encode() if isinstance(command, str) else command
        return self.raw(data + b"\r\n")

    def code(self, command: str | bytes) -> int:
        return codes(self.send(command))[0]

    def ehlo(self) -> None:
        assert self.code("EHLO client.test") == 250

    def transaction(self, recipient: str = f"alice@{DOMAIN}") -> None:
        self.ehlo()
        assert self.code("MAIL FROM:<sender@client.test>") == 250
        assert self.code(f"RCPT TO:<{recipient}>") == 250

    def messages(self, user: str = "alice") -> list[bytes]:
        return stored_messages(self.root, user)


def codes(replies: bytes) -> list[int]:
    """The code of each reply in a run of replies (continuation lines skipped)."""
    found = []
    for line in replies.split(b"\r\n"):
        if line and line[3:4] != b"-":
            found.append(int(line[:3]))
    return found
