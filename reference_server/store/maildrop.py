"""Maildrop storage: Maildir and mbox (mboxrd), one maildrop per user.

A store is built from a spec ``maildir:/path/{user}`` or ``mbox:/path/{user}``
(:func:`store_from_spec`).  :meth:`MaildropStore.open` takes the maildrop's
exclusive lock and reads a snapshot; :meth:`Maildrop.commit` is the UPDATE
state; :meth:`Maildrop.release` drops the lock without changing anything.

Rules the rest of the suite relies on
-------------------------------------
* **Order.** Maildir: every file of ``new/`` and ``cur/`` sorted by file name
  (ties broken by directory, ``cur`` before ``new``); names starting with
  ``.`` are ignored.  mbox: file order.
* **Wire form.** Stored LF or CRLF line ends are sent as CRLF; a message
  whose last line lacks a line end gets CRLF appended.  Every octet count is
  the length of that wire form (RFC 1939 section 11); byte-stuffing dots and
  the terminator are not counted.  Bare CR octets are sent as stored.
* **UIDs** (RFC 1939 section 7, 1-70 octets of 0x21-0x7E).  Maildir: the
  unique part of the file name (before ``:``), so it survives restarts and
  the ``new/`` to ``cur/`` move; names that are too long or hold other octets
  are replaced by ``x`` + 40 hex digits of their SHA-256.  mbox: 40 hex digits
  of the SHA-256 of the message's ``From`` line plus content, so it moves
  with the message when others are expunged; the k-th identical copy gets
  ``-k`` appended (k >= 2).  A deleted message's UID only comes back if a
  byte-identical message (same ``From`` line) is stored again.
* **mbox flavour: mboxrd.** A message starts at a line beginning ``From ``
  that is the first line of the file or follows an empty line; the one empty
  line before the next ``From`` line (or at end of file) belongs to the
  format, not the message.  Body lines matching ``>*From `` are unquoted by
  removing one ``>``.  Rewrites keep the stored bytes of surviving messages
  untouched.
* **Locking.** ``flock(LOCK_EX | LOCK_NB)`` on a lock file: ``<maildir>/.mailspec-lock``
  or ``<mbox>.mailspec-lock``.  flock locks belong to the open file
  description, so they exclude other sessions of the same process and of any
  other server process on the same store; the kernel drops them if the
  process dies (``kill -9``).
* **Deletion** only in :meth:`Maildrop.commit` (the UPDATE state), and all
  or nothing even under ``kill -9``.  Maildir: the names to remove are first
  written to a journal ``<maildir>/.mailspec-update`` (temporary file,
  fsync, rename, fsync of the directory); once that rename is durable the
  deletion is committed.  Then the files are unlinked, ``cur/`` and ``new/``
  fsynced and the journal removed.  A journal left by a killed server is
  finished by the next :meth:`MaildropStore.open` of that maildrop, under
  its lock, before the snapshot is read.  mbox writes survivors (plus
  anything appended since the snapshot) to a temporary file, fsyncs it,
  ``os.replace``-s the mbox and fsyncs the directory; a temporary file left
  by a killed server is removed at the next open.
* **Memory.** A Maildir snapshot holds names, unique-ids and octet counts,
  not contents: a message is read when RETR or TOP asks for it.  Messages up
  to SMALL_MESSAGE_OCTETS come from a process-wide wire-form cache bounded
  by WIRE_FORM_CACHE_OCTETS; larger ones are converted while they are
  streamed, STREAM_CHUNK_OCTETS at a time (:meth:`StoredMessage.chunks`),
  and their octet counts are cached by inode, size and mtime.  An mbox is
  scanned at login MBOX_SCAN_OCTETS at a time for its index (byte ranges,
  unique-ids, octet counts; the mbox is never read whole): RETR and TOP read
  a message's range from the file, whole up to SMALL_MESSAGE_OCTETS, else in
  pieces; UPDATE copies the survivors in pieces while it checks that the
  snapshot's bytes are unchanged (SHA-256 of the indexed part).

Extension seam: subclass :class:`MaildirMaildrop` / :class:`MboxMaildrop`
(override :meth:`Maildrop.octet_count` or :meth:`Maildrop.commit`) and point a
store subclass's ``maildrop_class`` at it, e.g.::

    class CountsLF(MaildirMaildrop):
        def octet_count(self, message): return len(message.content.replace(b"\\r\\n", b"\\n"))

    class CountsLFStore(MaildirStore):
        maildrop_class = CountsLF
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import glob
import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, ClassVar

LOCK_FILE_NAME = ".mailspec-lock"
LOCK_FILE_SUFFIX = ".mailspec-lock"
SEEN_FILE_NAME = ".mailspec-seen"  # RFC 1225 LAST bookkeeping, written in UPDATE
SEEN_FILE_SUFFIX = ".mailspec-seen"
WIRE_FORM_CACHE_OCTETS = 64 * 1024 * 1024  # converted Maildir messages kept in memory
#: Maildir messages up to this size are converted whole (and cached); larger
#: ones are streamed, so one session never holds a big message in memory.
SMALL_MESSAGE_OCTETS = 1024 * 1024
#: Read size when a large message is streamed; also the largest piece a
#: streamed RETR hands to the transport at once.
STREAM_CHUNK_OCTETS = 64 * 1024
#: Read size when only a large message's octet count is needed.
WIRE_SIZE_READ_OCTETS = 1024 * 1024
#: Octet counts of large Maildir messages remembered (entries, LRU).
WIRE_SIZE_CACHE_ENTRIES = 100_000
#: The Maildir UPDATE journal (names committed for removal, one a line).
JOURNAL_FILE_NAME = ".mailspec-update"
USER_PLACEHOLDER = "{user}"
_UID_OCTETS = re.compile(r"[\x21-\x7e]{1,70}")
_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)
#: mbox: read size of the login scan and of UPDATE's copy.
MBOX_SCAN_OCTETS = 1024 * 1024
#: mboxrd: a "From " line right after an empty line starts a message
#: (the match ends just before "From ").
_MBOX_START = re.compile(rb"\n\r?\n(?=From )")
_MBOX_START_CARRY = 7  # len(b"\n\r\nFrom ") - 1: a match cut between two reads
_QUOTED_FROM_AT_START = re.compile(rb">>*From ")
#: A line start that may still become a quoted From line.
_MAYBE_QUOTED_FROM = re.compile(rb">+(?:F(?:r(?:o(?:m)?)?)?)?")


class MaildropError(Exception):
    """A maildrop cannot be used right now (reported as [SYS/TEMP])."""


class MaildropLocked(MaildropError):
    """Another session holds the maildrop's lock (reported as [IN-USE])."""


