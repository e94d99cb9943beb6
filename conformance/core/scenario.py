"""Scenario model and loader (docs/scenario-format.md is the contract).

Files are parsed with a YAML loader that remembers the line of every
mapping key and list item, so a malformed file is rejected with
`file:line: step N: what is wrong` before anything runs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from conformance.core.catalogue import load_catalogue
from conformance.core.errors import ScenarioError
from conformance.core.expressions import Expression, ExpressionSyntaxError, parse_expression
from conformance.core.patterns import (
    AlternativePatterns,
    AnyBody,
    BodyMatcher,
    EachBody,
    ExactLinePattern,
    LinePattern,
    LinesBody,
    MessageBody,
    PatternError,
    Segment,
    TokenPattern,
    compile_regex,
    parse_segments,
    segment_names,
    status_pattern,
    token_line,
)

#: SECURITY: best practice that no RFC requires (WARN, FAIL with --security).
LEVELS = ("MUST", "SHOULD", "MAY", "SECURITY")
CATALOGUE_LEVEL_TO_SCENARIO_LEVEL = {
    "MUST": "MUST",
    "IMPLIED": "MUST",
    "MUST-NOT": "MUST",
    "SHOULD": "SHOULD",
    "SHOULD-NOT": "SHOULD",
    "MAY": "MAY",
    "SECURITY": "SECURITY",
}
ACCOUNT_ROLES = ("main", "empty", "spare1", "spare2", "spare3", "spare4", "apop")
DEFAULT_SESSION = "a"
DEFAULT_ACCOUNT = "main"
SCENARIO_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)+$")
SESSION_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
CAPTURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CAPABILITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Names every expression may read besides captures (docs: *Expressions*).
#: The one non-numeric step timeout: the target's configured autologout.
AUTOLOGOUT_TIMEOUT = "autologout"
FACT_NAMES = frozenset(
    {"user", "password", "count", "accounts", "bogus_user", "wrong_password", "byte_exact"}
)
# Commands whose positive reply is multi-line with no argument / always.
MULTILINE_ALWAYS = frozenset({"RETR", "TOP", "CAPA"})
MULTILINE_WITHOUT_ARGUMENT = frozenset({"LIST", "UIDL"})

FILE_KEYS = ("section", "scenarios", "protocol")
DEFAULT_PROTOCOL = "pop3"
SCENARIO_KEYS = (
    "id", "title", "requirements", "level", "needs", "account", "commits",
    "timeout", "slow", "notes", "steps",
)  # fmt: skip
ACTIONS_WITH_VALUE = (
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
    "challenge",
)
ACTIONS_WITHOUT_VALUE = (
    "login",
    "drop",
    "expect_close",
    "open",
    "starttls",
    # reusable robustness oracles (docs/scenario-format.md, *Oracles*)
    "alive_or_closed",
    "recover",
    "mailbox_same",
    "not_authenticated",
)
MODIFIERS_FOR_ALL = ("session", "timeout", "requirement")
MODIFIERS = {
    "open": ("account", "plaintext"),
    "C": ("chop", "pause"),
    "send": ("chop", "pause"),
    "starttls": ("or_close",),
    "challenge": ("or_close",),
    "expect_close": ("close_notify", "tls_alert"),
    "S": ("body", "multiline", "octets", "save", "else_skip", "or_close", "level", "exact"),
    "assert": ("level",),
    "skip_if": ("reason",),
}


# --------------------------------------------------------------------------
# Model


@dataclass(frozen=True, kw_only=True)
class Step:
    index: int  # 1-based position in the scenario
    line: int
    text: str  # the step as written, for messages: "C: RETR 1"
    session: str = DEFAULT_SESSION
    timeout: float | None = None
    #: `timeout: autologout`: wait for the target's configured autologout
    #: timer plus a grace period; SKIP when the target's timer is unknown.
    until_autologout: bool = False
    #: The requirement this step checks (`requirement:`): a failure of the
    #: step is pinned on it instead of on the scenario's first requirement.
    requirement: str | None = None
    #: True for steps that judge something (a reply, a close, an assertion):
    #: a scenario without one checks nothing (lint).
    checks: ClassVar[bool] = False


@dataclass(frozen=True, kw_only=True)
class OpenStep(Step):
    account: str | None = None
    #: keep this session out of the run's automatic STLS (`--tls stls`): the
    #: scenario speaks STLS itself. Under implicit TLS it SKIPs.
    plaintext: bool = False


@dataclass(frozen=True, kw_only=True)
class StartTlsStep(Step):
    """The client side of STLS: the TLS handshake, right after the scenario
    read STLS's +OK; then, with `seconds`, nothing may arrive for that long."""

    seconds: float | None = None
    or_close: bool = False  # a server ending the session instead of TLS is allowed


#: `chop:` without `pause:`: 20 ms between writes (security catalogue R12).
DEFAULT_CHOP_PAUSE_SECONDS = 0.02
#: A pause longer than this is an `idle:` step's job, not a chop's.
MAX_CHOP_PAUSE_SECONDS = 5.0


