"""The ``pop3_server`` fixture offered to client developers."""

from __future__ import annotations

import poplib

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


def test_apop_is_available(pop3_server: ReferencePop3Server) -> None:
    pop3_server.add_user("carol", "secret")
    client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=10)
    assert client.apop("carol", "secret").startswith(b"+OK")
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