class MaildropCorrupt(MaildropError):
    """The maildrop's content cannot be parsed (reported as [SYS/PERM])."""


class StoreSpecError(ValueError):
    """A store spec that names no usable store."""


class StoredMessage:
    """One message as the session sees it.

    ``location`` says where the stored bytes are (a Maildir file path, or an
    mbox byte range ``start:end``); ``content`` is the CRLF wire form.  A
    message is either eager (``content`` given) or lazy (``size`` and
    ``opener`` given: ``opener()`` opens the stored bytes and returns an
    iterator of wire-form pieces, so a missing file fails before the first
    piece is sent).
    """

    def __init__(
        self,
        location: str,
        uid: str,
        content: bytes | None = None,
        *,
        size: int | None = None,
        opener: Callable[[], Iterator[bytes]] | None = None,
    ) -> None:
        if content is None and (size is None or opener is None):
            raise ValueError("a lazy StoredMessage needs size and opener")
        self.location = location
        self.uid = uid
        self._content = content
        self._size = size
        self._opener = opener

    @property
    def content(self) -> bytes:
        """The whole wire form (read now for a lazy message)."""
        if self._content is not None:
            return self._content
        return b"".join(self.chunks())

    @property
    def size(self) -> int:
        """Octets of the wire form, without reading a lazy message."""
        if self._size is not None:
            return self._size
        return len(self.content)

    @property
    def size_known(self) -> bool:
        """Whether :attr:`size` is answered without reading the store."""
        return self._content is not None or self._size is not None

    @property
    def streamed(self) -> bool:
        """Large enough to be sent in pieces rather than whole."""
        return self._content is None and self.size > SMALL_MESSAGE_OCTETS

    def chunks(self) -> Iterator[bytes]:
        """The wire form in pieces of at most about STREAM_CHUNK_OCTETS."""
        if self._content is not None:
            return iter((self._content,))
        assert self._opener is not None
        return self._opener()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredMessage):
            return NotImplemented
        return (self.location, self.uid) == (other.location, other.uid)

    def __hash__(self) -> int:
        return hash((self.location, self.uid))

    def __repr__(self) -> str:
        return f"StoredMessage({self.location!r}, {self.uid!r}, size={self.size})"


