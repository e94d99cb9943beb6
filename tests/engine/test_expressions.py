"""The expression language: what it computes, what it refuses, and how a
failure shows the names' values."""

from __future__ import annotations

import pytest

from conformance.core.expressions import (
    MAX_BUILT_VALUE_OCTETS,
    ExpressionError,
    ExpressionSyntaxError,
    Namespace,
    apop_digest_of,
    parse_expression,
)


def ev(text: str, **env: object) -> object:
    return parse_expression(text).evaluate(env)


def test_arithmetic_comparisons_and_logic() -> None:
    assert ev("sum(octets) == size", octets=[1, 2, 3], size=6) is True
    assert ev("7 // 2 + 7 % 2 - 1") == 3
    assert ev("a < b <= c", a=1, b=2, c=2) is True
    assert ev("not x or y", x=True, y=False) is False
    assert ev("xs[-1] + len(xs[1:])", xs=[1, 2, 3]) == 5
    assert ev("'x' in s", s="axb") is True


def test_functions() -> None:
    assert ev("unique(u)", u=["a", "b"]) is True
    assert ev("unique(u)", u=["a", "a"]) is False
    assert ev("sorted(set(xs)) == [1, 2]", xs=[2, 1, 2]) is True
    assert ev("min(xs) + max(xs)", xs=[3, 9]) == 12
    assert ev("header(m)", m=b"A: b\r\n\r\nbody\r\n") == b"A: b\r\n\r\n"
    assert ev("bodypart(m)", m=b"A: b\r\n\r\nbody\r\n") == b"body\r\n"


def test_account_namespace() -> None:
    accounts = Namespace("accounts", {"main": Namespace("accounts.main", {"user": "alice"})})
    assert ev("accounts.main.user", accounts=accounts) == "alice"
    with pytest.raises(ExpressionError, match="accounts has no 'nope'"):
        ev("accounts.nope.user", accounts=accounts)


def test_apop_digest_matches_the_rfc_1939_example() -> None:
    digest = apop_digest_of("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf")
    assert digest == "c4c9334bac560ecc979e58001b3e22fb"


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "(lambda: 1)()",
        "x.__class__",
        "[a for a in b]",
        "a if b else c",
        "f'{x}'",
        "{1: 2}",
        "2 ** 10",
        "eval('1')",
        "len(x, key=1)",
    ],
)
def test_refused_syntax(text: str) -> None:
    with pytest.raises(ExpressionSyntaxError):
        parse_expression(text)


def test_runtime_errors_are_expression_errors() -> None:
    with pytest.raises(ExpressionError, match="name 'size' is not defined"):
        ev("size > 0")
    with pytest.raises(ExpressionError, match="TypeError"):
        ev("a + 1", a="x")
    with pytest.raises(ExpressionError, match="IndexError"):
        ev("xs[5]", xs=[])


def test_built_values_are_bounded() -> None:
    assert len(ev('"A" * 300')) == 300  # type: ignore[arg-type]
    with pytest.raises(ExpressionError, match=str(MAX_BUILT_VALUE_OCTETS)):
        ev('"A" * 100000000')


def test_names_and_their_values_for_messages() -> None:
    expression = parse_expression("sum(octets) == size")
    assert expression.names == {"octets", "size"}
    assert expression.describe_names({"octets": [1, 2], "size": 4}) == "octets = [1, 2], size = 4"
    assert "size = <undefined>" in expression.describe_names({"octets": []})


def test_upper_folds_text_and_lists_of_text_for_case_insensitive_names() -> None:
    from conformance.core.expressions import BUILTINS, ExpressionError

    assert BUILTINS["upper"]("resp-codes") == "RESP-CODES"
    assert BUILTINS["upper"](["top", "Uidl"]) == ["TOP", "UIDL"]
    with pytest.raises(ExpressionError, match="upper"):
        BUILTINS["upper"](3)
