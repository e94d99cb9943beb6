"""The effective configuration of a run: target, accounts, limits.

Filled from the target config file (`--config`, YAML) and overridden by CLI
flags. The engine only reads a `RunConfig`; parsing and validation of the
file and flags live with the CLI (see `load_config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TlsMode = Literal["plain", "stls", "implicit"]

DEFAULT_READ_TIMEOUT = 10.0  # seconds for an ordinary reply
DEFAULT_AUTH_TIMEOUT = 30.0  # verdict-principles 4: failed logins are often slow
DEFAULT_SCENARIO_TIMEOUT = 120.0
RFC1939_MIN_AUTOLOGOUT = 600  # RFC 1939 §3: at least 10 minutes


@dataclass
class RunConfig:
    host: str | None = None  # None: start the bundled reference server
    port: int = 110
    tls: TlsMode = "plain"  # reserved: TLS arrives in a later issue
    fixture_dir: str | None = None  # None: the bundled default fixture
    # role -> {"user": ..., "password": ...}; overrides the fixture's credentials
    accounts: dict[str, dict[str, str]] = field(default_factory=dict)
    provision: str = "reference"  # reference | none | maildir:TEMPLATE (more later)
    autologout: int | None = None  # the target's configured autologout, seconds
    capabilities: Literal["auto"] | list[str] = "auto"
    read_timeout: float = DEFAULT_READ_TIMEOUT
    auth_timeout: float = DEFAULT_AUTH_TIMEOUT
    scenario_timeout: float = DEFAULT_SCENARIO_TIMEOUT
    max_line_octets: int = 65_536  # a reply line longer than this is a flood
    max_body_octets: int = 64 * 1024 * 1024  # a multi-line body larger than this is a flood
    strict: bool = False
    slow: bool = False  # include scenarios marked slow
    redact: bool = True  # hide PASS/APOP/AUTH arguments in transcripts

    @property
    def address(self) -> str:
        host = self.host or "127.0.0.1"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def redacted(self) -> dict[str, object]:
        """The configuration as reports may show it: no passwords."""
        from dataclasses import asdict

        data = asdict(self)
        data["accounts"] = {
            role: {k: ("***" if k == "password" else v) for k, v in acct.items()}
            for role, acct in self.accounts.items()
        }
        return data
