"""Real POP3 servers for interoperability runs: Dovecot and GNU Mailutils.

Each server is installed from Debian (`apt-get install`, skipped when the
binary is already there), configured by a file written under a temporary
directory, started as a process on 127.0.0.1 and a free high port, and
stopped by PID. Nothing outside the temporary directory is changed: no
system configuration, no system users (the mail files belong to the
existing `mail` user when run as root, to the current user otherwise).

    with DovecotServer(load_fixture()) as server:
        server.address, server.provision_spec   # for `mailspec run`

The stores are written with the suite's own provisioners (the spec is
`server.provision_spec`), so re-provisioning between scenarios goes through
the same code a user's run does.

Account pools for `mailspec run --jobs N` (conformance.core.pools): with
`pools=N` the server holds N copies of the fixture's accounts, the user
names with the pool number appended (msmain1 ... msmainN, msempty1 ...), and
`server.write_run_config(path)` writes the target config naming them
(`pool: N`, `user: "msmain{n}"`), so a run on that config uses N jobs::

    with DovecotServer(load_fixture(), pools=8) as server:
        server.write_run_config(tmp / "dovecot.yaml")  # mailspec run --config ...
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conformance.core.fixture import Account, Fixture
from conformance.core.pools import POOL_PLACEHOLDER, templated_accounts, with_credentials
from conformance.provision import Provisioner, make_provisioner

INTEROP_DIR = Path(__file__).resolve().parent


class ServerUnavailable(Exception):
    """The server's binary is missing and could not be installed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def apt_install(packages: list[str]) -> None:
    """`apt-get install -y PACKAGES` (root only; `apt-get update` first when
    the package lists are missing)."""
    if os.geteuid() != 0:
        raise ServerUnavailable(f"not root: install {' '.join(packages)} with apt-get")
    if not shutil.which("apt-get"):
        raise ServerUnavailable(f"no apt-get here: install {' '.join(packages)} by hand")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServerUnavailable(
            f"apt-get install {' '.join(packages)} failed: {done.stderr[-400:]}"
        )


