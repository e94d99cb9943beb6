"""The embedded default target: the bundled reference POP3 server (or, for
`--protocol smtp`, the reference SMTP server), started as its own process
(`python -m reference_server` / `python -m reference_server.smtp`) over a
temporary Maildir store written from the fixture (in RAM, /dev/shm, when it
has room and TMPDIR is not set: see store_parent).

The suite never imports the server it checks: this module only locates the
package (importlib.util.find_spec) so the child process can import it."""

from __future__ import annotations

import importlib.util
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from conformance.core.config import RunConfig
from conformance.core.errors import TargetUnreachable
from conformance.core.fixture import Fixture
from conformance.provision import MaildirProvisioner

REFERENCE_DEFAULT_AUTOLOGOUT = 600  # seconds; what the server uses without --autologout
REFERENCE_DEFAULT_SMTP_TIMEOUT = 300  # seconds; the SMTP server without --smtp-timeout
SERVER_MODULE = "reference_server"
READY_LINE_PREFIX = b"mailspec-reference-server listening on "
IMPLICIT_READY_LINE_PREFIX = b"mailspec-reference-server listening (implicit TLS) on "
SMTP_SERVER_MODULE = "reference_server.smtp"
SMTP_READY_LINE_PREFIX = b"mailspec-reference-smtp-server listening on "
SMTPS_READY_SUFFIX = b" (smtps)"
#: The embedded SMTP server's domain: recipients are user@EMBEDDED_SMTP_DOMAIN.
EMBEDDED_SMTP_DOMAIN = "example.test"
#: The name the embedded server's certificate is issued for: the suite
#: connects to this address and verifies the name like any other target.
EMBEDDED_HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 20.0
STOP_GRACE_SECONDS = 5.0
MAX_READY_LINE_OCTETS = 4096
#: RAM-backed directories for the throw-away store. The reference server
#: fsyncs every commit and the provisioner every reset: on a disk that is
#: latency telling nothing about the server (a default run on 2 cores:
#: 4-5.5 s with the store on disk, 2.4-2.7 s in /dev/shm).
RAM_STORE_PARENTS = ("/dev/shm",)
#: Room left in a RAM store's file system, beyond the store itself.
RAM_STORE_SPARE_OCTETS = 256 << 20


