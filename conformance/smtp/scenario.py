"""SMTP scenario steps (files with `protocol: smtp`; docs/scenario-format-smtp.md).

On top of the protocol-neutral actions (`open`, `C:`, `pipeline:`, `send:`,
`drop`, `idle:`, `expect_open:`, `expect_close`, `starttls`, `assert:`,
`skip_if:`), SMTP scenarios have:

* `S: CODES` — one whole reply whose code is in CODES: `250`, `[503, 554]`,
  `5xx` (any code of that class), or a list mixing them. Modifiers:
  `text: REGEX` (searched in the reply's text lines, joined by LF),
  `non_strict: CODES` (codes a deployed server may send instead: WARN, not
  FAIL — smtp-notes §7), `save: NAME` (the reply's text lines as a list),
  `or_close`, `level`.
* `data: [LINES]` — the message text after a 354: each line sent with CRLF,
  dot-stuffed (RFC 5321 §4.5.2), then the end-of-data line `.`.
* `delivered: {to: ROLE, count: N, contains: [TEXT], body: [LINES],
  starts_with: [LINES], trace: BOOL, trace_matches: [REGEX], trace_lacks: [REGEX]}`
  — delivery inspection: what the scenario's messages left in that
  account's maildrop (conformance.smtp.delivery).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from conformance.core.expressions import Expression
from conformance.core.patterns import Segment
from conformance.core.scenario import (
    ACCOUNT_ROLES,
    LEVELS,
    Step,
    _item_line,
    _line_of,
    _Problem,
    _StepParser,
    register_protocol,
)

PROTOCOL = "smtp"
_CODE = re.compile(r"^[2-5][0-9][0-9]$")
_CLASS = re.compile(r"^([2-5])xx$", re.IGNORECASE)
#: Names every SMTP scenario may use in templates (conformance.smtp.engine).
FACT_NAMES = frozenset(
    {
        "domain",  # the target's local domain
        "rcpt",  # the scenario account's address, user@domain
        "other_rcpt",  # another account's address (spare1)
        "sender",  # a reverse-path mailbox outside the target's domain
        "bogus_rcpt",  # a local-looking address with no account
        "relay_rcpt",  # an address in a domain the target does not serve
        "client",  # the client's EHLO name
        "user",
        "password",
        "accounts",
    }
)


@dataclass(frozen=True)
class CodeSet:
    """Reply codes a step accepts: exact codes and whole classes (`5xx`)."""

    codes: frozenset[int] = frozenset()
    classes: frozenset[int] = frozenset()  # first digits

    def matches(self, code: int | None) -> bool:
        return code is not None and (code in self.codes or code // 100 in self.classes)

    def __bool__(self) -> bool:
        return bool(self.codes or self.classes)

    def describe(self) -> str:
        parts = [str(c) for c in sorted(self.codes)] + [f"{c}xx" for c in sorted(self.classes)]
        return parts[0] if len(parts) == 1 else "one of " + ", ".join(parts)

    @property
    def positive_only(self) -> bool:
        """Every accepted code is 2yz/3yz (the step wants success)."""
        return all(c < 400 for c in self.codes) and all(c < 4 for c in self.classes)


@dataclass(frozen=True, kw_only=True)
class SmtpReplyStep(Step):
    codes: CodeSet
    non_strict: CodeSet = field(default_factory=CodeSet)
    text_re: re.Pattern[str] | None = None  # `text:` REGEX
    save: str | None = None
    save_code: str | None = None
    or_close: bool = False
    level: str | None = None
    checks: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class EndIfStep(Step):
    """End the scenario here, judged on what it saw so far, when the
    expression holds: the rest of the dialogue only applies otherwise
    (e.g. the seed's transaction was refused, so there is no data to send)."""

    expression: Expression
    reason: str


@dataclass(frozen=True, kw_only=True)
class DataStep(Step):
    """The message text after 354: lines, dot-stuffed, then `.`."""

    lines: tuple[tuple[Segment, ...], ...]


@dataclass(frozen=True, kw_only=True)
class DeliveredStep(Step):
    """What the scenario delivered to `role`'s maildrop."""

    role: str
    count: int = 1
    contains: tuple[str, ...] = ()
    body: tuple[str, ...] | None = None  # the stored body lines, exactly (after the header)
    #: the first lines of the stored message after the trace fields, exactly
    #: (a leading dot on the very first line, RFC 5321 §4.5.2)
    starts_with: tuple[str, ...] = ()
    trace: bool = False  # Return-Path: and Received: on top (RFC 5321 §4.4)
    #: regular expressions the trace fields on top (Return-Path:, Received:)
    #: must match / must not match (RFC 5321 §4.4, RFC 4954 §7, RFC 6531 §3.7.3)
    trace_matches: tuple[re.Pattern[str], ...] = ()
    trace_lacks: tuple[re.Pattern[str], ...] = ()
    checks: ClassVar[bool] = True


def parse_codes(value: Any, line: int, what: str = "S") -> CodeSet:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise _Problem(line, f"'{what}': empty list of codes")
    codes: set[int] = set()
    classes: set[int] = set()
    for item in items:
        text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(text, str):
            raise _Problem(line, f"'{what}': {item!r} is not a reply code")
        if _CODE.match(text):
            codes.add(int(text))
        elif match := _CLASS.match(text):
            classes.add(int(match[1]))
        else:
            raise _Problem(
                line, f"'{what}': {item!r} is not a reply code (250, 5xx, or a list of them)"
            )
    return CodeSet(frozenset(codes), frozenset(classes))


class SmtpStepParser(_StepParser):
    actions_with_value = (
        "open",
        "C",
        "S",
        "pipeline",
        "send",
        "idle",
        "expect_open",
        "assert",
        "skip_if",
        "starttls",
        "data",
        "delivered",
        "end_if",
    )
    actions_without_value = ("drop", "expect_close", "open", "starttls")
    modifiers: ClassVar[dict[str, tuple[str, ...]]] = {  # type: ignore[misc]
        "open": ("account", "plaintext"),  # plaintext: the scenario speaks STARTTLS itself
        "starttls": ("or_close",),
        "expect_close": ("close_notify",),
        "S": ("text", "non_strict", "save", "save_code", "or_close", "level"),
        "end_if": ("reason",),
        "assert": ("level",),
        "skip_if": ("reason",),
    }
    fact_names = FACT_NAMES

    def _build(
        self, action: str, value: Any, raw_map: dict[str, Any], common: dict[str, Any], line: int
    ) -> Step:
        if action in ("S", "data"):
            self._require_open(common["session"], line)
        if action == "S":
            return self._smtp_reply(value, raw_map, common, line)
        if action == "data":
            return self._data(value, common, line)
        if action == "delivered":
            return self._delivered(value, common, line)
        if action == "end_if":
            reason = raw_map.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                raise _Problem(line, "'end_if' needs 'reason: TEXT' (shown in the transcript)")
            return EndIfStep(
                expression=self._expression(value, line, action), reason=reason, **common
            )
        return super()._build(action, value, raw_map, common, line)

    def _smtp_reply(
        self, value: Any, raw_map: dict[str, Any], common: dict[str, Any], line: int
    ) -> SmtpReplyStep:
        codes = parse_codes(value, line)
        non_strict = CodeSet()
        if "non_strict" in raw_map:
            non_strict = parse_codes(
                raw_map["non_strict"], _line_of(raw_map, "non_strict", line), "non_strict"
            )
        text = None
        if "text" in raw_map:
            raw_text = raw_map["text"]
            if not isinstance(raw_text, str):
                raise _Problem(_line_of(raw_map, "text", line), "'text' is a regular expression")
            try:
                text = re.compile(raw_text)
            except re.error as exc:
                raise _Problem(
                    _line_of(raw_map, "text", line), f"'text': bad regular expression: {exc}"
                ) from None
        saved = {}
        for key in ("save", "save_code"):
            name = raw_map.get(key)
            if name is not None:
                if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    raise _Problem(_line_of(raw_map, key, line), f"'{key}': bad name {name!r}")
                self._declare({name}, line)
            saved[key] = name
        or_close = raw_map.get("or_close", False)
        if not isinstance(or_close, bool):
            raise _Problem(_line_of(raw_map, "or_close", line), "'or_close' is true or false")
        level = raw_map.get("level")
        if level is not None and level not in LEVELS:
            raise _Problem(_line_of(raw_map, "level", line), f"'level': {level!r} is not a level")
        return SmtpReplyStep(
            codes=codes,
            non_strict=non_strict,
            text_re=text,
            save=saved["save"],
            save_code=saved["save_code"],
            or_close=or_close,
            level=level,
            **common,
        )

    def _data(self, value: Any, common: dict[str, Any], line: int) -> DataStep:
        if not isinstance(value, list):
            raise _Problem(line, "'data' takes a list of message lines")
        lines = []
        for i, item in enumerate(value):
            item_line = _item_line(value, i, line)
            if not isinstance(item, str):
                raise _Problem(item_line, f"'data': line {i + 1} is not a string (quote it)")
            if "\r" in item or "\n" in item:
                raise _Problem(
                    item_line, "'data' lines cannot hold CR or LF (use 'send:' for raw bytes)"
                )
            lines.append(self._template(item, item_line))
        return DataStep(lines=tuple(lines), **common)

    def _delivered(self, value: Any, common: dict[str, Any], line: int) -> DeliveredStep:
        if not isinstance(value, dict):
            raise _Problem(line, "'delivered' takes a mapping {to: ROLE, count: N, ...}")
        allowed = {"to", "count", "contains", "body", "starts_with", "trace"}
        allowed |= {"trace_matches", "trace_lacks"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise _Problem(
                _line_of(value, unknown[0], line), f"'delivered': unknown key {unknown[0]!r}"
            )
        role = value.get("to", "main")
        if role not in ACCOUNT_ROLES:
            raise _Problem(line, f"'delivered': unknown account role {role!r}")
        count = value.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise _Problem(line, f"'delivered': count must be a whole number, not {count!r}")
        contains = value.get("contains", [])
        body = value.get("body")
        if not isinstance(contains, list) or not all(isinstance(c, str) for c in contains):
            raise _Problem(line, "'delivered': contains is a list of strings")
        if body is not None and (
            not isinstance(body, list) or not all(isinstance(b, str) for b in body)
        ):
            raise _Problem(line, "'delivered': body is a list of lines")
        starts_with = value.get("starts_with", [])
        if not isinstance(starts_with, list) or not all(isinstance(b, str) for b in starts_with):
            raise _Problem(line, "'delivered': starts_with is a list of lines")
        if (contains or body is not None or starts_with) and count != 1:
            raise _Problem(line, "'delivered': contains/body/starts_with need count 1")
        trace = value.get("trace", False)
        if not isinstance(trace, bool):
            raise _Problem(line, "'delivered': trace is true or false")
        patterns: dict[str, tuple[re.Pattern[str], ...]] = {}
        for key in ("trace_matches", "trace_lacks"):
            raw = value.get(key, [])
            if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
                raise _Problem(
                    _line_of(value, key, line), f"'delivered': {key} is a list of regexes"
                )
            try:
                patterns[key] = tuple(re.compile(r) for r in raw)
            except re.error as exc:
                raise _Problem(
                    _line_of(value, key, line), f"'delivered': {key}: bad regex: {exc}"
                ) from None
        if (patterns["trace_matches"] or patterns["trace_lacks"]) and count != 1:
            raise _Problem(line, "'delivered': trace_matches/trace_lacks need count 1")
        return DeliveredStep(
            role=role,
            trace_matches=patterns["trace_matches"],
            trace_lacks=patterns["trace_lacks"],
            count=count,
            contains=tuple(contains),
            body=None if body is None else tuple(body),
            starts_with=tuple(starts_with),
            trace=trace,
            **common,
        )


register_protocol(PROTOCOL, SmtpStepParser)
