"""The `mailspec` command (docs/cli.md).

Exit codes: 0 = every scenario judged and none FAIL, XPASS or ERROR;
1 = conformance failures; 2 = usage, config or scenario-file error; 3 = the
suite could not judge (an ERROR, target unreachable, the run stopped early).
User errors are one line on stderr naming the flag, or the file, line and
field; never a traceback."""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conformance import __version__
from conformance.core.config import (
    PROTOCOLS,
    TLS_MODES,
    RunConfig,
    check_provision,
    finalize,
    load_config,
    parse_target_url,
    url_protocol,
)
from conformance.core.errors import ConfigError, MailspecError
from conformance.core.pools import EMBEDDED_AUTO_JOBS

PROG = "mailspec"
DEFAULT_JUNIT = Path("reports") / "junit.xml"
DEFAULT_JSON = Path("reports") / "results.json"
DEFAULT_HTML = Path("reports") / "report.html"


# --------------------------------------------------------------------------
# Argument types: each error names the flag (argparse prefixes "argument --x:")
# --------------------------------------------------------------------------


def _target_arg(text: str) -> tuple[str, int, str | None, str | None]:
    """(host, port, TLS mode the scheme implies, protocol the scheme names)."""
    try:
        host, port, mode = parse_target_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return host, port, mode, url_protocol(text)


