"""Reply patterns and body matchers (docs/scenario-format.md, *Reply
patterns* and *Bodies*).

Every matcher returns a `Match` that, when it fails, says what differed:
which token, which line, which octet, expected vs. got, with invisible
bytes escaped."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from conformance.core.expressions import (
    Expression,
    ExpressionError,
    ExpressionSyntaxError,
    parse_expression,
)
from conformance.core.fixture import FixtureMessage
from conformance.core.transcript import show_bytes

POSITIVE, NEGATIVE = "+OK", "-ERR"  # RFC 1939 §3 status indicators
UID_MAX_OCTETS = 70  # RFC 1939 §7 UIDL: 1 to 70 characters in 0x21-0x7E

CAPTURE_REGEX = {
    "int": r"[0-9]+",
    "uid": rf"[\x21-\x7e]{{1,{UID_MAX_OCTETS}}}",
    "word": r"[^ ]+",
    "text": r".*",
}
CAPTURE_MEANING = {
    "int": "a decimal number",
    "uid": "a unique-id (1-70 octets in 0x21-0x7E)",
    "word": "a run of non-space octets",
    "text": "the rest of the line",
}
_CAPTURE_TOKEN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([A-Za-z]+)\s*$")
_RESPONSE_CODE = re.compile(r"^\[([^\]\s]+)\]")


class PatternError(ValueError):
    """The pattern text is malformed; message says how."""


def decode_line(line: bytes) -> str:
    """Lines are matched as text; undecodable octets survive as surrogates."""
    return line.decode("utf-8", errors="surrogateescape")


def _shown(text: str) -> str:
    return show_bytes(text.encode("utf-8", errors="surrogateescape"))


# --------------------------------------------------------------------------
# Results


@dataclass
class Match:
    ok: bool
    captures: dict[str, Any] = field(default_factory=dict)
    expected: str = ""
    actual: str = ""

    @classmethod
    def failed(cls, expected: str, actual: str) -> Match:
        return cls(False, {}, expected, actual)


# --------------------------------------------------------------------------
# Token templates: literal text, {name:type} captures, {expr} values


@dataclass(frozen=True)
class Capture:
    name: str
    kind: str


Segment = str | Capture | Expression


def parse_segments(text: str) -> list[Segment]:
    """Split `text` into literals, captures and expressions. `{{`/`}}` are
    literal braces."""
    segments: list[Segment] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "{}" and text[i : i + 2] in ("{{", "}}"):
            literal.append(char)
            i += 2
            continue
        if char == "}":
            raise PatternError(f"unmatched '}}' at column {i + 1} (write '}}}}' for a brace)")
        if char != "{":
            literal.append(char)
            i += 1
            continue
        end = text.find("}", i + 1)
        if end < 0:
            raise PatternError(f"unclosed '{{' at column {i + 1} (write '{{{{' for a brace)")
        if literal:
            segments.append("".join(literal))
            literal = []
        segments.append(_parse_placeholder(text[i + 1 : end]))
        i = end + 1
    if literal:
        segments.append("".join(literal))
    return segments


def _parse_placeholder(inner: str) -> Capture | Expression:
    token = _CAPTURE_TOKEN.match(inner)
    if token:
        name, kind = token.groups()
        if kind not in CAPTURE_REGEX:
            known = ", ".join(CAPTURE_REGEX)
            raise PatternError(f"unknown capture type {kind!r} in {{{inner}}} (known: {known})")
        return Capture(name, kind)
    try:
        return parse_expression(inner)
    except ExpressionSyntaxError as exc:
        raise PatternError(str(exc)) from None


def segments_text(segments: Sequence[Segment]) -> str:
    out = []
    for seg in segments:
        if isinstance(seg, Capture):
            out.append(f"{{{seg.name}:{seg.kind}}}")
        elif isinstance(seg, Expression):
            out.append(f"{{{seg.text}}}")
        else:
            out.append(seg.replace("{", "{{").replace("}", "}}"))
    return "".join(out)


def segment_names(segments: Sequence[Segment]) -> tuple[set[str], set[str]]:
    """(names captured, names read) by these segments."""
    captured = {s.name for s in segments if isinstance(s, Capture)}
    read: set[str] = set()
    for s in segments:
        if isinstance(s, Expression):
            read |= s.names
    return captured, read


def render_value(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def render_segments(segments: Sequence[Segment], env: Mapping[str, Any]) -> str:
    """Substitute expressions (for `C:`/`send:`); captures are not allowed there."""
    out = []
    for seg in segments:
        if isinstance(seg, Expression):
            out.append(render_value(seg.evaluate(env)))
        elif isinstance(seg, Capture):
            raise ExpressionError(f"{{{seg.name}:{seg.kind}}} captures only in patterns")
        else:
            out.append(seg)
    return "".join(out)


def _segment_regex(seg: Segment, env: Mapping[str, Any], index: int) -> str:
    if isinstance(seg, Capture):
        return f"(?P<g{index}>{CAPTURE_REGEX[seg.kind]})"
    if isinstance(seg, Expression):
        return re.escape(render_value(seg.evaluate(env)))
    return re.escape(seg)


def _describe_segment(seg: Segment, env: Mapping[str, Any]) -> str:
    if isinstance(seg, Capture):
        return f"{{{seg.name}:{seg.kind}}} ({CAPTURE_MEANING[seg.kind]})"
    if isinstance(seg, Expression):
        try:
            value = render_value(seg.evaluate(env))
        except ExpressionError:
            value = "?"
        return f"{{{seg.text}}} = {value!r}"
    return repr(seg)


TRAILING_FREE_TEXT = r"(?: .*)?"


@dataclass(frozen=True)
class TokenLine:
    """A sequence of segments matched at the start of `text`, followed by
    end of line (exact) or by end of line / SP and free text."""

    segments: tuple[Segment, ...]
    exact: bool = False

    def match(self, text: str, env: Mapping[str, Any]) -> tuple[bool, dict[str, Any], str]:
        """(matched, captures, what differed)."""
        regex = self._fixed_regex
        if regex is None:
            regex = re.compile(self._regex_source(env), re.S)
        found = regex.fullmatch(text)
        if found:
            return True, self._captures(found), ""
        return False, {}, self._diagnose(text, env)

    @cached_property
    def _fixed_regex(self) -> re.Pattern[str] | None:
        """The compiled pattern when no segment reads `env` (e.g. `{msg:int}
        {octets:int}`, matched against every body line): built once."""
        if any(isinstance(s, Expression) for s in self.segments):
            return None
        return re.compile(self._regex_source({}), re.S)

    def _regex_source(self, env: Mapping[str, Any]) -> str:
        body = "".join(_segment_regex(s, env, i) for i, s in enumerate(self.segments))
        tail = "" if self.exact or not self.segments else TRAILING_FREE_TEXT
        return body + tail

    def _captures(self, found: re.Match[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, seg in enumerate(self.segments):
            if isinstance(seg, Capture):
                raw = found.group(f"g{i}")
                out[seg.name] = int(raw) if seg.kind == "int" else raw
        return out

    def _diagnose(self, text: str, env: Mapping[str, Any]) -> str:
        matched_until = 0
        for k in range(len(self.segments), 0, -1):
            prefix = "".join(_segment_regex(s, env, i) for i, s in enumerate(self.segments[:k]))
            found = re.match(prefix, text, re.S)
            if found:
                if k == len(self.segments):
                    rest = text[found.end() :]
                    if self.exact:
                        return f"nothing after {_shown(text[: found.end()])}, got {_shown(rest)}"
                    return (
                        f"end of line or SP after {_shown(text[: found.end()])}, got {_shown(rest)}"
                    )
                matched_until = found.end()
                failing = self.segments[k]
                break
        else:
            failing = self.segments[0]
        return (
            f"{_describe_segment(failing, env)} at column {matched_until + 1}, "
            f"got {_shown(text[matched_until:])}"
        )


def token_line(text: str, exact: bool = False) -> TokenLine:
    return TokenLine(tuple(parse_segments(text)), exact)


# --------------------------------------------------------------------------
# Line patterns (status lines and body lines)


class LinePattern:
    """Matches one line (bytes without its line end)."""

    source: str

    def match(self, line: bytes, env: Mapping[str, Any]) -> Match:
        raise NotImplementedError

    def names(self) -> tuple[set[str], set[str]]:
        """(names captured, names read)."""
        return set(), set()

    def wants_positive(self) -> bool:
        return False


@dataclass(frozen=True)
class StatusPattern(LinePattern):
    """`+OK`, `-ERR [CODE]`, `+OK {count} {size:int}` (with `exact`)."""

    source: str
    status: str
    code: str | None
    tokens: TokenLine | None
    exact: bool

    def wants_positive(self) -> bool:
        return self.status == POSITIVE

    def names(self) -> tuple[set[str], set[str]]:
        return segment_names(self.tokens.segments) if self.tokens else (set(), set())

    def match(self, line: bytes, env: Mapping[str, Any]) -> Match:
        text = decode_line(line)
        expected = repr(self.source) + (" (exact)" if self.exact else "")
        status, _, rest = text.partition(" ")
        if status != self.status:
            return Match.failed(expected, f"status {_shown(status)} in {show_bytes(line)}")
        if self.code is not None:
            code_match = _RESPONSE_CODE.match(rest)
            if not code_match:
                return Match.failed(expected, f"no response code in {show_bytes(line)}")
            if not response_code_matches(self.code, code_match.group(1)):
                return Match.failed(
                    expected, f"response code [{code_match.group(1)}] in {show_bytes(line)}"
                )
            rest = rest[code_match.end() :]
            if self.tokens is None:
                return self._check_rest_after_code(rest, expected, line)
            if not rest.startswith(" "):
                return Match.failed(
                    expected, f"no SP after the response code in {show_bytes(line)}"
                )
            rest = rest[1:]
        if self.tokens is None:
            if self.exact and text != self.status:
                return Match.failed(expected, f"trailing text in {show_bytes(line)}")
            return Match(True)
        if " " not in text:
            return Match.failed(expected, f"nothing after the status in {show_bytes(line)}")
        ok, captures, why = self.tokens.match(rest, env)
        if ok:
            return Match(True, captures)
        return Match.failed(expected, f"{show_bytes(line)}: expected {why}")

    def _check_rest_after_code(self, rest: str, expected: str, line: bytes) -> Match:
        if rest and (self.exact or not rest.startswith(" ")):
            return Match.failed(expected, f"unexpected text after the code in {show_bytes(line)}")
        return Match(True)


def response_code_matches(expected: str, received: str) -> bool:
    """RFC 2449 §8: codes are case-insensitive and hierarchical: `SYS`
    accepts `SYS/TEMP`."""
    wanted, got = expected.upper(), received.upper()
    return got == wanted or got.startswith(wanted + "/")


@dataclass(frozen=True)
class TokenPattern(LinePattern):
    """A status-less line pattern (body lines): `{msg:int} {octets:int}`."""

    source: str
    tokens: TokenLine

    def names(self) -> tuple[set[str], set[str]]:
        return segment_names(self.tokens.segments)

    def match(self, line: bytes, env: Mapping[str, Any]) -> Match:
        text = decode_line(line)
        if not self.tokens.segments:
            if text == "":
                return Match(True)
            return Match.failed("an empty line", show_bytes(line))
        ok, captures, why = self.tokens.match(text, env)
        if ok:
            return Match(True, captures)
        return Match.failed(repr(self.source), f"{show_bytes(line)}: expected {why}")


@dataclass(frozen=True)
class ExactLinePattern(LinePattern):
    """`{line: "+OK exact"}`: the whole line, exactly (tokens allowed)."""

    source: str
    tokens: TokenLine

    def wants_positive(self) -> bool:
        return self.source.startswith(POSITIVE)

    def names(self) -> tuple[set[str], set[str]]:
        return segment_names(self.tokens.segments)

    def match(self, line: bytes, env: Mapping[str, Any]) -> Match:
        ok, captures, why = self.tokens.match(decode_line(line), env)
        if ok:
            return Match(True, captures)
        return Match.failed(
            f"the line {self.source!r} exactly", f"{show_bytes(line)}: expected {why}"
        )


@dataclass(frozen=True)
class RegexPattern(LinePattern):
    """`{re: '...'}` searched in the line without CRLF; named groups captured."""

    source: str
    regex: re.Pattern[str]

    def wants_positive(self) -> bool:
        return self.source.lstrip("^").replace("\\", "").startswith(POSITIVE)

    def names(self) -> tuple[set[str], set[str]]:
        return set(self.regex.groupindex), set()

    def match(self, line: bytes, env: Mapping[str, Any]) -> Match:
        found = self.regex.search(decode_line(line))
        if found:
            return Match(True, {k: v for k, v in found.groupdict().items() if v is not None})
        return Match.failed(f"a line matching /{self.source}/", show_bytes(line))


@dataclass(frozen=True)
class AlternativePatterns(LinePattern):
    """A list: the first alternative that matches wins."""

    source: str
    alternatives: tuple[LinePattern, ...]

    def wants_positive(self) -> bool:
        return all(a.wants_positive() for a in self.alternatives)

    def names(self) -> tuple[set[str], set[str]]:
        captured: set[str] = set()
        read: set[str] = set()
        for alternative in self.alternatives:
            c, r = alternative.names()
            captured |= c
            read |= r
        return captured, read

    def match(self, line: bytes, env: Mapping[str, Any]) -> Match:
        misses = []
        for alternative in self.alternatives:
            result = alternative.match(line, env)
            if result.ok:
                return result
            misses.append(result.expected)
        return Match.failed("one of " + ", ".join(misses), show_bytes(line))


def status_pattern(text: str, exact: bool = False) -> StatusPattern:
    status, _, rest = text.partition(" ")
    if status not in (POSITIVE, NEGATIVE):
        raise PatternError(f"a reply pattern starts with +OK or -ERR, not {status!r}")
    code = None
    if rest.startswith("["):
        code_match = _RESPONSE_CODE.match(rest)
        if not code_match:
            raise PatternError(f"malformed response code in {text!r} (write [CODE])")
        code = code_match.group(1)
        rest = rest[code_match.end() :]
        if rest and not rest.startswith(" "):
            raise PatternError(f"SP expected after the response code in {text!r}")
        rest = rest[1:]
    tokens = token_line(rest, exact) if rest else None
    return StatusPattern(text, status, code, tokens, exact)


def compile_regex(source: str) -> RegexPattern:
    try:
        return RegexPattern(source, re.compile(source))
    except re.error as exc:
        raise PatternError(f"bad regular expression {source!r}: {exc}") from None


# --------------------------------------------------------------------------
# Bodies


@dataclass(frozen=True)
class BodyContext:
    """What a body matcher may consult besides the bytes."""

    messages: tuple[FixtureMessage, ...]  # the session account's fixture messages
    byte_exact: bool  # the provisioner wrote the fixture byte for byte


class BodyMatcher:
    source: str

    def match(
        self, lines: Sequence[bytes], body: bytes, env: Mapping[str, Any], ctx: BodyContext
    ) -> Match:
        raise NotImplementedError

    def names(self) -> tuple[set[str], set[str]]:
        return set(), set()


@dataclass(frozen=True)
class AnyBody(BodyMatcher):
    source: str = "any"

    def match(
        self, lines: Sequence[bytes], body: bytes, env: Mapping[str, Any], ctx: BodyContext
    ) -> Match:
        return Match(True)


@dataclass(frozen=True)
class LinesBody(BodyMatcher):
    """Exactly these lines, in order."""

    source: str
    patterns: tuple[LinePattern, ...]

    def names(self) -> tuple[set[str], set[str]]:
        return AlternativePatterns("", self.patterns).names()

    def match(
        self, lines: Sequence[bytes], body: bytes, env: Mapping[str, Any], ctx: BodyContext
    ) -> Match:
        captures: dict[str, Any] = {}
        scope = dict(env)
        for number, (pattern, line) in enumerate(zip(self.patterns, lines, strict=False), 1):
            result = pattern.match(line, scope)
            if not result.ok:
                return Match.failed(f"body line {number}: {result.expected}", f"{result.actual}")
            captures.update(result.captures)
            scope.update(result.captures)
        if len(lines) != len(self.patterns):
            extra = (
                f"; first extra line: {show_bytes(lines[len(self.patterns)])}"
                if len(lines) > len(self.patterns)
                else ""
            )
            return Match.failed(f"{len(self.patterns)} body lines", f"{len(lines)} lines{extra}")
        return Match(True, captures)


@dataclass(frozen=True)
class EachBody(BodyMatcher):
    """Every line matches; captures become lists; optional line count."""

    source: str
    pattern: LinePattern
    count: Expression | None

    def names(self) -> tuple[set[str], set[str]]:
        captured, read = self.pattern.names()
        if self.count is not None:
            read = read | self.count.names
        return captured, read

    def match(
        self, lines: Sequence[bytes], body: bytes, env: Mapping[str, Any], ctx: BodyContext
    ) -> Match:
        captured_names, _ = self.pattern.names()
        lists: dict[str, list[Any]] = {name: [] for name in captured_names}
        for number, line in enumerate(lines, 1):
            result = self.pattern.match(line, env)
            if not result.ok:
                return Match.failed(
                    f"every body line: {result.expected}", f"line {number}: {result.actual}"
                )
            for name in captured_names:
                lists[name].append(result.captures.get(name))
        if self.count is not None:
            wanted = self.count.evaluate(env)
            if wanted != len(lines):
                return Match.failed(
                    f"{wanted} body lines (count: {self.count.text})", f"{len(lines)} lines"
                )
        return Match(True, dict(lists))


@dataclass(frozen=True)
class MessageBody(BodyMatcher):
    """Fixture message N (optionally only its TOP K part), exact or body-only."""

    source: str
    number: Expression
    top: Expression | None
    compare: str | None  # "exact" | "body" | None: by provisioner

    def names(self) -> tuple[set[str], set[str]]:
        read = set(self.number.names) | (set(self.top.names) if self.top else set())
        return set(), read

    def match(
        self, lines: Sequence[bytes], body: bytes, env: Mapping[str, Any], ctx: BodyContext
    ) -> Match:
        number = self.number.evaluate(env)
        if not isinstance(number, int) or not 1 <= number <= len(ctx.messages):
            raise ExpressionError(
                f"message {number!r} is not in the account's fixture (1..{len(ctx.messages)})"
            )
        message = ctx.messages[number - 1]
        expected = message.wire
        label = f"fixture message {number} ({message.name})"
        if self.top is not None:
            top_lines = self.top.evaluate(env)
            if not isinstance(top_lines, int) or top_lines < 0:
                raise ExpressionError(f"top must be a non-negative number, got {top_lines!r}")
            expected = message.top(top_lines)
            label += f", header and first {top_lines} body lines"
        mode = self.compare or ("exact" if ctx.byte_exact else "body")
        if mode == "body":
            expected, body = _after_header(expected), _after_header(body)
            label += ", compared after the header"
        difference = describe_difference(expected, body)
        if difference is None:
            return Match(True)
        return Match.failed(label, difference)


def _after_header(data: bytes) -> bytes:
    _, separator, rest = data.partition(b"\r\n\r\n")
    return rest if separator else b""


def describe_difference(expected: bytes, got: bytes) -> str | None:
    """None when equal; else where the first difference is and both sides
    of that line."""
    if expected == got:
        return None
    offset = next(
        (i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    line_number = expected.count(b"\n", 0, offset) + 1
    line_start = expected.rfind(b"\n", 0, offset) + 1

    def line_at(data: bytes) -> bytes:
        end = data.find(b"\n", offset)
        return data[line_start : end + 1 if end >= 0 else len(data)]

    sizes = f"{len(got)} octets, expected {len(expected)}"
    if offset >= len(got):
        missing = show_bytes(expected[offset:], 80)
        return f"{sizes}: body ends early at octet {offset} (line {line_number}); missing {missing}"
    if offset >= len(expected):
        extra = show_bytes(got[offset:], 80)
        return f"{sizes}: extra data from octet {offset} (line {line_number}): {extra}"
    return (
        f"{sizes}: first difference at octet {offset} (line {line_number}): "
        f"expected {show_bytes(line_at(expected), 120)}, got {show_bytes(line_at(got), 120)}"
    )
