"""asyncio transport around the sans-I/O SMTP core, and an in-process starter.

:class:`SmtpServer` runs on an event loop you own; :func:`start_smtp_server`
runs one on a background thread for plain, non-async tests::

    with start_smtp_server(store="maildir:/tmp/m/{user}", users={"alice": "pw"},
                           domain="example.test") as handle:
        smtplib.SMTP(handle.host, handle.port)

TLS is the standard library's :mod:`ssl`: with ``tls_context`` the server
offers STARTTLS (RFC 3207) on its plain listener, and :meth:`SmtpServer.listen`
with ``implicit_tls=True`` opens an smtps listener (RFC 8314 section 3.3)
where the handshake comes before the greeting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reference_server.background import BackgroundServerHandle
from reference_server.smtp.delivery import Deliverer
from reference_server.smtp.protocol import DEFAULT_COMMAND_TIMEOUT_SECONDS, SmtpConfig, SmtpSession
from reference_server.store.maildrop import MaildropStore, store_from_spec
from reference_server.users import UserDirectory, load_users_file

#: The line the command lines print once a listener is open.
READY_LINE_PREFIX = "mailspec-reference-smtp-server listening on"
#: Octets requested per read; lines and messages are bounded in the session.
READ_CHUNK_OCTETS = 65536
LISTEN_BACKLOG = 1024
#: How long a TLS handshake may take before the connection is dropped.
TLS_HANDSHAKE_SECONDS = 30.0

log = logging.getLogger("reference_server.smtp.server")


@dataclass
class SmtpSettings:
    command_timeout_seconds: float = DEFAULT_COMMAND_TIMEOUT_SECONDS
    config: SmtpConfig = field(default_factory=SmtpConfig)
    tls_context: ssl.SSLContext | None = None


class SmtpServer:
    """Accepts connections and runs one ``session_class`` per connection."""

    def __init__(
        self,
        store: MaildropStore,
        users: UserDirectory,
        *,
        session_class: type[SmtpSession] = SmtpSession,
        settings: SmtpSettings | None = None,
    ) -> None:
        self.store = store
        self.users = users
        self.deliverer = Deliverer(store)
        self.session_class = session_class
        self.settings = settings or SmtpSettings()
        self.settings.config.starttls_available = self.settings.tls_context is not None
        self._servers: list[asyncio.Server] = []
        self._session_numbers = itertools.count(1)
        self._connections: dict[asyncio.Task[None], SmtpSession] = {}

    async def listen(self, host: str, port: int, *, implicit_tls: bool = False) -> tuple[str, int]:
        if implicit_tls and self.settings.tls_context is None:
            raise ValueError("an smtps listener needs a TLS context")
        server = await asyncio.start_server(
            lambda r, w: self._serve_connection(r, w, implicit_tls),
            host,
            port,
            reuse_address=True,
            limit=READ_CHUNK_OCTETS,
            backlog=LISTEN_BACKLOG,
            ssl=self.settings.tls_context if implicit_tls else None,
            ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS if implicit_tls else None,
        )
        self._servers.append(server)
        bound_host, bound_port = server.sockets[0].getsockname()[:2]
        return bound_host, bound_port

    async def close(self) -> None:
        """Stop accepting; every open session gets 421 (RFC 5321 section 3.8)."""
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, implicit_tls: bool
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        session = self.session_class(
            self.deliverer,
            self.users,
            self.settings.config,
            session_id=f"smtp-{next(self._session_numbers)}",
            peer=f"{peer[0]}:{peer[1]}" if peer else "-",
            tls=implicit_tls,
        )
        self._connections[task] = session
        try:
            await self._converse(session, reader, writer)
        except asyncio.CancelledError:
            farewell = session.shutdown()
            try:
                writer.write(farewell)
                async with asyncio.timeout(1.0):
                    await writer.drain()
            except (ConnectionError, TimeoutError, RuntimeError):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass
        except Exception:
            log.exception("session=%s transport failure", session.session_id)
        finally:
            session.connection_lost()
            writer.close()
            self._connections.pop(task, None)

    async def _converse(
        self,
        session: SmtpSession,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        writer.write(session.greeting())
        await writer.drain()
        loop = asyncio.get_running_loop()
        timeout = self.settings.command_timeout_seconds
        deadline = loop.time() + timeout
        while not session.closed:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    data = await reader.read(READ_CHUNK_OCTETS)
            except TimeoutError:
                # RFC 5321 section 3.8: say 421 before closing on a timeout.
                writer.write(session.timeout())
                await writer.drain()
                return
            if not data:
                return
            # RFC 5321 section 4.5.3.2.7: the timer restarts on client activity.
            deadline = loop.time() + timeout
            session.feed(data)
            for response in session.replies():
                writer.write(response)
                await writer.drain()
            if session.tls_requested:
                await self._start_tls(session, reader, writer)

    async def _start_tls(
        self, session: SmtpSession, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Handshake after 220 to STARTTLS; whatever was read before is gone
        (the session discarded it) and the stream now reads decrypted octets."""
        context = self.settings.tls_context
        assert context is not None
        # Plaintext that arrived after STARTTLS but was not read yet is still
        # in the stream's buffer: drop it before the stream switches to TLS
        # (RFC 3207 section 4.2; no await in between, so nothing slips in).
        buffered: bytearray = reader._buffer  # type: ignore[attr-defined]
        buffered.clear()
        await writer.start_tls(context, ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS)
        session.tls_established()


class SmtpServerHandle(BackgroundServerHandle):
    """A server running on a background thread; see :func:`start_smtp_server`."""

    thread_name = "smtp-reference-server"

    def __init__(
        self,
        server: SmtpServer,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        smtps_port: int | None = None,
    ) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.smtps_port: int | None = None
        self._requested = (host, port, smtps_port)
        self._start_thread(port)

    async def _listen(self) -> None:
        host, port, smtps_port = self._requested
        self.host, self.port = await self.server.listen(host, port)
        if smtps_port is not None:
            _, self.smtps_port = await self.server.listen(host, smtps_port, implicit_tls=True)


def start_smtp_server(
    *,
    store: MaildropStore | str,
    users: UserDirectory | Mapping[str, str] | str | Path,
    domain: str = "example.test",
    session_class: type[SmtpSession] = SmtpSession,
    host: str = "127.0.0.1",
    port: int = 0,
    smtps_port: int | None = None,
    tls_context: ssl.SSLContext | None = None,
    command_timeout_seconds: float = DEFAULT_COMMAND_TIMEOUT_SECONDS,
    config: SmtpConfig | None = None,
) -> SmtpServerHandle:
    """Start an SMTP server on a background thread; ``port=0`` picks a free port.

    ``users`` is a :class:`UserDirectory` (kept live), a mapping of user to
    secret, or the path of a users file -- the POP3 server's format.
    """
    if isinstance(store, str):
        store = store_from_spec(store)
    if isinstance(users, (str, Path)):
        users = load_users_file(Path(users))
    elif not isinstance(users, UserDirectory):
        users = UserDirectory(users)
    settings = SmtpSettings(
        command_timeout_seconds=command_timeout_seconds,
        config=config or SmtpConfig(domain=domain),
        tls_context=tls_context,
    )
    server = SmtpServer(store, users, session_class=session_class, settings=settings)
    return SmtpServerHandle(server, host, port, smtps_port=smtps_port)
