"""Provisioners that write the target's store directly: Maildir and mboxrd
(byte-exact unless `exact=no`)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from conformance.core.errors import ProvisionError
from conformance.core.fixture import Account, FixtureMessage, delivery_seconds, to_crlf
from conformance.provision.base import (
    KEEP_IN_MAILDIR_ROOT,
    _apply,
    _FileStore,
    _fixed_prefix,
    _fsync_dir,
    _make_dirs,
)

# --------------------------------------------------------------------------
# Maildir


class MaildirProvisioner(_FileStore):
    """Writes Maildirs directly: `maildir:/srv/mail/{user}/Maildir`.

    Each message goes to `tmp/` with its final mode and owner, then is
    renamed into `new/` (the Maildir delivery protocol: no reader ever sees
    a partial message). File names sort in fixture order, and their leading
    timestamps (and mtimes) increase with the message number, so servers
    that order by name (reference server, Mailutils) or by delivery time
    (Dovecot assigns UIDs to new files in timestamp order) number them as
    the fixture does. A `same_second` message shares the timestamp of the
    message before it (`M<number>` still sorts the two), so a server that
    derives UIDs from the delivery time alone hands out a duplicate.
    Server caches in the Maildir root (dovecot-uidlist, dovecot.index*,
    courier/mailutils UID files) are removed first, so UIDs are assigned
    afresh instead of a re-created file landing after the others.

    Option `eol=lf` stores every line end as LF (and ends the last line),
    the Maildir convention that MDAs follow: some servers (GNU Mailutils)
    cannot parse a header whose lines end in CRLF. The wire form a server
    must send is the same either way. Default `eol=raw`: the fixture's bytes.
    """

    name = "maildir"

    def __init__(
        self,
        template: str,
        *,
        uid: int | None = None,
        gid: int | None = None,
        owner: str | int | tuple[int | None, int | None] | None = None,
        mode: str | int | None = None,
        eol: str = "raw",
        exact: bool = True,
    ) -> None:
        super().__init__(
            template, owner=owner if owner is not None else (uid, gid), mode=mode, exact=exact
        )
        if eol not in ("raw", "lf", "crlf"):
            raise ProvisionError(f"maildir eol={eol!r}: expected raw, lf or crlf")
        self.eol = eol

    def stored_bytes(self, message: FixtureMessage) -> bytes:
        if self.eol == "raw":
            return message.raw
        wire = message.wire
        return wire if self.eol == "crlf" else wire.replace(b"\r\n", b"\n")

    def describe(self) -> str:
        extra = f",eol={self.eol}" if self.eol != "raw" else ""
        return f"{self.name}{self._options()}{extra}:{self.template}"

    def reset(self, account: Account) -> None:
        root = self.path_for(account)
        try:
            self._write(root, account.messages)
        except OSError as exc:
            where = exc.filename or root
            raise ProvisionError(f"cannot write Maildir {where}: {exc.strerror}") from None

    def _write(self, root: Path, messages: Sequence[FixtureMessage]) -> None:
        fixed = _fixed_prefix(self.template)
        for sub in ("tmp", "new", "cur"):
            _make_dirs(root / sub, fixed, self.dir_mode, self.uid, self.gid)
        # drop server caches and stray files in the root; keep sub-folders
        with os.scandir(root) as listing:
            for entry in listing:
                if entry.name in KEEP_IN_MAILDIR_ROOT or entry.name in ("tmp", "new", "cur"):
                    continue
                if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                    os.unlink(entry.path)
        for sub in ("tmp", "new", "cur"):
            with os.scandir(root / sub) as listing:
                for entry in listing:
                    if entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
        seconds = delivery_seconds(messages)
        for index, message in enumerate(messages, start=1):
            second = seconds[index - 1]
            name = f"{second}.M{index:06d}P0.mailspec"
            tmp = root / "tmp" / name
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(self.stored_bytes(message))
                    out.flush()
                    os.fsync(out.fileno())
                _apply(tmp, self.mode, self.uid, self.gid)
                # mtime = the name's timestamp, for servers that sort by it
                os.utime(tmp, (second, second))
                os.replace(tmp, root / "new" / name)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        for sub in ("new", "cur"):
            _fsync_dir(root / sub)


# --------------------------------------------------------------------------
# mbox (mboxrd)

MBOX_FROM_LINE = b"From mailspec@mailspec.test Sat Nov 28 00:00:00 2026\n"


def _quote_from(line: bytes) -> bytes:
    """mboxrd: a line matching `>*From ` gets one more `>`."""
    stripped = line.lstrip(b">")
    return b">" + line if stripped.startswith(b"From ") else line


def mboxrd_entry(message: FixtureMessage, *, eol: bytes = b"\n") -> bytes:
    """One message as an mboxrd entry: From line, quoted lines, one empty line.

    Line ends are written as `eol` (LF, the mbox convention, by default);
    a message without a final newline gets one, since an mbox entry must end
    with a line end before the separating empty line (the server would add
    the CRLF anyway: verdict-principles 13)."""
    crlf = to_crlf(message.raw)
    lines = crlf.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    body = b"".join(_quote_from(line) + eol for line in lines)
    return MBOX_FROM_LINE.replace(b"\n", eol) + body + eol


class MboxProvisioner(_FileStore):
    """Writes one mboxrd file per user: `mbox:/var/mail/{user}`.

    The whole file is written to a temporary file in the same directory,
    given its mode and owner, fsynced and renamed over the mbox: a reader
    sees the old mbox or the new one, never a mix. LF line ends by default
    (option `eol=crlf` keeps CRLF). Every entry's From line carries the same
    date, so all messages of an mbox share one delivery second (the
    fixture's `same_second` holds trivially)."""

    name = "mbox"

    def __init__(
        self,
        template: str,
        *,
        owner: str | int | tuple[int | None, int | None] | None = None,
        mode: str | int | None = None,
        eol: str = "lf",
        exact: bool = True,
    ) -> None:
        super().__init__(template, owner=owner, mode=mode, exact=exact)
        if eol not in ("lf", "crlf"):
            raise ProvisionError(f"mbox eol={eol!r}: expected lf or crlf")
        self.eol = eol

    def reset(self, account: Account) -> None:
        path = self.path_for(account)
        eol = b"\n" if self.eol == "lf" else b"\r\n"
        data = b"".join(mboxrd_entry(m, eol=eol) for m in account.messages)
        tmp_name = None
        try:
            _make_dirs(path.parent, _fixed_prefix(self.template), self.dir_mode, self.uid, self.gid)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            _apply(tmp_name, self.mode, self.uid, self.gid)
            os.replace(tmp_name, path)
            tmp_name = None
            _fsync_dir(path.parent)
        except OSError as exc:
            raise ProvisionError(
                f"cannot write mbox {exc.filename or path}: {exc.strerror}"
            ) from None
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    def describe(self) -> str:
        extra = ",eol=crlf" if self.eol == "crlf" else ""
        return f"{self.name}{self._options()}{extra}:{self.template}"
