"""Reply patterns and body matchers, passing and failing; a failure says
what differed, with invisible bytes escaped."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.core.fixture import FixtureMessage
from conformance.core.patterns import (
    AnyBody,
    BodyContext,
    PatternError,
    describe_difference,
    parse_segments,
    render_segments,
    status_pattern,
)
from conformance.core.scenario import body_matcher, reply_pattern

MESSAGE = FixtureMessage(
    "m.eml", b"Subject: hi\r\nFrom: a@b\r\n\r\nline one\r\n.dotted\r\nthree\r\n"
)
CONTEXT = BodyContext((MESSAGE,), byte_exact=True)


def s_match(pattern: Any, line: bytes, env: dict[str, Any] | None = None, exact: bool = False):
    return reply_pattern(pattern, exact, 1).match(line, env or {})


def body_match(
    spec: Any, body: bytes, env: dict[str, Any] | None = None, ctx: BodyContext = CONTEXT
):
    lines = body.split(b"\r\n")[:-1] if body else []
    return body_matcher(spec, 1).match(lines, body, env or {}, ctx)


# -- status and tokens ---------------------------------------------------------


@pytest.mark.parametrize("line", [b"+OK", b"+OK ", b"+OK anything at all", b"+OK \x00weird"])
def test_status_only_accepts_any_free_text(line: bytes) -> None:
    assert s_match("+OK", line).ok


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"-ERR no", "status '-ERR'"),
        (b"+OKAY", "status '+OKAY'"),
        (b"+ok", "status '+ok'"),
    ],
)
def test_status_mismatch_says_which_status_arrived(line: bytes, why: str) -> None:
    result = s_match("+OK", line)
    assert not result.ok
    assert why in result.actual


def test_tokens_capture_and_compare_known_values() -> None:
    result = s_match("+OK {count} {size:int}", b"+OK 2 320", {"count": 2})
    assert result.ok and result.captures == {"size": 320}
    assert s_match("+OK {count} {size:int}", b"+OK 2 320 octets in maildrop", {"count": 2}).ok


def test_token_mismatch_names_the_token_its_value_and_what_arrived() -> None:
    result = s_match("+OK {count} {size:int}", b"+OK 3 320", {"count": 2})
    assert not result.ok
    assert result.expected == "'+OK {count} {size:int}'"
    assert "{count} = '2' at column 1, got '3 320'" in result.actual


def test_int_capture_refuses_non_digits() -> None:
    result = s_match("+OK {n:int} {size:int}", b"+OK 1 12x")
    assert not result.ok
    assert "end of line or SP after '1 12', got 'x'" in result.actual


def test_exact_forbids_trailing_text() -> None:
    assert s_match("+OK {n:int} {size:int}", b"+OK 1 12", exact=True).ok
    result = s_match("+OK {n:int} {size:int}", b"+OK 1 12 extra", exact=True)
    assert not result.ok
    assert "nothing after '1 12', got ' extra'" in result.actual
    assert "(exact)" in result.expected


def test_response_codes_compare_case_insensitively_and_hierarchically() -> None:
    assert s_match("-ERR [IN-USE]", b"-ERR [in-use] maildrop locked").ok
    assert s_match("-ERR [SYS]", b"-ERR [SYS/TEMP] try later").ok
    wrong = s_match("-ERR [IN-USE]", b"-ERR [AUTH] no")
    assert not wrong.ok and "response code [AUTH]" in wrong.actual
    missing = s_match("-ERR [IN-USE]", b"-ERR locked")
    assert not missing.ok and "no response code" in missing.actual
    assert not s_match("-ERR [SYS]", b"-ERR [SYSTEM] no").ok


def test_uid_word_and_text_captures() -> None:
    assert s_match("+OK {n:int} {u:uid}", b"+OK 1 " + b"u" * 70).captures["u"] == "u" * 70
    too_long = s_match("+OK {n:int} {u:uid}", b"+OK 1 " + b"u" * 71, exact=True)
    assert not too_long.ok
    assert s_match("+OK {w:word} {rest:text}", b"+OK a-b c d").captures == {
        "w": "a-b",
        "rest": "c d",
    }


def test_back_reference_must_equal_the_earlier_capture() -> None:
    assert s_match("+OK 1 {uid1}", b"+OK 1 abc", {"uid1": "abc"}).ok
    result = s_match("+OK 1 {uid1}", b"+OK 1 abd", {"uid1": "abc"})
    assert not result.ok and "{uid1} = 'abc'" in result.actual


def test_line_pattern_is_exact() -> None:
    assert s_match({"line": "+OK exact"}, b"+OK exact").ok
    result = s_match({"line": "+OK exact"}, b"+OK exact ")
    assert not result.ok and "nothing after '+OK exact', got ' '" in result.actual


def test_regex_pattern_captures_named_groups() -> None:
    result = s_match({"re": r"^\+OK (?P<n>\d+) octets"}, b"+OK 42 octets follow")
    assert result.ok and result.captures == {"n": "42"}
    failed = s_match({"re": r"^\+OK (?P<n>\d+) octets"}, b"+OK message follows")
    assert not failed.ok and "a line matching" in failed.expected


def test_alternatives_first_match_wins_and_failure_lists_all() -> None:
    assert s_match(["+OK", "-ERR [IN-USE]"], b"-ERR [IN-USE] locked").ok
    result = s_match(["+OK", "-ERR [IN-USE]"], b"-ERR busy\x00\r")
    assert not result.ok
    assert result.expected == "one of '+OK', '-ERR [IN-USE]'"
    assert result.actual == "'-ERR busy\\x00\\r'"


def test_invisible_bytes_are_escaped_in_failures() -> None:
    result = s_match("+OK {n:int} {size:int}", b"+OK 1\t2")
    assert "\\t" in result.actual and "\t" not in result.actual


def test_pattern_syntax_errors() -> None:
    with pytest.raises(PatternError, match="unclosed"):
        parse_segments("+OK {n:int")
    with pytest.raises(PatternError, match="unmatched"):
        parse_segments("+OK }")
    with pytest.raises(PatternError, match="malformed response code"):
        status_pattern("-ERR [IN-USE")


def test_braces_escape_and_render() -> None:
    segments = parse_segments("USER {user} {{x}}")
    assert render_segments(segments, {"user": "alice"}) == "USER alice {x}"
    assert render_segments(parse_segments('{"A" * 3}'), {}) == "AAA"


# -- bodies --------------------------------------------------------------------


def test_any_body_accepts_everything() -> None:
    assert AnyBody().match([b"x"], b"x\r\n", {}, CONTEXT).ok


def test_line_list_body() -> None:
    assert body_match(["TOP", "USER"], b"TOP\r\nUSER\r\n").ok
    wrong = body_match(["TOP", "USER"], b"TOP\r\nUIDL\r\n")
    assert not wrong.ok and wrong.expected.startswith("body line 2:")
    extra = body_match(["TOP"], b"TOP\r\nUSER\r\n")
    assert not extra.ok
    assert extra.expected == "1 body lines"
    assert extra.actual == "2 lines; first extra line: 'USER'"
    assert body_match([], b"").ok
    assert not body_match([], b"x\r\n").ok


def test_each_body_captures_lists_and_counts() -> None:
    result = body_match(
        {"each": "{msg:int} {octets:int}", "count": "count"}, b"1 10\r\n2 20\r\n", {"count": 2}
    )
    assert result.ok and result.captures == {"msg": [1, 2], "octets": [10, 20]}
    wrong_count = body_match({"each": "{msg:int} {octets:int}", "count": 3}, b"1 10\r\n2 20\r\n")
    assert not wrong_count.ok
    assert wrong_count.expected == "3 body lines (count: 3)" and wrong_count.actual == "2 lines"
    bad_line = body_match({"each": "{msg:int} {octets:int}"}, b"1 10\r\ntwo 20\r\n")
    assert not bad_line.ok and bad_line.actual.startswith("line 2: 'two 20'")


def test_message_body_exact() -> None:
    assert body_match({"message": 1}, MESSAGE.wire).ok
    changed = MESSAGE.wire.replace(b"line one\r\n", b"line one\n")
    result = body_match({"message": 1}, changed)
    assert not result.ok
    assert result.expected == "fixture message 1 (m.eml)"
    assert "first difference at octet 34 (line 4)" in result.actual
    assert "expected 'line one\\r\\n', got 'line one\\n'" in result.actual


def test_message_body_short_and_long() -> None:
    short = body_match({"message": 1}, MESSAGE.wire[:-7])
    assert "body ends early" in short.actual and "missing 'three\\r\\n'" in short.actual
    long = body_match({"message": 1}, MESSAGE.wire + b"more\r\n")
    assert "extra data from octet" in long.actual and "'more\\r\\n'" in long.actual


def test_message_top_lines() -> None:
    top1 = b"Subject: hi\r\nFrom: a@b\r\n\r\nline one\r\n"
    assert body_match({"message": 1, "top": 1}, top1).ok
    assert body_match({"message": 1, "top": 0}, top1.rsplit(b"line one\r\n", 1)[0]).ok
    result = body_match({"message": 1, "top": 2}, top1)
    assert not result.ok and "first 2 body lines" in result.expected


def test_message_compare_body_ignores_added_headers() -> None:
    traced = b"Received: by relay\r\n" + MESSAGE.wire
    assert not body_match({"message": 1}, traced).ok
    assert body_match({"message": 1, "compare": "body"}, traced).ok
    not_exact = BodyContext((MESSAGE,), byte_exact=False)
    assert body_match({"message": 1}, traced, ctx=not_exact).ok
    other_body = traced.replace(b"three", b"THREE")
    result = body_match({"message": 1}, other_body, ctx=not_exact)
    assert not result.ok and "compared after the header" in result.expected


def test_describe_difference_equal_is_none() -> None:
    assert describe_difference(b"a\r\n", b"a\r\n") is None