@dataclass(frozen=True, kw_only=True)
class Chop:
    """`chop: N` / `pause: S`: the bytes go out N octets per write, S seconds
    apart (TCP is a stream: a server must reassemble them, RFC 1939 §3)."""

    octets: int
    pause: float = DEFAULT_CHOP_PAUSE_SECONDS


@dataclass(frozen=True, kw_only=True)
class CommandStep(Step):
    template: tuple[Segment, ...]
    chop: Chop | None = None


@dataclass(frozen=True, kw_only=True)
class PipelineStep(Step):
    templates: tuple[tuple[Segment, ...], ...]


@dataclass(frozen=True, kw_only=True)
class SendStep(Step):
    template: tuple[Segment, ...]
    chop: Chop | None = None


@dataclass(frozen=True, kw_only=True)
class ReplyStep(Step):
    pattern: LinePattern
    body: BodyMatcher = field(default_factory=AnyBody)
    multiline: bool | None = None
    octets: str | None = None
    save: str | None = None
    else_skip: str | None = None
    or_close: bool = False
    level: str | None = None
    checks: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class ChallengeStep(Step):
    """Read a SASL server challenge ("+" SP base64, RFC 5034 §4) and capture
    its base64 text (possibly empty) as `name`."""

    name: str
    or_close: bool = False
    checks: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class LoginStep(Step):
    pass


@dataclass(frozen=True, kw_only=True)
class DropStep(Step):
    pass


@dataclass(frozen=True, kw_only=True)
class IdleStep(Step):
    seconds: float


@dataclass(frozen=True, kw_only=True)
class ExpectCloseStep(Step):
    #: On a TLS session, the server must end TLS with close_notify (RFC 8314 §3.4).
    close_notify: bool = False
    #: a TLS alert record (content type 21) may come before the close: the
    #: server's TLS layer refusing plaintext where a ClientHello belongs
    tls_alert: bool = False
    checks: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class ExpectOpenStep(Step):
    seconds: float
    checks: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class AliveOrClosedStep(Step):
    """The session either was closed by the server, or a harmless probe
    (NOOP) still gets exactly one well-formed status line."""

    checks: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class RecoverStep(Step):
    """A new connection is greeted with +OK: the server survived."""

    checks: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class MailboxSameStep(Step):
    """A fresh session sees the scenario account's maildrop as set-up
    recorded it (count, unique-ids, STAT)."""

    checks: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class NotAuthenticatedStep(Step):
    """STAT on the session is refused: it is still in AUTHORIZATION."""

    checks: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class AssertStep(Step):
    expression: Expression
    level: str | None = None
    checks: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class SkipIfStep(Step):
    expression: Expression
    reason: str


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    section: str
    requirements: tuple[str, ...]
    level: str
    steps: tuple[Step, ...]
    source: str  # "scenarios/pop3/stat.yaml:12"
    needs: tuple[str, ...] = ()
    account: str = DEFAULT_ACCOUNT
    commits: bool = False
    timeout: float | None = None
    slow: bool = False
    notes: str = ""
    protocol: str = DEFAULT_PROTOCOL  # the file's `protocol:` (pop3, smtp)

    def logs_in(self) -> bool:
        """True if some step may authenticate (login, or a USER/PASS/APOP/AUTH
        command in its text): only such a scenario can see a maildrop."""
        for step in self.steps:
            if isinstance(step, LoginStep):
                return True
            for template in _templates_of(step):
                literal = " ".join(part for part in template if isinstance(part, str))
                if AUTHENTICATING_WORD.search(literal):
                    return True
        return False

    def accounts_used(self) -> tuple[str, ...]:
        """Every account role a session of this scenario logs in to."""
        roles = [self.account]
        for step in self.steps:
            if isinstance(step, OpenStep) and step.account and step.account not in roles:
                roles.append(step.account)
        return tuple(roles)


ORACLE_STEPS: dict[str, type[Step]] = {
    "alive_or_closed": AliveOrClosedStep,
    "recover": RecoverStep,
    "mailbox_same": MailboxSameStep,
    "not_authenticated": NotAuthenticatedStep,
}
AUTHENTICATING_WORD = re.compile(r"(?i)\b(USER|PASS|APOP|AUTH)\b")


def _templates_of(step: Step) -> tuple[tuple[Segment, ...], ...]:
    if isinstance(step, CommandStep | SendStep):
        return (step.template,)
    if isinstance(step, PipelineStep):
        return step.templates
    return ()


def command_is_multiline(command_line: str) -> bool:
    """RFC 1939 §5-7, RFC 2449 §5: which positive replies carry a body."""
    words = command_line.split()
    if not words:
        return False
    verb = words[0].upper()
    return verb in MULTILINE_ALWAYS or (verb in MULTILINE_WITHOUT_ARGUMENT and len(words) == 1)


