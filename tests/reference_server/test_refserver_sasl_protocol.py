"""SASL AUTH on the sans-I/O core (RFC 5034, RFC 1734, RFC 4616, RFC 2195, RFC 7677)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest
import scramp  # type: ignore[import-untyped]
from pop3_testlib import APOP_USER, PASSWORD, Conversation

from reference_server.pop3.protocol import MAX_SASL_RESPONSE_OCTETS, SessionConfig, State
from reference_server.sasl import MAX_PLAIN_FIELD_OCTETS, MECHANISMS, PlainMechanism, Step

Converse = Callable[..., Conversation]


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def plain(authcid: str = "alice", password: str = PASSWORD, authzid: str = "") -> str:
    return b64(f"{authzid}\x00{authcid}\x00{password}")


def challenge(reply: bytes) -> bytes:
    """The decoded data of a ``+ <base64>`` line; fails on anything else."""
    assert reply.startswith(b"+ ") and reply.endswith(b"\r\n") and reply.count(b"\r\n") == 1, reply
    return base64.b64decode(reply[2:-2], validate=True)


def in_transaction(conversation: Conversation) -> bool:
    return conversation.session.state is State.TRANSACTION


# --- Listing and advertising ------------------------------------------------


def test_capa_lists_every_configured_mechanism(converse: Converse) -> None:
    reply = converse().send("CAPA")
    assert b"\r\nSASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256\r\n" in reply


def test_capa_lists_sasl_after_login_too(converse: Converse) -> None:
    conversation = converse()
    conversation.login()
    assert b"\r\nSASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256\r\n" in conversation.send("CAPA")


def test_bare_auth_lists_the_mechanisms_one_a_line(converse: Converse) -> None:
    reply = converse().send("AUTH")
    assert (
        reply
        == b"+OK SASL mechanisms follow\r\nPLAIN\r\nLOGIN\r\nCRAM-MD5\r\nSCRAM-SHA-256\r\n.\r\n"
    )


def test_configured_subset_is_all_that_is_offered_and_accepted(converse: Converse) -> None:
    conversation = converse(SessionConfig(hostname="t.invalid", sasl_mechanisms=("CRAM-MD5",)))
    assert b"\r\nSASL CRAM-MD5\r\n" in conversation.send("CAPA")
    assert conversation.status(f"AUTH PLAIN {plain()}") == "-ERR unsupported SASL mechanism"


def test_no_mechanisms_means_no_sasl_line(converse: Converse) -> None:
    conversation = converse(SessionConfig(hostname="t.invalid", sasl_mechanisms=()))
    assert b"SASL" not in conversation.send("CAPA")
    assert conversation.status("AUTH PLAIN").startswith("-ERR")


# --- PLAIN (RFC 4616) -------------------------------------------------------


def test_plain_with_initial_response_logs_in(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status(f"AUTH PLAIN {plain()}") == "+OK alice has 3 messages (122 octets)"
    assert in_transaction(conversation)


def test_plain_continuation_starts_with_an_empty_challenge(converse: Converse) -> None:
    conversation = converse()
    assert conversation.send("AUTH PLAIN") == b"+ \r\n"  # "+", one space, nothing else
    assert conversation.status(plain()).startswith("+OK")
    assert in_transaction(conversation)


def test_mechanism_and_keyword_are_case_insensitive(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status(f"auth plain {plain()}").startswith("+OK")


def test_plain_wrong_password_is_refused_with_auth_code(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status(f"AUTH PLAIN {plain(password='wrong')}").startswith("-ERR [AUTH]")
    assert conversation.session.state is State.AUTHORIZATION
    conversation.login()  # RFC 5034 section 4: any method may be tried next


def test_plain_unknown_user_gets_the_same_refusal(converse: Converse) -> None:
    conversation = converse()
    wrong_password = conversation.status(f"AUTH PLAIN {plain(password='wrong')}")
    unknown_user = conversation.status(f"AUTH PLAIN {plain(authcid='nobody')}")
    assert wrong_password == unknown_user


def test_empty_initial_response_is_an_empty_plain_message(converse: Converse) -> None:
    conversation = converse()
    # "=" is a present but empty response: not a PLAIN message, so refused at once.
    assert conversation.status("AUTH PLAIN =").startswith("-ERR [AUTH]")
    assert conversation.session.state is State.AUTHORIZATION


@pytest.mark.parametrize(
    "message",
    [b"alice\x00" + PASSWORD.encode(), b"\x00alice\x00" + PASSWORD.encode() + b"\x00", b""],
)
def test_plain_with_wrong_number_of_separators_is_refused(
    converse: Converse, message: bytes
) -> None:
    conversation = converse()
    conversation.send("AUTH PLAIN")
    assert conversation.status(b64(message) or "").startswith("-ERR")
    assert not in_transaction(conversation)


def test_plain_authzid_equal_to_authcid_is_accepted(converse: Converse) -> None:
    assert converse().status(f"AUTH PLAIN {plain(authzid='alice')}").startswith("+OK alice")


def test_plain_authzid_of_another_user_is_refused(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status(f"AUTH PLAIN {plain(authzid='bob')}").startswith("-ERR [AUTH]")
    assert not in_transaction(conversation)


@pytest.mark.parametrize("authzid", ["al\x07ice", "alice\x7f"])
def test_plain_authzid_saslprep_prohibits_is_a_refusal_not_an_internal_error(
    converse: Converse, authzid: str
) -> None:
    # RFC 4013 section 2.3 (control characters are prohibited output):
    # SASLprep fails, so the identity is invalid: an [AUTH] refusal, not [SYS/TEMP].
    conversation = converse()
    assert conversation.status(f"AUTH PLAIN {plain(authzid=authzid)}").startswith("-ERR [AUTH]")
    assert not in_transaction(conversation)


def test_plain_authzid_granted_opens_that_users_maildrop(converse: Converse) -> None:
    conversation = converse()
    conversation.session.users.grant("alice", "bob")
    assert conversation.status(f"AUTH PLAIN {plain(authzid='bob')}") == (
        "+OK bob has 1 messages (24 octets)"
    )


def test_plain_fields_of_255_octets_fit_through_the_continuation(converse: Converse) -> None:
    long_name = "u" * MAX_PLAIN_FIELD_OCTETS
    long_password = "p" * MAX_PLAIN_FIELD_OCTETS
    conversation = converse()
    conversation.session.users.set(long_name, long_password)
    response = plain(long_name, long_password, authzid=long_name)
    assert len(response) > 1000  # far beyond the 255-octet command limit
    conversation.send("AUTH PLAIN")
    assert conversation.status(response).startswith("+OK")


def test_plain_is_refused_for_an_apop_only_user(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status(f"AUTH PLAIN {plain(authcid=APOP_USER)}").startswith("-ERR [AUTH]")


# --- Base64, cancel, state rules (RFC 5034 section 4) ----------------------


def test_star_cancels_the_exchange_with_err(converse: Converse) -> None:
    conversation = converse()
    conversation.send("AUTH PLAIN")
    reply = conversation.status("*")
    assert reply.startswith("-ERR") and "[AUTH]" not in reply
    assert conversation.session.state is State.AUTHORIZATION
    conversation.login()


@pytest.mark.parametrize(
    "bad", ["not base64!", "=AAA", "AAA=BBB", "AAA", "YW Jj", "YWJj\x7f", "YWJj\u00e9"]
)
def test_bad_base64_response_gets_err_and_the_session_goes_on(converse: Converse, bad: str) -> None:
    conversation = converse()
    conversation.send("AUTH PLAIN")
    assert conversation.status(bad).startswith("-ERR")
    assert conversation.session.state is State.AUTHORIZATION
    assert not conversation.session.closed
    conversation.login()


@pytest.mark.parametrize("bad", ["=AAA", "AAA=BBB", "a*b", "YWJj\u00e9"])
def test_bad_base64_initial_response_is_refused(converse: Converse, bad: str) -> None:
    conversation = converse()
    assert conversation.status(f"AUTH PLAIN {bad}") == "-ERR initial response is not valid base64"
    assert conversation.session.state is State.AUTHORIZATION


def test_unknown_mechanism_is_refused(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status("AUTH X-UNKNOWN") == "-ERR unsupported SASL mechanism"
    conversation.login()


def test_auth_after_login_is_refused(converse: Converse) -> None:
    conversation = converse()
    conversation.login()
    assert conversation.status(f"AUTH PLAIN {plain()}") == "-ERR AUTH is not allowed in this state"
    assert conversation.send("AUTH").startswith(b"-ERR")


def test_auth_after_successful_auth_is_refused(converse: Converse) -> None:
    conversation = converse()
    conversation.status(f"AUTH PLAIN {plain()}")
    assert conversation.status(f"AUTH PLAIN {plain()}").startswith("-ERR")


def test_auth_during_user_pass_forgets_the_user(converse: Converse) -> None:
    conversation = converse()
    conversation.status("USER alice")
    assert conversation.status(f"AUTH PLAIN {plain()}").startswith("-ERR")
    assert conversation.status(f"PASS {PASSWORD}").startswith("-ERR")


def test_over_long_response_ends_the_exchange(converse: Converse) -> None:
    conversation = converse()
    conversation.send("AUTH PLAIN")
    assert conversation.status("A" * MAX_SASL_RESPONSE_OCTETS) == "-ERR command line too long"
    assert conversation.session.state is State.AUTHORIZATION
    conversation.login()


def test_auth_command_line_keeps_the_255_octet_limit(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status("AUTH PLAIN " + "A" * 300) == "-ERR command line too long"


def test_exchange_fed_one_byte_at_a_time_with_trailing_garbage(converse: Converse) -> None:
    session = converse().session
    data = f"AUTH PLAIN\r\n{plain()}\r\nSTAT\r\ngarbage".encode()
    replies = b"".join(session.receive_data(bytes([octet])) for octet in data)
    assert replies.startswith(b"+ \r\n+OK alice has 3 messages")
    assert replies.endswith(b"+OK 3 122\r\n")
    assert session.state is State.TRANSACTION


def test_login_delay_applies_to_auth(converse: Converse) -> None:
    config = SessionConfig(hostname="t.invalid", login_delay_seconds=60)
    first = converse(config)
    assert first.status(f"AUTH PLAIN {plain()}").startswith("+OK")
    first.session.connection_lost()
    second = converse(config)
    assert second.status(f"AUTH PLAIN {plain()}").startswith("-ERR [LOGIN-DELAY]")


# --- LOGIN -------------------------------------------------------------------


def test_login_mechanism_asks_user_then_password(converse: Converse) -> None:
    conversation = converse()
    assert challenge(conversation.send("AUTH LOGIN")) == b"Username:"
    assert challenge(conversation.send(b64("alice"))) == b"Password:"
    assert conversation.status(b64(PASSWORD)).startswith("+OK alice")


def test_login_mechanism_takes_the_user_as_initial_response(converse: Converse) -> None:
    conversation = converse()
    assert challenge(conversation.send(f"AUTH LOGIN {b64('alice')}")) == b"Password:"
    assert conversation.status(b64(PASSWORD)).startswith("+OK")


def test_login_mechanism_refuses_a_wrong_password(converse: Converse) -> None:
    conversation = converse()
    conversation.send("AUTH LOGIN")
    conversation.send(b64("alice"))
    assert conversation.status(b64("wrong")).startswith("-ERR [AUTH]")
    assert conversation.session.state is State.AUTHORIZATION


# --- CRAM-MD5 (RFC 2195) -----------------------------------------------------


def cram_response(server_challenge: bytes, user: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), server_challenge, hashlib.md5).hexdigest()
    return b64(f"{user} {digest}")


def test_cram_md5_logs_in_with_the_right_secret(converse: Converse) -> None:
    conversation = converse()
    server_challenge = challenge(conversation.send("AUTH CRAM-MD5"))
    assert server_challenge.startswith(b"<") and server_challenge.endswith(b"@test.invalid>")
    reply = conversation.status(cram_response(server_challenge, "alice", PASSWORD))
    assert reply.startswith("+OK alice")


def test_cram_md5_challenges_differ_between_sessions(converse: Converse) -> None:
    assert challenge(converse().send("AUTH CRAM-MD5")) != challenge(
        converse().send("AUTH CRAM-MD5")
    )


def test_cram_md5_refuses_a_wrong_secret(converse: Converse) -> None:
    conversation = converse()
    server_challenge = challenge(conversation.send("AUTH CRAM-MD5"))
    reply = conversation.status(cram_response(server_challenge, "alice", "wrong"))
    assert reply.startswith("-ERR [AUTH]")


def test_cram_md5_refuses_an_initial_response(converse: Converse) -> None:
    conversation = converse()
    reply = conversation.status(f"AUTH CRAM-MD5 {b64('alice 00')}")
    assert reply == "-ERR CRAM-MD5 does not take an initial response"


def test_cram_md5_serves_apop_users(converse: Converse) -> None:
    conversation = converse()
    server_challenge = challenge(conversation.send("AUTH CRAM-MD5"))
    assert conversation.status(cram_response(server_challenge, APOP_USER, PASSWORD)).startswith(
        "+OK"
    )


# --- SCRAM-SHA-256 (RFC 7677), scramp as the client ---------------------------


def scram_exchange(conversation: Conversation, user: str, password: str) -> str:
    client = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
    server_first = challenge(
        conversation.send(f"AUTH SCRAM-SHA-256 {b64(client.get_client_first())}")
    )
    client.set_server_first(server_first.decode())
    reply = conversation.send(b64(client.get_client_final()))
    if not reply.startswith(b"+ "):
        return reply.decode().split("\r\n")[0]
    client.set_server_final(challenge(reply).decode())  # verifies the server's signature
    return conversation.status("")


def test_scram_sha_256_logs_in_and_proves_the_server(converse: Converse) -> None:
    conversation = converse()
    assert scram_exchange(conversation, "alice", PASSWORD).startswith("+OK alice")


def test_scram_sha_256_refuses_a_wrong_password(converse: Converse) -> None:
    conversation = converse()
    assert scram_exchange(conversation, "alice", "wrong").startswith("-ERR [AUTH]")
    assert conversation.session.state is State.AUTHORIZATION


def test_scram_sha_256_unknown_user_fails_at_the_proof(converse: Converse) -> None:
    conversation = converse()
    assert scram_exchange(conversation, "nobody", "x").startswith("-ERR [AUTH]")


def test_scram_sha_256_continuation_form(converse: Converse) -> None:
    conversation = converse()
    client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD)
    assert conversation.send("AUTH SCRAM-SHA-256") == b"+ \r\n"
    client.set_server_first(challenge(conversation.send(b64(client.get_client_first()))).decode())
    client.set_server_final(challenge(conversation.send(b64(client.get_client_final()))).decode())
    assert conversation.status("").startswith("+OK")


def test_scram_sha_256_garbage_client_first_is_refused(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status(f"AUTH SCRAM-SHA-256 {b64('nonsense')}").startswith("-ERR")
    conversation.login()


class ExplodingPlain(PlainMechanism):
    def respond(self, data: bytes) -> Step:
        raise KeyError("internal detail")


def test_internal_error_inside_an_exchange_is_sys_temp_and_the_session_goes_on(
    converse: Converse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(MECHANISMS, "PLAIN", ExplodingPlain)
    conversation = converse()
    conversation.send("AUTH PLAIN")
    assert conversation.status(plain()) == "-ERR [SYS/TEMP] internal server error"
    assert conversation.session.state is State.AUTHORIZATION
    conversation.login()
