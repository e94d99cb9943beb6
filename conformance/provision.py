"""Provisioners: how a target's mailboxes get the fixture's content.

POP3 cannot create mail, so before a scenario runs the suite must know what
each maildrop holds. A provisioner writes an account's fixture messages into
the target's store (or checks that someone else did). The engine calls
`reset(account)` before the first scenario that uses an account and again
after a scenario that committed changes to it; it then verifies the maildrop
over POP3 (STAT/LIST/UIDL) before the scenario starts, with
`verify_listing()` below: a difference is an ERROR of that scenario (the
mailbox is not what the suite assumes), never a FAIL of the server.

`byte_exact` says whether the server will hold exactly the fixture's bytes
(written by us) or whether a delivery path may add headers, in which case
scenarios compare bodies and relations instead of whole messages.

Spellings (config `provision:` / CLI `--provision`), built by
`make_provisioner(spec)`::

    none                                  the operator provisioned; verify only
    maildir:/srv/mail/{user}/Maildir      write Maildirs directly (byte-exact)
    mbox:/var/mail/{user}                 write mboxrd files directly (byte-exact)
    smtp:HOST:PORT                        deliver over SMTP, wait for POP3 STAT
    command:'deliver-script --flag'       run SCRIPT MESSAGE-FILE USER per message

Options go between the kind and the colon, comma-separated (`exact=no` on
maildir/mbox declares a server that rewrites stored messages, e.g. adds
X-UIDL headers, so scenarios compare bodies; `eol=lf` writes LF line ends):
`mbox,owner=mail,group=mail,mode=0660:/var/mail/{user}` (owner alone takes
that user's primary group),
`smtp,rcpt={user}@example.org,timeout=60:127.0.0.1:25`, `command,exact:./put.sh`.
`make_provisioner(spec, owner=..., mode=..., target=(host, port))` takes the
same settings as keywords (the spec's options win).
"""

from __future__ import annotations

import abc
import contextlib
import grp
import os
import poplib
import pwd
import shlex
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from conformance.errors import ProvisionError
from conformance.fixture import Account, FixtureMessage, delivery_seconds, to_crlf

__all__ = [
    "CommandProvisioner",
    "MaildirProvisioner",
    "MboxProvisioner",
    "NoneProvisioner",
    "ProvisionError",
    "Provisioner",
    "SmtpProvisioner",
    "make_provisioner",
    "mboxrd_entry",
    "parse_owner",
    "verify_listing",
]

USER_PLACEHOLDER = "{user}"
DEFAULT_FILE_MODE = 0o600
# Files a POP3/IMAP server keeps inside a Maildir to remember UIDs and flags.
# They must go when we rewrite the messages: Dovecot would otherwise give a
# re-created file the next free UID and number it after the others.
KEEP_IN_MAILDIR_ROOT = frozenset({".mailspec-lock"})  # reference server's flock file
# Headers a delivery path may add are bounded: a non-byte-exact message whose
# size is off by more than this is another message (wrong order, wrong box).
MAX_ADDED_OCTETS = 16 * 1024


# --------------------------------------------------------------------------
# Base classes


class Provisioner(abc.ABC):
    name: str = "abstract"
    byte_exact: bool = True

    @abc.abstractmethod
    def reset(self, account: Account) -> None:
        """Make the account's maildrop hold exactly the fixture's messages."""

    def describe(self) -> str:
        return self.name

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release anything held across resets (nothing by default)."""


class NoneProvisioner(Provisioner):
    """The target is provisioned by its operator; the suite only verifies."""

    name = "none"
    byte_exact = False

    def reset(self, account: Account) -> None:
        return None


# --------------------------------------------------------------------------
# Ownership and permissions


def parse_owner(
    owner: str | int | tuple[int | None, int | None] | None,
) -> tuple[int | None, int | None]:
    """`"mail"`, `"mail:mail"`, `"8:8"`, `":mail"`, `8`, `(8, 8)` -> (uid, gid).

    A user name without a group takes that user's primary group."""
    if owner is None or owner == "":
        return None, None
    if isinstance(owner, tuple):
        return owner
    if isinstance(owner, int):
        return owner, None
    user, sep, group = owner.partition(":")
    uid = gid = None
    if user:
        if user.isdigit():
            uid = int(user)
        else:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise ProvisionError(f"owner {owner!r}: no such user {user!r}") from None
            uid = entry.pw_uid
            if not sep:
                gid = entry.pw_gid
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise ProvisionError(f"owner {owner!r}: no such group {group!r}") from None
    return uid, gid


