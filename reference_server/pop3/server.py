"""asyncio transport around the sans-I/O core, and an in-process starter.

:class:`Pop3Server` runs on an event loop you own (the CLI uses it);
:func:`start_server` runs one on a background thread so a plain, non-async
test can use it::

    with start_server(store="maildir:/tmp/m/{user}", users={"alice": "pw"},
                      session_class=BrokenSession) as handle:
        poplib.POP3(handle.host, handle.port)

TLS: with ``ServerSettings.tls_context`` set, STLS is offered on every
listener (RFC 2595) and :meth:`Pop3Server.listen` with ``implicit_tls=True``
adds a listener where TLS starts at connect (RFC 8314, pop3s).  When the
session answers STLS, the transport stops reading, drops whatever plaintext
it already buffered after the STLS line, sends the ``+OK`` and starts the
handshake with :meth:`asyncio.StreamWriter.start_tls`; bytes that arrive
where the ClientHello should be make the handshake, and the session, fail.

Storage I/O never runs on the event loop: every step of a session that may
touch the store (login, UPDATE, RETR and TOP, the octet counts of STAT, LIST
and RSET, the next piece of a streamed body: see
:meth:`~.protocol.Pop3Session.next_step_may_block`) runs on a worker thread
(STORAGE_THREADS of them), one step per session at a time, so a slow disk
stalls only the sessions waiting for it.  The other steps (NOOP, DELE, UIDL,
USER, CAPA, refusals, "no complete line yet") run inline on the loop: a
thread hop costs more CPU than they do (benchmarks/bench_turns.py).  With
``ServerSettings.storage_threads = 0`` (``--storage-threads 0``) every step
runs inline: for a store on a RAM file system, where a read never waits on
a device and the hop (~0.1 ms) would be most of a login's cost.  Each
reply piece is sent and drained before the next is asked for, so a streamed
RETR holds one piece.

Abuse limits (:class:`ServerSettings`, CLI flags): the idle timers before
and after login, the per-address connection cap; the bad-command limit and
the failed-login delay live in :class:`~.protocol.SessionConfig`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reference_server.background import BackgroundServerHandle
from reference_server.pop3.protocol import (
    DEFAULT_AUTOLOGOUT_SECONDS,
    DEFAULT_BAD_COMMAND_LIMIT,
    DEFAULT_FAILED_LOGIN_DELAY_SECONDS,
    DelayedReply,
    Pop3Session,
    SessionConfig,
    State,
    UserDirectory,
)
from reference_server.sasl import DEFAULT_MECHANISMS
from reference_server.store.maildrop import MaildropStore, store_from_spec
from reference_server.tls import TLS_HANDSHAKE_TIMEOUT_SECONDS, describe
from reference_server.users import load_users_file

#: Bytes requested per read; lines are limited inside the session, so this
#: only bounds how much unprocessed pipelined input is held at once.
READ_CHUNK_OCTETS = 65536
#: Pending-connection queue; large enough for a burst of 1,000 connects.
LISTEN_BACKLOG = 1024
#: Worker threads for session steps (storage I/O).  More than the cores
#: because they mostly wait on the disk; enough that a few slow maildrops
#: do not hold up everyone else's logins.
STORAGE_THREADS = 32
#: Inline steps of one session in a row before it lets the others run:
#: 64 KB of pipelined NOOPs would otherwise hold the loop for ~0.1 s.
INLINE_STEPS_BEFORE_YIELD = 64
#: Connections one client address may hold at once; 0: no cap.  Off by
#: default because test clients (and this project's benchmarks) open
#: thousands of sessions from 127.0.0.1; a deployment would use ~10-50.
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 0

log = logging.getLogger("reference_server.pop3.server")


@dataclass
class ServerSettings:
    #: Idle timer once logged in (TRANSACTION); RFC 1939 section 3: >= 600.
    autologout_seconds: float = DEFAULT_AUTOLOGOUT_SECONDS
    session_config: SessionConfig = field(default_factory=SessionConfig)
    #: Server context for STLS and the implicit-TLS listener; None: plaintext only.
    tls_context: ssl.SSLContext | None = None
    #: Idle timer before login (AUTHORIZATION, after USER, inside AUTH);
    #: None: the same as ``autologout_seconds``.
    login_timeout_seconds: float | None = None
    #: Simultaneous connections per client address; 0: no cap.
    max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
    #: Worker threads for the steps that touch the store; 0: those steps run
    #: on the event loop too (a store in RAM: nothing to wait for).
    storage_threads: int = STORAGE_THREADS

    def idle_seconds(self, state: State) -> float:
        """The inactivity timer that applies in ``state``."""
        if state is State.TRANSACTION or self.login_timeout_seconds is None:
            return self.autologout_seconds
        return self.login_timeout_seconds

    def __post_init__(self) -> None:
        if self.storage_threads < 0:
            raise ValueError("storage_threads must be 0 (steps on the loop) or more")
        # STLS is advertised exactly when it can work (RFC 8314 section 4).
        self.session_config.stls_available = self.tls_context is not None


class Pop3Server:
    """Accepts connections and runs one ``session_class`` per connection."""

    def __init__(
        self,
        store: MaildropStore,
        users: UserDirectory,
        *,
        session_class: type[Pop3Session] = Pop3Session,
        settings: ServerSettings | None = None,
    ) -> None:
        self.store = store
        self.users = users
        self.session_class = session_class
        self.settings = settings or ServerSettings()
        self._servers: list[asyncio.Server] = []
        self._session_numbers = itertools.count(1)
        self._connections: set[asyncio.Task[None]] = set()
        self._per_address: collections.Counter[str] = collections.Counter()
        self._steps: dict[int, _Steps] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = (
            concurrent.futures.ThreadPoolExecutor(
                max_workers=self.settings.storage_threads, thread_name_prefix="pop3-storage"
            )
            if self.settings.storage_threads
            else None
        )

    async def listen(self, host: str, port: int, *, implicit_tls: bool = False) -> tuple[str, int]:
        """Listen on one address; call again for more (e.g. a pop3s listener)."""
        context = self.settings.tls_context
        if implicit_tls and context is None:
            raise ValueError("an implicit-TLS listener needs ServerSettings.tls_context")
        server = await asyncio.start_server(
            functools.partial(self._serve_connection, implicit_tls=implicit_tls),
            host,
            port,
            reuse_address=True,
            limit=READ_CHUNK_OCTETS,
            backlog=LISTEN_BACKLOG,
            ssl=context if implicit_tls else None,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_SECONDS if implicit_tls else None,
        )
        self._servers.append(server)
        bound_host, bound_port = server.sockets[0].getsockname()[:2]
        return bound_host, bound_port

    async def close(self) -> None:
        """Stop accepting, end every session without UPDATE, release locks."""
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    async def _serve_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        implicit_tls: bool = False,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else "-"
        cap = self.settings.max_connections_per_address
        if cap > 0 and self._per_address[address] >= cap:
            log.info("event=connection-refused peer=%s reason=per-address-cap cap=%d", address, cap)
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(b"-ERR [SYS/TEMP] too many connections from your address\r\n")
                await writer.drain()
            writer.close()
            return
        self._per_address[address] += 1
        self._connections.add(task)
        session = self.session_class(
            self.store,
            self.users,
            self.settings.session_config,
            session_id=str(next(self._session_numbers)),
            peer=f"{peer[0]}:{peer[1]}" if peer else "-",
        )
        if implicit_tls:
            # RFC 8314 section 3.1: the handshake is done before the greeting.
            version, cipher = describe(writer.get_extra_info("ssl_object"))
            session.tls_started(version=version, cipher=cipher)
        # Subclasses override _converse(session, reader, writer), so the
        # connection's step runner is found by session, not passed along.
        steps = self._steps[id(session)] = _Steps(self._executor)
        try:
            await self._converse(session, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("session=%s transport failure", session.session_id)
        finally:
            # A step still running on a worker must end before the session
            # is torn down (it may be locking the maildrop right now).
            await steps.settle()
            del self._steps[id(session)]
            session.connection_lost()
            writer.close()
            self._connections.discard(task)
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]

    async def _converse(
        self,
        session: Pop3Session,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        steps = self._steps.get(id(session)) or _Steps(self._executor)
        writer.write(session.greeting())
        await writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.idle_seconds(session.state)
        while not session.closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                session.autologout()
                return
            try:
                async with asyncio.timeout(remaining):
                    data = await reader.read(READ_CHUNK_OCTETS)
            except TimeoutError:
                session.autologout()
                return
            if not data:
                return
            session.feed(data)
            while True:
                replies = session.replies()
                while (reply := await steps.next(session, replies)) is not None:
                    if isinstance(reply, DelayedReply):
                        await asyncio.sleep(reply.delay_seconds)
                    # RFC 1939 section 3: the timer restarts on activity, i.e. on
                    # each complete command, not on stray octets of a partial line.
                    deadline = loop.time() + self.settings.idle_seconds(session.state)
                    if session.tls_pending:
                        # Before anything can await: no more plaintext enters.
                        transport = writer.transport
                        if isinstance(transport, asyncio.ReadTransport):
                            transport.pause_reading()
                        discard_buffered_input(reader)
                    writer.write(reply)
                    await writer.drain()  # one reply at a time: bounded memory
                if not session.tls_pending or session.closed:
                    break
                await self._start_tls(session, writer)
                # Loop once more: whatever the session still held would be
                # answered now, inside TLS. A conforming session holds nothing.

    async def _start_tls(self, session: Pop3Session, writer: asyncio.StreamWriter) -> None:
        """RFC 2595 section 4: the handshake follows the CRLF of the ``+OK``."""
        context = self.settings.tls_context
        assert context is not None
        try:
            await writer.start_tls(context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_SECONDS)
        except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as problem:
            log.info(
                "session=%s event=tls-failed detail=%s",
                session.session_id,
                type(problem).__name__,
            )
            session.connection_lost()
            return
        version, cipher = describe(writer.get_extra_info("ssl_object"))
        session.tls_started(version=version, cipher=cipher)


class _Steps:
    """Runs one session's steps, one at a time: those that may wait on the
    store on the storage threads (remembering the one in flight so teardown
    can wait for it), the others inline; every one inline without an
    executor (``storage_threads = 0``)."""

    def __init__(self, executor: concurrent.futures.Executor | None) -> None:
        self.executor = executor
        self.in_flight: asyncio.Future[bytes | None] | None = None
        self._inline_in_a_row = 0

    async def next(self, session: Pop3Session, replies: Iterator[bytes]) -> bytes | None:
        if self.executor is None or not session.next_step_may_block():
            self._inline_in_a_row += 1
            if self._inline_in_a_row >= INLINE_STEPS_BEFORE_YIELD:
                self._inline_in_a_row = 0
                await asyncio.sleep(0)  # fairness: other sessions' turn
            return next(replies, None)
        self._inline_in_a_row = 0
        loop = asyncio.get_running_loop()
        self.in_flight = loop.run_in_executor(self.executor, next, replies, None)
        # Shielded: a cancelled session still lets the step finish on its thread.
        return await asyncio.shield(self.in_flight)

    async def settle(self) -> None:
        if self.in_flight is not None and not self.in_flight.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait([self.in_flight])


def discard_buffered_input(reader: asyncio.StreamReader) -> None:
    """Drop octets the stream already holds: after STLS they are plaintext
    that followed the command and must not be read as if inside TLS.

    asyncio has no public call for this (aiosmtpd clears the same buffer
    for STARTTLS), hence the private attribute."""
    buffered: bytearray | None = getattr(reader, "_buffer", None)
    if buffered:
        buffered.clear()


class ServerHandle(BackgroundServerHandle):
    """A server running on a background thread; returned by :func:`start_server`."""

    thread_name = "pop3-reference-server"

    def __init__(
        self,
        server: Pop3Server,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        implicit_tls_port: int | None = None,
    ) -> None:
        self.server = server
        self.host = host
        self.port = port
        #: Port of the implicit-TLS (pop3s) listener, if one was asked for.
        self.tls_port: int | None = None
        self._implicit_tls_port = implicit_tls_port
        self._requested = (host, port)
        self._start_thread(port)

    async def _listen(self) -> None:
        self.host, self.port = await self.server.listen(*self._requested)
        if self._implicit_tls_port is not None:
            _, self.tls_port = await self.server.listen(
                self.host, self._implicit_tls_port, implicit_tls=True
            )


def start_server(
    *,
    store: MaildropStore | str,
    users: UserDirectory | Mapping[str, str] | str | Path,
    session_class: type[Pop3Session] = Pop3Session,
    host: str = "127.0.0.1",
    port: int = 0,
    autologout_seconds: float = DEFAULT_AUTOLOGOUT_SECONDS,
    enable_apop: bool = False,
    enable_last: bool = True,
    tls_context: ssl.SSLContext | None = None,
    implicit_tls_port: int | None = None,
    require_tls: bool = False,
    sasl_mechanisms: tuple[str, ...] = DEFAULT_MECHANISMS,
    login_delay_seconds: int = 0,
    expire_days: int | None = None,
    login_timeout_seconds: float | None = None,
    max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    bad_command_limit: int = DEFAULT_BAD_COMMAND_LIMIT,
    failed_login_delay_seconds: float = DEFAULT_FAILED_LOGIN_DELAY_SECONDS,
    storage_threads: int = STORAGE_THREADS,
) -> ServerHandle:
    """Start a server on a background thread; ``port=0`` picks a free port.

    ``store`` is a store object or spec string; ``users`` a
    :class:`UserDirectory` (kept live: later changes apply to new logins), a
    mapping of user to secret, or the path of a users file.  With
    ``tls_context`` STLS is offered, and ``implicit_tls_port`` (0: any free
    port) adds a pop3s listener on the same host (``handle.tls_port``).
    """
    if isinstance(store, str):
        store = store_from_spec(store)
    if isinstance(users, (str, Path)):
        users = load_users_file(Path(users))
    elif not isinstance(users, UserDirectory):
        users = UserDirectory(users)
    settings = ServerSettings(
        autologout_seconds=autologout_seconds,
        session_config=SessionConfig(
            enable_apop=enable_apop,
            enable_last=enable_last,
            require_tls=require_tls,
            sasl_mechanisms=sasl_mechanisms,
            login_delay_seconds=login_delay_seconds,
            expire_days=expire_days,
            bad_command_limit=bad_command_limit,
            failed_login_delay_seconds=failed_login_delay_seconds,
        ),
        tls_context=tls_context,
        login_timeout_seconds=login_timeout_seconds,
        max_connections_per_address=max_connections_per_address,
        storage_threads=storage_threads,
    )
    server = Pop3Server(store, users, session_class=session_class, settings=settings)
    return ServerHandle(server, host, port, implicit_tls_port=implicit_tls_port)
