"""pytest plugin: a ``pop3_server`` fixture for POP3 client developers.

One reference server runs per test session on a free loopback port; every
test gets it emptied (no users, no messages)::

    def test_my_client_downloads(pop3_server):
        pop3_server.add_user("alice", "secret")
        pop3_server.add_message("alice", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
        my_client.fetch(pop3_server.host, pop3_server.port, "alice", "secret")
        assert pop3_server.messages("alice") == []   # the client deleted it

The plugin is registered through the ``pytest11`` entry point
``mailspec_pop3_server``; nothing needs importing.  APOP is enabled (the
greeting carries a timestamp); a user logs in by USER/PASS, or by APOP when
added with ``add_user(name, secret, apop=True)`` (one method per user, as
RFC 1939 section 13 recommends).

``mail_server`` is the same with SMTP in front: POP3 and SMTP over one
store, so a message sent to ``mail_server.smtp_port`` is retrieved from
``mail_server.pop3_port`` (see :class:`reference_server.combined.ReferenceMailServer`).

TLS is on: STLS on ``port`` and implicit TLS (pop3s) on ``tls_port``, with a
certificate for ``localhost``, ``127.0.0.1`` and ``::1`` issued by a
throw-away ``trustme`` CA.  Clients trust it through ``client_context()``
(an :class:`ssl.SSLContext`) or the PEM file ``ca_file``::

    def test_my_client_over_pop3s(pop3_server):
        pop3_server.add_user("alice", "secret")
        client = poplib.POP3_SSL(pop3_server.host, pop3_server.tls_port,
                                 context=pop3_server.client_context())

SASL PLAIN, LOGIN, CRAM-MD5 and SCRAM-SHA-256 work for every user added.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from reference_server.combined import ReferenceMailServer
from reference_server.fixture_store import FixtureMaildirs
from reference_server.pop3.server import ServerHandle, start_server
from reference_server.tls import server_context
from reference_server.users import LoginMethod

#: Names the fixture's certificate is valid for.
CERTIFICATE_IDENTITIES = ("localhost", "127.0.0.1", "::1")


class ReferencePop3Server(FixtureMaildirs):
    """The object behind the ``pop3_server`` fixture."""

    def __init__(self, root: Path, tls_directory: Path | None = None) -> None:
        """``root`` holds the maildrops (emptied by :meth:`reset`); the TLS
        files go to ``tls_directory``, by default a new temporary directory."""
        if tls_directory is None:
            tls_directory = Path(tempfile.mkdtemp(prefix="pop3-tls-"))
        super().__init__(root)
        self.ca = trustme.CA()
        certificate = self.ca.issue_cert(*CERTIFICATE_IDENTITIES, common_name="localhost")
        self.ca_file = tls_directory / "ca.pem"
        self.cert_file = tls_directory / "server-chain.pem"
        self.key_file = tls_directory / "server-key.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        certificate.private_key_pem.write_to_path(str(self.key_file))
        for number, blob in enumerate(certificate.cert_chain_pems):
            blob.write_to_path(str(self.cert_file), append=number > 0)
        self._handle: ServerHandle = start_server(
            store=self.store,
            users=self.users,
            port=0,
            enable_apop=True,
            tls_context=server_context(self.cert_file, self.key_file),
            implicit_tls_port=0,
        )

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate (PEM) that signed the server's certificate."""
        return self.ca.cert_pem.bytes()

    def client_context(self) -> ssl.SSLContext:
        """A client context that verifies the server against the fixture's CA."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    @property
    def tls_port(self) -> int:
        """The implicit-TLS (pop3s, RFC 8314) port."""
        assert self._handle.tls_port is not None
        return self._handle.tls_port

    @property
    def host(self) -> str:
        return self._handle.host

    @property
    def port(self) -> int:
        return self._handle.port

    @property
    def address(self) -> tuple[str, int]:
        return self._handle.address

    def add_user(self, name: str, password: str, *, apop: bool = False) -> None:
        """Create (or re-key) a user with an empty maildrop if it has none.

        A user logs in by one method (RFC 1939 section 13): USER/PASS, or
        APOP with ``apop=True``."""
        self._create_user(name, password, LoginMethod.APOP if apop else LoginMethod.PASS)

    def close(self) -> None:
        self._handle.close()


@pytest.fixture(scope="session")
def pop3_server_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ReferencePop3Server]:
    """The session-wide server; prefer ``pop3_server``, which is reset per test."""
    server = ReferencePop3Server(
        tmp_path_factory.mktemp("pop3-maildrops"), tmp_path_factory.mktemp("pop3-tls")
    )
    yield server
    server.close()


@pytest.fixture
def pop3_server(pop3_server_session: ReferencePop3Server) -> ReferencePop3Server:
    """A running reference POP3 server with no users and no messages."""
    pop3_server_session.reset()
    return pop3_server_session


@pytest.fixture(scope="session")
def mail_server_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ReferenceMailServer]:
    """The session-wide POP3 + SMTP server; prefer ``mail_server``."""
    server = ReferenceMailServer(tmp_path_factory.mktemp("mail-maildrops"))
    yield server
    server.close()


@pytest.fixture
def mail_server(mail_server_session: ReferenceMailServer) -> ReferenceMailServer:
    """A running POP3 + SMTP server on one store, with no users and no messages."""
    mail_server_session.reset()
    return mail_server_session