def parse_mode(mode: str | int | None, default: int = DEFAULT_FILE_MODE) -> int:
    if mode is None or mode == "":
        return default
    if isinstance(mode, int):
        value = mode
    else:
        try:
            value = int(mode, 8)
        except ValueError:
            raise ProvisionError(f"mode {mode!r}: expected octal digits like 0600") from None
    if not 0 <= value <= 0o7777:
        raise ProvisionError(f"mode {oct(value)}: out of range")
    return value


def dir_mode_for(file_mode: int) -> int:
    """Directories get x wherever the files get r (0600 -> 0700, 0640 -> 0750)."""
    return file_mode | ((file_mode & 0o444) >> 2)


def _apply(path: str | os.PathLike[str], mode: int, uid: int | None, gid: int | None) -> None:
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    os.chmod(path, mode)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _make_dirs(
    path: Path, template_fixed: Path, mode: int, uid: int | None, gid: int | None
) -> None:
    """Create `path` and its missing parents; the ones below the template's
    fixed prefix (the per-user part) get our mode and owner."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
    # per-user directories (below the template's fixed prefix) get our mode/owner
    for d in [path, *path.parents]:
        if d == template_fixed or template_fixed not in d.parents:
            break
        _apply(d, mode, uid, gid)


def _fixed_prefix(template: str) -> Path:
    """The directory part of a template before the first {user}."""
    head = template.split(USER_PLACEHOLDER, 1)[0]
    return Path(head) if head.endswith("/") else Path(head).parent


class _FileStore(Provisioner):
    """Shared by the provisioners that write a path template directly."""

    def __init__(
        self,
        template: str,
        *,
        owner: str | int | tuple[int | None, int | None] | None = None,
        mode: str | int | None = None,
        exact: bool = True,
    ) -> None:
        self.byte_exact = exact
        if USER_PLACEHOLDER not in template:
            raise ProvisionError(
                f"{self.name} template {template!r} must contain {{user}} (one maildrop per user)"
            )
        self.template = template
        self.uid, self.gid = parse_owner(owner)
        self.mode = parse_mode(mode)
        self.dir_mode = dir_mode_for(self.mode)

    def path_for(self, account: Account) -> Path:
        user = account.user
        if not user or user in (".", "..") or "/" in user or "\x00" in user:
            raise ProvisionError(f"user name {user!r} cannot name a maildrop")
        return Path(self.template.replace(USER_PLACEHOLDER, user))

    def _options(self) -> str:
        parts = []
        if self.uid is not None or self.gid is not None:
            if self.uid is not None:
                parts.append(f"owner={self.uid}")
            if self.gid is not None:
                parts.append(f"group={self.gid}")
        if self.mode != DEFAULT_FILE_MODE:
            parts.append(f"mode={self.mode:04o}")
        if not self.byte_exact:
            parts.append("exact=no")
        return "".join("," + p for p in parts)

    def describe(self) -> str:
        return f"{self.name}{self._options()}:{self.template}"


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


# --------------------------------------------------------------------------
# Delivery provisioners (SMTP, a command): the store is not ours to write, so
# the maildrop is emptied over POP3 (DELE every message, QUIT) and each
# message is delivered in turn, waiting until STAT counts it, so that the
# server's numbering follows the fixture's order.


class _Pop3Helper:
    """Just enough POP3 to empty and count a maildrop while provisioning."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout

    def _login(self, account: Account) -> poplib.POP3:
        try:
            conn = poplib.POP3(self.host, self.port, timeout=self.timeout)
        except OSError as exc:
            raise ProvisionError(
                f"cannot reach POP3 target {self.host}:{self.port} to provision: {exc}"
            ) from None
        try:
            if getattr(account, "login", "pass") == "apop":  # APOP-only account
                conn.apop(account.user, account.password)
            else:
                conn.user(account.user)
                conn.pass_(account.password)
        except (poplib.error_proto, OSError) as exc:
            with contextlib.suppress(Exception):
                conn.close()
            raise ProvisionError(
                f"POP3 login as {account.user!r} failed while provisioning: {_text(exc)}"
            ) from None
        return conn

    def stat(self, account: Account) -> tuple[int, int]:
        conn = self._login(account)
        try:
            count, size = conn.stat()
            conn.quit()
            return count, size
        except (poplib.error_proto, OSError) as exc:
            raise ProvisionError(f"POP3 STAT for {account.user!r} failed: {_text(exc)}") from None
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def empty(self, account: Account) -> None:
        conn = self._login(account)
        try:
            count, _ = conn.stat()
            for n in range(1, count + 1):
                conn.dele(n)
            conn.quit()
        except (poplib.error_proto, OSError) as exc:
            raise ProvisionError(
                f"could not empty {account.user!r} over POP3 (DELE/QUIT): {_text(exc)}"
            ) from None
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def wait_for_count(self, account: Account, want: int, deadline: float, what: str) -> None:
        last: tuple[int, int] | None = None
        while True:
            last = self.stat(account)
            if last[0] == want:
                return
            if last[0] > want:
                raise ProvisionError(
                    f"{account.user}: STAT shows {last[0]} messages after {what}, expected {want} "
                    "(is something else delivering to this account?)"
                )
            if time.monotonic() > deadline:
                raise ProvisionError(
                    f"{account.user}: STAT still shows {last[0]} messages, expected {want}, "
                    f"after {what} (delivery not visible over POP3 in time)"
                )
            time.sleep(0.1)


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    if isinstance(arg, bytes):
        return arg.decode("utf-8", "replace")
    return str(arg)


