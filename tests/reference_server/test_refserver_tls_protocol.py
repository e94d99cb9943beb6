"""STLS and --require-tls on the sans-I/O core (RFC 2595, RFC 8314)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pop3_testlib import APOP_USER, PASSWORD, Conversation

from reference_server.pop3.protocol import SessionConfig, State

Converse = Callable[..., Conversation]


def tls_config(**overrides: object) -> SessionConfig:
    config = SessionConfig(hostname="test.invalid", stls_available=True)
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def capa(conversation: Conversation) -> list[str]:
    reply = conversation.send("CAPA").decode()
    lines = reply.split("\r\n")
    assert lines[0].startswith("+OK") and lines[-2:] == [".", ""], reply
    return lines[1:-2]


def start_tls(conversation: Conversation, pipelined: bytes = b"") -> bytes:
    """Send STLS (plus pipelined octets in the same data), finish the handshake."""
    reply = conversation.session.receive_data(b"STLS\r\n" + pipelined)
    conversation.session.tls_started(version="TLSv1.3", cipher="TEST")
    return reply


def test_stls_is_advertised_only_when_tls_is_configured(converse: Converse) -> None:
    assert "STLS" not in capa(converse())
    assert "STLS" in capa(converse(tls_config()))


def test_stls_without_certificate_is_refused(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status("STLS").startswith("-ERR")
    assert not conversation.session.tls_pending


def test_stls_answers_ok_and_asks_the_transport_for_tls(converse: Converse) -> None:
    conversation = converse(tls_config())
    assert conversation.send("STLS") == b"+OK begin TLS negotiation\r\n"
    assert conversation.session.tls_pending
    assert conversation.session.state is State.AUTHORIZATION
    conversation.session.tls_started()
    assert conversation.session.tls_active and not conversation.session.tls_pending


def test_stls_reply_object_carries_the_start_tls_flag(converse: Converse) -> None:
    session = converse(tls_config()).session
    reply = session.cmd_stls([])
    assert not isinstance(reply, bytes) and reply.ok and reply.start_tls


@pytest.mark.parametrize(
    "pipelined",
    [b"CAPA\r\n", b"NOOP\r\n", b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n", b"QUIT\r\n"],
)
def test_commands_pipelined_after_stls_are_never_answered(
    converse: Converse, pipelined: bytes
) -> None:
    conversation = converse(tls_config())
    assert start_tls(conversation, pipelined) == b"+OK begin TLS negotiation\r\n"
    # Inside TLS: nothing queued, nothing executed, the session goes on.
    assert list(conversation.session.replies()) == []
    assert conversation.session.state is State.AUTHORIZATION
    assert not conversation.session.closed
    assert conversation.status("NOOP").startswith("-ERR")  # still AUTHORIZATION


def test_octets_fed_before_the_handshake_completes_are_discarded(converse: Converse) -> None:
    conversation = converse(tls_config())
    session = conversation.session
    assert session.receive_data(b"STLS\r\n") == b"+OK begin TLS negotiation\r\n"
    assert session.receive_data(b"CAPA\r\n") == b""  # plaintext after +OK
    session.tls_started()
    assert list(session.replies()) == []
    assert "STLS" not in capa(conversation)


def test_stls_fed_one_byte_at_a_time_then_garbage(converse: Converse) -> None:
    session = converse(tls_config()).session
    replies = b"".join(session.receive_data(bytes([octet])) for octet in b"STLS\r\nCAPA\r\n")
    assert replies == b"+OK begin TLS negotiation\r\n"


def test_capa_inside_tls_omits_stls_and_keeps_the_rest(converse: Converse) -> None:
    conversation = converse(tls_config())
    before = capa(conversation)
    start_tls(conversation)
    after = capa(conversation)
    assert "STLS" in before and "STLS" not in after
    assert [line for line in before if line != "STLS"] == after


def test_stls_twice_is_refused(converse: Converse) -> None:
    conversation = converse(tls_config())
    start_tls(conversation)
    assert conversation.status("STLS").startswith("-ERR")
    assert not conversation.session.tls_pending


def test_stls_after_login_is_refused(converse: Converse) -> None:
    conversation = converse(tls_config())
    conversation.login()
    assert conversation.status("STLS") == "-ERR STLS is not allowed in this state"
    assert not conversation.session.tls_pending
    assert "STLS" not in capa(conversation)


def test_stls_with_an_argument_is_refused(converse: Converse) -> None:
    conversation = converse(tls_config())
    assert conversation.status("STLS now").startswith("-ERR")
    assert not conversation.session.tls_pending
    assert conversation.status("STLS").startswith("+OK")


def test_user_given_before_stls_is_forgotten_after_it(converse: Converse) -> None:
    conversation = converse(tls_config())
    assert conversation.status("USER alice").startswith("+OK")
    start_tls(conversation)
    assert conversation.status(f"PASS {PASSWORD}").startswith("-ERR")
    assert conversation.session.state is State.AUTHORIZATION
    conversation.login()  # a fresh USER/PASS inside TLS works


def test_login_inside_tls_reaches_transaction(converse: Converse) -> None:
    conversation = converse(tls_config())
    start_tls(conversation)
    conversation.login()
    assert conversation.status("STAT").startswith("+OK 3 ")


def test_implicit_tls_session_offers_no_stls(converse: Converse) -> None:
    conversation = converse(tls_config())
    conversation.session.tls_started()  # what the pop3s listener does before the greeting
    assert "STLS" not in capa(conversation)
    assert conversation.status("STLS").startswith("-ERR")


# --- require_tls (RFC 2595 section 2.2, RFC 5034 section 4, RFC 8314 4.1) -----


def test_require_tls_hides_logins_and_offers_stls_before_tls(converse: Converse) -> None:
    lines = capa(converse(tls_config(require_tls=True)))
    assert "STLS" in lines and "USER" not in lines
    assert not [line for line in lines if line.startswith("SASL")]


def test_require_tls_refuses_every_login_command_before_tls(converse: Converse) -> None:
    conversation = converse(tls_config(require_tls=True, enable_apop=True))
    assert conversation.status("USER alice") == "-ERR TLS is required: send STLS first"
    assert conversation.status(f"APOP {APOP_USER} {'0' * 32}").startswith("-ERR [AUTH] TLS")
    assert conversation.status("AUTH PLAIN").startswith("-ERR [AUTH] TLS")
    assert conversation.send("AUTH") == b"+OK SASL mechanisms follow\r\n.\r\n"
    assert conversation.session.state is State.AUTHORIZATION


def test_require_tls_refusal_does_not_depend_on_the_credentials(converse: Converse) -> None:
    conversation = converse(tls_config(require_tls=True))
    right = [conversation.status("USER alice"), conversation.status(f"PASS {PASSWORD}")]
    wrong = [conversation.status("USER nobody"), conversation.status("PASS wrong")]
    assert right == wrong
    assert all(reply.startswith("-ERR") for reply in right)


def test_require_tls_allows_logins_inside_tls(converse: Converse) -> None:
    conversation = converse(tls_config(require_tls=True))
    start_tls(conversation)
    lines = capa(conversation)
    assert "USER" in lines and "STLS" not in lines
    assert any(line.startswith("SASL ") for line in lines)
    conversation.login()
