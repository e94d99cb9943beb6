"""The provisioner interface, `none`, and the ownership/permission helpers
the file stores share."""

from __future__ import annotations

import abc
import contextlib
import grp
import os
import pwd
from pathlib import Path

from conformance.core.errors import ProvisionError
from conformance.core.fixture import Account

USER_PLACEHOLDER = "{user}"
DEFAULT_FILE_MODE = 0o600
# Files a POP3/IMAP server keeps inside a Maildir to remember UIDs and flags.
# They must go when we rewrite the messages: Dovecot would otherwise give a
# re-created file the next free UID and number it after the others.
KEEP_IN_MAILDIR_ROOT = frozenset({".mailspec-lock"})  # reference server's flock file
# Headers a delivery path may add are bounded: a non-byte-exact message whose
# size is off by more than this is another message (wrong order, wrong box).
MAX_ADDED_OCTETS = 16 * 1024


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