def mail_owner() -> tuple[str, int, int]:
    """(name, uid, gid) owning the stores: `mail` as root, else ourselves."""
    entry = pwd.getpwnam("mail") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def wait_for_greeting(host: str, port: int, process: subprocess.Popen, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                sock.settimeout(5)
                greeting = sock.recv(512)
                with contextlib.suppress(OSError):
                    sock.sendall(b"QUIT\r\n")
                    sock.recv(512)
                if greeting.startswith(b"+OK"):
                    return greeting
                last_error = RuntimeError(f"unexpected greeting {greeting!r}")
        except OSError as exc:
            last_error = exc
        time.sleep(0.1)
    raise RuntimeError(f"no POP3 greeting on {host}:{port} within {timeout} s: {last_error}")


class ManagedServer:
    """Base: a temp directory, a config, a process, a provisioner."""

    name = "abstract"
    packages: tuple[str, ...] = ()
    binary = ""

    def __init__(
        self,
        fixture: Fixture,
        *,
        workdir: str | None = None,
        keep: bool = False,
        tls: bool = False,
        pools: int = 1,
    ):
        if pools < 1:
            raise ValueError(f"pools must be at least 1, got {pools}")
        self.fixture = fixture
        #: account pools (see the module docstring); 1: the fixture's own names
        self.pools = pools
        self.tls = tls
        self.keep = keep
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"mailspec-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        # the server's unprivileged processes must traverse it
        os.chmod(self.workdir, 0o755)
        self.host = "127.0.0.1"
        self.port = 0
        self.tls_port = 0  # implicit-TLS (pop3s) listener, where the server has one
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{self.name}.log"
        self.owner, self.uid, self.gid = mail_owner()

    # --- availability -------------------------------------------------
    @classmethod
    def binary_path(cls) -> str | None:
        found = shutil.which(cls.binary) or shutil.which(cls.binary, path="/usr/sbin:/usr/bin")
        return found

    @classmethod
    def ensure_installed(cls, install: bool = True) -> str:
        path = cls.binary_path()
        if path:
            return path
        if not install:
            raise ServerUnavailable(
                f"{cls.binary} not found (apt-get install {' '.join(cls.packages)})"
            )
        apt_install(list(cls.packages))
        path = cls.binary_path()
        if not path:
            raise ServerUnavailable(f"{cls.binary} still missing after installing {cls.packages}")
        return path

    # --- lifecycle ----------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def provision_spec(self) -> str:
        raise NotImplementedError

    def provisioner(self) -> Provisioner:
        return make_provisioner(self.provision_spec, target=(self.host, self.port))

    def version(self) -> str:
        return ""

    def write_config(self) -> list[str]:
        """Write the config files; return the command line to start."""
        raise NotImplementedError

    # --- accounts and pools -------------------------------------------
    def pool_templates(self) -> dict[str, dict[str, str]]:
        """The config's `accounts:` for the pools: every role's user name
        with `{n}` appended (the fixture's own names when there is one pool)."""
        suffix = POOL_PLACEHOLDER if self.pools > 1 else ""
        return {
            role: {"user": f"{a.user}{suffix}", "password": a.password}
            for role, a in self.fixture.accounts.items()
        }

    def accounts(self) -> list[Account]:
        """Every account the server holds: all pools' (named as the suite's
        own conformance.core.pools names them), or the fixture's."""
        templates = self.pool_templates()
        return [
            account
            for n in range(1, self.pools + 1)
            for account in with_credentials(
                self.fixture, templated_accounts(templates, n)
            ).accounts.values()
        ]

    def write_run_config(self, path: Path, *, tls_mode: str = "plain") -> Path:
        """A `mailspec run --config` file for this server: target, TLS,
        provisioning, and the pools' accounts (`pool: N`)."""
        address = self.tls_address if tls_mode == "implicit" else self.address
        lines = [
            "# written by mailspec interop/servers.py",
            f"target: pop3://{address}",
            f'provision: "{self.provision_spec}"',
            f"pool: {self.pools}",
            "accounts:",
            *(
                f'  {role}: {{user: "{entry["user"]}", password: "{entry["password"]}"}}'
                for role, entry in self.pool_templates().items()
            ),
        ]
        if tls_mode != "plain":
            lines[2:2] = ["tls:", f"  mode: {tls_mode}", f'  ca: "{self.ca_path}"']
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    # --- TLS ----------------------------------------------------------
    @property
    def ca_path(self) -> Path:
        """PEM of the throw-away CA that issued the server's certificate
        (`--tls-ca` for the suite)."""
        return self.workdir / "ca.pem"

    @property
    def cert_path(self) -> Path:
        return self.workdir / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.workdir / "key.pem"

    @property
    def tls_address(self) -> str:
        return f"{self.host}:{self.tls_port}"

    def write_certificates(self) -> None:
        """A trustme CA and a certificate for 127.0.0.1 under the temp dir;
        the key readable by its owner only (Mailutils' file checks refuse
        a group- or world-readable key)."""
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert(self.host, "localhost")
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert.cert_chain_pems[0].write_to_path(str(self.cert_path))
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(str(self.cert_path), append=True)
        cert.private_key_pem.write_to_path(str(self.key_path))
        os.chmod(self.cert_path, 0o644)
        os.chmod(self.ca_path, 0o644)
        os.chmod(self.key_path, 0o600)

    def start(self, timeout: float = 20.0) -> None:
        self.ensure_installed()
        self.port = free_port()
        if self.tls:
            self.tls_port = free_port()
            self.write_certificates()
        argv = self.write_config()
        prov = self.provisioner()
        for account in self.accounts():
            prov.reset(account)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_greeting(self.host, self.port, self.process, timeout)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{self.name}: {exc}; log:\n{self.log_tail()}") from None

    def stop(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: only ours
                proc.wait(timeout=5)
        self.process = None
        if self._own_workdir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ManagedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: SASL mechanisms Dovecot offers (RFC 5034 AUTH). Debian 12's 2.3.19 build
#: has SCRAM-SHA-256 (its auth binary implements it, and a {PLAIN} passdb
#: lets it derive the SCRAM keys, as CRAM-MD5 needs the plaintext too).
MECHANISMS = "plain login cram-md5 scram-sha-256"
#: Processes kept ready per service in Dovecot's high-performance mode: one
#: per core is what Dovecot's documentation suggests; this machine has 2.
HIGH_PERFORMANCE_PROCESSES = max(1, os.cpu_count() or 1)


class DovecotServer(ManagedServer):
    """Dovecot 2.3 (Debian 12 `dovecot-pop3d`), Maildir store.

    passdb/userdb passwd-file with the fixture's accounts ({PLAIN}
    passwords), `mail_location = maildir:DIR/mail/%u/Maildir`, SASL
    PLAIN/LOGIN/CRAM-MD5/SCRAM-SHA-256, plaintext logins allowed; no SSL,
    or with `tls=True` STLS on the POP3 port and implicit TLS on a second
    listener (`tls_port`) with a trustme certificate for 127.0.0.1;
    base/state/log under DIR. Run as root the
    master keeps root; login processes run as `dovenull`, internal ones as
    `dovecot`, mail processes as `mail` (first_valid_uid lowered to reach
    it). Run as another user everything runs as that user.

    Order: Dovecot numbers POP3 messages by IMAP UID, and assigns UIDs to
    files found in new/ sorted by the time in their names; the maildir
    provisioner's names increase with the message number and it deletes
    dovecot-uidlist and the indexes on every reset, so numbering restarts
    in fixture order after each re-provisioning."""

    name = "dovecot"
    packages = ("dovecot-pop3d", "dovecot-core")
    binary = "dovecot"

    def __init__(
        self,
        fixture: Fixture,
        *,
        workdir: str | None = None,
        keep: bool = False,
        tls: bool = False,
        fast_failures: bool = False,
        pools: int = 1,
        high_performance: bool = False,
    ):
        super().__init__(fixture, workdir=workdir, keep=keep, tls=tls, pools=pools)
        #: True: refuse failed logins at once (`auth_failure_delay = 0` and the
        #: anvil auth penalty off, which otherwise grows 2 -> 4 -> 8 -> 15 s per
        #: IP). Tests set it to stay short; the matrix keeps Dovecot's defaults.
        #: Dovecot 2.3 still answers a failed login only at its next 0.5 s
        #: failure-queue check (measured: 0.46-0.50 s a failed PASS).
        self.fast_failures = fast_failures
        #: True: Dovecot's "high-performance" process mode (`service_count = 0`
        #: and `process_min_avail = HIGH_PERFORMANCE_PROCESSES` for pop3-login
        #: and pop3): processes serve one connection after another instead of
        #: one process forked per connection (Debian's default "high-security"
        #: mode). Same verdicts (tests/interop/golden/dovecot.json); a default
        #: run on 2 cores 29.5 s instead of 38 s serial, 7.2 s instead of 12-16 s
        #: with 8 pools (benchmarks/bench_interop_jobs.py).
        self.high_performance = high_performance

    def version(self) -> str:
        path = self.binary_path()
        if not path:
            return ""
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
        return out.stdout.strip()

    @property
    def provision_spec(self) -> str:
        return f"maildir,owner={self.uid},group={self.gid}:{self.workdir}/mail/{{user}}/Maildir"

    def write_config(self) -> list[str]:
        version = self.version()
        if re.match(r"2\.[4-9]|[3-9]\.", version):
            raise ServerUnavailable(
                f"Dovecot {version}: this harness writes a 2.3 configuration (Debian 12)"
            )
        d = self.workdir
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(exist_ok=True)
        users = "".join(f"{a.user}:{{PLAIN}}{a.password}::::::\n" for a in self.accounts())
        (d / "users").write_text(users)
        os.chmod(d / "users", 0o644)
        if os.geteuid() == 0:
            internal, internal_group, login = "dovecot", "dovecot", "dovenull"
        else:
            internal = login = pwd.getpwuid(os.geteuid()).pw_name
            internal_group = grp.getgrgid(os.getegid()).gr_name
        # chroot needs root; an unprivileged master runs its services in place
        chroot = "" if os.geteuid() == 0 else "  chroot =\n"
        if self.tls:
            # STLS on the plain port (RFC 2595), implicit TLS on pop3s (RFC 8314)
            ssl = f"ssl = yes\nssl_cert = <{self.cert_path}\nssl_key = <{self.key_path}"
            pop3s = f"    address = 127.0.0.1\n    port = {self.tls_port}\n    ssl = yes\n"
        else:
            ssl, pop3s = "ssl = no", "    port = 0\n"
        anvil = chroot
        login_mode = pop3_mode = ""
        if self.high_performance:
            reuse = f"  service_count = 0\n  process_min_avail = {HIGH_PERFORMANCE_PROCESSES}\n"
            login_mode = pop3_mode = reuse
        if self.fast_failures:
            ssl += "\nauth_failure_delay = 0"
            anvil += "  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n"
        conf = f"""# written by mailspec interop/servers.py
protocols = pop3
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.log_path}
{ssl}
disable_plaintext_auth = no
auth_mechanisms = {MECHANISMS}
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = {min(self.uid, 500) or 1}
first_valid_gid = {min(self.gid, 500) or 1}
mail_location = maildir:{d}/mail/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={d}/mail/%u
}}
service anvil {{
{anvil}}}
service pop3-login {{
{chroot}{login_mode}  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener pop3s {{
{pop3s}  }}
}}
service pop3 {{
{pop3_mode}}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
        (d / "dovecot.conf").write_text(conf)
        return [self.ensure_installed(), "-F", "-c", str(d / "dovecot.conf")]


def _crypt_sha512(password: str) -> str:
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # removed in Python 3.13

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    except ImportError:
        out = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"],
            input=password,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()


class MailutilsServer(ManagedServer):
    """GNU Mailutils pop3d 3.x (Debian `mailutils-pop3d`), mbox store.

    Users come from Mailutils' `virtdomain` module: a passwd-format file per
    local address (DIR/vpw/127.0.0.1 and DIR/vpw/localhost) holding each
    account with a SHA-512 crypt password and home DIR/mail/USER; the
    mailbox is HOME/INBOX. virtdomain finds the local address with
    getsockname() on descriptor 0, which holds only in inetd mode, so
    pop3d runs as `pop3d --inetd`, one process per connection, spawned by
    interop/inetd.py (Debian's own package runs it from inetd too).

    APOP secrets of the fixture's APOP-only accounts (`login: apop`) go
    into a database made with `popauth` (same package); those accounts get
    no password in the passwd file, so they log in by APOP only, and the
    others by USER/PASS only, as the fixture declares.

    With `tls=True` the inetd server offers STLS (`tls-mode stls` and a
    `tls` block naming the trustme certificate and key); there is no
    implicit-TLS listener (interop/inetd.py serves one port).

    Mailutils rewrites stored messages (it adds X-UIDL, X-UID, Status...
    headers), so the store is declared not byte-exact (`exact=no`).
    mbox, not Maildir: Mailutils' Maildir reader cannot parse headers
    stored with CRLF line ends and loses the message (seen with 3.15)."""

    name = "mailutils"
    packages = ("mailutils-pop3d",)
    binary = "pop3d"

    def version(self) -> str:
        path = self.binary_path()
        if not path:
            return ""
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
        return out.stdout.splitlines()[0] if out.stdout else ""

    @property
    def provision_spec(self) -> str:
        return f"mbox,owner={self.uid},group={self.gid},exact=no:{self.workdir}/mail/{{user}}/INBOX"

    def write_config(self) -> list[str]:
        d = self.workdir
        for sub in ("vpw", "mail", "lock"):
            (d / sub).mkdir(exist_ok=True)
        os.chmod(d / "lock", 0o1777)
        lines = ""
        for a in self.accounts():
            # an APOP-only account (fixture `login: apop`) gets no usable
            # password here, so PASS is refused for it (RFC 1939 section 13)
            hashed = "*" if getattr(a, "login", "pass") == "apop" else _crypt_sha512(a.password)
            lines += f"{a.user}:{hashed}:{self.uid}:{self.gid}::{d}/mail/{a.user}:/bin/false\n"
        for name in ("127.0.0.1", "localhost"):
            (d / "vpw" / name).write_text(lines)
            os.chmod(d / "vpw" / name, 0o600)
        conf = f"""# written by mailspec interop/servers.py
logging {{ syslog no; }};
virtdomain {{ passwd-dir "{d}/vpw"; }};
auth {{
  authorization virtdomain;
  authentication generic;
}};
mandatory-locking {{ enable yes; lock-directory "{d}/lock"; }};
"""
        if self.tls:
            # the inetd server's TLS: STLS offered, not required (RFC 2595)
            conf += (
                "tls-mode stls;\n"
                f'tls {{ ssl-certificate-file "{self.cert_path}"; '
                f'ssl-key-file "{self.key_path}"; }};\n'
            )
        popauth = shutil.which("popauth") or shutil.which("popauth", path="/usr/sbin:/usr/bin")
        if popauth:
            # APOP secrets: Mailutils always puts a timestamp in its greeting,
            # so without this database every APOP would be refused
            secrets = "".join(
                f"{a.user} {a.password}\n"
                for a in self.accounts()
                if getattr(a, "login", "pass") == "apop"
            )
            (d / "apop.txt").write_text(secrets)
            subprocess.run(
                [popauth, "-c", "-f", str(d / "apop.txt"), "-o", str(d / "apop")],
                check=True,
                capture_output=True,
            )
            (d / "apop.txt").unlink()
            conf += f'apop-database-file "{d}/apop";\n'

        (d / "pop3d.conf").write_text(conf)
        return [
            sys.executable,
            str(INTEROP_DIR / "inetd.py"),
            f"{self.host}:{self.port}",
            "--",
            self.ensure_installed(),
            "--inetd",
            f"--config-file={d}/pop3d.conf",
        ]


SERVERS: dict[str, type[ManagedServer]] = {"dovecot": DovecotServer, "mailutils": MailutilsServer}
