"""Real SMTP servers for interoperability runs: Postfix, Exim, OpenSMTPD
and aiosmtpd, each on 127.0.0.1 and a free high port, each delivering the
mail it accepts into Maildirs under its own temporary directory.

    with PostfixServer() as server:
        server.address                 # ("127.0.0.1", port)
        server.recipients              # ["alice@example.test", "bob@example.test"]
        server.maildir("alice")        # Path of alice's Maildir
        server.ehlo_keywords           # what the server advertised

Postfix, Exim and OpenSMTPD are all Debian `mail-transport-agent`
packages and conflict with each other, so none is installed: their .debs
are fetched with `apt-get download` (or taken from /var/cache/apt/archives)
and unpacked with `dpkg-deb -x` side by side into a cache directory
(`$MAILSPEC_MTA_CACHE`, default `.cache/mta/` in the repository, which
the cache marks ignored for git). The libraries they link against are
plain Debian library packages that a fresh Debian 12 partly lacks
(libgnutls-dane0, libevent-2.1-7): scripts/install-test-deps.sh and
scripts/smtp-interop-servers.sh install them (MTA_LIBRARIES in
scripts/_common.sh). A checkout under a private directory (mode 0700,
e.g. /root) caches in /var/tmp/mailspec-mta instead.

Each MTA runs from its prefix with its own configuration, queue or spool,
logs and Maildirs under the temporary directory, and is stopped by PID
(its process group, which it leads). Nothing outside the temporary
directory is changed. The MTAs need root, and system accounts that do not
exist here (postfix/postdrop, Debian-exim, opensmtpd/opensmtpq) plus, for
OpenSMTPD, compiled-in paths (/var/spool/smtpd, /var/lib/opensmtpd/empty,
/var/run/smtpd.sock, /usr/libexec/opensmtpd); instead of creating them on
the machine, each MTA runs in a private mount namespace (`unshare -m`)
where copies of /etc/passwd and /etc/group with those accounts added, and
directories from the temporary directory, are bind-mounted over the
system's. The mounts exist only for the server's processes.

aiosmtpd is Debian's python3-aiosmtpd under /usr/bin/python3 (installed
with apt-get when missing: it conflicts with nothing), or else the
running interpreter's aiosmtpd (PyPI), run as its own process by
interop/aiosmtpd_maildir.py.

Standard library only: nothing from conformance/ or reference_server/.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INTEROP_DIR = Path(__file__).resolve().parent
REPO = INTEROP_DIR.parent

#: the one local domain every server accepts mail for
DOMAIN = "example.test"
#: the name each server uses for itself (greeting, Received:)
HOSTNAME = "mx.example.test"
#: local parts with a Maildir; postmaster (RFC 5321 section 4.5.1) is
#: accepted too and delivered to the first one
USERS = ("alice", "bob")

#: bounds of every socket read in the start-up probe (RFC 5321 section
#: 4.5.3.2 allows a client 5 minutes; a local server answers at once)
PROBE_TIMEOUT = 10.0
#: RFC 5321 section 4.5.3.1.5: a reply line is at most 512 octets; an EHLO
#: reply has a line per keyword, so 64 KiB bounds the whole of it
MAX_REPLY = 65536
#: first uid/gid tried for accounts that exist only inside a namespace
NAMESPACE_ID_BASE = 64900
#: the password of every user where a server offers AUTH (RFC 4954): a
#: fixed test credential of loopback-only throwaway servers, not a secret
AUTH_PASSWORD = "interop-password-1"


class ServerUnavailable(Exception):
    """The server cannot run here; the message says what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- fetching and unpacking the Debian packages ---------------------------


def cache_root() -> Path:
    """Where unpacked .debs live: `$MAILSPEC_MTA_CACHE` or REPO/.cache/mta.

    The servers' unprivileged processes execute files from it, so every
    directory on the way must be searchable by others (a home directory
    of mode 0700 is not): a checkout under one (e.g. /root) uses
    FALLBACK_CACHE instead, since a test run must not skip for that."""
    configured = os.environ.get("MAILSPEC_MTA_CACHE")
    root = Path(configured or REPO / ".cache" / "mta").absolute()
    if not configured and not _searchable(root):
        root = FALLBACK_CACHE / f"uid-{os.getuid()}"
        for made in (FALLBACK_CACHE, root):
            made.mkdir(exist_ok=True)
            if made.stat().st_uid == os.getuid():
                made.chmod(0o755)  # whatever the umask: the servers' users read it
    _check_searchable(root)  # before creating anything
    root.mkdir(parents=True, exist_ok=True)
    _check_searchable(root)  # a umask may have made it private
    if not configured and root.is_relative_to(REPO):
        ignore = REPO / ".cache" / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# written by interop/smtp_servers.py: unpacked .debs\n*\n")
    return root


#: The cache when the checkout sits under a private directory.
FALLBACK_CACHE = Path("/var/tmp/mailspec-mta")


def _searchable(root: Path) -> bool:
    try:
        _check_searchable(root)
    except ServerUnavailable:
        return False
    return True


def _check_searchable(root: Path) -> None:
    for part in [root, *root.parents]:
        if part.exists() and part.stat().st_mode & 0o001 == 0:
            raise ServerUnavailable(
                f"cache {root}: {part} is not searchable by other users (mode "
                f"{part.stat().st_mode & 0o777:o}); set MAILSPEC_MTA_CACHE to a "
                "directory under world-searchable parents"
            )


