"""Interoperability run: the suite against real POP3 or SMTP servers, then the matrix.

    python -m interop.run                      # reference, dovecot, mailutils, TLS variants
    python -m interop.run --protocol smtp      # smtp-reference, postfix, exim, opensmtpd, aiosmtpd
    python -m interop.run dovecot-stls dovecot-pop3s mailutils-stls
    python -m interop.run dovecot --select 'stat.*'
    python -m interop.run --reports reports/   # where the JSON and matrix go

For each server: install it from Debian if missing, start it under a temp
directory on 127.0.0.1 and a free port, provision the fixture with the
suite's own provisioner, run `mailspec run --target ... --provision ...
--json REPORTS/interop-NAME.json`, stop it by PID. `reference` is the
bundled reference server (embedded, no --target). `dovecot-stls`,
`dovecot-pop3s` and `mailutils-stls` start the server with a trustme
certificate and run with `--tls stls` (or `--tls implicit` against
Dovecot's pop3s listener) and `--tls-ca` naming that CA. Then
`mailspec matrix` renders REPORTS/interop-matrix.md and .html.

SMTP targets (interop/smtp_servers.py) are started the same way; the run
gets a config file naming the target, the local domain, the accounts the
server accepts (main -> alice, spare1 and empty -> bob, with the AUTH
password where the server offers AUTH), the Maildir template the
deliveries are inspected in and, for the MTAs (STARTTLS with a trustme
certificate), `tls: {mode: plain, ca: ...}`: the run stays on the plain
port and the STARTTLS scenarios trust that CA.

Exit status: 0 when every run completed (whatever its verdicts: the
classification of non-PASS verdicts is in docs/interop.md), 3 when a
server could not be installed or started, 2 on a usage error, and the
`mailspec run` status (2/3) when a run itself could not happen.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conformance.core.fixture import load_fixture  # noqa: E402
from interop.servers import SERVERS, ServerUnavailable  # noqa: E402
from interop.smtp_servers import SMTP_SERVERS  # noqa: E402
from interop.smtp_servers import ServerUnavailable as SmtpServerUnavailable  # noqa: E402

#: TLS variants: target name -> (server, `--tls` mode). The server starts with
#: a trustme certificate for 127.0.0.1 and the suite trusts exactly its CA
#: (`--tls-ca`); `implicit` goes to the server's pop3s listener.
TLS_TARGETS: dict[str, tuple[str, str]] = {
    "dovecot-stls": ("dovecot", "stls"),
    "dovecot-pop3s": ("dovecot", "implicit"),
    "mailutils-stls": ("mailutils", "stls"),
}
ALL_TARGETS = ("reference", *SERVERS, *TLS_TARGETS)
SMTP_TARGETS = ("smtp-reference", *SMTP_SERVERS)
#: fixture roles -> the users every interop SMTP server accepts
SMTP_ACCOUNTS = {"main": "alice", "spare1": "bob", "empty": "bob"}


def mailspec(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`mailspec ARGS` with this checkout's package first on the path."""
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "conformance", *args], env=environ, check=False)


def run_target(
    name: str, reports: Path, select: list[str], extra: list[str], keep: bool, install: bool
) -> tuple[int, float, str]:
    """Run the suite against one target. Returns (mailspec exit code, wall
    seconds, a one-line description)."""
    json_path = reports / f"interop-{name}.json"
    selectors = [a for s in select for a in ("--select", s)]
    if name == "smtp-reference":
        started = time.monotonic()
        done = mailspec("run", "--protocol", "smtp", "--json", str(json_path), *selectors, *extra)
        return done.returncode, time.monotonic() - started, "bundled reference SMTP server"
    if name in SMTP_SERVERS:
        return run_smtp_target(name, reports, json_path, selectors, extra, keep)
    if name == "reference":
        started = time.monotonic()
        done = mailspec("run", "--json", str(json_path), *selectors, *extra)
        return done.returncode, time.monotonic() - started, "bundled reference server (embedded)"
    base, mode = TLS_TARGETS.get(name, (name, "plain"))
    cls = SERVERS[base]
    cls.ensure_installed(install=install)
    server = cls(load_fixture(), keep=keep, tls=mode != "plain")
    server.start()
    try:
        address = server.tls_address if mode == "implicit" else server.address
        tls = [] if mode == "plain" else ["--tls", mode, "--tls-ca", str(server.ca_path)]
        print(f"== {name}: {server.version()} on {address}, {server.provision_spec}")
        started = time.monotonic()
        done = mailspec(
            "run",
            "--target",
            address,
            *tls,
            "--provision",
            server.provision_spec,
            "--json",
            str(json_path),
            *selectors,
            *extra,
        )
        wall = time.monotonic() - started
    finally:
        if keep:
            print(f"   kept {server.workdir} (log {server.log_path})")
        server.stop()
    return done.returncode, wall, f"{server.version()}"