class EmbeddedServer:
    """Owns the server process and its temporary store for one run."""

    def __init__(
        self, fixture: Fixture, config: RunConfig, *, more: Sequence[Fixture] = ()
    ) -> None:
        self.fixture = fixture
        self.more = list(more)  # further account pools (conformance.core.pools)
        self.config = config
        self.workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.provisioner: MaildirProvisioner | None = None
        #: the store's Maildir path template (`{user}`), for delivery inspection
        self.maildir_template: str | None = None
        self._stderr_path: Path | None = None
        self._command: list[str] = []
        self._environment: dict[str, str] = {}
        self._address: tuple[str, int] | None = None
        #: the store is on a RAM file system (store_parent): nothing to wait for
        self.store_in_ram = False

    def start(self) -> tuple[str, int]:
        """Write the store, start the server, return its (host, port)."""
        package_root = locate_server_package()
        accounts = [a for f in (self.fixture, *self.more) for a in f.accounts.values()]
        parent = store_parent(sum(a.size for a in accounts))
        self.store_in_ram = parent is not None
        self.workdir = Path(tempfile.mkdtemp(prefix="mailspec-embedded-", dir=parent))
        template = str(self.workdir / "maildirs" / "{user}")
        self.maildir_template = template
        self.provisioner = MaildirProvisioner(template)
        for account in accounts:
            self.provisioner.reset(account)
        users_file = self.workdir / "users"
        users_file.write_text(
            # "apop user:secret" lines make APOP-only users (reference server's format)
            "".join(
                f"{'apop ' if a.login == 'apop' else ''}{a.user}:{a.password}\n" for a in accounts
            ),
            encoding="utf-8",
        )
        users_file.chmod(0o600)
        self._stderr_path = self.workdir / "server.log"
        if self.config.protocol == "smtp":
            command = self._smtp_command(template, users_file)
        else:
            command = self._pop3_command(template, users_file)
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(package_root), environment.get("PYTHONPATH", "")) if p
        )
        self._command, self._environment = command, environment
        self._launch(command)
        self._address = self._await_ready_line()
        return self._address

    def _launch(self, command: list[str]) -> None:
        assert self._stderr_path is not None
        with open(self._stderr_path, "ab") as stderr:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=self._environment,
                cwd=self.workdir,
            )

    def restart(self) -> None:
        """Kill the server process (a wedged server may ignore SIGTERM) and
        start it again over the same store, on the same port: what a
        finding's minimisation needs after a case that wedged it. Every
        listener but the run's keeps an ephemeral port."""
        assert self._address is not None and self.process is not None
        self._end_process(kill=True)
        wanted = "--implicit-tls-listen" if self.config.tls == "implicit" else "--listen"
        if self.config.protocol == "smtp":
            wanted = "--smtps-listen" if self.config.tls == "implicit" else "--listen"
        command = list(self._command)
        command[command.index(wanted) + 1] = f"{EMBEDDED_HOST}:{self._address[1]}"
        self._launch(command)
        if self._await_ready_line() != self._address:
            self._fail(f"restarted on another address than {self._address}")

    def _pop3_command(self, template: str, users_file: Path) -> list[str]:
        command = [
            sys.executable, "-m", SERVER_MODULE,
            "--listen", f"{EMBEDDED_HOST}:0",
            "--store", f"maildir:{template}",
            "--users", str(users_file),
            "--apop",
            "--log-level", "WARNING",
        ]  # fmt: skip
        if self.store_in_ram:
            # a read of a RAM store never waits on a device: the storage
            # steps run on the server's event loop, no thread hop per login
            command += ["--storage-threads", "0"]
        if self.config.tls != "plain":
            command += self._tls_arguments()
        if self.config.autologout is not None:
            command += ["--autologout", str(self.config.autologout)]
        else:  # the reference server's default timer is the RFC 1939 §3 minimum
            self.config.autologout = REFERENCE_DEFAULT_AUTOLOGOUT
        return command

    def _smtp_command(self, template: str, users_file: Path) -> list[str]:
        command = [
            sys.executable, "-m", SMTP_SERVER_MODULE,
            "--listen", f"{EMBEDDED_HOST}:0",
            "--store", f"maildir:{template}",
            "--users", str(users_file),
            "--domain", self.config.smtp_domain or EMBEDDED_SMTP_DOMAIN,
            "--log-level", "WARNING",
        ]  # fmt: skip
        # the slow tier's `timeout: autologout` waits for the command timer
        if self.config.autologout is not None:
            command += ["--smtp-timeout", str(self.config.autologout)]
        else:  # the reference SMTP server's default is the RFC 5321 §4.5.3.2.7 minimum
            self.config.autologout = REFERENCE_DEFAULT_SMTP_TIMEOUT
        # STARTTLS is an extension of the session (RFC 3207), offered by
        # deployed servers on port 25 whatever the client does: the embedded
        # server always has a certificate, so the STARTTLS and AUTH scenarios
        # run in a plain run too (the suite trusts the run's own CA)
        return command + self._tls_arguments()

    def _tls_arguments(self) -> list[str]:
        """A certificate from a CA made for this run only (trustme); the
        suite trusts exactly that CA and verifies the server's name."""
        assert self.workdir is not None
        import trustme

        authority = trustme.CA(organization_name="mailspec embedded test CA")
        certificate = authority.issue_cert(EMBEDDED_HOST, "localhost")
        ca_file = self.workdir / "ca.pem"
        cert_file = self.workdir / "server-cert.pem"
        key_file = self.workdir / "server-key.pem"
        authority.cert_pem.write_to_path(str(ca_file))
        certificate.private_key_pem.write_to_path(str(key_file))
        key_file.chmod(0o600)
        cert_file.write_bytes(b"".join(blob.bytes() for blob in certificate.cert_chain_pems))
        if self.config.tls_ca is None and self.config.tls_verify:
            self.config.tls_ca = str(ca_file)
        arguments = ["--tls-cert", str(cert_file), "--tls-key", str(key_file)]
        if self.config.tls == "implicit":
            flag = "--smtps-listen" if self.config.protocol == "smtp" else "--implicit-tls-listen"
            arguments += [flag, f"{EMBEDDED_HOST}:0"]
        return arguments

    def _await_ready_line(self) -> tuple[str, int]:
        """(host, port) of the listener the run uses: the plain one, or the
        implicit-TLS one under `--tls implicit`."""
        if self.config.protocol == "smtp":
            return self._await_smtp_ready_line()
        wanted = IMPLICIT_READY_LINE_PREFIX if self.config.tls == "implicit" else READY_LINE_PREFIX
        received = b""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            while b"\n" not in received:
                received += self._read_stdout(deadline, received)
            raw, _, received = received.partition(b"\n")
            line = raw.strip()
            if line.startswith(wanted):
                break
            if not line.startswith(READY_LINE_PREFIX):
                self._fail(f"unexpected output line {line!r}")
        host, _, port = line[len(wanted) :].decode().rpartition(":")
        if not port.isdigit():
            self._fail(f"cannot read HOST:PORT from {line!r}")
        return host.strip("[]"), int(port)

    def _await_smtp_ready_line(self) -> tuple[str, int]:
        """The SMTP server prints one ready line per listener; the smtps one
        ends in " (smtps)"."""
        implicit = self.config.tls == "implicit"
        received = b""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            while b"\n" not in received:
                received += self._read_stdout(deadline, received)
            raw, _, received = received.partition(b"\n")
            line = raw.strip()
            if not line.startswith(SMTP_READY_LINE_PREFIX):
                self._fail(f"unexpected output line {line!r}")
            if line.endswith(SMTPS_READY_SUFFIX) == implicit:
                break
        address = line[len(SMTP_READY_LINE_PREFIX) :].removesuffix(SMTPS_READY_SUFFIX)
        host, _, port = address.decode().rpartition(":")
        if not port.isdigit():
            self._fail(f"cannot read HOST:PORT from {line!r}")
        return host.strip("[]"), int(port)

    def _read_stdout(self, deadline: float, received: bytes) -> bytes:
        assert self.process is not None and self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or len(received) > MAX_READY_LINE_OCTETS:
                    self._fail(f"no ready line within {READY_TIMEOUT_SECONDS:.0f} s")
                if selector.select(remaining):
                    break
        chunk = os.read(self.process.stdout.fileno(), 1024)
        if not chunk:
            self._fail("the server exited before it was ready")
        return chunk

    def _fail(self, why: str) -> NoReturn:
        log = self._log_tail()
        self.stop()
        raise TargetUnreachable(
            f"the embedded reference server did not start: {why}"
            + (f"; its log ends with: {log}" if log else "")
        )

    def _log_tail(self, limit: int = 600) -> str:
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text("utf-8", errors="replace").strip()[-limit:]

    def stop(self) -> None:
        """Terminate (then kill) the server and remove the temporary store.
        The store goes while the server shuts down (~10 ms): nothing of the
        run is in it any more, and an open log file outlives its name."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self._end_process(kill=False, signalled=True)

    def _end_process(self, *, kill: bool, signalled: bool = False) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            elif not signalled:
                self.process.terminate()
            if not wait_for_exit(self.process, STOP_GRACE_SECONDS):
                self.process.kill()
                self.process.wait(STOP_GRACE_SECONDS)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None


def wait_for_exit(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether `process` exited (and was reaped) within `seconds`. On Linux
    a pidfd wakes the wait the moment it exits; Popen.wait(timeout) polls
    with sleeps that double up to 50 ms, which made the embedded server's
    ~10 ms shutdown cost ~30 ms of every run."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or already reaped
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(pidfd, selectors.EVENT_READ)
            if not selector.select(seconds):
                return False
    finally:
        os.close(pidfd)
    process.wait()  # it has exited: reaps it without waiting
    return True


def store_parent(store_octets: int) -> str | None:
    """Where the temporary store goes: TMPDIR when the user set it; else a
    writable RAM-backed directory with room for the store twice over and
    RAM_STORE_SPARE_OCTETS; else None (the system's temporary directory)."""
    if os.environ.get("TMPDIR"):
        return None
    for candidate in RAM_STORE_PARENTS:
        try:
            free = shutil.disk_usage(candidate).free
        except OSError:
            continue
        if free >= 2 * store_octets + RAM_STORE_SPARE_OCTETS and os.access(
            candidate, os.W_OK | os.X_OK
        ):
            return candidate
    return None


def locate_server_package() -> Path:
    """The directory to put on the child's PYTHONPATH; TargetUnreachable
    when the reference server is not installed."""
    spec = importlib.util.find_spec(SERVER_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise TargetUnreachable(
            "no target: --host was not given and the bundled reference server "
            f"({SERVER_MODULE}) is not importable here; install mailspec with it "
            "(pip install -e .) or pass --host/--port of a POP3 server"
        )
    return Path(next(iter(spec.submodule_search_locations))).parent
