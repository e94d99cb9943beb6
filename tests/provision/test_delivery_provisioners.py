"""smtp:, command: and none provisioners against a real POP3 server (the
reference server) and a real SMTP server (aiosmtpd) delivering into its
Maildirs."""

from __future__ import annotations

import poplib
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

from conformance.core.errors import ProvisionError
from conformance.core.fixture import Fixture
from conformance.provision import (
    CommandProvisioner,
    NoneProvisioner,
    SmtpProvisioner,
    make_provisioner,
    verify_listing,
)


def listing(target: tuple[str, int], user: str, password: str):
    conn = poplib.POP3(*target, timeout=10)
    try:
        conn.user(user)
        conn.pass_(password)
        stat = conn.stat()
        sizes = [int(line.split()[1]) for line in conn.list()[1]]
        bodies = []
        for n in range(1, stat[0] + 1):
            lines = conn.retr(n)[1]
            bodies.append(b"".join(line + b"\r\n" for line in lines))
        conn.quit()
    finally:
        conn.close()
    return stat, sizes, bodies


def body_of(wire: bytes) -> bytes:
    return wire.partition(b"\r\n\r\n")[2]


def test_smtp_delivers_in_order_and_waits_for_stat(
    fixture: Fixture, pop3_target, smtp_server, mail_tree: Path
):
    prov = make_provisioner(f"smtp:{smtp_server[0]}:{smtp_server[1]}", target=pop3_target)
    assert isinstance(prov, SmtpProvisioner) and not prov.byte_exact
    account = fixture.account("main")
    prov.reset(account)
    stat, sizes, bodies = listing(pop3_target, account.user, account.password)
    assert stat[0] == account.count
    assert verify_listing(account, stat, sizes, prov.byte_exact) == []
    # not byte-exact (a Received header was added) but every body arrives intact
    assert bodies != [m.wire for m in account.messages]
    assert [body_of(b) for b in bodies] == [m.body for m in account.messages]


def test_smtp_reset_empties_the_maildrop_first(
    fixture: Fixture, pop3_target, smtp_server, mail_tree: Path
):
    account = fixture.account("spare1")
    prov = SmtpProvisioner(*smtp_server, target=pop3_target, timeout=10)
    prov.reset(account)
    prov.reset(account)  # a second reset must not leave 6 messages
    stat, _sizes, bodies = listing(pop3_target, account.user, account.password)
    assert stat[0] == account.count
    assert [body_of(b) for b in bodies] == [m.body for m in account.messages]
    empty = fixture.account("empty")
    prov.reset(empty)
    assert listing(pop3_target, empty.user, empty.password)[0] == (0, 0)


def test_smtp_without_target_or_server_is_a_provision_error(fixture: Fixture, pop3_target):
    with pytest.raises(ProvisionError, match="needs the POP3 target"):
        make_provisioner("smtp:127.0.0.1:25").reset(fixture.account("main"))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prov = make_provisioner(f"smtp:127.0.0.1:{port}", target=pop3_target, timeout=5)
    with pytest.raises(ProvisionError, match="SMTP delivery of message 1"):
        prov.reset(fixture.account("spare2"))


def test_smtp_wrong_password_is_a_provision_error(fixture: Fixture, pop3_target, smtp_server):
    from dataclasses import replace

    account = replace(fixture.account("spare3"), password="wrong")
    prov = SmtpProvisioner(*smtp_server, target=pop3_target, timeout=5)
    with pytest.raises(ProvisionError, match="POP3 login as 'msspare3' failed"):
        prov.reset(account)


DELIVER_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    message, user = sys.argv[-2], sys.argv[-1]
    root = os.path.join(sys.argv[1], user)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    assert os.environ["MAILSPEC_USER"] == user
    name = "%020d.%s.cmd" % (time.time_ns(), os.environ["MAILSPEC_INDEX"])
    with open(message, "rb") as src, open(os.path.join(root, "tmp", name), "wb") as dst:
        dst.write(src.read())
    os.replace(os.path.join(root, "tmp", name), os.path.join(root, "new", name))
    if os.environ["MAILSPEC_INDEX"] == os.environ["MAILSPEC_COUNT"]:
        print("delivered", os.environ["MAILSPEC_COUNT"], file=sys.stderr)
    """
)


def test_command_runs_once_per_message_with_file_and_user(
    fixture: Fixture, pop3_target, mail_tree: Path, tmp_path: Path
):
    script = tmp_path / "deliver.py"
    script.write_text(DELIVER_SCRIPT)
    cmd = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(str(mail_tree))}"
    prov = make_provisioner(f"command,exact:{cmd}", target=pop3_target)
    assert isinstance(prov, CommandProvisioner) and prov.byte_exact
    assert not make_provisioner(f"command:{cmd}").byte_exact
    account = fixture.account("main")
    prov.reset(account)
    prov.reset(account)
    stat, sizes, bodies = listing(pop3_target, account.user, account.password)
    assert verify_listing(account, stat, sizes, byte_exact=True) == []
    assert bodies == [m.wire for m in account.messages]


def test_command_failure_names_message_and_stderr(fixture: Fixture, pop3_target, tmp_path: Path):
    script = tmp_path / "fail.py"
    script.write_text("import sys; sys.stderr.write('mailbox quota exceeded'); sys.exit(75)")
    prov = make_provisioner(f"command:{sys.executable} {script}", target=pop3_target)
    with pytest.raises(ProvisionError, match=r"exited 75 for message 1 .*quota exceeded"):
        prov.reset(fixture.account("spare4"))
    missing = make_provisioner("command:/nonexistent/deliver", target=pop3_target)
    with pytest.raises(ProvisionError, match="command not found"):
        missing.reset(fixture.account("spare4"))


def test_command_that_delivers_nothing_times_out(fixture: Fixture, pop3_target, tmp_path: Path):
    prov = make_provisioner("command,timeout=1:true", target=pop3_target)
    with pytest.raises(ProvisionError, match="STAT still shows 0 messages, expected 1"):
        prov.reset(fixture.account("spare4"))


def test_none_does_nothing(fixture: Fixture, tmp_path: Path):
    prov = make_provisioner("none")
    assert isinstance(prov, NoneProvisioner)
    assert not prov.byte_exact and prov.describe() == "none"
    before = sorted(tmp_path.iterdir())
    prov.reset(fixture.account("main"))
    assert sorted(tmp_path.iterdir()) == before


def test_apop_only_account_is_emptied_and_counted_with_apop(fixture: Fixture, tmp_path: Path):
    """An account with `login: apop` is logged in by APOP while provisioning
    (PASS would be refused for it on a server that follows the fixture)."""
    from reference_server.pop3.protocol import LoginMethod, UserDirectory
    from reference_server.pop3.server import start_server
    from reference_server.store.maildrop import MaildirStore

    account = fixture.account("apop")
    assert account.login == "apop"
    root = tmp_path / "apopmail"
    users = UserDirectory()
    users.set(account.user, account.password, LoginMethod.APOP)  # PASS refused
    handle = start_server(
        store=MaildirStore(str(root / "{user}")), users=users, port=0, enable_apop=True
    )
    try:
        script = tmp_path / "deliver.py"
        script.write_text(DELIVER_SCRIPT)
        prov = make_provisioner(
            f"command:{sys.executable} {script} {root}", target=(handle.host, handle.port)
        )
        prov.reset(account)
        conn = poplib.POP3(handle.host, handle.port, timeout=10)
        conn.apop(account.user, account.password)
        assert conn.stat()[0] == account.count
        conn.quit()
    finally:
        handle.close()
