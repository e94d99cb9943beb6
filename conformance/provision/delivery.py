"""Provisioners that deliver through the target (SMTP, a command) and
wait until POP3 shows the messages."""

from __future__ import annotations

import abc
import contextlib
import os
import poplib
import shlex
import smtplib
import subprocess
import tempfile
import time
from pathlib import Path

from conformance.core.errors import ProvisionError
from conformance.core.fixture import Account, FixtureMessage
from conformance.provision.base import USER_PLACEHOLDER, Provisioner

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
