"""The sans-I/O SMTP session: the state table (every command in every state),
sequencing, limits, extensions, smuggling-safe end of data, delivery."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from smtp_testlib import (
    DOMAIN,
    PASSWORD,
    SmtpConversation,
    codes,
    plain_credentials,
    strip_trace_headers,
)

from reference_server.smtp.protocol import (
    MAX_COMMAND_LINE_OCTETS,
    MAX_RECIPIENTS,
    MAX_TEXT_LINE_OCTETS,
    MIN_MESSAGE_OCTETS,
    SmtpConfig,
    SmtpSession,
    State,
)


@pytest.fixture
def smtp(tmp_path: Path) -> SmtpConversation:
    return SmtpConversation(tmp_path / "maildrops")


# --- The state table -----------------------------------------------------------

#: One well-formed example of each command, and the code it gets when its
#: state allows it (RFC 5321 section 4.3.2 success codes; extensions' own).
EXAMPLES: dict[str, tuple[str, int]] = {
    "EHLO": ("EHLO client.test", 250),
    "HELO": ("HELO client.test", 250),
    "MAIL": ("MAIL FROM:<sender@client.test>", 250),
    "RCPT": (f"RCPT TO:<bob@{DOMAIN}>", 250),
    "DATA": ("DATA", 354),
    "BDAT": ("BDAT 0 LAST", 250),
    "RSET": ("RSET", 250),
    "NOOP": ("NOOP", 250),
    "VRFY": ("VRFY alice", 252),
    "EXPN": ("EXPN staff", 252),
    "HELP": ("HELP", 214),
    "QUIT": ("QUIT", 221),
    "STARTTLS": ("STARTTLS", 220),
    "AUTH": (f"AUTH PLAIN {plain_credentials()}", 235),
}

SETUP: dict[State, Callable[[SmtpConversation], None]] = {
    # where a refuse_sessions server starts (its greeting is tested below)
    State.REFUSED: lambda c: setattr(c.session, "state", State.REFUSED),
    State.GREETED: lambda c: None,
    State.READY: lambda c: c.ehlo(),
    State.MAIL: lambda c: (c.ehlo(), c.send("MAIL FROM:<s@client.test>")) and None,
    State.RCPT: lambda c: c.transaction(),
    State.CHUNKING: lambda c: (c.transaction(), c.raw(b"BDAT 3\r\nabc")) and None,
}


def test_every_command_has_an_example_and_every_command_state_a_setup() -> None:
    assert set(EXAMPLES) == set(SmtpSession.known_commands)
    assert set(SETUP) == set(SmtpSession.allowed_commands)


@pytest.mark.parametrize("state", list(SETUP), ids=lambda s: s.value)
@pytest.mark.parametrize("keyword", sorted(EXAMPLES))
def test_every_command_in_every_state(smtp: SmtpConversation, state: State, keyword: str) -> None:
    SETUP[state](smtp)
    assert smtp.session.state is state
    command, success = EXAMPLES[keyword]
    if keyword == "BDAT":
        reply = smtp.raw(command.encode() + b"\r\n")
    else:
        reply = smtp.send(command)
    (code,) = codes(reply)
    if keyword in SmtpSession.allowed_commands[state]:
        assert code == success, reply
    else:
        assert code == 503, reply  # RFC 5321 section 4.1.4: bad sequence
        assert smtp.session.state is state  # a refused command changes nothing


@pytest.mark.parametrize("state", list(SETUP), ids=lambda s: s.value)
def test_unknown_commands_get_500_in_every_state(smtp: SmtpConversation, state: State) -> None:
    SETUP[state](smtp)
    for command in ("FOO", "XYZZY bar", "MAILX FROM:<a@b.c>", "TURN", "8BITMIME"):
        assert smtp.code(command) == 500
        assert smtp.session.state is state


def test_transitions_of_a_whole_transaction(smtp: SmtpConversation) -> None:
    assert smtp.session.state is State.GREETED
    smtp.ehlo()
    assert smtp.session.state is State.READY
    smtp.send("MAIL FROM:<a@client.test>")
    assert smtp.session.state is State.MAIL
    smtp.send(f"RCPT TO:<alice@{DOMAIN}>")
    assert smtp.session.state is State.RCPT
    smtp.send("DATA")
    assert smtp.session.state is State.DATA
    assert codes(smtp.raw(b"hi\r\n.\r\n")) == [250]
    assert smtp.session.state is State.READY
    assert smtp.code("QUIT") == 221 and smtp.session.closed


@pytest.mark.parametrize("state", [State.MAIL, State.RCPT, State.CHUNKING], ids=lambda s: s.value)
def test_rset_and_ehlo_end_a_transaction(smtp: SmtpConversation, state: State) -> None:
    for reset in ("RSET", "EHLO again.test"):
        SETUP[state](smtp)
        assert smtp.code(reset) == 250
        assert smtp.session.state is State.READY
        assert smtp.code(f"RCPT TO:<alice@{DOMAIN}>") == 503  # the sender is gone
    assert smtp.messages() == []


def test_sequencing_refusals_are_503(smtp: SmtpConversation) -> None:
    assert smtp.code("MAIL FROM:<a@client.test>") == 503  # before EHLO
    smtp.ehlo()
    assert smtp.code(f"RCPT TO:<alice@{DOMAIN}>") == 503  # no MAIL
    assert smtp.code("DATA") == 503
    smtp.send("MAIL FROM:<a@client.test>")
    assert smtp.code("MAIL FROM:<a@client.test>") == 503  # nested MAIL
    assert smtp.code("DATA") == 503  # no RCPT


def test_commands_without_arguments_refuse_them_and_noop_ignores_them(
    smtp: SmtpConversation,
) -> None:
    smtp.transaction()
    assert smtp.code("DATA x") == 501
    assert smtp.code("RSET x") == 501
    assert smtp.code("QUIT now") == 501
    assert smtp.code("NOOP anything goes") == 250  # RFC 5321 section 4.1.1.9
    assert not smtp.session.closed


def test_hello_needs_a_domain(smtp: SmtpConversation) -> None:
    assert smtp.code("EHLO") == 501
    assert smtp.code("HELO") == 501
    assert smtp.code("EHLO two words") == 501
    assert smtp.code("EHLO [127.0.0.1]") == 250
    assert smtp.code("HELO client.test") == 250  # a second hello is fine


def test_helo_reply_is_one_line_and_ehlo_lists_the_extensions(smtp: SmtpConversation) -> None:
    helo = smtp.send("HELO client.test")
    assert helo == f"250 {DOMAIN}\r\n".encode()
    ehlo = smtp.send("EHLO client.test").decode()
    lines = ehlo.split("\r\n")[:-1]
    assert lines[0] == f"250-{DOMAIN} greets client.test"
    assert all(line.startswith("250-") for line in lines[:-1]) and lines[-1].startswith("250 ")
    keywords = {line[4:].split(" ")[0] for line in lines[1:]}
    assert keywords >= {
        "PIPELINING",
        "SIZE",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "CHUNKING",
        "STARTTLS",
        "AUTH",
        "HELP",
        "EXPN",
    }


def test_extension_commands_need_ehlo_not_helo(smtp: SmtpConversation) -> None:
    smtp.send("HELO client.test")
    assert smtp.code("STARTTLS") == 503
    assert smtp.code(f"AUTH PLAIN {plain_credentials()}") == 503
    assert smtp.code("MAIL FROM:<a@client.test> SIZE=10") == 555
    assert smtp.code("MAIL FROM:<a@client.test>") == 250


def test_greeting_and_quit_carry_the_server_name(smtp: SmtpConversation) -> None:
    assert smtp.greeting.startswith(f"220 {DOMAIN} ".encode())
    assert smtp.send("QUIT") == f"221 2.0.0 {DOMAIN} closing connection\r\n".encode()


def test_nothing_after_quit_is_processed(smtp: SmtpConversation) -> None:
    assert codes(smtp.raw(b"QUIT\r\nNOOP\r\nNOOP\r\n")) == [221]
    assert smtp.raw(b"NOOP\r\n") == b""


def test_vrfy_expn_help(smtp: SmtpConversation) -> None:
    assert smtp.code("VRFY") == 501
    assert smtp.code("EXPN") == 501
    assert smtp.code("HELP MAIL") == 214
    assert smtp.code("HELP NOSUCHTHING") == 504
    help_reply = smtp.send("HELP")
    assert codes(help_reply) == [214] and help_reply.count(b"\r\n") > 1


def test_enhanced_status_codes_on_every_reply_but_greeting_and_hello(
    smtp: SmtpConversation,
) -> None:
    pattern = re.compile(rb"([245])\d\d[ -]\1\.\d{1,3}\.\d{1,3} ")
    replies = [
        smtp.send("NOOP"),
        smtp.send("MAIL FROM:<a@b.test>"),
        smtp.send("EHLO x.test"),
        smtp.send("MAIL FROM:<a@b.test>"),
        smtp.send("RCPT TO:<nobody@example.test>"),
        smtp.send("RCPT TO:<alice@example.test>"),
        smtp.send("VRFY alice"),
        smtp.send("HELP"),
        smtp.send("FOO"),
        smtp.send("RSET"),
        smtp.send("QUIT"),
    ]
    for reply in replies[:2] + replies[3:]:
        for line in reply.split(b"\r\n")[:-1]:
            assert pattern.match(line), line
    assert not pattern.match(smtp.greeting)
    assert not pattern.match(replies[2])


# --- Command lines -------------------------------------------------------------


def test_a_512_octet_command_line_is_accepted_and_513_is_refused(smtp: SmtpConversation) -> None:
    filler = MAX_COMMAND_LINE_OCTETS - len("NOOP \r\n")
    assert smtp.code("NOOP " + "x" * filler) == 250
    assert smtp.code("NOOP " + "x" * (filler + 1)) == 500


def test_a_huge_line_gets_one_500_and_the_session_goes_on(smtp: SmtpConversation) -> None:
    assert codes(smtp.raw(b"NOOP " + b"x" * 1_000_000)) == []
    assert len(smtp.session._pending) <= MAX_COMMAND_LINE_OCTETS + 1
    assert codes(smtp.raw(b"\r\nNOOP\r\n")) == [500, 250]


def test_mail_may_be_longer_for_its_parameters(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    local = "a" * 64
    domain = ".".join(["d" * 60] * 3)
    line = f"MAIL FROM:<{local}@{domain}> SIZE=1000 SMTPUTF8 BODY=8BITMIME"
    assert len(line) + 2 > MAX_COMMAND_LINE_OCTETS - 300
    assert smtp.code(line) == 250


def test_bare_lf_ends_no_command(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    assert codes(smtp.raw(b"MAIL FROM:<a@client.test>\n")) == [500]
    assert smtp.session.state is State.READY  # not executed
    assert codes(smtp.raw(b"NOOP\r\n")) == [250]


def test_control_characters_and_non_utf8_are_refused(smtp: SmtpConversation) -> None:
    assert smtp.code(b"NOOP \x00") == 500
    assert smtp.code(b"NOOP \xff") == 500


def test_pipelined_commands_are_answered_in_order(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    batch = (
        b"MAIL FROM:<a@client.test>\r\n"
        b"RCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<nobody@example.test>\r\n"
        b"RCPT TO:<bob@example.test>\r\n"
        b"DATA\r\n"
    )
    assert codes(smtp.raw(batch)) == [250, 250, 550, 250, 354]
    assert codes(smtp.raw(b"x\r\n.\r\nNOOP\r\n")) == [250, 250]
    assert len(smtp.messages("alice")) == len(smtp.messages("bob")) == 1


def test_a_command_split_across_reads_runs_once_complete(smtp: SmtpConversation) -> None:
    for octet in b"EHLO client.test\r":
        assert smtp.raw(bytes([octet])) == b""
    assert codes(smtp.raw(b"\n")) == [250]


# --- Envelope ------------------------------------------------------------------


def test_recipients_must_be_local_users_or_postmaster(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    smtp.send("MAIL FROM:<>")  # the null reverse-path
    assert smtp.code("RCPT TO:<nobody@example.test>") == 550
    assert smtp.code("RCPT TO:<alice@elsewhere.test>") == 550  # no relaying
    assert smtp.code("RCPT TO:<Postmaster>") == 250
    assert smtp.code("RCPT TO:<postMaster@EXAMPLE.test>") == 250
    assert smtp.code("RCPT TO:<alice@Example.Test>") == 250
    assert smtp.code("RCPT TO:<@relay.test:bob@example.test>") == 250  # route stripped
    assert smtp.code("RCPT TO:<>") == 501


@pytest.mark.parametrize(
    "bad", ["FROM:a@b.test", "FROM:<a@b.test", "FROM:<a@>", "FROM:<@b.test>", "TO:<a@b.test>", ""]
)
def test_malformed_mail_is_501(smtp: SmtpConversation, bad: str) -> None:
    smtp.ehlo()
    assert smtp.code(f"MAIL {bad}".rstrip()) == 501
    assert smtp.session.state is State.READY


def test_a_space_after_the_colon_is_tolerated(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    assert smtp.code("mail from: <a@client.test>") == 250


def test_path_limits(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    assert smtp.code(f"MAIL FROM:<{'a' * 65}@client.test>") == 501  # local-part 64
    assert smtp.code(f"MAIL FROM:<{'a' * 64}@client.test>") == 250


def test_mail_parameters(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    for good in ("BODY=8BITMIME", "BODY=7bit", "SIZE=100", "SMTPUTF8", "AUTH=<>"):
        assert smtp.code(f"MAIL FROM:<a@client.test> {good}") == 250, good
        smtp.send("RSET")
    assert smtp.code("MAIL FROM:<a@client.test> BODY=FOO") == 501
    assert smtp.code("MAIL FROM:<a@client.test> SIZE=abc") == 501
    assert smtp.code("MAIL FROM:<a@client.test> FOO=BAR") == 555
    assert smtp.code("MAIL FROM:<a@client.test> SIZE=1 SIZE=2") == 501
    assert smtp.code(f"MAIL FROM:<a@client.test> SIZE={10**12}") == 552  # RFC 1870 6.1
    assert smtp.code("MAIL FROM:<a@client.test>") == 250
    assert smtp.code(f"RCPT TO:<alice@{DOMAIN}> NOTIFY=NEVER") == 555


def test_the_hundredth_recipient_is_accepted_and_the_next_gets_452(
    smtp: SmtpConversation,
) -> None:
    smtp.ehlo()
    smtp.send("MAIL FROM:<a@client.test>")
    batch = f"RCPT TO:<alice@{DOMAIN}>\r\n".encode() * (MAX_RECIPIENTS + 1)
    got = codes(smtp.raw(batch))
    assert got == [250] * MAX_RECIPIENTS + [452]  # RFC 5321 section 4.5.3.1.10


def test_smtputf8_addresses(smtp: SmtpConversation) -> None:
    smtp.users.set("jörg", "pw")
    smtp.ehlo()
    assert smtp.code("MAIL FROM:<jörg@client.test>") == 550  # RFC 6531 section 3.5
    assert smtp.code("MAIL FROM:<a@client.test>") == 250
    assert smtp.code(f"RCPT TO:<jörg@{DOMAIN}>") == 553
    smtp.send("RSET")
    assert smtp.code("MAIL FROM:<jörg@client.test> SMTPUTF8") == 250
    assert smtp.code(f"RCPT TO:<jörg@{DOMAIN}>") == 250
    smtp.send("DATA")
    assert codes(smtp.raw("Subject: grüße\r\n\r\nü\r\n.\r\n".encode())) == [250]
    (stored,) = smtp.messages("jörg")
    assert b"with UTF8SMTP " in stored
    assert strip_trace_headers(stored) == "Subject: grüße\r\n\r\nü\r\n".encode()


# --- DATA ----------------------------------------------------------------------


def send_message(smtp: SmtpConversation, text: bytes) -> bytes:
    smtp.transaction()
    assert smtp.code("DATA") == 354
    return smtp.raw(text)


def test_message_is_stored_unstuffed_with_trace_headers_and_otherwise_verbatim(
    smtp: SmtpConversation,
) -> None:
    wire = b"Subject: dots\r\n\r\n..first\r\nmiddle\r\n...\r\n.\r\n"
    assert codes(send_message(smtp, wire)) == [250]
    (stored,) = smtp.messages()
    assert strip_trace_headers(stored) == b"Subject: dots\r\n\r\n.first\r\nmiddle\r\n..\r\n"
    head = stored.split(b"\r\nSubject", 1)[0].decode()
    assert head.startswith("Return-Path: <sender@client.test>\r\nReceived: from client.test")
    assert "([127.0.0.1])" in head and f"by {DOMAIN}" in head and "with ESMTP id" in head
    assert f"for <alice@{DOMAIN}>;" in head


RECEIVED_STAMP = re.compile(
    r"Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n"
    r"\tby example\.test \([^()]*\)\r\n"
    r"\twith (SMTP|ESMTP|ESMTPS|ESMTPA|ESMTPSA|UTF8SMTP\w*) id <[!-;=?-~]+@example\.test>\r\n"
    r"\tfor <alice@example\.test>; \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000\r\n"
)


@pytest.mark.parametrize(("hello", "protocol"), [("EHLO", "ESMTP"), ("HELO", "SMTP")])
def test_received_follows_the_stamp_grammar(
    smtp: SmtpConversation, hello: str, protocol: str
) -> None:
    smtp.send(f"{hello} client.test")
    smtp.send("MAIL FROM:<>")
    smtp.send(f"RCPT TO:<alice@{DOMAIN}>")
    smtp.send("DATA")
    assert codes(smtp.raw(b"x\r\n.\r\n")) == [250]
    (stored,) = smtp.messages()
    assert stored.startswith(b"Return-Path: <>\r\n")
    trace = stored.decode().split("\r\n", 1)[1]
    match = RECEIVED_STAMP.match(trace)
    assert match, trace
    assert match.group(1) == protocol


def test_a_dot_on_the_very_first_line_is_unstuffed(smtp: SmtpConversation) -> None:
    assert codes(send_message(smtp, b"..x\r\n.\r\n")) == [250]
    assert strip_trace_headers(smtp.messages()[0]) == b".x\r\n"


def test_an_empty_message(smtp: SmtpConversation) -> None:
    assert codes(send_message(smtp, b".\r\n")) == [250]
    assert strip_trace_headers(smtp.messages()[0]) == b""


def test_end_of_data_split_over_many_reads(smtp: SmtpConversation) -> None:
    send_message(smtp, b"")
    replies = b"".join(smtp.raw(bytes([o])) for o in b"a\r\n..\r\nb\r\n.\r\n")
    assert codes(replies) == [250]
    assert strip_trace_headers(smtp.messages()[0]) == b"a\r\n.\r\nb\r\n"


def test_one_copy_per_recipient(smtp: SmtpConversation) -> None:
    smtp.transaction()
    smtp.send(f"RCPT TO:<bob@{DOMAIN}>")
    smtp.send("DATA")
    assert codes(smtp.raw(b"hi\r\n.\r\n")) == [250]
    assert [strip_trace_headers(m) for m in smtp.messages("alice") + smtp.messages("bob")] == [
        b"hi\r\n",
        b"hi\r\n",
    ]


def test_a_1000_octet_text_line_is_accepted_and_1001_refused_at_the_end(
    smtp: SmtpConversation,
) -> None:
    longest = b"x" * (MAX_TEXT_LINE_OCTETS - 2)
    assert codes(send_message(smtp, longest + b"\r\n." + longest + b"\r\n.\r\n")) == [250]
    assert strip_trace_headers(smtp.messages()[0]) == longest + b"\r\n" + longest + b"\r\n"
    assert codes(send_message(smtp, b"x" * (MAX_TEXT_LINE_OCTETS - 1))) == []
    assert codes(smtp.raw(b"\r\nmore\r\n.\r\n")) == [500]  # RFC 5321 section 4.2.5
    assert len(smtp.messages()) == 1


def test_64k_message_is_accepted(smtp: SmtpConversation) -> None:
    line = b"y" * 78 + b"\r\n"
    text = line * (MIN_MESSAGE_OCTETS // len(line) + 1)
    assert codes(send_message(smtp, text + b".\r\n")) == [250]
    assert strip_trace_headers(smtp.messages()[0]) == text


def test_a_message_over_the_size_limit_is_552_after_the_data(tmp_path: Path) -> None:
    smtp = SmtpConversation(tmp_path, SmtpConfig(domain=DOMAIN, max_message_octets=1000))
    assert codes(send_message(smtp, b"z" * 900 + b"\r\n" + b"z" * 900 + b"\r\n")) == []
    assert len(smtp.session.transaction.content) <= 1000  # bounded memory
    assert codes(smtp.raw(b".\r\nNOOP\r\n")) == [552, 250]
    assert smtp.messages() == []


# RFC 5321 sections 2.3.8 and 4.1.1.4; the smtpsmug variants (smtp-notes 1.8).
SMUGGLING_ENDINGS = {
    "lf-lf": b"\n.\n",
    "cr-cr": b"\r.\r",
    "cr-lf": b"\r.\n",
    "lf-cr": b"\n.\r",
    "lf-crlf": b"\n.\r\n",
    "crlf-lf": b"\r\n.\n",
    "cr-crlf": b"\r.\r\n",
    "crlf-cr": b"\r\n.\r",
    "null-before": b"\r\n\x00.\r\n",
    "null-after": b"\r\n.\x00\r\n",
    "crcrlf": b"\r\r\n.\r\r\n",
    "space-after": b"\r\n. \r\n",
}
SMUGGLED = b"MAIL FROM:<evil@client.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nsmuggled\r\n"


@pytest.mark.parametrize("ending", list(SMUGGLING_ENDINGS.values()), ids=list(SMUGGLING_ENDINGS))
def test_no_bare_line_end_form_ends_the_data(smtp: SmtpConversation, ending: bytes) -> None:
    """By default the message is refused as a whole: one reply, nothing run."""
    text = b"Subject: s\r\n\r\nbefore" + ending + SMUGGLED + b".\r\n"
    replies = send_message(smtp, text)
    if ending in (b"\r\n. \r\n", b"\r\n.\x00\r\n", b"\r\n\x00.\r\n"):
        assert codes(replies) == [250]  # no bare line end: an ordinary text line
        assert SMUGGLED in strip_trace_headers(smtp.messages()[0])
    else:
        assert codes(replies) == [550]
        assert smtp.messages() == []
    assert smtp.messages("bob") == []
    assert smtp.session.state is State.READY


@pytest.mark.parametrize("ending", list(SMUGGLING_ENDINGS.values()), ids=list(SMUGGLING_ENDINGS))
def test_kept_bare_line_ends_stay_inside_one_message(tmp_path: Path, ending: bytes) -> None:
    smtp = SmtpConversation(tmp_path, SmtpConfig(domain=DOMAIN, refuse_bare_line_ends=False))
    text = b"before" + ending + SMUGGLED + b".\r\n"
    assert codes(send_message(smtp, text)) == [250]
    (stored,) = smtp.messages()
    body = strip_trace_headers(stored)
    assert body.endswith(SMUGGLED) and body.startswith(b"before")
    assert smtp.messages("bob") == []


# --- BDAT (RFC 3030) -----------------------------------------------------------


def test_bdat_chunks_make_one_message_verbatim(smtp: SmtpConversation) -> None:
    smtp.transaction()
    replies = smtp.raw(b"BDAT 6\r\n.a\r\nb\nBDAT 4 LAST\r\n\r\n.\r")
    assert codes(replies) == [250, 250]
    assert strip_trace_headers(smtp.messages()[0]) == b".a\r\nb\n\r\n.\r"


def test_bdat_after_last_and_data_after_bdat_are_503(smtp: SmtpConversation) -> None:
    smtp.transaction()
    assert codes(smtp.raw(b"BDAT 2 LAST\r\nok")) == [250]
    assert codes(smtp.raw(b"BDAT 3\r\nabcNOOP\r\n")) == [503, 250]
    smtp.send("MAIL FROM:<a@client.test>")
    smtp.send(f"RCPT TO:<alice@{DOMAIN}>")
    assert codes(smtp.raw(b"BDAT 4\r\nabcd")) == [250]
    assert smtp.code("DATA") == 503


def test_a_refused_bdat_chunk_is_discarded_not_run(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    chunk = b"RSET\r\nQUIT\r\n"
    replies = smtp.raw(b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n")
    assert codes(replies) == [503, 250]
    assert not smtp.session.closed


def test_bdat_chunk_split_over_reads(smtp: SmtpConversation) -> None:
    smtp.transaction()
    replies = b"".join(smtp.raw(bytes([o])) for o in b"BDAT 5 LAST\r\nhello")
    assert codes(replies) == [250]
    assert smtp.code("BDAT x") == 501


def test_bdat_over_the_size_limit_is_552(tmp_path: Path) -> None:
    smtp = SmtpConversation(tmp_path, SmtpConfig(domain=DOMAIN, max_message_octets=10))
    smtp.transaction()
    assert codes(smtp.raw(b"BDAT 20 LAST\r\n" + b"q" * 20)) == [552]
    assert smtp.messages() == []


# --- STARTTLS (RFC 3207) -------------------------------------------------------


def test_starttls_discards_pipelined_commands(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    assert codes(smtp.raw(b"STARTTLS\r\nEHLO injected.test\r\nRSET\r\n")) == [220]
    assert smtp.session.tls_requested
    assert smtp.raw(b"NOOP\r\n") == b""  # the handshake is due: nothing is read
    smtp.session.tls_established()
    assert smtp.session.state is State.GREETED
    assert smtp.send("NOOP") == b"250 2.0.0 OK\r\n"  # the injected commands never run
    assert smtp.session.client_name is None


def test_state_is_reset_after_tls(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    smtp.send("STARTTLS")
    smtp.session.tls_established()
    assert smtp.session.client_name is None
    assert smtp.code("MAIL FROM:<a@client.test>") == 503  # EHLO forgotten
    ehlo = smtp.send("EHLO client.test")
    assert b"STARTTLS" not in ehlo and b"AUTH PLAIN LOGIN CRAM-MD5" in ehlo
    assert smtp.code("STARTTLS") == 503


def test_starttls_with_an_argument_or_without_tls_configured(tmp_path: Path) -> None:
    smtp = SmtpConversation(tmp_path)
    smtp.ehlo()
    assert smtp.code("STARTTLS now") == 501
    plain = SmtpConversation(tmp_path, SmtpConfig(domain=DOMAIN))
    assert b"STARTTLS" not in plain.send("EHLO client.test")
    assert plain.code("STARTTLS") == 502


def test_tls_session_received_protocol(tmp_path: Path) -> None:
    smtp = SmtpConversation(tmp_path, tls=True)
    smtp.ehlo()
    smtp.send(f"AUTH PLAIN {plain_credentials()}")
    smtp.send("MAIL FROM:<a@client.test>")
    smtp.send(f"RCPT TO:<bob@{DOMAIN}>")
    smtp.send("DATA")
    smtp.raw(b"x\r\n.\r\n")
    assert b"with ESMTPSA id" in smtp.messages("bob")[0]


# --- AUTH (RFC 4954) -----------------------------------------------------------


def test_auth_plain_with_and_without_initial_response(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    assert smtp.send("AUTH PLAIN") == b"334 \r\n"
    assert smtp.code(plain_credentials()) == 235
    assert smtp.code(f"AUTH PLAIN {plain_credentials()}") == 503  # already authenticated
    assert b"AUTH" not in smtp.send("EHLO client.test").split(b"\r\n", 1)[1]


def test_auth_login(smtp: SmtpConversation) -> None:
    import base64

    smtp.ehlo()
    assert smtp.send("AUTH LOGIN") == b"334 VXNlcm5hbWU6\r\n"
    assert smtp.send(base64.b64encode(b"alice")) == b"334 UGFzc3dvcmQ6\r\n"
    assert smtp.code(base64.b64encode(PASSWORD.encode())) == 235


def test_auth_failures(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    assert smtp.code(f"AUTH PLAIN {plain_credentials(password='wrong')}") == 535
    assert smtp.code(f"AUTH PLAIN {plain_credentials(user='nobody')}") == 535
    assert smtp.code("AUTH PLAIN !!!") == 501  # not base64
    smtp.send("AUTH PLAIN")
    assert smtp.code("*") == 501  # cancelled
    assert smtp.code("AUTH GSSAPI") == 504
    assert smtp.code("AUTH") == 501
    assert not smtp.session.closed  # RFC 4954 section 9: no drop after 3 failures
    assert smtp.code(f"AUTH PLAIN {plain_credentials()}") == 235


def test_auth_cram_md5_refuses_an_initial_response_and_checks_the_digest(
    smtp: SmtpConversation,
) -> None:
    import base64
    import hmac

    smtp.ehlo()
    assert smtp.send("AUTH CRAM-MD5 YWxpY2UgMDA=").startswith(b"501 5.7.0 ")  # RFC 4954 §4
    challenge = base64.b64decode(smtp.send("AUTH CRAM-MD5")[4:].strip())
    assert challenge.startswith(b"<") and challenge.endswith(f"@{DOMAIN}>".encode())
    digest = hmac.new(PASSWORD.encode(), challenge, "md5").hexdigest()
    assert smtp.code(base64.b64encode(f"alice {digest}".encode())) == 235


def test_auth_cram_md5_wrong_digest_is_535(smtp: SmtpConversation) -> None:
    import base64

    smtp.ehlo()
    smtp.send("AUTH CRAM-MD5")
    assert smtp.code(base64.b64encode(b"alice 00000000000000000000000000000000")) == 535


def test_an_over_long_sasl_response_ends_the_exchange(smtp: SmtpConversation) -> None:
    smtp.ehlo()
    smtp.send("AUTH PLAIN")
    assert smtp.send(b"A" * 20000).startswith(b"500 5.5.6 ")  # RFC 4954 §4
    assert smtp.code("NOOP") == 250  # a command again, not a SASL response


def test_auth_inside_a_transaction_is_503(smtp: SmtpConversation) -> None:
    smtp.transaction()
    assert smtp.code(f"AUTH PLAIN {plain_credentials()}") == 503


def test_auth_needs_tls_unless_allowed(tmp_path: Path) -> None:
    smtp = SmtpConversation(tmp_path, SmtpConfig(domain=DOMAIN, starttls_available=True))
    assert b"AUTH" not in smtp.send("EHLO client.test")
    assert smtp.code(f"AUTH PLAIN {plain_credentials()}") == 538


# --- Timers and closing --------------------------------------------------------


def test_timeout_and_shutdown_say_421_first(smtp: SmtpConversation) -> None:
    smtp.transaction()
    assert (
        smtp.session.timeout()
        == f"421 4.4.2 {DOMAIN} timeout waiting for the client, closing\r\n".encode()
    )
    assert smtp.session.closed and smtp.session.shutdown() == b""
    other = SmtpConversation(smtp.root)
    assert other.session.shutdown().startswith(b"421 4.3.2 ")


def test_a_dropped_connection_delivers_nothing(smtp: SmtpConversation) -> None:
    send_message(smtp, b"half a message\r\n")
    smtp.session.connection_lost()
    assert smtp.session.closed and smtp.messages() == []


# --- Refused sessions (RFC 5321 section 3.1) and BINARYMIME (RFC 3030 section 3)


def test_a_refusing_server_greets_554_and_serves_only_quit(tmp_path: Path) -> None:
    smtp = SmtpConversation(tmp_path, SmtpConfig(domain=DOMAIN, refuse_sessions=True))
    assert smtp.greeting.startswith(f"554 {DOMAIN} ".encode())
    for command in ("EHLO client.test", "HELO client.test", "MAIL FROM:<a@b.test>", "NOOP"):
        assert smtp.code(command) == 503
        assert not smtp.session.closed
    assert smtp.code("QUIT") == 221 and smtp.session.closed


def test_binarymime_is_sent_with_bdat_only(smtp: SmtpConversation) -> None:
    assert b"250-BINARYMIME\r\n" in smtp.send("EHLO client.test")
    assert smtp.code("MAIL FROM:<a@b.test> BODY=BINARYMIME") == 250
    assert smtp.code(f"RCPT TO:<alice@{DOMAIN}>") == 250
    assert smtp.code("DATA") == 503
    assert smtp.raw(b"BDAT 5 LAST\r\n\x00\xff\r\x80\n").startswith(b"250 ")