class _DeliveryProvisioner(Provisioner):
    byte_exact = False

    def __init__(self, *, target: tuple[str, int] | None = None, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout

    def bind(self, host: str, port: int) -> None:
        """Tell the provisioner where the POP3 target is (for emptying and
        waiting). `make_provisioner(..., target=(host, port))` does it too."""
        self.target = (host, port)

    def _pop3(self) -> _Pop3Helper:
        if self.target is None:
            raise ProvisionError(
                f"{self.name} provisioner needs the POP3 target address to empty and count "
                "maildrops (make_provisioner(spec, target=(host, port)))"
            )
        return _Pop3Helper(self.target[0], self.target[1], self.timeout)

    def reset(self, account: Account) -> None:
        pop = self._pop3()
        pop.empty(account)
        pop.wait_for_count(account, 0, time.monotonic() + self.timeout, "emptying it")
        for index, message in enumerate(account.messages, start=1):
            self.deliver(account, index, message)
            pop.wait_for_count(
                account, index, time.monotonic() + self.timeout, f"delivering message {index}"
            )

    @abc.abstractmethod
    def deliver(self, account: Account, index: int, message: FixtureMessage) -> None:
        """Hand one message to the delivery path."""


class SmtpProvisioner(_DeliveryProvisioner):
    """Delivers each fixture message over SMTP: `smtp:HOST:PORT`.

    Recipient `{user}@localhost` by default (option `rcpt=TEMPLATE`).
    Messages are sent in CRLF form; 8BITMIME is declared when offered.
    Not byte-exact: the MTA adds trace headers."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        rcpt: str = "{user}@localhost",
        sender: str = "mailspec@mailspec.test",
        target: tuple[str, int] | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(target=target, timeout=timeout)
        self.host, self.port = host, port
        self.rcpt, self.sender = rcpt, sender

    def deliver(self, account: Account, index: int, message: FixtureMessage) -> None:
        rcpt = self.rcpt.replace(USER_PLACEHOLDER, account.user)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo_or_helo_if_needed()
                options = ["BODY=8BITMIME"] if smtp.has_extn("8bitmime") else []
                refused = smtp.sendmail(self.sender, [rcpt], message.wire, mail_options=options)
        except (smtplib.SMTPException, OSError) as exc:
            raise ProvisionError(
                f"SMTP delivery of message {index} ({message.name}) to {rcpt} via "
                f"{self.host}:{self.port} failed: {exc}"
            ) from None
        if refused:
            raise ProvisionError(f"SMTP server refused {rcpt}: {refused[rcpt]}")

    def describe(self) -> str:
        return f"smtp:{self.host}:{self.port}"


class CommandProvisioner(_DeliveryProvisioner):
    """Runs the operator's delivery command once per message:
    `command:'/usr/lib/dovecot/dovecot-lda -d'` runs
    `COMMAND... MESSAGE-FILE USER` (the file holds the fixture's stored
    bytes). Environment: MAILSPEC_USER, MAILSPEC_INDEX (1-based),
    MAILSPEC_COUNT, MAILSPEC_MESSAGE. Not byte-exact unless declared with
    `command,exact:...`."""

    name = "command"

    def __init__(
        self,
        command: str,
        *,
        exact: bool = False,
        target: tuple[str, int] | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(target=target, timeout=timeout)
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise ProvisionError(f"command {command!r}: {exc}") from None
        if not self.argv:
            raise ProvisionError("command provisioner needs a command")
        self.command = command
        self.byte_exact = exact

    def deliver(self, account: Account, index: int, message: FixtureMessage) -> None:
        with tempfile.TemporaryDirectory(prefix="mailspec-msg-") as tmpdir:
            path = Path(tmpdir) / f"{index:03d}-{message.name}"
            path.write_bytes(message.raw)
            os.chmod(tmpdir, 0o755)
            os.chmod(path, 0o644)
            env = {
                **os.environ,
                "MAILSPEC_USER": account.user,
                "MAILSPEC_INDEX": str(index),
                "MAILSPEC_COUNT": str(account.count),
                "MAILSPEC_MESSAGE": str(path),
            }
            try:
                done = subprocess.run(
                    [*self.argv, str(path), account.user],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=self.timeout,
                    check=False,
                )
            except FileNotFoundError:
                raise ProvisionError(f"command not found: {self.argv[0]}") from None
            except subprocess.TimeoutExpired:
                raise ProvisionError(
                    f"command {self.command!r} did not finish within {self.timeout} s "
                    f"for message {index} of {account.user}"
                ) from None
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip()[-500:]
            raise ProvisionError(
                f"command {self.command!r} exited {done.returncode} for message {index} "
                f"({message.name}) of {account.user}" + (f": {err}" if err else "")
            )

    def describe(self) -> str:
        return f"command{',exact' if self.byte_exact else ''}:{self.command}"


# --------------------------------------------------------------------------
# Factory


def _split_spec(spec: str) -> tuple[str, dict[str, str], str]:
    head, sep, arg = spec.partition(":")
    kind, *opts = head.split(",")
    options: dict[str, str] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        options[key.strip()] = value if eq else ""
    return kind.strip(), options, arg if sep else ""


def _flag(value: str, spec: str) -> bool:
    if value in ("", "yes", "true", "1"):
        return True
    if value in ("no", "false", "0"):
        return False
    raise ProvisionError(f"provisioner {spec!r}: exact={value!r}: expected yes or no")


def _host_port(arg: str, spec: str) -> tuple[str, int]:
    if arg.startswith("["):
        host, _, rest = arg[1:].partition("]")
        port_text = rest.lstrip(":")
    else:
        host, _, port_text = arg.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ProvisionError(f"provisioner {spec!r}: expected smtp:HOST:PORT")
    return host, int(port_text)


_ALLOWED_OPTIONS: Mapping[str, frozenset[str]] = {
    "maildir": frozenset({"owner", "group", "mode", "eol", "exact"}),
    "mbox": frozenset({"owner", "group", "mode", "eol", "exact"}),
    "smtp": frozenset({"rcpt", "from", "timeout"}),
    "command": frozenset({"exact", "timeout"}),
    "none": frozenset(),
}

_USAGE = (
    "expected none, maildir:TEMPLATE, mbox:TEMPLATE (TEMPLATE has {user}), "
    "smtp:HOST:PORT or command:COMMAND"
)


def make_provisioner(
    spec: str,
    *,
    owner: str | int | tuple[int | None, int | None] | None = None,
    mode: str | int | None = None,
    target: tuple[str, int] | None = None,
    timeout: float | None = None,
) -> Provisioner:
    """Build a provisioner from its config/CLI spelling (see the module doc).
    `reference` is handled by the embedded server, which owns its store.

    `target` is the POP3 server's (host, port); the delivery provisioners
    (smtp, command) use it to empty maildrops and to wait for deliveries."""
    kind, options, arg = _split_spec(spec)
    if kind not in _ALLOWED_OPTIONS:
        raise ProvisionError(f"unknown provisioner {spec!r}: {_USAGE}")
    unknown = set(options) - _ALLOWED_OPTIONS[kind]
    if unknown:
        allowed = ", ".join(sorted(_ALLOWED_OPTIONS[kind])) or "none"
        raise ProvisionError(
            f"provisioner {spec!r}: unknown option {sorted(unknown)[0]!r} (allowed: {allowed})"
        )
    if "owner" in options or "group" in options:
        if ":" in options.get("owner", ""):
            raise ProvisionError(f"provisioner {spec!r}: write owner=USER,group=GROUP")
        owner = f"{options.get('owner', '')}" + (
            f":{options['group']}" if "group" in options else ""
        )
    mode = options.get("mode", mode)
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            raise ProvisionError(f"provisioner {spec!r}: timeout must be seconds") from None
    wait = timeout if timeout is not None else 30.0

    if kind == "none":
        if arg:
            raise ProvisionError(f"provisioner {spec!r}: 'none' takes no argument")
        return NoneProvisioner()
    if not arg:
        raise ProvisionError(f"provisioner {spec!r} needs an argument: {_USAGE}")
    exact = _flag(options.get("exact", "yes"), spec)
    if kind == "maildir":
        eol = options.get("eol", "raw")
        return MaildirProvisioner(arg, owner=owner, mode=mode, eol=eol, exact=exact)
    if kind == "mbox":
        eol = options.get("eol", "lf")
        return MboxProvisioner(arg, owner=owner, mode=mode, eol=eol, exact=exact)
    if kind == "smtp":
        host, port = _host_port(arg, spec)
        return SmtpProvisioner(
            host,
            port,
            rcpt=options.get("rcpt", "{user}@localhost"),
            sender=options.get("from", "mailspec@mailspec.test"),
            target=target,
            timeout=wait,
        )
    # command
    exact = _flag(options.get("exact", "no"), spec)
    return CommandProvisioner(arg, exact=exact, target=target, timeout=wait)


# --------------------------------------------------------------------------
# Verification


def verify_listing(
    account: Account,
    stat: tuple[int, int] | None,
    list_sizes: Sequence[int] | Sequence[tuple[int, int]] | Mapping[int, int] | None,
    byte_exact: bool,
    uidl: Sequence[str] | Sequence[tuple[int, str]] | Mapping[int, str] | None = None,
) -> list[str]:
    """Compare what the server lists before a scenario with what the fixture
    put in `account`. Returns the differences (empty: the maildrop is as
    expected). Pure: no I/O.

    `stat` is STAT's (count, size); `list_sizes` is LIST's sizes in message
    order (or (msg, size) pairs, or {msg: size}); `uidl` optionally UIDL's
    ids. With `byte_exact`, each size must be one the fixture message may
    be reported as (with or without the CRLF added to a message lacking a
    final newline). Otherwise a size may exceed the fixture's by the trace
    headers a delivery path adds (up to MAX_ADDED_OCTETS) but never be
    smaller than its body: that still catches a wrong order or a wrong box.

    Only the mailbox's content is checked, never the server's arithmetic
    (STAT's total against LIST's sum is a conformance question for the
    scenarios)."""
    diffs: list[str] = []
    want = account.count
    who = f"account {account.role} ({account.user})"
    if stat is not None:
        count, size = stat
        if count != want:
            diffs.append(f"{who}: STAT count is {count}, the fixture has {want} messages")
        elif byte_exact:
            lo = sum(min(m.accepted_octets) for m in account.messages)
            hi = sum(max(m.accepted_octets) for m in account.messages)
            if not lo <= size <= hi:
                expect = str(lo) if lo == hi else f"{lo}..{hi}"
                diffs.append(f"{who}: STAT size is {size} octets, the fixture's is {expect}")
    if list_sizes is not None:
        sizes = _numbered(list_sizes)
        numbers = sorted(sizes)
        if numbers != list(range(1, len(numbers) + 1)):
            diffs.append(f"{who}: LIST numbers are {numbers}, expected 1..{len(numbers)}")
        if len(sizes) != want:
            diffs.append(f"{who}: LIST has {len(sizes)} lines, the fixture has {want} messages")
        for n, message in enumerate(account.messages, start=1):
            if n not in sizes:
                continue
            got = int(sizes[n])  # type: ignore[call-overload]
            if byte_exact:
                if got not in message.accepted_octets:
                    accepted = " or ".join(str(v) for v in sorted(message.accepted_octets))
                    diffs.append(
                        f"{who}: message {n} is {got} octets, fixture message {message.name} "
                        f"is {accepted}"
                    )
            elif not len(message.body) <= got <= message.octets + MAX_ADDED_OCTETS:
                diffs.append(
                    f"{who}: message {n} is {got} octets, fixture message {message.name} is "
                    f"{message.octets} (+ at most {MAX_ADDED_OCTETS} of added headers): "
                    "wrong message order or wrong maildrop?"
                )
    if uidl is not None:
        ids = _numbered(uidl)
        if len(ids) != want:
            diffs.append(f"{who}: UIDL has {len(ids)} lines, the fixture has {want} messages")
    return diffs


def _numbered(values: object) -> dict[int, object]:
    if isinstance(values, Mapping):
        return {int(k): v for k, v in values.items()}
    out: dict[int, object] = {}
    item: object
    for i, item in enumerate(values, start=1):  # type: ignore[arg-type]
        if isinstance(item, tuple):
            out[int(item[0])] = item[1]
        else:
            out[i] = item
    return out
