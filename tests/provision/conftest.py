"""Shared helpers for provisioner tests: the default fixture, a reference
POP3 server reading a Maildir tree, and an SMTP server delivering into it."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.core.fixture import Fixture, load_fixture

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
if str(REPOSITORY_ROOT) not in sys.path:  # importlib mode: make the repo importable
    sys.path.insert(0, str(REPOSITORY_ROOT))


@pytest.fixture(scope="session")
def fixture() -> Fixture:
    return load_fixture()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MaildirDelivery:
    """aiosmtpd handler: each recipient's local part names a Maildir under
    `root`; messages get a Received header and names that sort in arrival
    order (like a real MDA's)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.counter = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        trace = b"Received: from test by mailspec-test-smtpd; Sat, 28 Nov 2026 00:00:00 +0000\r\n"
        for rcpt in envelope.rcpt_tos:
            user = rcpt.split("@", 1)[0]
            maildir = self.root / user
            for sub in ("tmp", "new", "cur"):
                (maildir / sub).mkdir(parents=True, exist_ok=True)
            with self.lock:
                self.counter += 1
                name = f"{time.time_ns():020d}.{self.counter:06d}.smtp"
            (maildir / "tmp" / name).write_bytes(trace + data)
            os.replace(maildir / "tmp" / name, maildir / "new" / name)
        return "250 OK delivered"


@pytest.fixture
def mail_tree(tmp_path: Path) -> Path:
    root = tmp_path / "mail"
    root.mkdir()
    return root


@pytest.fixture
def pop3_target(mail_tree: Path, fixture: Fixture) -> Iterator[tuple[str, int]]:
    """The reference POP3 server on a free port, serving `mail_tree/{user}`
    with the fixture's accounts."""
    from reference_server.pop3.server import start_server
    from reference_server.store.maildrop import MaildirStore

    users = {a.user: a.password for a in fixture.accounts.values()}
    handle = start_server(store=MaildirStore(str(mail_tree / "{user}")), users=users, port=0)
    try:
        yield handle.host, handle.port
    finally:
        handle.close()


@pytest.fixture
def smtp_server(mail_tree: Path) -> Iterator[tuple[str, int]]:
    controller_mod = pytest.importorskip(
        "aiosmtpd.controller", reason="aiosmtpd not installed (pip install aiosmtpd)"
    )
    port = free_port()
    controller = controller_mod.Controller(
        MaildirDelivery(mail_tree), hostname="127.0.0.1", port=port
    )
    controller.start()
    try:
        yield "127.0.0.1", port
    finally:
        controller.stop()
