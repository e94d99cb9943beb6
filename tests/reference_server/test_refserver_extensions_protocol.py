"""Response codes, LOGIN-DELAY, EXPIRE, UTF8 and LANG on the sans-I/O core
(RFC 2449 sections 6.5, 6.7 and 8; RFC 3206; RFC 6856)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from pop3_testlib import PASSWORD, Conversation, maildir_names, write_maildir

from reference_server.pop3.protocol import (
    LoginHistory,
    SessionConfig,
    State,
    header_needs_utf8,
    match_language,
)

Converse = Callable[..., Conversation]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def delay_config(seconds: int, clock: FakeClock) -> SessionConfig:
    return SessionConfig(
        hostname="test.invalid",
        login_delay_seconds=seconds,
        login_history=LoginHistory(clock),
    )


def capa_lines(conversation: Conversation) -> list[str]:
    return conversation.send("CAPA").decode().split("\r\n")[1:-2]


# --- AUTH-RESP-CODE and [AUTH] (RFC 3206) --------------------------------------


def test_auth_resp_code_is_advertised_and_every_credential_failure_carries_auth(
    converse: Converse,
) -> None:
    conversation = converse(SessionConfig(hostname="test.invalid", enable_apop=True))
    assert "AUTH-RESP-CODE" in capa_lines(conversation)
    conversation.status("USER alice")
    failures = [conversation.status("PASS wrong")]
    failures.append(conversation.status(f"APOP carol {'0' * 32}"))
    plain = base64.b64encode(b"\x00alice\x00wrong").decode()
    failures.append(conversation.status(f"AUTH PLAIN {plain}"))
    assert all(reply.startswith("-ERR [AUTH] ") for reply in failures), failures


def test_user_never_carries_auth(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status("USER nobody") == "+OK send PASS"


# --- LOGIN-DELAY (RFC 2449 sections 6.5 and 8.1.1) -----------------------------


def test_login_delay_is_advertised_with_its_value(converse: Converse) -> None:
    assert "LOGIN-DELAY 300" in capa_lines(converse(delay_config(300, FakeClock())))


def test_second_login_inside_the_delay_is_refused_with_the_code(converse: Converse) -> None:
    clock = FakeClock()
    config = delay_config(60, clock)
    first = converse(config)
    first.login()
    first.send("QUIT")
    clock.now += 59
    second = converse(config)
    second.status("USER alice")
    assert second.status(f"PASS {PASSWORD}").startswith("-ERR [LOGIN-DELAY]")
    assert second.session.state is State.AUTHORIZATION
    clock.now += 1
    second.login()


def test_login_delay_is_per_user(converse: Converse) -> None:
    clock = FakeClock()
    config = delay_config(60, clock)
    converse(config).login("alice")
    converse(config).login("bob", "bobpw")


def test_wrong_password_inside_the_delay_still_gets_auth(converse: Converse) -> None:
    clock = FakeClock()
    config = delay_config(60, clock)
    converse(config).login()
    late = converse(config)
    late.status("USER alice")
    assert late.status("PASS wrong").startswith("-ERR [AUTH]")  # no hint the name exists


def test_refused_login_does_not_restart_the_delay(converse: Converse) -> None:
    clock = FakeClock()
    config = delay_config(60, clock)
    first = converse(config)
    first.login()
    first.send("QUIT")
    clock.now += 30
    refused = converse(config)
    refused.status("USER alice")
    assert refused.status(f"PASS {PASSWORD}").startswith("-ERR [LOGIN-DELAY]")
    clock.now += 30
    converse(config).login()


def test_no_delay_configured_allows_back_to_back_logins(converse: Converse) -> None:
    config = SessionConfig(hostname="test.invalid")
    first = converse(config)
    first.login()
    first.send("QUIT")
    converse(config).login()


# --- EXPIRE (RFC 2449 section 6.7) -------------------------------------------------


@pytest.mark.parametrize(
    ("days", "tag"), [(None, "EXPIRE NEVER"), (0, "EXPIRE 0"), (31, "EXPIRE 31")]
)
def test_expire_is_advertised_as_configured(converse: Converse, days: int | None, tag: str) -> None:
    conversation = converse(SessionConfig(hostname="test.invalid", expire_days=days))
    assert tag in capa_lines(conversation)
    conversation.login()
    assert tag in capa_lines(conversation)


def test_expire_0_removes_retrieved_messages_at_update(
    converse: Converse, maildir_root: Path
) -> None:
    conversation = converse(SessionConfig(hostname="test.invalid", expire_days=0))
    conversation.login()
    conversation.send("RETR 2")
    conversation.send("TOP 3 0")  # TOP is not a retrieval
    assert conversation.status("QUIT") == "+OK bye, 1 messages removed"
    assert maildir_names(maildir_root / "alice") == ["0001.test", "0003.test"]


def test_expire_0_removes_nothing_without_quit(converse: Converse, maildir_root: Path) -> None:
    conversation = converse(SessionConfig(hostname="test.invalid", expire_days=0))
    conversation.login()
    conversation.send("RETR 1")
    conversation.session.connection_lost()
    assert len(maildir_names(maildir_root / "alice")) == 3


def test_expire_never_keeps_retrieved_messages(converse: Converse, maildir_root: Path) -> None:
    conversation = converse()
    conversation.login()
    conversation.send("RETR 1")
    assert conversation.status("QUIT") == "+OK bye, 0 messages removed"
    assert len(maildir_names(maildir_root / "alice")) == 3


# --- UTF8 (RFC 6856 section 2) -----------------------------------------------------

UTF8_HEADER_MESSAGE = "Subject: Grüße\r\nFrom: jörg@example.org\r\n\r\nbody\r\n".encode()


@pytest.fixture
def utf8_user(converse: Converse, maildir_root: Path) -> Callable[[], Conversation]:
    """Conversations with user "dave", whose first message has UTF-8 headers."""
    write_maildir(
        maildir_root,
        "dave",
        [UTF8_HEADER_MESSAGE, b"Subject: plain\r\n\r\ncaf\xc3\xa9 8bit body\r\n"],
    )

    def make() -> Conversation:
        conversation = converse()
        conversation.session.users.set("dave", "davepw")
        return conversation

    return make


def test_utf8_is_advertised_and_accepted_before_login(converse: Converse) -> None:
    conversation = converse()
    assert "UTF8" in capa_lines(conversation)
    assert conversation.status("UTF8") == "+OK UTF-8 mode enabled"
    assert conversation.session.utf8_mode


def test_utf8_after_login_is_refused(converse: Converse) -> None:
    conversation = converse()
    conversation.login()
    assert conversation.status("UTF8") == "-ERR UTF8 is not allowed in this state"


def test_utf8_with_an_argument_is_refused(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status("UTF8 on").startswith("-ERR")
    assert not conversation.session.utf8_mode


def test_utf8_header_message_is_refused_without_utf8_mode(
    utf8_user: Callable[[], Conversation],
) -> None:
    conversation = utf8_user()
    conversation.login("dave", "davepw")
    assert conversation.status("RETR 1").startswith("-ERR [UTF8]")
    assert conversation.status("TOP 1 0").startswith("-ERR [UTF8]")
    assert conversation.status("LIST 1").startswith("+OK 1 ")
    # An 8-bit body under ASCII headers is plain RFC 1939 content.
    assert conversation.status("RETR 2").startswith("+OK")


def test_utf8_header_message_is_sent_as_stored_in_utf8_mode(
    utf8_user: Callable[[], Conversation],
) -> None:
    conversation = utf8_user()
    conversation.status("UTF8")
    conversation.login("dave", "davepw")
    reply = conversation.send("RETR 1")
    assert reply == b"+OK %d octets\r\n" % len(UTF8_HEADER_MESSAGE) + UTF8_HEADER_MESSAGE + (
        b".\r\n"
    )


@pytest.mark.parametrize(
    ("content", "needs"),
    [
        (UTF8_HEADER_MESSAGE, True),
        (b"Subject: \xe0\xe1\r\n\r\nwindows-1251 header, not UTF-8\r\n", False),
        (b"Subject: ascii\r\n\r\n\xc3\xa9 in the body only\r\n", False),
        ("Subject: no body at all ü".encode(), True),
    ],
)
def test_header_needs_utf8(content: bytes, needs: bool) -> None:
    assert header_needs_utf8(content) is needs


# --- LANG (RFC 6856 section 3) ------------------------------------------------------


def test_lang_without_argument_lists_tag_and_name(converse: Converse) -> None:
    conversation = converse()
    assert "LANG" in capa_lines(conversation)
    assert conversation.send("LANG") == b"+OK language listing follows\r\nen English\r\n.\r\n"


@pytest.mark.parametrize("language_range", ["en", "EN", "*"])
def test_lang_selects_english_and_names_the_exact_tag(
    converse: Converse, language_range: str
) -> None:
    assert converse().status(f"LANG {language_range}") == "+OK en language is now English"


def test_unsupported_language_is_refused_and_the_language_stays(converse: Converse) -> None:
    conversation = converse()
    assert conversation.status("LANG de") == "-ERR unsupported language"
    assert conversation.status("LANG en-US") == "-ERR unsupported language"
    assert conversation.session.language == "en"


def test_lang_works_in_transaction_too(converse: Converse) -> None:
    conversation = converse()
    conversation.login()
    assert conversation.status("LANG en").startswith("+OK en ")
    assert conversation.send("LANG").startswith(b"+OK")


def test_lang_with_two_arguments_is_refused(converse: Converse) -> None:
    assert converse().status("LANG en de").startswith("-ERR")


@pytest.mark.parametrize(
    ("language_range", "chosen"), [("en", "en"), ("En", "en"), ("*", "en"), ("e", None)]
)
def test_match_language(language_range: str, chosen: str | None) -> None:
    assert match_language(language_range) == chosen