def _find_deb(package: str, debs: Path) -> Path | None:
    for where in (debs, Path("/var/cache/apt/archives")):
        found = sorted(where.glob(f"{package}_*.deb"))
        if found:
            return found[-1]
    return None


def _download_deb(package: str, debs: Path) -> Path:
    if not shutil.which("apt-get"):
        raise ServerUnavailable(f"no apt-get: put {package}_*.deb into {debs} by hand")
    cmd = ["apt-get", "download", package]
    done = subprocess.run(cmd, cwd=debs, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, check=False)
        done = subprocess.run(cmd, cwd=debs, capture_output=True, text=True, check=False)
    found = _find_deb(package, debs)
    if done.returncode != 0 or found is None:
        raise ServerUnavailable(
            f"apt-get download {package} failed ({done.stderr.strip()[-300:]}); "
            f"put {package}_*.deb into {debs} by hand"
        )
    return found


def unpack(name: str, packages: tuple[str, ...]) -> tuple[Path, dict[str, str]]:
    """The prefix where `packages` are unpacked (once), and their versions.

    Concurrent runs (two pytest sessions) serialise on a lock file; the
    prefix appears whole or not at all (unpacked aside, then renamed)."""
    root = cache_root()
    prefix = root / name
    marker = prefix / ".mailspec-versions.json"
    with open(root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return prefix, json.loads(marker.read_text())
        if not shutil.which("dpkg-deb"):
            raise ServerUnavailable("dpkg-deb missing: the MTAs are unpacked from Debian .debs")
        debs = root / "debs"
        debs.mkdir(exist_ok=True)
        staging = root / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        versions: dict[str, str] = {}
        for package in packages:
            deb = _find_deb(package, debs) or _download_deb(package, debs)
            try:
                out = subprocess.run(
                    ["dpkg-deb", "-f", str(deb), "Version"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                versions[package] = out.stdout.strip()
                subprocess.run(
                    ["dpkg-deb", "-x", str(deb), str(staging)], capture_output=True, check=True
                )
            except subprocess.CalledProcessError as exc:
                raise ServerUnavailable(
                    f"dpkg-deb cannot read {deb} ({exc.stderr!r}); delete it and retry"
                ) from None
        (staging / marker.name).write_text(json.dumps(versions, indent=1))
        shutil.rmtree(prefix, ignore_errors=True)
        staging.rename(prefix)
        return prefix, versions


# --- the private mount namespace ------------------------------------------


class Namespace:
    """Accounts and bind mounts seen only by one server's processes.

    `wrap(argv)` is a command line that enters a new mount namespace
    (`unshare -m --propagation private`, so nothing propagates back),
    bind-mounts the copies and directories, and execs argv: the server
    keeps the PID Popen returns."""

    def __init__(self, workdir: Path):
        self.etc = workdir / "ns-etc"
        self.etc.mkdir(exist_ok=True)
        self.mounts: list[tuple[Path, str]] = []
        self.passwd = Path("/etc/passwd").read_text()
        self.group = Path("/etc/group").read_text()
        self.ids: dict[str, int] = {}

    @staticmethod
    def check() -> None:
        if os.geteuid() != 0:
            raise ServerUnavailable("the MTAs need root (their daemons start as root)")
        if not shutil.which("unshare"):
            raise ServerUnavailable("unshare (util-linux) missing")
        done = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "true"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ServerUnavailable(
                f"cannot make a mount namespace ({done.stderr.strip()}); "
                "the MTAs need CAP_SYS_ADMIN here"
            )

    def _free_id(self) -> int:
        used = {int(f.split(":")[2]) for f in self.passwd.splitlines() if f.count(":") >= 3}
        used |= {int(f.split(":")[2]) for f in self.group.splitlines() if f.count(":") >= 2}
        used |= set(self.ids.values())
        candidate = NAMESPACE_ID_BASE
        while candidate in used:
            candidate += 1
        return candidate

    def account(self, name: str) -> tuple[int, int]:
        """A system account and its group of the same name, visible inside;
        returns (uid, gid). An account the machine already has is used as
        it is."""
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        number = self._free_id()
        self.ids[name] = number
        self.passwd += f"{name}:x:{number}:{number}::/nonexistent:/usr/sbin/nologin\n"
        self.group += f"{name}:x:{number}:\n"
        return number, number

    def add_group(self, name: str) -> int:
        with contextlib.suppress(KeyError):
            return grp.getgrnam(name).gr_gid
        number = self._free_id()
        self.ids[name] = number
        self.group += f"{name}:x:{number}:\n"
        return number

    def bind(self, source: Path, target: str) -> None:
        """`target` (an existing system path) shows `source` inside."""
        self.mounts.append((source, target))

    def wrap(self, argv: list[str]) -> list[str]:
        (self.etc / "passwd").write_text(self.passwd)
        (self.etc / "group").write_text(self.group)
        os.chmod(self.etc / "passwd", 0o644)
        os.chmod(self.etc / "group", 0o644)
        mounts = [(self.etc / "passwd", "/etc/passwd"), (self.etc / "group", "/etc/group")]
        steps = [
            f"mount --bind {shlex.quote(str(s))} {shlex.quote(t)}"
            for s, t in [*mounts, *self.mounts]
        ]
        script = " && ".join([*steps, "exec " + shlex.join(argv)])
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]


# --- the SMTP probe -----------------------------------------------------


def _read_reply(sock: socket.socket, buffer: bytearray) -> tuple[int, list[str]]:
    """One whole reply (RFC 5321 section 4.2.1: lines `NNN-` then `NNN `)."""
    lines: list[str] = []
    taken = 0
    while True:
        while b"\n" not in buffer:
            if len(buffer) + taken > MAX_REPLY:
                raise RuntimeError(f"reply longer than {MAX_REPLY} octets")
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"connection closed mid-reply after {lines!r}")
            buffer += chunk
        end = buffer.index(b"\n")
        line = bytes(buffer[:end]).rstrip(b"\r").decode("utf-8", "replace")
        del buffer[: end + 1]
        taken += end + 1
        if not re.match(r"\d{3}[ -]", line + " "):
            raise RuntimeError(f"not an SMTP reply line: {line!r}")
        lines.append(line[4:])
        if line[3:4] != "-":
            return int(line[:3]), lines


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> tuple[str, list[str]]:
    """(greeting text, EHLO reply lines) of a running server, then QUIT."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        buffer = bytearray()
        code, greeting = _read_reply(sock, buffer)
        if code != 220:
            raise RuntimeError(f"greeting {code} {greeting!r}")
        sock.sendall(b"EHLO client.example.test\r\n")
        code, ehlo = _read_reply(sock, buffer)
        if code != 250:
            raise RuntimeError(f"EHLO answered {code} {ehlo!r}")
        with contextlib.suppress(OSError, RuntimeError):
            sock.sendall(b"QUIT\r\n")
            _read_reply(sock, buffer)
    return "\n".join(greeting), ehlo


def wait_for_smtp(
    host: str, port: int, process: subprocess.Popen, timeout: float
) -> tuple[str, list[str]]:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} while starting")
        try:
            left = max(0.5, min(PROBE_TIMEOUT, deadline - time.monotonic()))
            return probe(host, port, timeout=left)
        except (OSError, RuntimeError) as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"no SMTP greeting on {host}:{port} within {timeout} s: {last}")


# --- delivery inspection -------------------------------------------------

#: header fields a receiving or delivering server may prepend (RFC 5321
#: section 4.4 Received/Return-Path; the local-delivery fields of Postfix
#: (Delivered-To, X-Original-To), Exim (Envelope-to, Delivery-date) and
#: OpenSMTPD (Delivered-To))
TRACE_FIELDS = frozenset(
    {"received", "return-path", "delivered-to", "x-original-to", "envelope-to", "delivery-date"}
)


class DeliveryMismatch(AssertionError):
    """A stored message is not the sent one plus prepended trace fields."""


def split_delivered(stored: bytes, sent: bytes, line_end: bytes = b"\r\n") -> list[str]:
    """Check that `stored` is the `sent` message (CRLF line ends, already
    dot-unstuffed) with header fields prepended, every one of them a trace
    field, and `line_end` the stored line ending throughout. Returns the
    names of the prepended fields, in order; raises DeliveryMismatch
    saying what differs."""
    if line_end != b"\r\n":
        if b"\r\n" in stored:
            raise DeliveryMismatch(f"stored message mixes CRLF into {line_end!r} line ends")
        expected = sent.replace(b"\r\n", line_end)
    else:
        expected = sent
    if not stored.endswith(expected):
        common = 0
        for a, b in zip(reversed(stored), reversed(expected), strict=False):
            if a != b:
                break
            common += 1
        raise DeliveryMismatch(
            f"stored message does not end with the sent one: the last {common} octets agree; "
            f"stored ...{stored[-common - 40 : len(stored) - common]!r}"
        )
    prefix = stored[: len(stored) - len(expected)]
    names: list[str] = []
    for line in prefix.split(line_end)[:-1] if prefix else []:
        if line[:1] in (b" ", b"\t"):
            if not names:
                raise DeliveryMismatch(f"continuation line before any field: {line!r}")
            continue
        name, colon, _ = line.partition(b":")
        if not colon or not name or b" " in name:
            raise DeliveryMismatch(f"prepended line is not a header field: {line!r}")
        if name.decode("ascii", "replace").lower() not in TRACE_FIELDS:
            raise DeliveryMismatch(f"prepended field {name!r} is not a trace field")
        names.append(name.decode("ascii"))
    if prefix and not prefix.endswith(line_end):
        raise DeliveryMismatch(f"prepended fields do not end at a line end: {prefix[-40:]!r}")
    return names


# --- the servers ----------------------------------------------------------

#: how long stop() waits for SIGKILLed processes to be gone
STOP_GRACE = 5.0


#: /proc/PID/stat fields after the command name: state ppid pgrp session ...
STAT_PGRP, STAT_SESSION = 2, 3


def live_processes_where(field: int, value: int) -> list[int]:
    """Live (not zombie) processes whose /proc stat `field` (STAT_PGRP,
    STAT_SESSION) is `value`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[field]) == value and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid`."""
    return live_processes_where(STAT_PGRP, pgid)


class SmtpServer:
    """Base: a temp directory, Maildirs, a config, a process, a probe."""

    name = "abstract"
    #: Debian packages unpacked into the cache prefix (MTAs)
    packages: tuple[str, ...] = ()
    #: name of the account the Maildirs belong to
    maildir_owner = "mail"
    #: line ending of the stored messages (the MTAs' Maildir delivery agents
    #: store LF, as Maildir readers expect; aiosmtpd_maildir.py stores the
    #: octets as received)
    stored_line_end = b"\n"
    #: the server can offer STARTTLS (RFC 3207) with a trustme certificate
    offers_tls = False
    #: SASL mechanisms it offers inside TLS (RFC 4954), the password of
    #: every user being AUTH_PASSWORD
    auth_mechanisms: tuple[str, ...] = ()

    def __init__(self, *, workdir: str | None = None, keep: bool = False, tls: bool | None = None):
        self.keep = keep
        #: STARTTLS on (the default where the server offers it) or off
        self.tls = self.offers_tls if tls is None else tls
        if self.tls and not self.offers_tls:
            raise ValueError(f"{self.name}: STARTTLS is not configured by this harness")
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"mailspec-smtp-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)  # its unprivileged processes traverse it
        self.host = "127.0.0.1"
        self.port = 0
        self.domain = DOMAIN
        self.hostname = HOSTNAME
        self.users = USERS
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{self.name}.log"
        self.prefix: Path | None = None
        self.versions: dict[str, str] = {}
        #: text of the 220 greeting and the EHLO reply lines (the first is
        #: the server's name, then one keyword line each), from the probe
        self.greeting = ""
        self.ehlo_lines: list[str] = []
        self.started_in = 0.0

    # --- what the suite needs to know --------------------------------
    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def recipients(self) -> list[str]:
        return [f"{u}@{self.domain}" for u in self.users]

    def maildir(self, user: str) -> Path:
        return self.workdir / "mail" / user / "Maildir"

    @property
    def ehlo_keywords(self) -> dict[str, str]:
        """EHLO keyword (upper case) -> its parameters, as advertised."""
        found: dict[str, str] = {}
        for line in self.ehlo_lines[1:]:
            keyword, _, params = line.partition(" ")
            found[keyword.upper()] = params
        return found

    def version(self) -> str:
        return ", ".join(f"{p} {v}" for p, v in self.versions.items())

    # --- STARTTLS: a trustme CA of the run's own ------------------------
    @property
    def ca_path(self) -> Path:
        """The CA that issued the server certificate: what a client trusts."""
        return self.workdir / "tls" / "ca.pem"

    @property
    def cert_path(self) -> Path:
        return self.workdir / "tls" / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.workdir / "tls" / "key.pem"

    @property
    def auth_password(self) -> str | None:
        return AUTH_PASSWORD if self.tls and self.auth_mechanisms else None

    def write_certificates(self, key_owner: tuple[int, int] = (0, 0)) -> None:
        """A fresh trustme CA and a certificate for the server's host name
        and 127.0.0.1 under DIR/tls; the key readable by `key_owner` only
        (the process that loads it)."""
        import trustme

        self.ca_path.parent.mkdir(exist_ok=True)
        os.chmod(self.ca_path.parent, 0o755)
        ca = trustme.CA()
        cert = ca.issue_cert(self.hostname, self.host)
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert.cert_chain_pems[0].write_to_path(str(self.cert_path))
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(str(self.cert_path), append=True)
        cert.private_key_pem.write_to_path(str(self.key_path))
        os.chmod(self.ca_path, 0o644)
        os.chmod(self.cert_path, 0o644)
        os.chown(self.key_path, *key_owner)
        os.chmod(self.key_path, 0o600)

    # --- subclass hooks ----------------------------------------------
    def prepare(self) -> None:
        """Fetch/unpack what the server needs (may raise ServerUnavailable)."""
        if self.packages:
            Namespace.check()
            self.prefix, self.versions = unpack(self.name, self.packages)

    def write_config(self) -> list[str]:
        """Write configuration and directories; return the command line."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    # --- lifecycle ----------------------------------------------------
    def owner_ids(self) -> tuple[int, int]:
        entry = pwd.getpwnam(self.maildir_owner)
        return entry.pw_uid, entry.pw_gid

    def make_maildirs(self, uid: int, gid: int) -> None:
        for user in self.users:
            for sub in ("tmp", "new", "cur"):
                (self.maildir(user) / sub).mkdir(parents=True, exist_ok=True)
        for path in [self.workdir / "mail", *sorted((self.workdir / "mail").rglob("*"))]:
            os.chown(path, uid, gid)
            os.chmod(path, 0o700 if path.parent.name == "Maildir" else 0o755)

    def start(self, timeout: float = 20.0) -> None:
        began = time.monotonic()
        self.prepare()
        self.port = free_port()
        argv = self.write_config()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.workdir,
            env=self.environment(),
        )
        log.close()
        try:
            self.greeting, self.ehlo_lines = wait_for_smtp(
                self.host, self.port, self.process, timeout
            )
        except RuntimeError as exc:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"{self.name}: {exc}; log:\n{tail}") from None
        self.started_in = time.monotonic() - began

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        proc = self.process
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            # children left in its process group (it leads a session of its
            # own, so the group holds only its processes); SIGKILL takes a
            # moment to land, so wait until none of them runs any more
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_GRACE
            while _group_members(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.process = None
        if self._own_workdir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        texts = []
        for path in sorted(self.workdir.glob("*.log")) + sorted(self.workdir.glob("log/*")):
            with contextlib.suppress(OSError):
                body = path.read_text(errors="replace").splitlines()[-lines:]
                texts.append(f"--- {path.name}\n" + "\n".join(body))
        return "\n".join(texts) or "(no log)"

    def messages(self, user: str) -> list[bytes]:
        """The stored messages of `user`, oldest first (new/ and cur/)."""
        box = self.maildir(user)
        files = [p for sub in ("new", "cur") for p in (box / sub).glob("*") if p.is_file()]
        files.sort(key=lambda p: (p.stat().st_mtime, p.name))
        return [p.read_bytes() for p in files]

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: Postfix queue directories (postfix-files): name -> (mode, group is setgid_group)
POSTFIX_QUEUE_DIRS = {
    "active": (0o700, False),
    "bounce": (0o700, False),
    "corrupt": (0o700, False),
    "defer": (0o700, False),
    "deferred": (0o700, False),
    "flush": (0o700, False),
    "hold": (0o700, False),
    "incoming": (0o700, False),
    "private": (0o700, False),
    "saved": (0o700, False),
    "trace": (0o700, False),
    "maildrop": (0o730, True),
    "public": (0o710, True),
}

#: Postfix services (master.cf): the one SMTP listener plus the internal
#: ones delivery needs; nothing chrooted (columns: type private unpriv
#: chroot wakeup maxproc command)
POSTFIX_SERVICES = """\
pickup    unix  n - n 60  1 pickup
cleanup   unix  n - n -   0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -   - trivial-rewrite
bounce    unix  - - n -   0 bounce
defer     unix  - - n -   0 bounce
trace     unix  - - n -   0 bounce
verify    unix  - - n -   1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -   - proxymap
smtp      unix  - - n -   - smtp
relay     unix  - - n -   - smtp
showq     unix  n - n -   - showq
error     unix  - - n -   - error
retry     unix  - - n -   - error
discard   unix  - - n -   - discard
local     unix  - n n -   - local
virtual   unix  - n n -   - virtual
anvil     unix  - - n -   1 anvil
scache    unix  - - n -   1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

#: the TLS session cache and PRNG service smtpd asks for under STARTTLS
POSTFIX_TLS_SERVICES = "tlsmgr    unix  - - n 1000? 1 tlsmgr\n"


class PostfixServer(SmtpServer):
    """Postfix 3.7 (Debian 12 `postfix`), unpacked, run as `master -d`.

    main.cf: inet_interfaces 127.0.0.1, the listener `127.0.0.1:PORT` in
    master.cf, queue/data directories and the log (maillog_file, written
    by postlogd) under DIR; `example.test` a virtual mailbox domain, the
    users' Maildirs in virtual_mailbox_maps (texthash: no postmap
    needed), delivered by virtual(8) as `mail`; postmaster aliased to the
    first user. Relaying: only to example.test (no permit_mynetworks), so
    a relay attempt is refused as a deployment would. Headers of
    remote clients are not rewritten (local_header_rewrite_clients
    empty), so the stored message is what was sent plus the trace
    headers. mail_owner `postfix` and setgid_group `postdrop` exist only
    in the server's namespace. With TLS (the default): STARTTLS offered
    (`smtpd_tls_security_level = may`) with the trustme certificate;
    no AUTH (Postfix has no SASL of its own: it needs Cyrus SASL or a
    Dovecot auth service). Every other setting is Postfix's default."""

    name = "postfix"
    packages = ("postfix",)
    offers_tls = True

    def environment(self) -> dict[str, str]:
        assert self.prefix is not None
        return {**os.environ, "LD_LIBRARY_PATH": str(self.prefix / "usr/lib/postfix")}

    def write_config(self) -> list[str]:
        assert self.prefix is not None
        d, p = self.workdir, self.prefix
        ns = Namespace(d)
        owner, owner_gid = ns.account("postfix")
        postdrop = ns.add_group("postdrop")
        uid, gid = self.owner_ids()
        conf, spool, data = d / "conf", d / "spool", d / "data"
        for path in (conf, spool, data):
            path.mkdir(exist_ok=True)
        for sub, (mode, setgid) in POSTFIX_QUEUE_DIRS.items():
            path = spool / sub
            path.mkdir(exist_ok=True)
            os.chown(path, owner, postdrop if setgid else owner_gid)
            os.chmod(path, mode)
        (spool / "pid").mkdir(exist_ok=True)
        os.chown(data, owner, owner_gid)
        os.chmod(data, 0o700)
        self.make_maildirs(uid, gid)
        boxes = "".join(f"{u}@{self.domain} {u}/Maildir/\n" for u in self.users)
        (conf / "vmailbox").write_text(boxes)
        (conf / "valias").write_text(f"postmaster@{self.domain} {self.recipients[0]}\n")
        libs = p / "usr/lib/postfix"
        main_cf = f"""# written by mailspec interop/smtp_servers.py
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
command_directory = {p}/usr/sbin
daemon_directory = {p}/usr/lib/postfix/sbin
shlib_directory = {libs}
meta_directory = {p}/etc/postfix
mail_owner = postfix
setgid_group = postdrop
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH={libs}
maillog_file = {self.log_path}
maillog_file_prefixes = {d}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {self.hostname}
mydomain = {self.domain}
myorigin = $mydomain
mydestination =
mynetworks = 127.0.0.1/32
smtpd_relay_restrictions = reject_unauth_destination
local_header_rewrite_clients =
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = {self.domain}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_alias_maps = texthash:{conf}/valias
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
biff = no
smtp_dns_support_level = disabled
"""
        services = POSTFIX_SERVICES
        if self.tls:
            self.write_certificates()  # smtpd reads the key as root, at start
            main_cf += (
                f"smtpd_tls_cert_file = {self.cert_path}\n"
                f"smtpd_tls_key_file = {self.key_path}\n"
                "smtpd_tls_security_level = may\n"
                "smtpd_tls_loglevel = 1\n"
            )
            services += POSTFIX_TLS_SERVICES
        (conf / "main.cf").write_text(main_cf)
        listener = f"{self.host}:{self.port} inet n - n - - smtpd\n"
        (conf / "master.cf").write_text(listener + services)
        master = str(p / "usr/lib/postfix/sbin/master")
        return ns.wrap([master, "-c", str(conf), "-d"])


class EximServer(SmtpServer):
    """Exim 4.96 (Debian 12 `exim4-daemon-light`), unpacked, run as
    `exim4 -C CONF -bdf -oX PORT` (daemon in the foreground, no queue
    runner: Exim delivers each message as soon as it is received).

    The configuration (written here, not Debian's split config): one
    local domain, the RCPT ACL accepting the users and postmaster there,
    550 for other local parts and for relaying; a redirect router for
    postmaster; an appendfile transport in maildir format adding
    Return-path:, Envelope-to: and Delivery-date:, its directory built
    from $local_part_data (the router's matched list item), as Exim
    4.94+ refuses a path made from the tainted $local_part. With TLS
    (the default): STARTTLS offered to every host with the trustme
    certificate (GnuTLS), and inside TLS AUTH PLAIN and LOGIN by
    `plaintext` authenticators checking the users against AUTH_PASSWORD;
    without it, `tls_advertise_hosts =` empty. host_lookup and ident off
    (no DNS, no port 113).

    `exim_user` is Debian's compiled-in `Debian-exim`, added in the
    namespace. Exim gives up root for deliveries when started with -C
    from a file outside TRUSTED_CONFIG_LIST (its log says "exim user lost
    privilege for using -C option"), so the transport delivers as
    Debian-exim and the Maildirs belong to that uid."""

    name = "exim"
    packages = ("exim4-base", "exim4-daemon-light")
    maildir_owner = "Debian-exim"
    offers_tls = True
    auth_mechanisms = ("PLAIN", "LOGIN")

    def write_config(self) -> list[str]:
        assert self.prefix is not None
        d = self.workdir
        ns = Namespace(d)
        exim_uid, exim_gid = ns.account("Debian-exim")
        spool, logs = d / "spool", d / "log"
        for path in (spool, logs):
            path.mkdir(exist_ok=True)
            os.chown(path, exim_uid, exim_gid)
            os.chmod(path, 0o750)
        self.make_maildirs(exim_uid, exim_gid)
        binary = self.prefix / "usr/sbin/exim4"
        users = " : ".join(self.users)
        tls = "tls_advertise_hosts =\n"
        authenticators = ""
        if self.tls:
            # the SMTP child that loads the key runs as the Exim user
            self.write_certificates((exim_uid, exim_gid))
            tls = (
                "tls_advertise_hosts = *\n"
                f"tls_certificate = {self.cert_path}\n"
                f"tls_privatekey = {self.key_path}\n"
            )
            authenticators = exim_authenticators(self.users, AUTH_PASSWORD)
        conf = f"""# written by mailspec interop/smtp_servers.py
exim_path = {binary}
primary_hostname = {self.hostname}
qualify_domain = {self.domain}
domainlist local_domains = {self.domain}
spool_directory = {spool}
log_file_path = {logs}/%slog
pid_file_path = {d}/exim.pid
local_interfaces = <; {self.host}
daemon_smtp_ports = {self.port}
keep_environment =
host_lookup =
rfc1413_hosts =
{tls}never_users = root
acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  accept domains = +local_domains
         local_parts = {users} : postmaster
  deny   domains = +local_domains
         message = 5.1.1 no such user here
  deny   message = 5.7.1 relay not permitted

begin routers

postmaster:
  driver = redirect
  domains = +local_domains
  local_parts = postmaster
  data = {self.recipients[0]}

local_users:
  driver = accept
  domains = +local_domains
  local_parts = {users}
  transport = maildir

begin transports

maildir:
  driver = appendfile
  directory = {d}/mail/$local_part_data/Maildir
  maildir_format
  delivery_date_add
  envelope_to_add
  return_path_add
  user = Debian-exim
  group = Debian-exim
  mode = 0600

begin retry

*  *  F,1h,1m
{authenticators}"""
        (d / "exim.conf").write_text(conf)
        return ns.wrap([str(binary), "-C", str(d / "exim.conf"), "-bdf", "-oX", str(self.port)])


class OpenSmtpdServer(SmtpServer):
    """OpenSMTPD 6.8 (Debian 12 `opensmtpd`), unpacked, run as
    `smtpd -d -f CONF` (foreground, logging to stderr).

    smtpd.conf: `listen on 127.0.0.1 port PORT`, one match for
    example.test restricted to the users and postmaster (`rcpt-to`
    table, so other local parts get 550) and for postmaster at its host
    name (where it puts a bare <Postmaster>), a maildir action delivering as
    `mail` into DIR/mail/<local part>/Maildir (postmaster's table entry
    points at the first user). With TLS (the default): `listen ... tls
    pki` (STARTTLS offered, not required) with the trustme certificate and
    `auth-optional <credentials>` (OpenSMTPD offers AUTH PLAIN and LOGIN
    inside TLS only), the users' password AUTH_PASSWORD as a SHA-512 crypt
    hash in the credentials table. This build's TLS handshakes fail (see
    write_config), so STARTTLS is advertised and answered 220 but no
    session gets inside TLS, and AUTH is never reached.

    Its spool (/var/spool/smtpd), chroot (/var/lib/opensmtpd/empty),
    control socket (/var/run/smtpd.sock), delivery helpers
    (/usr/libexec/opensmtpd/mail.*) and accounts (opensmtpd, opensmtpq)
    are compiled in; in the namespace /var/spool, /var/lib, /run and
    /usr/libexec are directories of DIR (the helpers copied there, as the
    delivery user must be able to execute them)."""

    name = "opensmtpd"
    packages = ("opensmtpd",)
    offers_tls = True
    auth_mechanisms = ("PLAIN", "LOGIN")

    def write_config(self) -> list[str]:
        assert self.prefix is not None
        d = self.workdir
        ns = Namespace(d)
        ns.account("opensmtpd")
        ns.account("opensmtpq")
        uid, gid = self.owner_ids()
        self.make_maildirs(uid, gid)
        var_spool, var_lib, run, libexec = (
            d / "ns-var-spool",
            d / "ns-var-lib",
            d / "ns-run",
            d / "ns-libexec",
        )
        for path in (var_spool, var_lib / "opensmtpd" / "empty", run, libexec):
            path.mkdir(parents=True, exist_ok=True)
        helpers = libexec / "opensmtpd"
        if not helpers.exists():
            shutil.copytree(self.prefix / "usr/libexec/opensmtpd", helpers, symlinks=True)
        ns.bind(var_spool, "/var/spool")
        ns.bind(var_lib, "/var/lib")
        ns.bind(run, "/run")
        ns.bind(libexec, "/usr/libexec")
        # a bare <Postmaster> (RFC 5321 section 4.5.1) is qualified with the
        # host name, so postmaster@HOSTNAME is served too, as on a host
        # whose own name is one of its local domains
        accepted = [*self.recipients, f"postmaster@{self.domain}", f"postmaster@{self.hostname}"]
        (d / "domains").write_text(f"{self.domain}\n{self.hostname}\n")
        (d / "recipients").write_text("".join(f"{a}\n" for a in accepted))
        # every accepted address is delivered as the Maildir owner; the
        # path comes from the recipient's local part, and postmaster's
        # Maildir is the first user's
        (d / "virtuals").write_text("".join(f"{a} {self.maildir_owner}\n" for a in accepted))
        postmaster = d / "mail" / "postmaster"
        if not postmaster.is_symlink():
            postmaster.symlink_to(self.users[0])
        listen = f"listen on {self.host} port {self.port} hostname {self.hostname}"
        pki = ""
        if self.tls:
            # smtpd loads the key as root at start. Debian 12's build (with
            # OpenSSL 3) then fails every handshake, with ECDSA and RSA keys
            # alike: its privilege-separated signing finds no private key
            # (OpenSMTPD issues #1171, #1239; docs/interop-smtp.md)
            self.write_certificates()
            name = self.hostname
            pki = (
                f'pki {name} cert "{self.cert_path}"\n'
                f'pki {name} key "{self.key_path}"\n'
                f"table credentials file:{d}/credentials\n"
            )
            listen += f" tls pki {name} auth-optional <credentials>"
            hashed = sha512_crypt(AUTH_PASSWORD)
            (d / "credentials").write_text("".join(f"{u} {hashed}\n" for u in self.users))
            os.chmod(d / "credentials", 0o600)
        conf = f"""# written by mailspec interop/smtp_servers.py
table domains file:{d}/domains
table recipients file:{d}/recipients
table virtuals file:{d}/virtuals
{pki}{listen}
action "deliver" maildir "{d}/mail/%{{rcpt.user:lowercase}}/Maildir" virtual <virtuals>
match from any for domain <domains> rcpt-to <recipients> action "deliver"
"""
        (d / "smtpd.conf").write_text(conf)
        return ns.wrap([str(self.prefix / "usr/sbin/smtpd"), "-d", "-f", str(d / "smtpd.conf")])


def exim_authenticators(users: tuple[str, ...], password: str) -> str:
    """Exim `plaintext` authenticators for PLAIN and LOGIN (RFC 4616, the
    LOGIN draft), offered only inside TLS; `users` with `password`."""

    def condition(user: str, pw: str) -> str:
        # ${if and{{or{{eq{USER}{alice}}{eq{USER}{bob}}}}{eq{PW}{password}}}}
        known = "{or{" + "".join("{eq{" + user + "}{" + u + "}}" for u in users) + "}}"
        return "${if and{" + known + "{eq{" + pw + "}{" + password + "}}}}"

    return f"""
begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = {condition("$auth2", "$auth3")}
  server_set_id = $auth2
  server_advertise_condition = ${{if def:tls_in_cipher}}

login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = <| Username: | Password:
  server_condition = {condition("$auth1", "$auth2")}
  server_set_id = $auth1
  server_advertise_condition = ${{if def:tls_in_cipher}}
"""


def sha512_crypt(password: str) -> str:
    """A `$6$` crypt(3) hash, as OpenSMTPD's credentials table wants
    (`openssl passwd -6`: the stdlib crypt module is deprecated)."""
    done = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.startswith("$6$"):
        raise ServerUnavailable(f"openssl passwd -6 failed: {done.stderr.strip()}")
    return done.stdout.strip()


DEBIAN_PYTHON = "/usr/bin/python3"


class AiosmtpdServer(SmtpServer):
    """aiosmtpd, its library defaults, with interop/aiosmtpd_maildir.py as
    the delivery agent; Debian's python3-aiosmtpd under /usr/bin/python3
    (apt-get install when missing and root), else the PyPI aiosmtpd of
    the running interpreter. Runs as the current user; the Maildirs are
    its own."""

    name = "aiosmtpd"
    debian_package = "python3-aiosmtpd"
    stored_line_end = b"\r\n"

    def __init__(self, *, workdir: str | None = None, keep: bool = False, debian: bool = True):
        super().__init__(workdir=workdir, keep=keep)
        #: False: use the running interpreter's (PyPI) aiosmtpd
        self.debian = debian
        self.python = sys.executable

    @staticmethod
    def _aiosmtpd_version(python: str) -> str | None:
        if not Path(python).exists():
            return None
        done = subprocess.run(
            [python, "-I", "-c", "import aiosmtpd; print(aiosmtpd.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else None

    def prepare(self) -> None:
        found = None
        if self.debian:
            found = self._aiosmtpd_version(DEBIAN_PYTHON)
            if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
                subprocess.run(
                    ["apt-get", "install", "-y", "--no-install-recommends", self.debian_package],
                    env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                    capture_output=True,
                    check=False,
                )
                found = self._aiosmtpd_version(DEBIAN_PYTHON)
            if found is not None:
                self.python = DEBIAN_PYTHON
                self.versions = {self.debian_package: found}
                return
        found = self._aiosmtpd_version(sys.executable)
        if found is None:
            raise ServerUnavailable(
                f"aiosmtpd missing: apt-get install {self.debian_package}, or pip install aiosmtpd"
            )
        self.python = sys.executable
        self.versions = {"aiosmtpd (PyPI)": found}

    def owner_ids(self) -> tuple[int, int]:
        return os.geteuid(), os.getegid()

    def write_config(self) -> list[str]:
        self.make_maildirs(*self.owner_ids())
        return [
            self.python,
            "-I",
            str(INTEROP_DIR / "aiosmtpd_maildir.py"),
            f"--host={self.host}",
            f"--port={self.port}",
            f"--mail-root={self.workdir / 'mail'}",
            f"--domain={self.domain}",
            f"--users={','.join(self.users)}",
            f"--hostname={self.hostname}",
        ]


SMTP_SERVERS: dict[str, type[SmtpServer]] = {
    "postfix": PostfixServer,
    "exim": EximServer,
    "opensmtpd": OpenSmtpdServer,
    "aiosmtpd": AiosmtpdServer,
}


def main(argv: list[str] | None = None) -> int:
    """`python -m interop.smtp_servers fetch` unpacks the MTAs;
    `python -m interop.smtp_servers run NAME` starts one and waits."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m interop.smtp_servers")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download and unpack the MTAs' .debs into the cache")
    run = sub.add_parser("run", help="start one server, print where it is, wait for ^C")
    run.add_argument("name", choices=sorted(SMTP_SERVERS))
    args = parser.parse_args(argv)
    if args.command == "fetch":
        for name, cls in SMTP_SERVERS.items():
            if cls.packages:
                try:
                    prefix, versions = unpack(name, cls.packages)
                except ServerUnavailable as exc:
                    print(f"{name}: unavailable: {exc}", file=sys.stderr)
                    return 1
                print(f"{name}: {prefix} {versions}")
        return 0
    server = SMTP_SERVERS[args.name](keep=True)
    try:
        server.start()
    except (ServerUnavailable, RuntimeError) as exc:
        print(f"{args.name}: {exc}", file=sys.stderr)
        return 1
    print(f"{server.name} {server.version()} on {server.host}:{server.port}, pid {server.pid}")
    print(f"workdir {server.workdir}; maildir of alice: {server.maildir('alice')}")
    print("EHLO:", " | ".join(server.ehlo_lines))
    if server.tls:
        print(
            f"STARTTLS: trust {server.ca_path} (certificate for {server.hostname}, {server.host})"
        )
    if server.auth_password:
        print(
            f"AUTH {' '.join(server.auth_mechanisms)} inside TLS: users "
            f"{', '.join(server.users)}, password {server.auth_password}"
        )
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        signal.sigwait(stop_signals)
    finally:
        server.stop()
        print(f"stopped; {server.workdir} kept (mail, config, logs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
