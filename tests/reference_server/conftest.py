"""Fixtures for the reference server tests; helpers live in pop3_testlib.py."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pop3_testlib (importlib import mode)

from pop3_testlib import (
    APOP_USER,
    PASSWORD,
    SAMPLE_MESSAGES,
    Conversation,
    ServerProcess,
    write_maildir,
)

from reference_server.pop3.protocol import LoginMethod, Pop3Session, SessionConfig, UserDirectory

# The fixture under test, imported here so these tests run even when the
# package is not installed (the pytest11 entry point then does not exist).
from reference_server.pytest_plugin import (  # noqa: F401
    mail_server,
    mail_server_session,
    pop3_server,
    pop3_server_session,
)
from reference_server.store.maildrop import MaildirStore, MaildropStore


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
    directory = UserDirectory({"alice": PASSWORD, "bob": "bobpw"})
    directory.set(APOP_USER, PASSWORD, LoginMethod.APOP)
    return directory


@pytest.fixture
def store_spec(store: MaildirStore) -> str:
    return store.spec


@pytest.fixture
def converse(store: MaildropStore, users: UserDirectory) -> Iterator[Callable[..., Conversation]]:
    """Factory of conversations; every session is closed at teardown."""
    sessions: list[Pop3Session] = []

    def make(
        config: SessionConfig | None = None, cls: type[Pop3Session] = Pop3Session
    ) -> Conversation:
        session = cls(store, users, config or SessionConfig(hostname="test.invalid"))
        sessions.append(session)
        return Conversation(session)

    yield make
    for session in sessions:
        session.connection_lost()


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
    path.write_text(f"# test users\n\nalice:{PASSWORD}\nbob:bobpw\napop {APOP_USER}:{PASSWORD}\n")
    return path