def crlf_line_ends(data: bytes) -> bytes:
    """Every LF, with or without a CR before it, becomes CRLF; a CR alone
    stays. Two C-level replaces: ten times faster than re.sub(rb"\r?\n")
    on a 64 KB piece (0.07 ms vs 0.68 ms measured), which a streamed RETR
    of a 1 MB message pays 17 times."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def to_wire_form(stored: bytes) -> bytes:
    """CRLF line ends, and a final CRLF if the last line had none."""
    wire = crlf_line_ends(stored)
    if wire and not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    return wire


def wire_chunks(file: BinaryIO) -> Iterator[bytes]:
    """:func:`to_wire_form` of a file, STREAM_CHUNK_OCTETS at a time; closes it."""
    with file:
        yield from wire_pieces(iter(functools.partial(file.read, STREAM_CHUNK_OCTETS), b""))


def wire_pieces(stored: Iterator[bytes]) -> Iterator[bytes]:
    """:func:`to_wire_form` of the concatenated pieces, piece by piece.

    A CR that ends one piece is held back until the next shows whether an
    LF follows it, so the result equals ``to_wire_form(b"".join(stored))``."""
    tail = b""  # the last two octets produced, for the final-CRLF rule
    carry = b""
    for chunk in stored:
        data = carry + chunk
        carry = b""
        if data.endswith(b"\r"):
            carry, data = b"\r", data[:-1]
        piece = crlf_line_ends(data)
        if piece:
            tail = (tail + piece)[-2:]
            yield piece
    if carry:
        tail = (tail + carry)[-2:]
        yield carry
    if tail and tail != b"\r\n":
        yield b"\r\n"


def wire_size(file: BinaryIO) -> int:
    """``len(to_wire_form(file.read()))`` without converting: every LF not
    preceded by CR gains one octet, and a last line without LF gains two."""
    size = 0
    bare_line_feeds = 0
    previous_ended_with_cr = False
    last = b""
    with file:
        while chunk := file.read(WIRE_SIZE_READ_OCTETS):
            size += len(chunk)
            line_feeds = chunk.count(b"\n")
            bare_line_feeds += line_feeds - chunk.count(b"\r\n")
            if previous_ended_with_cr and chunk.startswith(b"\n"):
                bare_line_feeds -= 1  # a CRLF cut between two reads
            previous_ended_with_cr = chunk.endswith(b"\r")
            last = chunk[-1:]
    if size and last != b"\n":
        size += 2
    return size + bare_line_feeds


def check_user_name(user: str) -> None:
    """User names become path components, so refuse anything that could escape."""
    if not user or user in {".", ".."} or "/" in user or "\x00" in user:
        raise MaildropError(f"user name {user!r} cannot name a maildrop")


class MaildropLock:
    """An exclusive, non-blocking flock on one lock file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as problem:
            os.close(self._fd)
            self._fd = None
            if problem.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise MaildropLocked(f"{path} is locked by another session") from None
            raise

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


class Maildrop:
    """An opened, locked snapshot of one user's maildrop."""

    def __init__(self, store: MaildropStore, user: str, path: Path, lock: MaildropLock) -> None:
        self.store = store
        self.user = user
        self.path = path
        self.lock = lock
        self.messages: list[StoredMessage] = self.load()

    def load(self) -> list[StoredMessage]:
        raise NotImplementedError

    def octet_count(self, message: StoredMessage) -> int:
        """Size reported by STAT, LIST and RETR: the wire form's length."""
        return message.size

    def commit(self, deleted: Sequence[StoredMessage]) -> None:
        """UPDATE state: remove exactly ``deleted``; raise if that failed."""
        raise NotImplementedError

    def holds_sizes(self) -> bool:
        """Whether STAT, LIST and RSET can be answered from memory: every
        message's size is known and :meth:`octet_count` is not overridden
        (a subclass that counts otherwise may read the store for it)."""
        return type(self).octet_count is Maildrop.octet_count and all(
            message.size_known for message in self.messages
        )

    def empty_commit_is_free(self) -> bool:
        """Whether ``commit([])`` does no I/O. False unless a class says so
        for its own :meth:`commit`."""
        return False

    def release(self) -> None:
        self.lock.release()

    # RFC 1225 "highest number accessed": which messages earlier sessions
    # retrieved is kept beside the maildrop as a list of unique-ids, written
    # only in UPDATE (so a dropped session leaves it as it was).

    def seen_uids(self) -> set[str]:
        """Unique-ids of messages retrieved with RETR in earlier sessions."""
        try:
            text = self.store.seen_path(self.path).read_text("ascii")
        except (OSError, UnicodeDecodeError):
            return set()
        return {line for line in text.splitlines() if line}

    def record_seen(self, uids: set[str]) -> None:
        """Replace the retrieved-messages record, atomically."""
        target = self.store.seen_path(self.path)
        write_durably(target, "".join(uid + "\n" for uid in sorted(uids)).encode("ascii"))


