"""The maildrops behind the test-server fixtures (``pop3_server``,
``mail_server``): users and Maildirs under one root, written and read
directly, so a test can seed a mailbox and check what is left in it."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

from reference_server.store.maildrop import MaildirStore, check_user_name
from reference_server.users import LoginMethod, UserDirectory


class FixtureMaildirs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.users = UserDirectory()
        self.store = MaildirStore(str(root / "{user}"))
        self._message_numbers = itertools.count(1)

    def _create_user(self, name: str, password: str, method: LoginMethod) -> None:
        """Create (or re-key) a user with an empty maildrop if it has none."""
        check_user_name(name)
        self.store.prepare(self.store.path_for(name))
        self.users.set(name, password, method)

    def add_message(self, user: str, content: bytes | str) -> str:
        """Deliver one message straight into the maildrop (Maildir: tmp/ then
        new/); returns its UID. Messages keep the order added."""
        if isinstance(content, str):
            content = content.encode("utf-8")
        maildir = self.store.path_for(user)
        self.store.prepare(maildir)
        unique_name = f"{next(self._message_numbers):012d}.{os.getpid()}.mailspec"
        staging = maildir / "tmp" / unique_name
        staging.write_bytes(content)
        os.replace(staging, maildir / "new" / unique_name)
        return unique_name

    def messages(self, user: str) -> list[bytes]:
        """Stored bytes of the messages left in ``user``'s maildrop, in POP3
        order (trace headers of SMTP deliveries included)."""
        maildir = self.store.path_for(user)
        found = [
            (path.name, path)
            for subdirectory in ("cur", "new")
            if (maildir / subdirectory).is_dir()
            for path in (maildir / subdirectory).iterdir()
            if not path.name.startswith(".")
        ]
        return [path.read_bytes() for _, path in sorted(found)]

    def reset(self) -> None:
        """Remove every user and maildrop."""
        self.users.clear()
        for entry in self.root.iterdir():
            shutil.rmtree(entry, ignore_errors=True)