def _delivery_arg(text: str) -> str:
    if text in ("auto", "none") or (text.startswith("maildir:") and len(text) > len("maildir:")):
        return text
    raise argparse.ArgumentTypeError(
        f"expected maildir:/path/{{user}}/Maildir, maildir:/path or none, got {text!r}"
    )


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _jobs_arg(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 64, got {text!r}")
    return int(text)


def _whole_seconds_arg(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds, got {text!r}")
    return int(text)


def _count_arg(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _provision_arg(text: str) -> str:
    try:
        check_provision(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _pem_arg(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


def _dir_arg(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file or directory: {text!r}")
    return path


class _Parser(argparse.ArgumentParser):
    """argparse, but errors read `mailspec run: error: argument --target: …`
    and exit 2 (argparse's own convention, which matches ours)."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="POP3 conformance test suite: replays RFC scenarios against a server.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def scenario_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--protocol",
            choices=PROTOCOLS,
            help="the corpus to run or list: pop3 (default) or smtp; a target URL's "
            "scheme names it too",
        )
        p.add_argument(
            "--select",
            action="append",
            default=[],
            metavar="PATTERN",
            help="glob over scenario id or requirement id (repeatable, OR-ed)",
        )
        p.add_argument(
            "--scenarios",
            action="append",
            default=[],
            type=_dir_arg,
            metavar="DIR",
            help="also load scenario files from DIR (repeatable)",
        )

    run = sub.add_parser("run", help="run scenarios against a target (default: embedded server)")
    run.add_argument(
        "--target",
        type=_target_arg,
        metavar="HOST:PORT|URL",
        help="the server to test: HOST:PORT, pop3://HOST[:110], pop3s://HOST[:995], "
        "smtp://HOST[:25], submission://HOST[:587] or smtps://HOST[:465] (the s-schemes imply "
        "--tls implicit, the scheme names the protocol); default: start the bundled "
        "reference server; overrides the config file's target",
    )
    run.add_argument(
        "--tls",
        choices=TLS_MODES,
        help="plain, stls (POP3 STLS before every login; SMTP STARTTLS for the probe) or "
        "implicit (TLS on connect: pop3s, smtps)",
    )
    run.add_argument(
        "--tls-ca", type=_pem_arg, metavar="FILE", help="trust the CA certificates in FILE (PEM)"
    )
    run.add_argument(
        "--tls-no-verify",
        action="store_true",
        help="do not verify the target's certificate (the report says so)",
    )
    run.add_argument("--config", type=Path, metavar="FILE", help="target config file (YAML)")
    scenario_opts(run)
    run.add_argument("--strict", action="store_true", help="SHOULD/MAY deviations FAIL")
    run.add_argument(
        "--security", action="store_true", help="SECURITY (best-practice) deviations FAIL"
    )
    run.add_argument(
        "--jobs",
        type=_jobs_arg,
        metavar="N",
        help="scenarios run at once, each on its own account pool (default: "
        f"{EMBEDDED_AUTO_JOBS} against the embedded server, the config's 'pool:' against a "
        "target)",
    )
    run.add_argument("--expectations", type=Path, metavar="FILE", help="known failures (YAML)")
    run.add_argument(
        "--update-expectations",
        type=Path,
        metavar="FILE",
        help="rewrite FILE from this run's failures (keeps existing reasons)",
    )
    run.add_argument(
        "--junit",
        type=Path,
        default=DEFAULT_JUNIT,
        metavar="PATH",
        help="JUnit XML report, one testsuite per section (default reports/junit.xml)",
    )
    run.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help="JSON report, docs/results.schema.json (default reports/results.json)",
    )
    run.add_argument(
        "--html",
        type=Path,
        default=DEFAULT_HTML,
        metavar="PATH",
        help="self-contained HTML report with every transcript (default reports/report.html)",
    )
    run.add_argument(
        "--timeout", type=_seconds_arg, metavar="S", help="reply deadline (default 10)"
    )
    run.add_argument("--slow", action="store_true", help="include slow scenarios (autologout)")
    run.add_argument(
        "--no-measure",
        action="store_true",
        help="skip the INFO measurements (longest line, bad-command limit, failed-login "
        "delay); the reports say they were not measured",
    )
    run.add_argument(
        "--autologout",
        type=_whole_seconds_arg,
        metavar="SECONDS",
        help="the target's configured autologout timer (slow scenarios wait for it); "
        "without a target, the embedded server is started with it",
    )
    run.add_argument(
        "--provision",
        type=_provision_arg,
        metavar="SPEC",
        help="how the accounts get the fixture's messages: none, maildir:TEMPLATE, "
        "mbox:TEMPLATE, smtp:HOST:PORT or command:'...' (TEMPLATE holds {user})",
    )
    run.add_argument(
        "--smtp-domain",
        metavar="DOMAIN",
        help="SMTP: the target's local domain; recipients are USER@DOMAIN "
        "(default example.test for the embedded server, the target's host otherwise)",
    )
    run.add_argument(
        "--delivery",
        type=_delivery_arg,
        metavar="SPEC",
        help="SMTP: where delivered messages can be inspected: maildir:/path/{user}/Maildir, "
        "maildir:/path (one catch-all Maildir) or none (delivered: steps SKIP)",
    )
    run.add_argument(
        "--no-redact", action="store_true", help="keep PASS/APOP/AUTH arguments in transcripts"
    )
    run.add_argument(
        "--full-transcripts",
        action="store_true",
        help="keep every octet in the reports (default: passing bodies as length, SHA-256, "
        "first and last line; failing exchanges up to 64 KiB a step)",
    )
    run.add_argument(
        "-v", "--verbose", action="store_true", help="print each failure's transcript too"
    )
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="one line only for FAIL, WARN, ERROR and XPASS scenarios (the failures, "
        "warnings and summary at the end are unchanged)",
    )

    lst = sub.add_parser("list", help="list scenarios grouped by section")
    scenario_opts(lst)
    lst.add_argument("-v", "--verbose", action="store_true", help="show notes, needs, source")

    cov = sub.add_parser("coverage", help="requirement coverage of the scenario corpus")
    cov.add_argument("--json", action="store_true", help="machine-readable output")
    cov.add_argument("--scenarios", action="append", default=[], type=_dir_arg, metavar="DIR")
    cov.add_argument("--protocol", default="pop3", choices=["pop3", "smtp"])
    cov.add_argument("-q", "--quiet", action="store_true", help="omit the per-requirement list")

    for name, text in (
        ("provision", "write the fixture into every account of the target, then verify it"),
        ("verify", "check that every account of the target holds the fixture (exit 0 or 3)"),
    ):
        setup = sub.add_parser(name, help=text, description=text)
        setup.add_argument(
            "--config", type=Path, metavar="FILE", required=True, help="target config file (YAML)"
        )
        setup.add_argument(
            "--provision", type=_provision_arg, metavar="SPEC", help="overrides the config's"
        )

    fz = sub.add_parser(
        "fuzz",
        help="seeded mutation fuzzing; findings become replayable scenarios (docs/fuzz.md)",
    )
    fz.add_argument("--target", type=_target_arg, metavar="HOST:PORT")
    fz.add_argument("--config", type=Path, metavar="FILE", help="target config file (YAML)")
    fz.add_argument("--provision", type=_provision_arg, metavar="SPEC")
    fz.add_argument("--seed", type=int, default=1, metavar="N", help="default 1")
    budget = fz.add_mutually_exclusive_group()
    budget.add_argument("--iterations", type=_count_arg, metavar="N", help="cases (default 300)")
    budget.add_argument("--duration", type=_seconds_arg, metavar="S", help="seconds to fuzz")
    fz.add_argument("--max-findings", type=_count_arg, metavar="N", help="stop after N findings")
    fz.add_argument("--account", default="spare1", metavar="ROLE", help="default spare1")
    fz.add_argument("--out", type=Path, default=Path("reports") / "fuzz", metavar="DIR")
    fz.add_argument("--timeout", type=_seconds_arg, metavar="S", help="reply deadline (1)")
    fz.add_argument(
        "--restart-command",
        metavar="CMD",
        help="restarts an external target that a case wedged (run with a deadline, then the "
        "target must greet); the embedded server is restarted without it",
    )

    sub.add_parser(
        "serve",
        help="run the bundled reference server (python -m reference_server ARGS)",
        add_help=False,
    )

    # `mailspec load` (issue 14, docs/load.md): its arguments live in conformance/load/runner.py
    from conformance.load import runner as load_module

    load = sub.add_parser(
        "load", help="correctness under load, on Locust (pip install mailspec[load])"
    )
    load_module.add_arguments(load, _target_arg)
    load.set_defaults(load_run=load_module.cmd_load)

    try:
        matrix = importlib.import_module("conformance.reports.matrix")
    except ModuleNotFoundError as exc:
        if exc.name != "conformance.reports.matrix":
            raise
        mat = sub.add_parser("matrix", help="(not available in this build)")
        mat.add_argument("rest", nargs=argparse.REMAINDER)
        mat.set_defaults(matrix_missing=True)
    else:
        mat = sub.add_parser("matrix", help="compare results of several targets")
        matrix.add_arguments(mat)
        mat.set_defaults(matrix_run=matrix.run)
    return parser


# --------------------------------------------------------------------------
# Scenario loading and selection
# --------------------------------------------------------------------------


def load_corpus(extra: Sequence[Path], protocol: str = "pop3") -> list[Any]:
    """Bundled scenarios of `protocol` plus the user's directories (a
    directory given twice, or the bundled one given explicitly, is loaded
    once)."""
    from conformance.core.scenario import bundled_scenario_dir
    from conformance.protocols import load_protocol_scenarios

    paths: list[Path] = []
    seen: set[Path] = set()
    for p in [bundled_scenario_dir(), *extra]:
        key = Path(p).resolve()
        if key not in seen:
            seen.add(key)
            paths.append(Path(p))
    return list(load_protocol_scenarios(paths, protocol))


def matches(scenario: Any, patterns: Sequence[str]) -> bool:
    if not patterns:
        return True
    names = [scenario.id, *scenario.requirements]
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


def select(scenarios: list[Any], patterns: Sequence[str]) -> list[Any]:
    chosen = [s for s in scenarios if matches(s, patterns)]
    if patterns and not chosen:
        raise ConfigError(
            f"--select: no scenario or requirement matches {', '.join(map(repr, patterns))}"
        )
    return chosen


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def build_config(args: argparse.Namespace) -> RunConfig:
    cfg = load_config(args.config) if args.config else RunConfig()
    if args.target:
        cfg.host, cfg.port, implied, named = args.target
        if implied is not None:
            cfg.tls = implied  # type: ignore[assignment]
        if named is not None:
            cfg.protocol = named
    if getattr(args, "protocol", None):
        if args.target and args.target[3] not in (None, args.protocol):
            raise ConfigError(
                f"--protocol {args.protocol} contradicts --target's scheme ({args.target[3]})"
            )
        cfg.protocol = args.protocol
    if args.tls:
        cfg.tls = args.tls
    if args.tls_ca:
        cfg.tls_ca = args.tls_ca
    if args.tls_no_verify:
        cfg.tls_verify = False
    if args.provision:
        if args.provision == "reference" and cfg.host is not None:
            raise ConfigError(
                "--provision: 'reference' means the embedded server; "
                "with a target use none or maildir:TEMPLATE"
            )
        cfg.provision = args.provision
    if args.timeout:
        cfg.read_timeout = args.timeout
    cfg.strict = cfg.strict or args.strict
    cfg.security = cfg.security or args.security
    cfg.slow = cfg.slow or args.slow
    if args.autologout:
        cfg.autologout = args.autologout
    if args.no_redact:
        cfg.redact = False
    if args.smtp_domain:
        cfg.smtp_domain = args.smtp_domain
    if args.delivery:
        cfg.smtp_delivery = args.delivery
    if args.no_measure:
        cfg.measure = False
    return finalize(cfg)


def _load_fixture(cfg: RunConfig) -> Any:
    """The run's fixture, loaded once for both the engine and the redaction;
    None when it does not load (the engine then reports the problem itself)."""
    from conformance.core.fixture import load_fixture

    try:
        return load_fixture(cfg.fixture_dir)
    except Exception:
        return None


def _secrets(cfg: RunConfig, fixture: Any) -> list[str]:
    secrets = set(cfg.secrets())
    if fixture is not None:
        secrets.update(a.password for a in fixture.accounts.values())
    return sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)


def cmd_run(args: argparse.Namespace) -> int:
    from conformance.core import expectations as xp
    from conformance.reports.compact import compact_run
    from conformance.reports.console import Console
    from conformance.reports.redact import scrub_run

    cfg = build_config(args)
    outputs = report_outputs(args)
    corpus = load_corpus(args.scenarios, cfg.protocol)
    scenarios = select(corpus, args.select)
    skipped_slow = 0
    if not cfg.slow:
        skipped_slow = sum(1 for s in scenarios if getattr(s, "slow", False))
        scenarios = [s for s in scenarios if not getattr(s, "slow", False)]
        if not scenarios:
            raise ConfigError("--select: only slow scenarios match; add --slow to run them")
    exps: dict[str, xp.Expectation] = {}
    if args.expectations:
        exps = xp.load_expectations(args.expectations)
        xp.check_known(exps, {s.id for s in corpus}, args.expectations)
    previous = exps
    if args.update_expectations and args.update_expectations != args.expectations:
        if args.update_expectations.exists():
            previous = xp.load_expectations(args.update_expectations)

    from conformance.protocols import run_suite

    console = Console(verbose=args.verbose, quiet=args.quiet)
    where = "embedded reference server" if cfg.host is None else cfg.address
    console.header(where, len(scenarios))
    if skipped_slow:
        console._write(f"({skipped_slow} slow scenarios not selected; --slow runs them)")

    def progress(result: Any, done: int, total: int) -> None:
        xp.apply([result], exps)
        console.result(result, done, total)

    fixture = _load_fixture(cfg)
    ran: list[Any] = []

    def record(result: Any, done: int, total: int) -> None:
        ran.append(result)
        progress(result, done, total)

    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    try:
        run = run_suite(scenarios, cfg, progress=record, fixture=fixture, jobs=args.jobs)
    except KeyboardInterrupt:
        # run_suite turns a Ctrl-C during the scenarios into partial results
        # itself; one that lands outside them (the target being set up or
        # torn down) is caught here, with what the progress callback saw.
        run = _interrupted_run(cfg, ran, started_at, time.monotonic() - started)
    xp.apply(run.results, exps)  # idempotent: covers results the callback did not see
    if cfg.redact:
        scrub_run(run, _secrets(cfg, fixture))
    if not args.full_transcripts:
        compact_run(run)
    write_reports(run, outputs)
    if args.update_expectations and not run.incomplete:
        try:
            xp.write_expectations(args.update_expectations, xp.updated(run.results, previous))
        except OSError as exc:
            raise ConfigError(
                f"--update-expectations: cannot write {args.update_expectations}: {exc.strerror}"
            ) from None
    console.summary(run)
    if run.incomplete:
        console._write(f"incomplete run: {run.incomplete} ({len(run.results)} results reported)")
    written = [str(path) for _flag, path in outputs]
    if args.update_expectations and not run.incomplete:
        written.append(f"{args.update_expectations} (expectations)")
    if written:
        console._write(f"reports: {', '.join(written)}")
    return run.exit_code


def cmd_setup(args: argparse.Namespace) -> int:
    """`mailspec provision` and `mailspec verify`: for vendors who set a target
    up once and run against it many times."""
    from conformance.core.transcript import Transcript
    from conformance.pop3.engine import Runner

    cfg = load_config(args.config)
    if args.provision:
        cfg.provision = args.provision
    cfg = finalize(cfg)
    if cfg.host is None:
        raise ConfigError(f"{args.config}: 'target:' is required for mailspec {args.command}")
    write = args.command == "provision"
    with Runner(cfg, write_main=False) as runner:
        assert runner.mailboxes is not None
        if write and not runner.mailboxes.can_restore:
            raise ConfigError(
                f"{args.config}: provision: {cfg.provision} cannot write mailboxes "
                "(use maildir:, mbox:, smtp: or command:)"
            )
        problems = 0
        for role, account in runner.fixture.accounts.items():
            problem = runner.mailboxes.establish(account, Transcript(), write=write)
            done = "provisioned and verified" if write else "holds the fixture"
            if problem is None:
                noun = "message" if account.count == 1 else "messages"
                print(f"{role} ({account.user}): {done} ({account.count} {noun})")
            else:
                problems += 1
                print(f"{role} ({account.user}): {problem}", file=sys.stderr)
    return 3 if problems else 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    from conformance.fuzz.runner import run_fuzz

    cfg = load_config(args.config) if args.config else RunConfig()
    if args.target:
        cfg.host, cfg.port, implied, _protocol = args.target
        if implied is not None:
            cfg.tls = implied  # type: ignore[assignment]
    if args.provision:
        cfg.provision = args.provision
    return run_fuzz(
        finalize(cfg), seed=args.seed, iterations=args.iterations, duration=args.duration,
        out=args.out, account=args.account, max_findings=args.max_findings, timeout=args.timeout,
        restart_command=args.restart_command,
    )  # fmt: skip


def _interrupted_run(cfg: RunConfig, results: list[Any], started_at: str, duration: float) -> Any:
    """A RunResult of the scenarios that finished before Ctrl-C."""
    from conformance.core.results import RunResult, TargetFingerprint

    return RunResult(
        tool_version=__version__,
        started_at=started_at,
        duration=round(duration, 3),
        target=TargetFingerprint(
            address=cfg.address if cfg.host is not None else "embedded",
            tls="plain",
            greeting="",
            capabilities=[],
            embedded=cfg.host is None,
        ),
        config=cfg.redacted(),
        results=list(results),
        strict=cfg.strict,
        incomplete="interrupted",
    )


# --------------------------------------------------------------------------
# Report files: every path checked before the first scenario runs
# --------------------------------------------------------------------------


def check_output_path(flag: str, path: Path) -> None:
    """Fail now, naming the flag, if `path` cannot be written: a run must not
    spend minutes and then lose its report. Creates missing parent
    directories (the report would need them anyway); leaves no file behind."""
    where = f"{flag}: cannot write {path}"
    if path.is_dir():
        raise ConfigError(f"{where}: it is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with open(path, "ab"):
                pass
        else:
            # Probe the directory with a file of our own: creating and then
            # unlinking `path` itself races with a second run writing to the
            # same directory (its unlink can remove our probe, or ours its).
            fd, probe = tempfile.mkstemp(prefix=".mailspec-probe-", dir=path.parent)
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror or exc}") from None


def report_outputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The report flags in use, each checked (exit 2 naming the flag)."""
    outputs = [
        (flag, path)
        for flag, path in (("--junit", args.junit), ("--json", args.json), ("--html", args.html))
        if path
    ]
    if args.update_expectations:
        outputs_to_check = [*outputs, ("--update-expectations", args.update_expectations)]
    else:
        outputs_to_check = outputs
    for flag, path in outputs_to_check:
        check_output_path(flag, path)
    return outputs


def write_reports(run: Any, outputs: list[tuple[str, Path]]) -> None:
    """JUnit, JSON and HTML as the flags ask; an OSError names its flag."""
    from conformance.reports import write_json, write_junit

    for flag, path in outputs:
        try:
            if flag == "--junit":
                write_junit(run, path)
            elif flag == "--json":
                write_json(run, path)
            elif flag == "--html":
                write_html_report(run, path)
        except OSError as exc:
            raise ConfigError(f"{flag}: cannot write {path}: {exc.strerror or exc}") from None


def write_html_report(run: Any, path: Path) -> None:
    """One run as the matrix page with a single target column: the failures
    first, verdicts by section, and each scenario's transcript."""
    from conformance.reports import matrix

    label = "reference" if run.target.embedded else run.target.address
    page = matrix.render_html(matrix.from_run(run, label), title=f"mailspec report: {label}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page + "\n", encoding="utf-8")


def cmd_list(args: argparse.Namespace) -> int:
    from conformance.reports.text import requirement_line

    scenarios = select(load_corpus(args.scenarios, args.protocol or "pop3"), args.select)
    sections: dict[str, list[Any]] = {}
    for s in scenarios:
        sections.setdefault(s.section, []).append(s)
    width = max((len(s.id) for s in scenarios), default=10)
    for section, group in sections.items():
        print(section)
        for s in group:
            slow = " [slow]" if getattr(s, "slow", False) else ""
            print(f"  {s.id:<{width}}  {s.level:<6} {','.join(s.requirements)}  {s.title}{slow}")
            if args.verbose:
                for rid in s.requirements:
                    print(f"      {requirement_line(rid)}")
                if getattr(s, "needs", None):
                    print(f"      needs: {' '.join(s.needs)}")
                if getattr(s, "notes", None):
                    print(f"      notes: {' '.join(str(s.notes).split())}")
                if getattr(s, "source", None):
                    print(f"      source: {s.source}")
        print()
    print(f"{len(scenarios)} scenarios in {len(sections)} sections")
    return 0


def cmd_coverage(args: argparse.Namespace) -> int:
    from conformance.core.catalogue import load_catalogue
    from conformance.reports.coverage import compute_coverage, render_text

    cov = compute_coverage(
        load_catalogue(), load_corpus(args.scenarios, args.protocol), args.protocol
    )
    if args.json:
        print(json.dumps(cov.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(render_text(cov, verbose=not args.quiet))
    return 0


def cmd_serve(rest: list[str]) -> int:
    """Hand over to the reference server as its own process image; the suite
    never imports it."""
    argv = [sys.executable, "-m", "reference_server", *rest]
    os.environ["REFERENCE_SERVER_PROG"] = "mailspec serve"  # its --help names this command
    try:
        os.execv(sys.executable, argv)
    except OSError as exc:
        raise MailspecError(f"cannot start the reference server: {exc}") from None
    return 0  # pragma: no cover - execv does not return


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "serve":
            return cmd_serve(argv[1:])
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "list":
            return cmd_list(args)
        if args.command == "coverage":
            return cmd_coverage(args)
        if args.command in ("provision", "verify"):
            return cmd_setup(args)
        if args.command == "load":
            return int(args.load_run(args))
        if args.command == "fuzz":
            return cmd_fuzz(args)
        if args.command == "matrix":
            if getattr(args, "matrix_missing", False):
                raise ConfigError(
                    "matrix: not available in this build (conformance.reports.matrix missing)"
                )
            return int(args.matrix_run(args))
        raise AssertionError(args.command)  # pragma: no cover
    except MailspecError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mailspec list | head`
        sys.stderr.close()
        return 0