def _unique(uids: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for uid in uids:
        seen[uid] = seen.get(uid, 0) + 1
        result.append(uid if seen[uid] == 1 else f"{uid}-{seen[uid]}")
    return result


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` so that after a crash it holds either
    the old or the new bytes: temporary file, fsync, rename, fsync of the
    directory."""
    temporary = target.with_name(target.name + ".tmp")
    with open(temporary, "wb") as output:
        output.write(data)
        output.flush()
        os.fsync(output.fileno())
    os.replace(temporary, target)
    _fsync_directory(target.parent)


class WireSizeCache:
    """Octet counts of large Maildir messages' wire forms, so a login does not
    read every big message again (same inode/size/mtime key as
    :class:`WireFormCache`); bounded by entries, least recently used first."""

    def __init__(self, max_entries: int = WIRE_SIZE_CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int, int, int], int] = OrderedDict()
        self._guard = threading.Lock()

    def wire_size(self, path: str | Path, info: os.stat_result) -> int:
        key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns)
        with self._guard:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                return cached
        size = wire_size(open(path, "rb"))
        with self._guard:
            self._entries[key] = size
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return size


class WireFormCache:
    """Wire forms of Maildir message files, so a login does not convert
    every message again (a 1 MB message costs milliseconds per conversion).

    Maildir files are never rewritten in place (RFC-less Maildir convention:
    deliver to tmp/, rename into new/), so a file whose inode, size and
    mtime are unchanged holds the same bytes. Bounded by total octets; the
    least recently used entries go first."""

    def __init__(self, max_octets: int = WIRE_FORM_CACHE_OCTETS) -> None:
        self.max_octets = max_octets
        self._entries: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
        self._octets = 0
        self._guard = threading.Lock()

    def wire_form(self, path: str | Path, info: os.stat_result | None = None) -> bytes:
        """The wire form of the file at ``path`` (``info``: its stat, if
        the caller has just taken it)."""
        if info is None:
            info = os.stat(path)
        key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns)
        with self._guard:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                return cached
        with open(path, "rb") as file:
            content = to_wire_form(file.read())
        if len(content) <= self.max_octets:
            with self._guard:
                self._entries[key] = content
                self._octets += len(content)
                while self._octets > self.max_octets:
                    _, dropped = self._entries.popitem(last=False)
                    self._octets -= len(dropped)
        return content


_wire_forms = WireFormCache()
_wire_sizes = WireSizeCache()


class MaildirMaildrop(Maildrop):
    SUBDIRECTORIES: ClassVar[tuple[str, ...]] = ("cur", "new")

    def load(self) -> list[StoredMessage]:
        # Strings, not Path objects, in this loop: it runs for every message
        # at every login, and the scan's own stat is reused (no second one).
        self.recover()
        entries: list[tuple[str, str, str, os.stat_result]] = []
        for subdirectory in self.SUBDIRECTORIES:
            with os.scandir(os.path.join(self.path, subdirectory)) as listing:
                entries.extend(
                    (entry.name, subdirectory, entry.path, entry.stat())
                    for entry in listing
                    if not entry.name.startswith(".") and entry.is_file()
                )
        entries.sort(key=lambda entry: entry[:2])
        uids = _unique([self.uid_for(name) for name, *_ in entries])
        messages = []
        for (_, _, location, info), uid in zip(entries, uids, strict=True):
            if info.st_size <= SMALL_MESSAGE_OCTETS:
                size = len(_wire_forms.wire_form(location, info))
                opener = functools.partial(self._cached_chunks, location)
            else:
                size = _wire_sizes.wire_size(location, info)
                opener = functools.partial(self._streamed_chunks, location)
            messages.append(StoredMessage(location, uid, size=size, opener=opener))
        return messages

    def _cached_chunks(self, path: str) -> Iterator[bytes]:
        return iter((_wire_forms.wire_form(self._current_path(path)),))

    def _streamed_chunks(self, path: str) -> Iterator[bytes]:
        return wire_chunks(open(self._current_path(path), "rb"))

    def _current_path(self, path: str) -> str:
        """Where a snapshot's file is now: another agent may have moved
        new/X to cur/X:2,S since the snapshot (Maildir allows that)."""
        if os.path.exists(path):
            return path
        unique_name = os.path.basename(path).split(":", 1)[0]
        for subdirectory in self.SUBDIRECTORIES:
            with os.scandir(os.path.join(self.path, subdirectory)) as listing:
                for entry in listing:
                    if entry.name.split(":", 1)[0] == unique_name:
                        return entry.path
        raise MaildropError(f"{os.path.basename(path)} disappeared from the maildrop")

    def empty_commit_is_free(self) -> bool:
        return type(self).commit is MaildirMaildrop.commit

    @staticmethod
    def uid_for(file_name: str) -> str:
        unique_name = file_name.split(":", 1)[0]
        if _UID_OCTETS.fullmatch(unique_name):
            return unique_name
        return "x" + hashlib.sha256(file_name.encode("utf-8", "surrogateescape")).hexdigest()[:40]

    @property
    def journal_path(self) -> Path:
        return self.path / JOURNAL_FILE_NAME

    def commit(self, deleted: Sequence[StoredMessage]) -> None:
        if not deleted:
            return
        names = [os.path.relpath(message.location, self.path) for message in deleted]
        # The commit point: once this rename is durable, all of them go.
        write_durably(self.journal_path, "".join(name + "\n" for name in names).encode())
        failures = self._remove(names)
        self._end_journal()
        if failures:
            raise MaildropError("could not remove " + ", ".join(failures))

    def recover(self) -> None:
        """Finish the UPDATE a killed server committed but did not complete."""
        with contextlib.suppress(FileNotFoundError):
            self.journal_path.with_name(JOURNAL_FILE_NAME + ".tmp").unlink()
        try:
            text = self.journal_path.read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return
        self._remove([name for name in text.split("\n") if name])
        self._end_journal()

    def _end_journal(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.journal_path.unlink()
        _fsync_directory(self.path)

    def _remove(self, names: Sequence[str]) -> list[str]:
        failures = []
        for name in names:
            path = self.path / name
            if path.parent.parent != self.path or path.parent.name not in self.SUBDIRECTORIES:
                failures.append(f"{name}: not a message of this maildrop")
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                self._unlink_moved(path)
            except OSError as problem:
                failures.append(f"{path.name}: {problem.strerror}")
        for subdirectory in self.SUBDIRECTORIES:
            with contextlib.suppress(OSError):
                _fsync_directory(self.path / subdirectory)
        return failures

    def _unlink_moved(self, path: Path) -> None:
        """Another agent may have moved new/X to cur/X:2,S since the snapshot;
        a name already gone (a journal replayed twice) is fine."""
        unique_name = path.name.split(":", 1)[0]
        for subdirectory in self.SUBDIRECTORIES:
            with os.scandir(self.path / subdirectory) as listing:
                for entry in listing:
                    if entry.name.split(":", 1)[0] == unique_name:
                        os.unlink(entry.path)
                        return


class MboxMaildrop(Maildrop):
    """An mbox (mboxrd) maildrop, indexed at login with bounded memory."""

    #: the snapshot: message ranges, how many octets were indexed and their
    #: SHA-256, and the file's inode (None: there was no file)
    ranges: list[tuple[int, int]]
    snapshot_octets: int
    snapshot_digest: bytes
    snapshot_inode: int | None

    def load(self) -> list[StoredMessage]:
        self.remove_stale_rewrites()
        self.ranges, self.snapshot_octets, self.snapshot_digest = [], 0, b""
        self.snapshot_inode = None
        try:
            file = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with file:
            self.snapshot_inode = os.fstat(file.fileno()).st_ino
            self.ranges, self.snapshot_octets, self.snapshot_digest = scan_mbox(file)
            entries = [_mbox_index_entry(file, start, end) for start, end in self.ranges]
        uids = _unique([digest for digest, _ in entries])
        return [
            StoredMessage(
                f"{start}:{end}",
                uid,
                size=size,
                opener=functools.partial(self._chunks, start, end, size),
            )
            for (start, end), uid, (_, size) in zip(self.ranges, uids, entries, strict=True)
        ]

    def _chunks(self, start: int, end: int, size: int) -> Iterator[bytes]:
        """The wire form of the message at ``start:end`` of the snapshot."""
        file = open(self.path, "rb")
        try:
            if os.fstat(file.fileno()).st_ino != self.snapshot_inode:
                raise MaildropError(f"{self.path} was replaced by another program")
            if size > SMALL_MESSAGE_OCTETS:
                return _closing(file, mbox_wire_chunks(file, start, end))
            file.seek(start)
            region = file.read(end - start)
            if len(region) != end - start:
                raise MaildropError(f"{self.path} was truncated by another program")
        except BaseException:
            file.close()
            raise
        file.close()
        return iter((to_wire_form(mbox_message_content(region, 0, len(region))),))

    def empty_commit_is_free(self) -> bool:
        return type(self).commit is MboxMaildrop.commit

    def remove_stale_rewrites(self) -> None:
        """Temporary files of a rewrite a killed server never finished (the
        mbox itself is untouched until ``os.replace``); we hold the lock."""
        for stale in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.rewrite"):
            with contextlib.suppress(OSError):
                stale.unlink()

    def commit(self, deleted: Sequence[StoredMessage]) -> None:
        if not deleted:
            return
        doomed = {message.location for message in deleted}
        kept = [(a, b) for a, b in self.ranges if f"{a}:{b}" not in doomed]
        prefix_end = self.ranges[0][0] if self.ranges else 0
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.rewrite")
        try:
            with open(self.path, "rb") as current, open(temporary, "wb") as output:
                if os.fstat(current.fileno()).st_ino != self.snapshot_inode:
                    raise MaildropError(
                        f"{self.path} was changed by another program; nothing removed"
                    )
                self._copy_checked(current, output, [(0, prefix_end), *kept])
                while chunk := current.read(MBOX_SCAN_OCTETS):  # appended since the snapshot
                    output.write(chunk)
                output.flush()
                os.fsync(output.fileno())
            os.chmod(temporary, os.stat(self.path).st_mode & 0o7777)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        _fsync_directory(self.path.parent)

    def _copy_checked(
        self, current: BinaryIO, output: BinaryIO, wanted: list[tuple[int, int]]
    ) -> None:
        """Copy the ``wanted`` ranges of the snapshot's part of ``current``
        to ``output`` in one pass over that part, checking that it still
        holds the snapshot's bytes (else nothing may be removed)."""
        digest = hashlib.sha256()
        position = 0
        pending = iter(wanted)
        piece = next(pending, None)
        while position < self.snapshot_octets:
            chunk = current.read(min(MBOX_SCAN_OCTETS, self.snapshot_octets - position))
            if not chunk:
                break
            digest.update(chunk)
            chunk_end = position + len(chunk)
            while piece is not None and piece[0] < chunk_end:
                low, high = max(piece[0], position), min(piece[1], chunk_end)
                if low < high:
                    output.write(chunk[low - position : high - position])
                if piece[1] > chunk_end:
                    break
                piece = next(pending, None)
            position = chunk_end
        if position != self.snapshot_octets or digest.digest() != self.snapshot_digest:
            raise MaildropError(f"{self.path} was changed by another program; nothing removed")


def _closing(file: BinaryIO, pieces: Iterator[bytes]) -> Iterator[bytes]:
    with file:
        yield from pieces


def scan_mbox(file: BinaryIO) -> tuple[list[tuple[int, int]], int, bytes]:
    """One pass over an mbox, MBOX_SCAN_OCTETS at a time: the byte range of
    each message (as :func:`parse_mbox` finds them), the octets scanned and
    their SHA-256."""
    first = _mbox_first_start(file)
    file.seek(0)
    whole = hashlib.sha256()
    starts: list[int] = [] if first is None else [first]
    position = 0
    carry = b""
    while chunk := file.read(MBOX_SCAN_OCTETS):
        whole.update(chunk)
        data_start = position - len(carry)
        data = carry + chunk
        position += len(chunk)
        if starts:
            for match in _MBOX_START.finditer(data):
                at = data_start + match.end()
                if at > starts[-1]:  # a match inside the carry may have been seen
                    starts.append(at)
        carry = data[-_MBOX_START_CARRY:]
    ends = [*starts[1:], position] if starts else []
    return list(zip(starts, ends, strict=True)), position, whole.digest()


def _mbox_first_start(file: BinaryIO) -> int | None:
    """Where the first message starts (None: no message), reading the lines
    before it in bounded pieces; MaildropCorrupt when text precedes it."""
    file.seek(0)
    position = 0
    previous_blank = True
    line_start = True
    # pieces hold at least a whole empty line and "From " (read sizes are
    # patched down to single octets in the tests)
    while piece := file.readline(max(STREAM_CHUNK_OCTETS, len(b"\r\nFrom "))):
        if line_start:
            if previous_blank and piece.startswith(b"From "):
                return position
            previous_blank = piece in (b"\n", b"\r\n")
        if piece.strip():
            raise MaildropCorrupt("mbox does not start with a 'From ' line")
        line_start = piece.endswith(b"\n")
        position += len(piece)
    return None


def _mbox_index_entry(file: BinaryIO, start: int, end: int) -> tuple[str, int]:
    """A message's unique-id digest (SHA-256 of its range) and the octets of
    its wire form, reading at most about SMALL_MESSAGE_OCTETS at once."""
    if end - start <= SMALL_MESSAGE_OCTETS:
        file.seek(start)
        region = file.read(end - start)
        size = len(to_wire_form(mbox_message_content(region, 0, len(region))))
        return hashlib.sha256(region).hexdigest()[:40], size
    digest = hashlib.sha256()
    file.seek(start)
    remaining = end - start
    while remaining > 0 and (chunk := file.read(min(MBOX_SCAN_OCTETS, remaining))):
        digest.update(chunk)
        remaining -= len(chunk)
    size = sum(len(piece) for piece in mbox_wire_chunks(file, start, end))
    return digest.hexdigest()[:40], size


def mbox_wire_chunks(file: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """``to_wire_form(mbox_message_content(data, start, end))`` read from
    ``file`` in pieces of about STREAM_CHUNK_OCTETS (bounded memory)."""
    return wire_pieces(_batched(_mbox_content_pieces(file, start, end)))


def _region_lines(file: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """The bytes of ``start:end`` as lines, a long line in bounded pieces."""
    file.seek(start)
    remaining = end - start
    while remaining > 0:
        piece = file.readline(min(STREAM_CHUNK_OCTETS, remaining))
        if not piece:
            raise MaildropError("the mbox was truncated by another program")
        remaining -= len(piece)
        yield piece


def _mbox_content_pieces(file: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """:func:`mbox_message_content` as pieces: the From line skipped, the
    separator line at the end dropped, quoted From lines unquoted."""
    lines = _region_lines(file, start, end)
    for piece in lines:  # the From line, however long
        if piece.endswith(b"\n"):
            break
    held = b""  # the last octets of the body, until the end shows the separator
    emitted = 0
    for piece in _unquoted(lines):
        data = held + piece
        held = data[-4:]
        if len(data) > 4:
            emitted += len(data) - 4
            yield data[:-4]
    if held.endswith(b"\r\n\r\n"):
        held = held[:-2]
    elif held.endswith(b"\n\n"):
        held = held[:-1]
    elif emitted == 0 and held in (b"\n", b"\r\n"):
        held = b""
    if held:
        yield held


def _unquoted(lines: Iterator[bytes]) -> Iterator[bytes]:
    """mboxrd: a line ``>``…``From `` loses one ``>``. A line start that is
    only ``>``s (and part of ``From``) at the end of a piece keeps one ``>``
    back: the others are sent whatever comes next."""
    line_start = True
    pending = b""
    for piece in lines:
        if pending:
            piece, pending = pending + piece, b""
        if line_start and piece.startswith(b">"):
            if _QUOTED_FROM_AT_START.match(piece):
                piece = piece[1:]
            elif not piece.endswith(b"\n") and _MAYBE_QUOTED_FROM.fullmatch(piece):
                cut = piece.rfind(b">")
                if cut:
                    yield piece[:cut]
                pending = piece[cut:]
                continue
        yield piece
        line_start = piece.endswith(b"\n")
    if pending:
        yield pending


def _batched(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Short pieces (lines) joined to about STREAM_CHUNK_OCTETS."""
    batch: list[bytes] = []
    octets = 0
    for piece in pieces:
        batch.append(piece)
        octets += len(piece)
        if octets >= STREAM_CHUNK_OCTETS:
            yield b"".join(batch)
            batch, octets = [], 0
    if batch:
        yield b"".join(batch)


def parse_mbox(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges ``(start, end)`` of each message, ``From`` line included."""
    starts = []
    position = 0
    previous_blank = True
    while position < len(data):
        line_end = data.find(b"\n", position)
        next_position = len(data) if line_end < 0 else line_end + 1
        line = data[position:next_position]
        if previous_blank and line.startswith(b"From "):
            starts.append(position)
        elif not starts and line.strip():
            raise MaildropCorrupt("mbox does not start with a 'From ' line")
        previous_blank = line in (b"\n", b"\r\n")
        position = next_position
    if not starts:
        return []
    ends = [*starts[1:], len(data)]
    return list(zip(starts, ends, strict=True))


def mbox_message_content(data: bytes, start: int, end: int) -> bytes:
    """The message inside one mbox range: no From line, separator line, quoting."""
    region = data[start:end]
    first_line_end = region.find(b"\n")
    body = b"" if first_line_end < 0 else region[first_line_end + 1 :]
    for separator in (b"\r\n\r\n", b"\n\n"):
        if body.endswith(separator):
            body = body[: -len(separator) // 2]
            break
    else:
        if body in (b"\n", b"\r\n"):
            body = b""
    return _QUOTED_FROM.sub(rb"\1", body)


class MaildropStore:
    """Finds, locks and opens users' maildrops from a path template."""

    kind: ClassVar[str] = ""
    maildrop_class: ClassVar[type[Maildrop]] = Maildrop

    def __init__(self, path_template: str) -> None:
        if USER_PLACEHOLDER not in path_template:
            raise StoreSpecError(
                f"store path {path_template!r} must contain {USER_PLACEHOLDER} "
                "(one maildrop per user)"
            )
        self.path_template = path_template

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.path_template}"

    def path_for(self, user: str) -> Path:
        check_user_name(user)
        return Path(self.path_template.replace(USER_PLACEHOLDER, user))

    def lock_path(self, path: Path) -> Path:
        raise NotImplementedError

    def seen_path(self, path: Path) -> Path:
        """Where the LAST bookkeeping (RFC 1225) of a maildrop is kept."""
        raise NotImplementedError

    def prepare(self, path: Path) -> None:
        """Make a missing maildrop exist (as an empty one)."""

    def open(self, user: str) -> Maildrop:
        path = self.path_for(user)
        self.prepare(path)
        lock = MaildropLock(self.lock_path(path))
        try:
            return self.maildrop_class(self, user, path, lock)
        except BaseException:
            lock.release()  # RFC 1939 section 4: never keep a lock we will not use
            raise

    def check_base_directory(self) -> None:
        """Raise StoreSpecError unless the fixed part of the template exists."""
        fixed = self.path_template.split(USER_PLACEHOLDER, 1)[0]
        base = Path(fixed) if fixed.endswith("/") else Path(fixed).parent
        if not base.is_dir():
            raise StoreSpecError(f"store directory {str(base)!r} does not exist")


class MaildirStore(MaildropStore):
    kind = "maildir"
    maildrop_class = MaildirMaildrop

    def lock_path(self, path: Path) -> Path:
        return path / LOCK_FILE_NAME

    def seen_path(self, path: Path) -> Path:
        return path / SEEN_FILE_NAME

    def prepare(self, path: Path) -> None:
        for subdirectory in ("cur", "new", "tmp"):
            directory = os.path.join(path, subdirectory)
            if not os.path.isdir(directory):  # one stat at a login, not a failed mkdir
                os.makedirs(directory, exist_ok=True)


class MboxStore(MaildropStore):
    kind = "mbox"
    maildrop_class = MboxMaildrop

    def lock_path(self, path: Path) -> Path:
        return path.with_name(path.name + LOCK_FILE_SUFFIX)

    def seen_path(self, path: Path) -> Path:
        return path.with_name(path.name + SEEN_FILE_SUFFIX)

    def prepare(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)


STORE_KINDS: dict[str, type[MaildropStore]] = {"maildir": MaildirStore, "mbox": MboxStore}


def store_from_spec(spec: str) -> MaildropStore:
    """``maildir:/path/{user}`` or ``mbox:/path/{user}`` to a store object."""
    kind, separator, template = spec.partition(":")
    if not separator or kind not in STORE_KINDS or not template:
        raise StoreSpecError(
            f"bad store spec {spec!r}: expected maildir:/path/{{user}} or mbox:/path/{{user}}"
        )
    if not os.path.isabs(template):
        template = os.path.abspath(template)
    return STORE_KINDS[kind](template)
