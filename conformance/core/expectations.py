"""Expected failures (`--expectations FILE`): known deviations of a target
that should not fail every CI run, without letting the list go stale.

File format (YAML)::

    - id: dele.marks-not-removes          # scenario id
      reason: "upstream bug #123"         # required, shown in reports
      message_prefix: "step 5"            # optional: the failure must start with this

Mapping (docs/cli.md, "Expectations"):

* listed and FAIL (including a SHOULD/MAY deviation promoted to FAIL by
  `--strict`) -> XFAIL, which does not fail the run; with `message_prefix`,
  only if the failure message starts with it, otherwise it stays FAIL;
* listed and PASS -> XPASS, which fails the run (remove the entry);
* listed and WARN (non-strict), SKIP or ERROR -> unchanged: the deviation is
  neither confirmed nor gone;
* an id that no scenario of the corpus has -> error of the file (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from conformance.core.errors import ConfigError
from conformance.core.results import ScenarioResult, Verdict

ENTRY_KEYS = {"id", "reason", "message_prefix"}


@dataclass(frozen=True)
class Expectation:
    id: str
    reason: str
    message_prefix: str | None = None
    line: int | None = None


def load_expectations(path: str | Path) -> dict[str, Expectation]:
    """Parse and validate the file; errors name file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read expectations file: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError(f"{path}:{line}: not valid YAML: {exc.problem}") from None
    if root is None:
        return {}
    if not isinstance(root, yaml.SequenceNode):
        raise ConfigError(
            f"{path}:{root.start_mark.line + 1}: expected a list of {{id, reason, message_prefix?}}"
        )
    out: dict[str, Expectation] = {}
    for index, node in enumerate(root.value):
        line = node.start_mark.line + 1
        where = f"{path}:{line}: entry {index + 1}"
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{where}: expected a mapping with id and reason")
        entry: dict[str, str] = {}
        for key, value in node.value:
            kline = key.start_mark.line + 1
            if key.value not in ENTRY_KEYS:
                raise ConfigError(
                    f"{path}:{kline}: entry {index + 1}: {key.value}: unknown key "
                    "(known: id, message_prefix, reason)"
                )
            if not isinstance(value, yaml.ScalarNode) or not str(value.value).strip():
                raise ConfigError(
                    f"{path}:{kline}: entry {index + 1}: {key.value}: expected a non-empty string"
                )
            entry[key.value] = str(value.value)
        for key in ("id", "reason"):
            if key not in entry:
                raise ConfigError(f"{where}: {key}: required")
        if entry["id"] in out:
            raise ConfigError(f"{where}: id: {entry['id']!r} listed twice")
        out[entry["id"]] = Expectation(
            entry["id"], entry["reason"], entry.get("message_prefix"), line
        )
    return out


def check_known(
    expectations: dict[str, Expectation], known_ids: set[str], path: str | Path
) -> None:
    """Stale entries (ids no scenario has) are errors of the file."""
    stale = [e for e in expectations.values() if e.id not in known_ids]
    if stale:
        lines = "; ".join(f"{path}:{e.line}: id: no scenario {e.id!r}" for e in stale)
        raise ConfigError(f"stale expectations: {lines} (remove or rename the entries)")


def apply(results: list[ScenarioResult], expectations: dict[str, Expectation]) -> None:
    """Turn listed FAILs (and ERRORs: a known reason the suite cannot judge
    this target) into XFAIL and listed PASSes into XPASS, in place."""
    for result in results:
        exp = expectations.get(result.scenario_id)
        if exp is None:
            continue
        if result.verdict in (Verdict.FAIL, Verdict.ERROR):
            if exp.message_prefix and not result.message.startswith(exp.message_prefix):
                result.message = (
                    f"{result.message} [expected failure {exp.message_prefix!r}… "
                    f"did not match: still {result.verdict}]"
                )
                continue
            result.verdict = Verdict.XFAIL
            result.expectation_reason = exp.reason
        elif result.verdict is Verdict.PASS:
            result.verdict = Verdict.XPASS
            result.expectation_reason = exp.reason
            result.message = (
                f"listed as expected to fail ({exp.reason}) but passed: "
                "remove it from the expectations file"
            )


def updated(
    results: list[ScenarioResult], previous: dict[str, Expectation]
) -> list[dict[str, str]]:
    """The expectations that describe the current failures. Reasons (and
    prefixes that still match) are kept; entries for scenarios that did not
    run are kept as they were."""
    ran = {r.scenario_id for r in results}
    entries: dict[str, dict[str, str]] = {}
    for exp in previous.values():
        if exp.id not in ran:
            entries[exp.id] = _entry(exp.id, exp.reason, exp.message_prefix)
    for r in results:
        if r.verdict not in (Verdict.FAIL, Verdict.XFAIL):
            continue
        old = previous.get(r.scenario_id)
        reason = old.reason if old else f"TODO triage: {r.message}"[:200]
        prefix = old.message_prefix if old else None
        if prefix and not r.message.startswith(prefix):
            prefix = None
        entries[r.scenario_id] = _entry(r.scenario_id, reason, prefix)
    return [entries[k] for k in sorted(entries)]


def _entry(sid: str, reason: str, prefix: str | None) -> dict[str, str]:
    out = {"id": sid, "reason": reason}
    if prefix:
        out["message_prefix"] = prefix
    return out


def write_expectations(path: str | Path, entries: list[dict[str, str]]) -> None:
    path = Path(path)
    header = (
        "# mailspec expectations: known failures of this target.\n"
        "# Listed + failing = XFAIL (run passes); listed + passing = XPASS (run fails).\n"
        "# Regenerate with: mailspec run ... --update-expectations FILE\n"
    )
    body = (
        yaml.safe_dump(entries, sort_keys=False, allow_unicode=True, width=1000)
        if entries
        else "[]\n"
    )
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body, encoding="utf-8")
