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
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from reference_server import event_loop
from reference_server.fixture_store import FixtureMaildirs
from reference_server.pop3.server import Pop3Server, ServerHandle, start_server
from reference_server.store.maildrop import MaildropStore
from reference_server.users import LoginMethod, UserDirectory

# The SMTP modules are imported where SMTP is served: a POP3-only server
# (the embedded default of a POP3 run) starts without them (tens of ms).
if TYPE_CHECKING:
    from reference_server.smtp.server import SmtpServer, SmtpServerHandle

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
    parser.add_argument(
        "--smtp-refuse-sessions",
        action="store_true",
        help="SMTP greets every client with 554 and serves only QUIT (RFC 5321 section 3.1)",
    )


def smtp_server_for(
    arguments: argparse.Namespace, store: MaildropStore, users: UserDirectory
) -> SmtpServer | None:
    if not arguments.smtp_listen:
        return None
    from reference_server.smtp.protocol import SmtpConfig
    from reference_server.smtp.server import SmtpServer, SmtpSettings

    config = SmtpConfig(
        domain=arguments.smtp_domain, refuse_sessions=arguments.smtp_refuse_sessions
    )
    settings = SmtpSettings(config=config)
    return SmtpServer(store, users, settings=settings)


async def serve(
    pop3: Pop3Server, pop3_address: object, smtp: SmtpServer, arguments: argparse.Namespace
) -> None:
    """Both listeners on this loop; ready lines once both listen."""
    from reference_server.cli import READY_LINE_PREFIX as POP3_READY_LINE_PREFIX
    from reference_server.cli import ConfigurationError, ListenAddress, parse_listen
    from reference_server.smtp.server import READY_LINE_PREFIX as SMTP_READY_LINE_PREFIX

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
    event_loop.log_running_loop()
    await stop.wait()
    logging.getLogger("reference_server.pop3.server").info("event=shutdown")
    await asyncio.gather(pop3.close(), smtp.close())


class ReferenceMailServer(FixtureMaildirs):
    """POP3 and SMTP over one Maildir store: the object behind ``mail_server``.

    SMTP accepts recipients in any domain (``alice@anything``) whose local
    part is a user added with :meth:`add_user`, and offers AUTH PLAIN/LOGIN
    without TLS (loopback only)."""

    def __init__(self, root: Path) -> None:
        from reference_server.smtp.protocol import SmtpConfig
        from reference_server.smtp.server import start_smtp_server

        super().__init__(root)
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
        self._create_user(name, password, LoginMethod.PASS)

    def close(self) -> None:
        self._smtp.close()
        self._pop3.close()
