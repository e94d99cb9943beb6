"""Final delivery of accepted SMTP messages into the shared maildrop store.

The POP3 server reads what this module writes: a Maildir delivery lands in
``<maildir>/new/`` under a unique name (its POP3 UID, see
:mod:`reference_server.store.maildrop`), an mbox delivery is appended to the mbox in
mboxrd form under the maildrop's lock.

What is stored (RFC 5321 section 4.4): a ``Return-Path:`` line with the
reverse-path, a ``Received:`` line, then the message octets exactly as
received after dot-unstuffing -- no line end is rewritten, nothing added.

Crash safety (Maildir convention): each copy is written to ``tmp/``,
fsynced, renamed into ``new/``, and ``new/`` is fsynced.  A process killed at
any point leaves either no message or the whole message in ``new/``; a
partial file can only be in ``tmp/``.  All recipients' copies are written to
``tmp/`` first and renamed afterwards; if one rename fails, the copies
already renamed are removed again, so a transaction is delivered to all its
recipients or to none (section 4.1.1.4: no partial failures).
"""

from __future__ import annotations

import contextlib
import email.utils
import itertools
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reference_server.store.maildrop import (
    MaildirStore,
    MaildropError,
    MaildropLock,
    MaildropStore,
    MboxStore,
)

#: Maildir unique names are POP3 UIDs: at most 70 octets (RFC 1939 section 7).
MAX_UNIQUE_NAME_OCTETS = 70

_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)


class DeliveryError(Exception):
    """The message could not be stored; the client gets a 451."""


@dataclass(frozen=True)
class Envelope:
    reverse_path: str  # "" for the null path <>
    recipients: tuple[str, ...]  # forward-paths as given
    maildrops: tuple[str, ...]  # the user (maildrop) of each recipient
    content: bytes  # the message text, dot-unstuffed, otherwise as received
    client_name: str  # the EHLO/HELO argument
    peer: str  # "ip:port" of the client
    protocol: str  # Received: "with" (RFC 3848)
    server_domain: str


def trace_headers(envelope: Envelope, message_id: str, recipient: str, now: float) -> bytes:
    """``Return-Path:`` and ``Received:`` (RFC 5321 sections 4.4, 4.1.1.4).

    The Received: grammar is section 4.4's Stamp: ``from`` the EHLO name with
    the client's address literal, ``by`` our name, ``with`` the RFC 3848 /
    RFC 6531 protocol, ``id`` as a msg-id, ``for`` the recipient, the date."""
    peer_ip = envelope.peer.rsplit(":", 1)[0] if ":" in envelope.peer else envelope.peer
    literal = f"[IPv6:{peer_ip}]" if ":" in peer_ip else f"[{peer_ip}]"
    stamp = email.utils.format_datetime(datetime.fromtimestamp(now, UTC))
    received = (
        f"Received: from {envelope.client_name or 'unknown'} ({literal})\r\n"
        f"\tby {envelope.server_domain} (mailspec-reference-smtp-server)\r\n"
        f"\twith {envelope.protocol} id <{message_id}@{envelope.server_domain}>\r\n"
        f"\tfor <{recipient}>; {stamp}\r\n"
    )
    return f"Return-Path: <{envelope.reverse_path}>\r\n{received}".encode()


class Deliverer:
    """Writes accepted messages into a :class:`MaildropStore`."""

    def __init__(self, store: MaildropStore) -> None:
        if not isinstance(store, (MaildirStore, MboxStore)):
            raise TypeError(f"cannot deliver into a {type(store).__name__}")
        self.store = store
        self._numbers = itertools.count(1)
        self._host = _HOST_UNSAFE.sub("_", socket.gethostname())[:20] or "host"

    def deliver(self, envelope: Envelope) -> str:
        """Store one copy per recipient; returns the transaction's id."""
        now = time.time()
        message_id = self.unique_name(now)
        copies = [
            (maildrop, trace_headers(envelope, message_id, recipient, now) + envelope.content)
            for recipient, maildrop in zip(envelope.recipients, envelope.maildrops, strict=True)
        ]
        try:
            if isinstance(self.store, MaildirStore):
                self._deliver_maildir(message_id, copies)
            else:
                for maildrop, data in copies:
                    self._deliver_mbox(maildrop, envelope.reverse_path, data, now)
        except (OSError, MaildropError) as problem:
            raise DeliveryError(str(problem)) from problem
        return message_id

    def unique_name(self, now: float) -> str:
        """``<seconds>.M<micro>P<pid>Q<n>.<host>``: unique per process and time.

        The maildrop numbers Maildir messages in file-name order, so the
        microseconds and the counter are zero-padded: unpadded, a message
        delivered at .099999 s would sort after one delivered later at
        .100000 s of the same second and the two would swap numbers."""
        seconds = int(now)
        micro = min(999_999, int((now - seconds) * 1_000_000))
        number = next(self._numbers)
        name = f"{seconds}.M{micro:06d}P{os.getpid()}Q{number:06d}.{self._host}"
        return name[:MAX_UNIQUE_NAME_OCTETS]

    # --- Maildir --------------------------------------------------------------

    def _deliver_maildir(self, message_id: str, copies: list[tuple[str, bytes]]) -> None:
        staged: list[tuple[Path, Path]] = []
        try:
            for index, (maildrop, data) in enumerate(copies):
                path = self.store.path_for(maildrop)
                self.store.prepare(path)
                name = message_id if index == 0 else f"{message_id}-{index}"
                temporary = path / "tmp" / name
                write_synced(temporary, data)
                staged.append((temporary, path / "new" / name))
        except BaseException:
            for temporary, _ in staged:
                with contextlib.suppress(OSError):
                    temporary.unlink()
            raise
        done: list[Path] = []
        try:
            for temporary, final in staged:
                os.rename(temporary, final)
                done.append(final)
            for directory in {final.parent for _, final in staged}:
                fsync_directory(directory)
        except BaseException:
            for final in done:
                with contextlib.suppress(OSError):
                    final.unlink()
            for temporary, _ in staged:
                with contextlib.suppress(OSError):
                    temporary.unlink()
            raise

    # --- mbox -----------------------------------------------------------------

    def _deliver_mbox(self, maildrop: str, reverse_path: str, data: bytes, now: float) -> None:
        path = self.store.path_for(maildrop)
        self.store.prepare(path)
        # A POP3 session holding the lock makes this a 451 (try again later):
        # waiting here would stall the event loop that session runs on.
        lock = MaildropLock(self.store.lock_path(path))
        try:
            sender = reverse_path or "MAILER-DAEMON"
            from_line = f"From {sender} {time.asctime(time.gmtime(now))}\n".encode()
            body = _FROM_LINE.sub(rb">\1", data)  # mboxrd quoting
            if not body.endswith(b"\n"):
                body += b"\n"
            with open(path, "ab") as mbox:
                start = mbox.tell()
                separator = b"\n" if start and not _ends_with_blank_line(path) else b""
                mbox.write(separator + from_line + body + b"\n")
                mbox.flush()
                os.fsync(mbox.fileno())
        finally:
            lock.release()


def _ends_with_blank_line(path: Path) -> bool:
    with open(path, "rb") as mbox:
        mbox.seek(max(0, os.path.getsize(path) - 2))
        return mbox.read().endswith(b"\n\n")


def write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
