"""The default fixture catches servers that re-encode 8-bit bytes or derive
UIDs from the delivery time (issue 8 item 7), and `same_second` is parsed
whole: every malformed form is a one-line FixtureError naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.core.fixture import (
    DELIVERY_EPOCH,
    FixtureError,
    FixtureMessage,
    delivery_seconds,
    generate_large_message,
    load_fixture,
)


def test_default_main_ends_with_a_legacy_charset_message_that_is_not_utf8():
    main = load_fixture().account("main")
    koi8 = main.messages[7]
    assert koi8.name == "08-koi8r-8bit.eml"
    with pytest.raises(UnicodeDecodeError):
        koi8.raw.decode("utf-8")
    assert "Привет".encode("koi8-r") in koi8.raw
    assert b"Message-ID: <koi8r.8@mailspec.test>\r\n" in koi8.header


def test_default_main_has_two_messages_delivered_in_the_same_second():
    main = load_fixture().account("main")
    seconds = delivery_seconds(main.messages)
    assert [m.same_second for m in main.messages].count(True) == 1
    assert seconds[7] == seconds[8]
    assert seconds == sorted(seconds)
    # the first seven keep the delivery times (and names) they always had
    assert seconds[:7] == [DELIVERY_EPOCH + i for i in range(7)]


def test_delivery_seconds_share_only_with_the_predecessor():
    plain = FixtureMessage("a", b"x\r\n")
    same = FixtureMessage("b", b"y\r\n", same_second=True)
    assert delivery_seconds([plain, same, plain, same, same]) == [
        DELIVERY_EPOCH,
        DELIVERY_EPOCH,
        DELIVERY_EPOCH + 2,
        DELIVERY_EPOCH + 2,
        DELIVERY_EPOCH + 2,
    ]
    assert delivery_seconds([]) == []


def _fixture(tmp_path: Path, messages: str) -> Path:
    (tmp_path / "m.eml").write_bytes(b"Subject: m\r\n\r\nbody\r\n")
    (tmp_path / "fixture.yaml").write_text(
        "accounts:\n"
        "  main: {user: u, password: p, messages: " + messages + "}\n"
        "  empty: {user: e, password: p, messages: []}\n",
        encoding="utf-8",
    )
    return tmp_path


def test_same_second_mapping_loads(tmp_path):
    fixture = load_fixture(_fixture(tmp_path, "[m.eml, {file: m.eml, same_second: true}]"))
    messages = fixture.account("main").messages
    assert [m.same_second for m in messages] == [False, True]
    assert messages[0].raw == messages[1].raw


@pytest.mark.parametrize(
    ("messages", "complaint"),
    [
        ("[m.eml, {file: m.eml, same_second: yes please}]", "messages[2].same_second"),
        ("[m.eml, {file: m.eml, when: now}]", "unknown key 'when'"),
        ("[{file: m.eml, same_second: true}]", "messages[1].same_second: the first"),
        ("[m.eml, {file: '', same_second: true}]", "messages[2].file"),
        ("[m.eml, {file: missing.eml}]", "cannot read"),
        ("[m.eml, {same_second: true}]", "expected a file name"),
    ],
)
def test_malformed_message_entries_are_named(tmp_path, messages, complaint):
    with pytest.raises(FixtureError) as caught:
        load_fixture(_fixture(tmp_path, messages))
    assert complaint in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_generated_large_message_keeps_the_shape_the_fixture_documents() -> None:
    # docs/fixture.md, message 7: 1,100,005 octets in 21,570 CRLF lines, every
    # 97th body line starting with "." (222 of them), the same bytes each time
    message = generate_large_message()
    assert message == generate_large_message()
    assert len(message) == 1_100_005 and message.count(b"\r\n") == 21_570
    _, _, body = message.partition(b"\r\n\r\n")
    lines = body.split(b"\r\n")[:-1]
    dotted = [n for n, line in enumerate(lines, start=1) if line.startswith(b".")]
    assert dotted == list(range(97, len(lines) + 1, 97)) and len(dotted) == 222
    widths = {len(line.lstrip(b".")) - 7 for line in lines}
    assert widths == set(range(20, 65))  # 45 lengths of hex digits
    assert len(set(lines)) == len(lines)  # no line repeats another
    assert b"\n" not in message.replace(b"\r\n", b"")
