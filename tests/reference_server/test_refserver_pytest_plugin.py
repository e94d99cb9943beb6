"""The ``pop3_server`` fixture offered to client developers."""

from __future__ import annotations

import poplib
from pathlib import Path

import pytest

from reference_server.pytest_plugin import ReferencePop3Server


def test_added_messages_are_served_in_order(pop3_server: ReferencePop3Server) -> None:
    pop3_server.add_user("alice", "pw")
    first = b"Subject: first\r\n\r\none\r\n"
    second = "Subject: second\n\ntwo\n"
    pop3_server.add_message("alice", first)
    pop3_server.add_message("alice", second)
    client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=10)
    client.user("alice")
    client.pass_("pw")
    assert client.retr(1)[1] == [b"Subject: first", b"", b"one"]
    assert client.retr(2)[1] == [b"Subject: second", b"", b"two"]
    client.dele(1)
    client.quit()
    assert pop3_server.messages("alice") == [second.encode()]


def test_returned_uid_is_the_uidl(pop3_server: ReferencePop3Server) -> None:
    pop3_server.add_user("bob", "pw")
    uid = pop3_server.add_message("bob", b"Subject: x\r\n\r\n")
    client = poplib.POP3(*pop3_server.address, timeout=10)
    client.user("bob")
    client.pass_("pw")
    assert client.uidl(1).split()[-1] == uid.encode()
    client.quit()


def test_apop_is_available_for_users_added_as_apop_users(
    pop3_server: ReferencePop3Server,
) -> None:
    pop3_server.add_user("carol", "secret", apop=True)
    client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=10)
    assert client.apop("carol", "secret").startswith(b"+OK")
    client.quit()
    client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=10)
    client.user("carol")
    with pytest.raises(poplib.error_proto):
        client.pass_("secret")
    client.quit()


def test_reset_removes_users_and_messages(pop3_server: ReferencePop3Server) -> None:
    pop3_server.add_user("dave", "pw")
    pop3_server.add_message("dave", b"Subject: x\r\n\r\n")
    pop3_server.reset()
    assert pop3_server.messages("dave") == []
    client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=10)
    client.user("dave")
    with pytest.raises(poplib.error_proto, match="AUTH"):
        client.pass_("pw")
    client.quit()


def test_each_test_starts_empty(pop3_server: ReferencePop3Server) -> None:
    assert pop3_server.users.names() == []
    assert list(pop3_server.root.iterdir()) == []


def test_fixture_serves_stls_with_a_certificate_the_client_context_trusts(
    pop3_server: ReferencePop3Server,
) -> None:
    pop3_server.add_user("alice", "pw")
    client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=10)
    client.stls(context=pop3_server.client_context())
    client.user("alice")
    assert client.pass_("pw").startswith(b"+OK")
    client.quit()


def test_fixture_serves_implicit_tls_and_sasl(pop3_server: ReferencePop3Server) -> None:
    import base64

    pop3_server.add_user("alice", "pw")
    pop3_server.add_message("alice", b"Subject: s\r\n\r\nb\r\n")
    assert pop3_server.tls_port != pop3_server.port
    client = poplib.POP3_SSL(
        pop3_server.host, pop3_server.tls_port, context=pop3_server.client_context(), timeout=10
    )
    assert "SASL" in client.capa()
    assert client._shortcmd(  # type: ignore[attr-defined]
        "AUTH PLAIN " + base64.b64encode(b"\x00alice\x00pw").decode()
    ).startswith(b"+OK")
    assert client.stat() == (1, 17)
    client.quit()


def test_fixture_certificate_is_not_trusted_without_its_ca(
    pop3_server: ReferencePop3Server,
) -> None:
    import ssl

    assert pop3_server.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert pop3_server.ca_file.read_bytes() == pop3_server.ca_pem
    with pytest.raises(ssl.SSLCertVerificationError):
        poplib.POP3_SSL(
            pop3_server.host,
            pop3_server.tls_port,
            context=ssl.create_default_context(),
            timeout=10,
        )


def test_plugin_module_works_as_a_plugin_without_conftest(tmp_path: Path) -> None:
    """What the pytest11 entry point does: load the module with ``-p``."""
    import os
    import subprocess
    import sys

    (tmp_path / "test_client.py").write_text(
        "import poplib\n"
        "def test_fetch(pop3_server):\n"
        "    pop3_server.add_user('u', 'p')\n"
        "    pop3_server.add_message('u', b'Subject: s\\r\\n\\r\\nb\\r\\n')\n"
        "    c = poplib.POP3(pop3_server.host, pop3_server.port, timeout=10)\n"
        "    c.user('u'); c.pass_('p')\n"
        "    assert c.stat() == (1, 17)\n"
        "    c.quit()\n"
    )
    repository = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "reference_server.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-q",
            str(tmp_path / "test_client.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(repository), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
