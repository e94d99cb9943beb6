"""One local mail server: POP3 and SMTP on one maildrop store, in one process.

A message submitted over SMTP is delivered into the maildrop the POP3 server
reads, so a client under test can send and then retrieve -- the split model
of mail (SMTP in, POP3 out).  Two ways to run it:

* ``python -m reference_server --listen HOST:PORT --smtp-listen HOST:PORT ...``
  (or ``mailspec serve ...``): both listeners on one event loop; stdout gets
  the POP3 ready line, then ``mailspec-reference-smtp-server listening on
  HOST:PORT``.
* :class:`ReferenceMailServer`, behind the ``mail_server`` pytest fixture:
  both servers on background threads over one temporary Maildir store.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from .protocol import UserDirectory
from .server import Pop3Server, ServerHandle, start_server
from .smtp.protocol import SmtpConfig
from .smtp.server import READY_LINE_PREFIX as SMTP_READY_LINE_PREFIX
from .smtp.server import SmtpServer, SmtpServerHandle, SmtpSettings, start_smtp_server
from .storage import MaildirStore, MaildropStore, check_user_name

if TYPE_CHECKING:
    pass

FIXTURE_DOMAIN = "example.test"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags ``python -m reference_server`` gains for SMTP."""
    parser.add_argument(
        "--smtp-listen",
        metavar="HOST:PORT",
        help="also serve SMTP on this address, delivering into the same store",
    )
    parser.add_argument(
        "--smtp-domain",
        default=FIXTURE_DOMAIN,
        help=f"SMTP server name and local recipients' domain (default {FIXTURE_DOMAIN})",
    )


def smtp_server_for(
    arguments: argparse.Namespace, store: MaildropStore, users: UserDirectory
) -> SmtpServer | None:
    if not arguments.smtp_listen:
        return None
    settings = SmtpSettings(config=SmtpConfig(domain=arguments.smtp_domain))
    return SmtpServer(store, users, settings=settings)


async def serve(
    pop3: Pop3Server, pop3_address: object, smtp: SmtpServer, arguments: argparse.Namespace
) -> None:
    """Both listeners on this loop; ready lines once both listen."""
    from .cli import READY_LINE_PREFIX as POP3_READY_LINE_PREFIX
    from .cli import ConfigurationError, ListenAddress, parse_listen

    assert isinstance(pop3_address, ListenAddress)
    smtp_address = parse_listen(arguments.smtp_listen)
    listening = []
    for server, address in ((pop3, pop3_address), (smtp, smtp_address)):
        try:
            listening.append(await server.listen(address.host, address.port))
        except OSError as problem:
            raise ConfigurationError(
                f"cannot listen on {address.host}:{address.port}: {problem.strerror or problem}"
            ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    (pop3_host, pop3_port), (smtp_host, smtp_port) = listening
    print(f"{POP3_READY_LINE_PREFIX} {pop3_host}:{pop3_port}", flush=True)
    print(f"{SMTP_READY_LINE_PREFIX} {smtp_host}:{smtp_port}", flush=True)
    await stop.wait()
    logging.getLogger("reference_server.server").info("event=shutdown")
    await asyncio.gather(pop3.close(), smtp.close())


class ReferenceMailServer:
    """POP3 and SMTP over one Maildir store: the object behind ``mail_server``.

    SMTP accepts recipients in any domain (``alice@anything``) whose local
    part is a user added with :meth:`add_user`, and offers AUTH PLAIN/LOGIN
    without TLS (loopback only)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.users = UserDirectory()
        self.store = MaildirStore(str(root / "{user}"))
        self._message_numbers = itertools.count(1)
        self._pop3: ServerHandle = start_server(
            store=self.store, users=self.users, port=0, enable_apop=True
        )
        try:
            self._smtp: SmtpServerHandle = start_smtp_server(
                store=self.store,
                users=self.users,
                port=0,
                config=SmtpConfig(domain=FIXTURE_DOMAIN, any_domain=True, auth_without_tls=True),
            )
        except BaseException:
            self._pop3.close()
            raise

    @property
    def host(self) -> str:
        return self._pop3.host

    @property
    def pop3_port(self) -> int:
        return self._pop3.port

    @property
    def smtp_port(self) -> int:
        return self._smtp.port

    @property
    def domain(self) -> str:
        return FIXTURE_DOMAIN

    def add_user(self, name: str, password: str) -> None:
        """Create (or re-key) a user with an empty maildrop if it has none."""
        check_user_name(name)
        self.store.prepare(self.store.path_for(name))
        self.users.set(name, password)

    def add_message(self, user: str, content: bytes | str) -> str:
        """Put a message straight into the maildrop (no SMTP); returns its UID."""
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
        """Stored bytes of ``user``'s messages in POP3 order, trace headers included."""
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

    def close(self) -> None:
        self._smtp.close()
        self._pop3.close()