def run_smtp_target(
    name: str, reports: Path, json_path: Path, selectors: list[str], extra: list[str], keep: bool
) -> tuple[int, float, str]:
    server = SMTP_SERVERS[name](keep=keep)
    server.start()
    try:
        host, port = server.address
        config = reports / f"interop-{name}.yaml"
        # the password AUTH checks where the server offers AUTH (inside TLS)
        password = server.auth_password or "unused"
        accounts = "".join(
            f"  {role}: {{user: {user}, password: {password}}}\n"
            for role, user in SMTP_ACCOUNTS.items()
        )
        # a plain run that trusts the server's own CA, so the scenarios that
        # speak STARTTLS themselves can verify its certificate (issued for
        # its host name, sent as SNI)
        tls = (
            f"tls: {{mode: plain, ca: {json.dumps(str(server.ca_path))}, "
            f"server_name: {server.hostname}}}\n"
            if server.tls
            else ""
        )
        config.write_text(
            f"target: smtp://{host}:{port}\n"
            f"{tls}"
            f"smtp:\n  domain: {server.domain}\n"
            f'  delivery: "maildir:{server.maildir("{user}")}"\n'
            f"accounts:\n{accounts}",
            encoding="utf-8",
        )
        offers = "STARTTLS" if server.tls else "no TLS"
        if server.auth_password:
            offers += f", AUTH {' '.join(server.auth_mechanisms)} inside TLS"
        print(f"== {name}: {server.version()} on {host}:{port} ({offers})")
        started = time.monotonic()
        done = mailspec(
            "run", "--config", str(config), "--json", str(json_path), *selectors, *extra
        )
        wall = time.monotonic() - started
    finally:
        if keep:
            print(f"   kept {server.workdir}")
        server.stop()
    return done.returncode, wall, server.version()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m interop.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "targets", nargs="*", metavar="TARGET", help=" ".join((*ALL_TARGETS, *SMTP_TARGETS))
    )
    parser.add_argument(
        "--protocol", choices=("pop3", "smtp"), default="pop3", help="the default targets"
    )
    parser.add_argument("--reports", type=Path, default=REPO / "reports")
    parser.add_argument("--select", action="append", default=[], metavar="PATTERN")
    parser.add_argument("--keep", action="store_true", help="keep temp dirs and logs")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    parser.add_argument("--no-matrix", action="store_true")
    parser.add_argument("--timing", type=Path, help="write wall times (JSON) here")
    args, extra = parser.parse_known_args(argv)
    known = (*ALL_TARGETS, *SMTP_TARGETS)
    targets = args.targets or list(SMTP_TARGETS if args.protocol == "smtp" else ALL_TARGETS)
    unknown = [t for t in targets if t not in known]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r} (known: {', '.join(known)})")
    args.reports.mkdir(parents=True, exist_ok=True)

    status = 0
    timing: dict[str, float] = {}
    produced: list[str] = []
    for name in targets:
        try:
            code, wall, what = run_target(
                name, args.reports, args.select, extra, args.keep, not args.no_install
            )
        except (ServerUnavailable, SmtpServerUnavailable, RuntimeError) as exc:
            print(f"interop: {name}: {exc}", file=sys.stderr)
            status = max(status, 3)
            continue
        timing[name] = round(wall, 1)
        print(f"== {name}: mailspec exit {code} after {wall:.1f} s ({what})")
        report = args.reports / f"interop-{name}.json"
        if code in (0, 1, 3) and report.exists():
            # exit 3 (ERRORs: verdicts it could not give) still has a report:
            # the matrix shows those ERRORs rather than leaving the target out
            produced.append(f"{name}={report}")
        if code not in (0, 1):
            status = max(status, code)
    if args.timing:
        args.timing.write_text(json.dumps(timing, indent=2) + "\n")
    if produced and not args.no_matrix:
        md = args.reports / "interop-matrix.md"
        html = args.reports / "interop-matrix.html"
        done = mailspec("matrix", *produced, "--markdown", str(md), "--html", str(html))
        if done.returncode == 0:
            print(f"matrix: {md}, {html}")
        else:
            status = max(status, done.returncode)
    return status


if __name__ == "__main__":
    sys.exit(main())