# --------------------------------------------------------------------------
# YAML with line numbers


class _LineDict(dict[Any, Any]):
    line: int = 0
    key_lines: dict[Any, int]


class _LineList(list[Any]):
    line: int = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    out = _LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str | int | bool | float) or key is None:
            raise _Problem(line, f"unsupported key {key!r}")
        if key in out:
            raise _Problem(line, f"duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _LineList:
    out = _LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


class _Problem(Exception):
    """A validation problem at a line; turned into ScenarioError with the path."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def _line_of(container: Any, key: Any, default: int) -> int:
    if isinstance(container, _LineDict):
        return container.key_lines.get(key, container.line)
    return default


def _item_line(container: Any, index: int, default: int) -> int:
    if isinstance(container, _LineList) and index < len(container.item_lines):
        return container.item_lines[index]
    return default


# --------------------------------------------------------------------------
# Loading


def bundled_scenario_dir() -> Path:
    """The corpus shipped with the package (the repository's `scenarios/`)."""
    try:
        return Path(str(resources.files("conformance.bundled_scenarios")))
    except ModuleNotFoundError:
        # running from a source checkout that is not installed
        return Path(__file__).resolve().parents[2] / "scenarios"


def load_scenarios(
    paths: Iterable[Path | str], protocol: str | None = DEFAULT_PROTOCOL
) -> list[Scenario]:
    """Every scenario of `protocol` (None: of every protocol) in these files
    and directories (recursive `*.yaml`, sorted); ids must be unique across
    all of them. A file names its protocol with `protocol:` (default pop3)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.yaml") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise ScenarioError(str(path), None, "no such scenario file or directory")
    scenarios: list[Scenario] = []
    seen: dict[str, str] = {}
    bundled = bundled_scenario_dir().resolve()
    for file in dict.fromkeys(files):
        for scenario in load_scenario_file(file, protocol, shown=_shown_path(file, bundled)):
            if scenario.id in seen:
                source_path, _, line = scenario.source.rpartition(":")
                raise ScenarioError(
                    source_path,
                    int(line),
                    f"duplicate scenario id {scenario.id!r} (first in {seen[scenario.id]})",
                )
            seen[scenario.id] = scenario.source
            scenarios.append(scenario)
    return scenarios


def _shown_path(file: Path, bundled: Path) -> str:
    """How reports name a scenario file: the bundled corpus as
    `scenarios/pop3/stat.yaml` wherever the package is installed (a
    site-packages path says nothing to a reader and weighs on every
    report), anything else as given."""
    try:
        return str(Path("scenarios") / file.resolve().relative_to(bundled))
    except ValueError:
        return str(file)


def load_scenario_file(
    path: Path | str, protocol: str | None = DEFAULT_PROTOCOL, *, shown: str | None = None
) -> list[Scenario]:
    shown = shown or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(shown, None, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(shown, None, f"not UTF-8: {exc}") from None
    try:
        document = yaml.load(text, Loader=_LineLoader)
    except _Problem as problem:
        raise ScenarioError(shown, problem.line, problem.message) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ScenarioError(shown, line, f"not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(shown, None, f"not valid YAML: {exc}") from None
    if protocol is not None and isinstance(document, dict):
        if document.get("protocol", DEFAULT_PROTOCOL) != protocol:
            return []
    try:
        return _FileParser(shown).parse(document)
    except _Problem as problem:
        raise ScenarioError(shown, problem.line, problem.message) from None


class _FileParser:
    def __init__(self, path: str) -> None:
        self.path = path
        self.catalogue = load_catalogue()

    def parse(self, document: Any) -> list[Scenario]:
        if not isinstance(document, dict):
            raise _Problem(1, "a scenario file is a mapping with 'section' and 'scenarios'")
        _check_keys(document, FILE_KEYS, "", 1)
        protocol = _optional(document, "protocol", str, "", 1, DEFAULT_PROTOCOL)
        if protocol not in STEP_PARSERS:
            raise _Problem(
                _line_of(document, "protocol", 1),
                f"field 'protocol': {protocol!r} is not one of {', '.join(sorted(STEP_PARSERS))}",
            )
        self.protocol = protocol
        self.parser_class = STEP_PARSERS[protocol]
        section = _require(document, "section", str, "", 1)
        entries = _require(document, "scenarios", list, "", 1)
        if not section.strip():
            raise _Problem(_line_of(document, "section", 1), "field 'section': must not be empty")
        if not entries:
            raise _Problem(_line_of(document, "scenarios", 1), "field 'scenarios': empty list")
        out: list[Scenario] = []
        ids: set[str] = set()
        for i, entry in enumerate(entries):
            line = _item_line(entries, i, 1)
            scenario = self._scenario(entry, section, line)
            if scenario.id in ids:
                raise _Problem(line, f"duplicate scenario id {scenario.id!r}")
            ids.add(scenario.id)
            out.append(scenario)
        return out

    def _scenario(self, entry: Any, section: str, line: int) -> Scenario:
        if not isinstance(entry, dict):
            raise _Problem(line, "a scenario is a mapping (id, title, requirements, level, steps)")
        line = getattr(entry, "line", line)
        raw_id = entry.get("id")
        where = f"scenario {raw_id!r}: " if isinstance(raw_id, str) else "scenario: "
        _check_keys(entry, SCENARIO_KEYS, where, line)
        scenario_id = _require(entry, "id", str, where, line)
        if not SCENARIO_ID.match(scenario_id):
            raise _Problem(
                _line_of(entry, "id", line),
                f"{where}field 'id': must be 'area.name' in lower case with '.' and '-'",
            )
        title = _require(entry, "title", str, where, line)
        requirements = self._requirements(entry, where, line)
        level = _require(entry, "level", str, where, line)
        if level not in LEVELS:
            raise _Problem(
                _line_of(entry, "level", line),
                f"{where}field 'level': must be MUST, SHOULD or MAY, not {level!r}",
            )
        needs = self._needs(entry, where, line)
        account = _optional(entry, "account", str, where, line, DEFAULT_ACCOUNT)
        _check_role(account, _line_of(entry, "account", line), where + "field 'account': ")
        commits = _optional(entry, "commits", bool, where, line, False)
        slow = _optional(entry, "slow", bool, where, line, False)
        notes = _optional(entry, "notes", str, where, line, "")
        timeout = _positive_number(entry, "timeout", where, line)
        raw_steps = _require(entry, "steps", list, where, line)
        if not raw_steps:
            raise _Problem(_line_of(entry, "steps", line), f"{where}field 'steps': empty list")
        steps = self.parser_class(where, requirements).parse(
            raw_steps, _line_of(entry, "steps", line)
        )
        return Scenario(
            id=scenario_id,
            title=title,
            section=section,
            requirements=requirements,
            level=level,
            steps=steps,
            source=f"{self.path}:{line}",
            needs=needs,
            account=account,
            commits=commits,
            timeout=timeout,
            slow=slow,
            notes=notes,
            protocol=self.protocol,
        )

    def _requirements(self, entry: dict[str, Any], where: str, line: int) -> tuple[str, ...]:
        raw = _require(entry, "requirements", list, where, line)
        key_line = _line_of(entry, "requirements", line)
        if not raw:
            raise _Problem(key_line, f"{where}field 'requirements': empty list")
        for i, requirement in enumerate(raw):
            item_line = _item_line(raw, i, key_line)
            if not isinstance(requirement, str):
                raise _Problem(
                    item_line, f"{where}field 'requirements': {requirement!r} is not an ID"
                )
            if requirement not in self.catalogue:
                raise _Problem(
                    item_line,
                    f"{where}field 'requirements': unknown requirement {requirement!r} "
                    "(not in conformance/data/requirements.yaml)",
                )
        if len(set(raw)) != len(raw):
            raise _Problem(key_line, f"{where}field 'requirements': an ID is listed twice")
        return tuple(raw)

    @staticmethod
    def _needs(entry: dict[str, Any], where: str, line: int) -> tuple[str, ...]:
        raw = _optional(entry, "needs", list, where, line, [])
        for i, name in enumerate(raw):
            if not isinstance(name, str) or not CAPABILITY_NAME.match(name):
                raise _Problem(
                    _item_line(raw, i, line),
                    f"{where}field 'needs': {name!r} is not a capability name",
                )
        return tuple(name.upper() for name in raw)


class _StepParser:
    """Parses the steps of one scenario, tracking which sessions are open
    and which names have been captured so far. A protocol's parser
    subclasses it with its own action tables and `_build`."""

    actions_with_value: tuple[str, ...] = ACTIONS_WITH_VALUE
    actions_without_value: tuple[str, ...] = ACTIONS_WITHOUT_VALUE
    modifiers: dict[str, tuple[str, ...]] = MODIFIERS
    fact_names: frozenset[str] = FACT_NAMES

    def __init__(self, where: str, requirements: tuple[str, ...] = ()) -> None:
        self.where = where
        self.requirements = requirements
        self.open_sessions: set[str] = set()
        self.known_names: set[str] = set(self.fact_names)

    def parse(self, raw_steps: list[Any], line: int) -> tuple[Step, ...]:
        steps = []
        for i, raw in enumerate(raw_steps):
            step_line = _item_line(raw_steps, i, line)
            prefix = f"{self.where}step {i + 1}: "
            try:
                steps.append(self._step(raw, i + 1, step_line))
            except _Problem as problem:
                raise _Problem(problem.line or step_line, prefix + problem.message) from None
            except (PatternError, ExpressionSyntaxError) as exc:
                raise _Problem(step_line, prefix + str(exc)) from None
        return tuple(steps)

    def _step(self, raw: Any, index: int, line: int) -> Step:
        if isinstance(raw, str):
            if raw not in self.actions_without_value:
                hint = (
                    " (write it as a mapping, e.g. '- C: NOOP')"
                    if raw.split(":")[0] in self.actions_with_value
                    else ""
                )
                raise _Problem(line, f"unknown step {raw!r}{hint}")
            raw_map: dict[str, Any] = {raw: None}
        elif isinstance(raw, dict):
            raw_map = raw
        else:
            raise _Problem(line, f"a step is a mapping or an action name, not {type(raw).__name__}")
        actions = [
            k for k in raw_map if k in self.actions_with_value or k in self.actions_without_value
        ]
        if len(actions) != 1:
            unknown = [k for k in raw_map if not self._is_modifier(k) and k not in actions]
            if unknown:
                raise _Problem(_line_of(raw_map, unknown[0], line), f"unknown key {unknown[0]!r}")
            raise _Problem(
                line, "a step has exactly one action" + (f", found {actions}" if actions else "")
            )
        action = actions[0]
        allowed = MODIFIERS_FOR_ALL + self.modifiers.get(action, ())
        for key in raw_map:
            if key != action and key not in allowed:
                kind = "is not allowed on" if self._is_modifier(key) else "unknown key"
                message = (
                    f"{key!r} {kind} '{action}'"
                    if kind != "unknown key"
                    else f"unknown key {key!r}"
                )
                raise _Problem(_line_of(raw_map, key, line), message)
        value = raw_map[action]
        if action in ("login", "drop", "expect_close") and value is not None:
            raise _Problem(line, f"'{action}' takes no value")
        common = {
            "index": index,
            "line": line,
            "text": _step_text(action, value),
            "session": self._session(raw_map, line),
            "timeout": None,
            "until_autologout": raw_map.get("timeout") == AUTOLOGOUT_TIMEOUT,
        }
        if not common["until_autologout"]:
            common["timeout"] = _positive_number(raw_map, "timeout", "", line)
        common["requirement"] = self._step_requirement(raw_map, line)
        return self._build(action, value, raw_map, common, line)

    def _is_modifier(self, key: Any) -> bool:
        return key in MODIFIERS_FOR_ALL or any(key in mods for mods in self.modifiers.values())

    def _step_requirement(self, raw_map: dict[str, Any], line: int) -> str | None:
        """`requirement: ID`: one of the scenario's own requirements (its list
        stays the union of what its steps check)."""
        requirement = _optional(raw_map, "requirement", str, "", line, None)
        if requirement is not None and requirement not in self.requirements:
            raise _Problem(
                _line_of(raw_map, "requirement", line),
                f"'requirement': {requirement!r} is not in the scenario's requirements "
                f"({', '.join(self.requirements)})",
            )
        return requirement

    def _session(self, raw_map: dict[str, Any], line: int) -> str:
        session = _optional(raw_map, "session", str, "", line, DEFAULT_SESSION)
        if not SESSION_NAME.match(session):
            raise _Problem(_line_of(raw_map, "session", line), f"bad session name {session!r}")
        return session

    def _build(
        self, action: str, value: Any, raw_map: dict[str, Any], common: dict[str, Any], line: int
    ) -> Step:
        session = common["session"]
        if action == "open":
            return self._open(value, raw_map, common, line)
        if action in ("recover", "mailbox_same"):  # use connections of their own
            if value is not None:
                raise _Problem(line, f"'{action}' takes no value")
            return ORACLE_STEPS[action](**common)
        self._require_open(session, line)
        if action == "C":
            chop = self._chop(raw_map, line)
            return CommandStep(template=self._command(value, line), chop=chop, **common)
        if action == "pipeline":
            if not isinstance(value, list) or not value:
                raise _Problem(line, "'pipeline' takes a non-empty list of command lines")
            return PipelineStep(templates=tuple(self._command(v, line) for v in value), **common)
        if action == "send":
            chop = self._chop(raw_map, line)
            return SendStep(template=self._send(value, line), chop=chop, **common)
        if action == "S":
            return self._reply(value, raw_map, common, line)
        if action == "login":
            return LoginStep(**common)
        if action in ORACLE_STEPS:
            if value is not None:
                raise _Problem(line, f"'{action}' takes no value")
            return ORACLE_STEPS[action](**common)
        if action == "drop":
            self.open_sessions.discard(session)
            return DropStep(**common)
        if action == "expect_close":
            self.open_sessions.discard(session)
            close_notify = raw_map.get("close_notify", False)
            if not isinstance(close_notify, bool):
                raise _Problem(
                    _line_of(raw_map, "close_notify", line), "'close_notify' is true or false"
                )
            tls_alert = raw_map.get("tls_alert", False)
            if not isinstance(tls_alert, bool):
                raise _Problem(_line_of(raw_map, "tls_alert", line), "'tls_alert' is true or false")
            return ExpectCloseStep(close_notify=close_notify, tls_alert=tls_alert, **common)
        if action == "challenge":
            if not isinstance(value, str) or not CAPTURE_NAME.match(value):
                raise _Problem(line, f"'challenge' takes a capture name, not {value!r}")
            self._declare({value}, line)
            or_close = raw_map.get("or_close", False)
            if not isinstance(or_close, bool):
                raise _Problem(_line_of(raw_map, "or_close", line), "'or_close' is true or false")
            return ChallengeStep(name=value, or_close=or_close, **common)
        if action == "starttls":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                raise _Problem(
                    line, f"'starttls' takes a number of seconds or nothing, not {value!r}"
                )
            or_close = raw_map.get("or_close", False)
            if not isinstance(or_close, bool):
                raise _Problem(_line_of(raw_map, "or_close", line), "'or_close' is true or false")
            return StartTlsStep(
                seconds=None if value is None else float(value), or_close=or_close, **common
            )
        if action in ("idle", "expect_open"):
            seconds = value
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise _Problem(line, f"'{action}' takes a number of seconds, not {seconds!r}")
            cls = IdleStep if action == "idle" else ExpectOpenStep
            return cls(seconds=float(seconds), **common)
        if action == "assert":
            level = self._level(raw_map, line)
            return AssertStep(
                expression=self._expression(value, line, action), level=level, **common
            )
        assert action == "skip_if"
        reason = raw_map.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise _Problem(line, "'skip_if' needs 'reason: TEXT' (shown in the SKIP)")
        return SkipIfStep(expression=self._expression(value, line, action), reason=reason, **common)

    def _open(
        self, value: Any, raw_map: dict[str, Any], common: dict[str, Any], line: int
    ) -> OpenStep:
        name = DEFAULT_SESSION if value is None else value
        if not isinstance(name, str) or not SESSION_NAME.match(name):
            raise _Problem(line, f"'open' takes a session name, not {name!r}")
        if name in self.open_sessions:
            raise _Problem(line, f"session {name!r} is already open (drop it first)")
        if "session" in raw_map and raw_map["session"] != name:
            raise _Problem(line, "'open' names its session itself; remove 'session:'")
        account = raw_map.get("account")
        if account is not None:
            _check_role(account, _line_of(raw_map, "account", line), "'account': ")
        plaintext = raw_map.get("plaintext", False)
        if not isinstance(plaintext, bool):
            raise _Problem(_line_of(raw_map, "plaintext", line), "'plaintext' is true or false")
        self.open_sessions.add(name)
        common = {**common, "session": name}
        return OpenStep(account=account, plaintext=plaintext, **common)

    def _chop(self, raw_map: dict[str, Any], line: int) -> Chop | None:
        """`chop: N` (octets per write, a whole number >= 1) and `pause: S`
        (seconds between writes, 0 to MAX_CHOP_PAUSE_SECONDS; needs `chop`)."""
        if "chop" not in raw_map:
            if "pause" in raw_map:
                raise _Problem(_line_of(raw_map, "pause", line), "'pause' needs 'chop: OCTETS'")
            return None
        octets = raw_map["chop"]
        if isinstance(octets, bool) or not isinstance(octets, int) or octets < 1:
            raise _Problem(
                _line_of(raw_map, "chop", line),
                f"field 'chop': must be a whole number of octets per write (1 or more), "
                f"not {octets!r}",
            )
        pause = raw_map.get("pause", DEFAULT_CHOP_PAUSE_SECONDS)
        if (
            isinstance(pause, bool)
            or not isinstance(pause, int | float)
            or not 0 <= pause <= MAX_CHOP_PAUSE_SECONDS
        ):
            raise _Problem(
                _line_of(raw_map, "pause", line),
                f"field 'pause': must be 0 to {MAX_CHOP_PAUSE_SECONDS:g} seconds between "
                f"writes, not {pause!r}",
            )
        return Chop(octets=octets, pause=float(pause))

    def _require_open(self, session: str, line: int) -> None:
        if session not in self.open_sessions:
            raise _Problem(line, f"session {session!r} is used before 'open: {session}'")

    def _command(self, value: Any, line: int) -> tuple[Segment, ...]:
        if not isinstance(value, str):
            raise _Problem(line, f"a command line is a string, not {value!r} (quote it)")
        if "\r" in value or "\n" in value:
            raise _Problem(line, "a command line cannot hold CR or LF (use 'send:' for raw bytes)")
        return self._template(value, line)

    def _send(self, value: Any, line: int) -> tuple[Segment, ...]:
        if not isinstance(value, str):
            raise _Problem(line, f"'send' takes a string of bytes, not {value!r}")
        wide = next((c for c in value if ord(c) > 0xFF), None)
        if wide is not None:
            raise _Problem(line, f"'send' holds octets (\\x00-\\xff); {wide!r} is not one")
        return self._template(value, line)

    def _template(self, value: str, line: int) -> tuple[Segment, ...]:
        segments = tuple(parse_segments(value))
        captured, read = segment_names(segments)
        if captured:
            raise _Problem(
                line, f"captures like {{{sorted(captured)[0]}:...}} belong in 'S:' patterns"
            )
        self._check_names(read, line)
        return segments

    def _expression(self, value: Any, line: int, action: str) -> Expression:
        if isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise _Problem(line, f"'{action}' takes an expression string, not {value!r}")
        expression = parse_expression(value)
        self._check_names(set(expression.names), line)
        return expression

    def _check_names(self, read: set[str], line: int, also_known: set[str] | None = None) -> None:
        unknown = sorted(read - self.known_names - (also_known or set()))
        if unknown:
            captured = sorted(self.known_names - self.fact_names)
            so_far = ", ".join(captured) if captured else "none"
            raise _Problem(
                line, f"name {unknown[0]!r} is not defined here (captured so far: {so_far})"
            )

    def _declare(self, names: set[str], line: int) -> None:
        clash = sorted(names & self.fact_names)
        if clash:
            raise _Problem(
                line, f"capture name {clash[0]!r} would hide the fixture fact of that name"
            )
        self.known_names |= names

    def _level(self, raw_map: dict[str, Any], line: int) -> str | None:
        level = raw_map.get("level")
        if level is not None and level not in LEVELS:
            raise _Problem(
                _line_of(raw_map, "level", line),
                f"'level' must be MUST, SHOULD or MAY, not {level!r}",
            )
        return level

    def _reply(
        self, value: Any, raw_map: dict[str, Any], common: dict[str, Any], line: int
    ) -> ReplyStep:
        exact = _optional(raw_map, "exact", bool, "", line, False)
        pattern = reply_pattern(value, exact, line)
        body = body_matcher(raw_map.get("body", "any"), _line_of(raw_map, "body", line))
        captured, read = pattern.names()
        body_captured, body_read = body.names()
        self._check_names(read, line)
        self._check_names(body_read, line, also_known=captured | body_captured)
        names = captured | body_captured
        octets = _optional(raw_map, "octets", str, "", line, None)
        save = _optional(raw_map, "save", str, "", line, None)
        names |= {n for n in (octets, save) if n}
        self._declare(names, line)
        else_skip = _optional(raw_map, "else_skip", str, "", line, None)
        if else_skip is not None and not pattern.wants_positive():
            raise _Problem(line, "'else_skip' only makes sense when the pattern wants +OK")
        return ReplyStep(
            pattern=pattern,
            body=body,
            multiline=_optional(raw_map, "multiline", bool, "", line, None),
            octets=octets,
            save=save,
            else_skip=else_skip,
            or_close=_optional(raw_map, "or_close", bool, "", line, False),
            level=self._level(raw_map, line),
            **common,
        )


#: The step parser of each protocol a scenario file may name (`protocol:`).
#: POP3's is the base parser above; conformance.smtp.scenario registers SMTP's.
STEP_PARSERS: dict[str, type[_StepParser]] = {DEFAULT_PROTOCOL: _StepParser}


def register_protocol(name: str, parser_class: type[_StepParser]) -> None:
    STEP_PARSERS[name] = parser_class


def reply_pattern(value: Any, exact: bool, line: int) -> LinePattern:
    """An `S:` value: a string, a mapping ({line:} / {re:}), or a list of those."""
    if isinstance(value, list):
        if not value:
            raise _Problem(line, "'S' alternatives: empty list")
        if exact:
            raise _Problem(line, "'exact' applies to a single string pattern, not alternatives")
        alternatives = tuple(
            reply_pattern(v, False, _item_line(value, i, line)) for i, v in enumerate(value)
        )
        if any(isinstance(a, AlternativePatterns) for a in alternatives):
            raise _Problem(line, "alternatives cannot nest")
        return AlternativePatterns(repr(list(value)), alternatives)
    if isinstance(value, dict):
        if exact:
            raise _Problem(line, "'exact' applies to string patterns ({line:} is exact already)")
        return _mapping_line_pattern(value, line)
    if isinstance(value, str):
        return status_pattern(value, exact)
    raise _Problem(line, f"'S' takes a pattern string, a list or a mapping, not {value!r}")


def _mapping_line_pattern(value: dict[str, Any], line: int) -> LinePattern:
    keys = set(value)
    if keys == {"line"} and isinstance(value["line"], str):
        return ExactLinePattern(value["line"], token_line(value["line"], exact=True))
    if keys == {"re"} and isinstance(value["re"], str):
        return compile_regex(value["re"])
    unknown = sorted(keys - {"line", "re"})
    if unknown:
        raise _Problem(
            _line_of(value, unknown[0], line), f"unknown key {unknown[0]!r} in a pattern"
        )
    raise _Problem(line, "a pattern mapping is {line: TEXT} or {re: REGEX}, with a string")


def body_line_pattern(value: Any, line: int) -> LinePattern:
    if isinstance(value, str):
        return TokenPattern(value, token_line(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return TokenPattern(str(value), token_line(str(value)))
    if isinstance(value, dict):
        return _mapping_line_pattern(value, line)
    raise _Problem(line, f"a body line pattern is a string or {{line:}}/{{re:}}, not {value!r}")


def body_matcher(value: Any, line: int) -> BodyMatcher:
    if value == "any":
        return AnyBody()
    if isinstance(value, list):
        return LinesBody(
            repr(list(value)),
            tuple(body_line_pattern(v, _item_line(value, i, line)) for i, v in enumerate(value)),
        )
    if isinstance(value, dict) and "each" in value:
        _check_keys(value, ("each", "count"), "body: ", line)
        count = value.get("count")
        return EachBody(
            repr(dict(value)),
            body_line_pattern(value["each"], line),
            None if count is None else _expression_value(count, line, "count"),
        )
    if isinstance(value, dict) and "message" in value:
        _check_keys(value, ("message", "top", "compare"), "body: ", line)
        compare = value.get("compare")
        if compare not in (None, "exact", "body"):
            raise _Problem(line, f"body: 'compare' must be exact or body, not {compare!r}")
        top = value.get("top")
        return MessageBody(
            repr(dict(value)),
            _expression_value(value["message"], line, "message"),
            None if top is None else _expression_value(top, line, "top"),
            compare,
        )
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"each", "message"})
        raise _Problem(
            _line_of(value, unknown[0] if unknown else None, line),
            f"body: unknown key {unknown[0]!r}" if unknown else "body: empty mapping",
        )
    raise _Problem(
        line, f"body: expected any, a list of lines, {{each:}} or {{message:}}, not {value!r}"
    )


def _expression_value(value: Any, line: int, what: str) -> Expression:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Problem(line, f"body: '{what}' takes a number or an expression, not {value!r}")
    try:
        return parse_expression(str(value))
    except ExpressionSyntaxError as exc:
        raise _Problem(line, f"body: '{what}': {exc}") from None


# --------------------------------------------------------------------------
# Field helpers


def _check_keys(mapping: dict[Any, Any], allowed: tuple[str, ...], where: str, line: int) -> None:
    for key in mapping:
        if key not in allowed:
            raise _Problem(_line_of(mapping, key, line), f"{where}unknown key {key!r}")


def _type_name(kind: type) -> str:
    return {str: "a string", list: "a list", bool: "true or false", dict: "a mapping"}.get(
        kind, kind.__name__
    )


def _require(mapping: dict[str, Any], key: str, kind: type, where: str, line: int) -> Any:
    if key not in mapping:
        raise _Problem(line, f"{where}missing required field {key!r}")
    return _typed(mapping, key, kind, where, line)


def _optional(
    mapping: dict[str, Any], key: str, kind: type, where: str, line: int, default: Any
) -> Any:
    if key not in mapping:
        return default
    return _typed(mapping, key, kind, where, line)


def _typed(mapping: dict[str, Any], key: str, kind: type, where: str, line: int) -> Any:
    value = mapping[key]
    wrong = not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))
    if wrong:
        raise _Problem(
            _line_of(mapping, key, line),
            f"{where}field {key!r}: must be {_type_name(kind)}, not {value!r}",
        )
    return value


def _positive_number(mapping: dict[str, Any], key: str, where: str, line: int) -> float | None:
    if key not in mapping:
        return None
    value = mapping[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        hint = " or 'autologout'" if key == "timeout" and where == "" else ""
        raise _Problem(
            _line_of(mapping, key, line),
            f"{where}field {key!r}: must be a positive number of seconds{hint}, not {value!r}",
        )
    return float(value)


def _check_role(role: Any, line: int, where: str) -> None:
    if role not in ACCOUNT_ROLES:
        raise _Problem(
            line, f"{where}unknown account role {role!r} (known: {', '.join(ACCOUNT_ROLES)})"
        )


def _step_text(action: str, value: Any) -> str:
    if value is None:
        return action
    if isinstance(value, list):
        return f"{action}: [{', '.join(str(v) for v in value)}]"
    return f"{action}: {value}"


# --------------------------------------------------------------------------
# Lint


def lint_scenarios(scenarios: Iterable[Scenario]) -> list[str]:
    """Problems that do not stop a run but deserve a maintainer's look."""
    catalogue = load_catalogue()
    notes: list[str] = []
    for scenario in scenarios:
        where = f"{scenario.source}: {scenario.id}"
        levels = {
            CATALOGUE_LEVEL_TO_SCENARIO_LEVEL[catalogue[r].level] for r in scenario.requirements
        }
        if scenario.level not in levels:
            notes.append(
                f"{where}: level {scenario.level} matches none of its requirements "
                f"({', '.join(sorted(levels))})"
            )
        untestable = [r for r in scenario.requirements if not catalogue[r].testable]
        if untestable:
            notes.append(
                f"{where}: cites requirements marked not testable: {', '.join(untestable)}"
            )
        if not any(s.checks for s in scenario.steps):
            notes.append(f"{where}: checks nothing (no S:, assert or expect step)")
    return notes
