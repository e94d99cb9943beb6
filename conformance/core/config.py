"""The effective configuration of a run: target, accounts, limits.

Filled from the target config file (`--config`, YAML, see docs/cli.md) and
overridden by CLI flags. The engine only reads a `RunConfig`; parsing and
validation of the file and flags live here (`load_config`, `parse_target`).
Every error names the file, the line and the field."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from conformance.core.errors import ConfigError, ProvisionError
from conformance.core.tls import TlsSettings

TlsMode = Literal["plain", "stls", "implicit"]
TLS_MODES: tuple[TlsMode, ...] = ("plain", "stls", "implicit")
TLS_KEYS = ("mode", "ca", "verify", "server_name", "client_cert")
Protocol = Literal["pop3", "smtp"]
PROTOCOLS: tuple[Protocol, ...] = ("pop3", "smtp")
#: Default ports of the URL schemes (RFC 1939 §3: 110; RFC 8314 §3.1 / §7:
#: 995 and 465; RFC 5321 §4.5.4.2: 25; RFC 6409 §3.1: 587, submission).
URL_SCHEMES: dict[str, tuple[int, TlsMode | None]] = {
    "pop3": (110, None),
    "pop3s": (995, "implicit"),
    "smtp": (25, None),
    "submission": (587, None),
    "smtps": (465, "implicit"),
}
URL_PROTOCOLS: dict[str, Protocol] = {
    "pop3": "pop3",
    "pop3s": "pop3",
    "smtp": "smtp",
    "submission": "smtp",
    "smtps": "smtp",
}

DEFAULT_READ_TIMEOUT = 10.0  # seconds for an ordinary reply
DEFAULT_AUTH_TIMEOUT = 30.0  # verdict-principles 4: failed logins are often slow
DEFAULT_SCENARIO_TIMEOUT = 120.0
RFC1939_MIN_AUTOLOGOUT = 600  # RFC 1939 §3: at least 10 minutes


@dataclass
class RunConfig:
    host: str | None = None  # None: start the bundled reference server
    port: int = 110
    tls: TlsMode = "plain"  # plain | stls (RFC 2595) | implicit (RFC 8314 pop3s)
    tls_ca: str | None = None  # PEM file of trusted CAs; None: the system store
    tls_verify: bool = True  # verify the certificate chain and name
    tls_server_name: str | None = None  # name verified and sent as SNI; None: the host
    tls_client_cert: str | None = None  # PEM with client certificate and key
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
    security: bool = False  # SECURITY-level (best practice) deviations FAIL
    pool: int = 1  # account pools the target offers (`{n}` in user names)
    slow: bool = False  # include scenarios marked slow
    redact: bool = True  # hide PASS/APOP/AUTH arguments in transcripts
    protocol: Protocol = "pop3"  # the corpus run: pop3 or smtp (`--protocol`, target URL)
    #: SMTP: the target's local domain (recipients are user@domain); None:
    #: example.test for the embedded server, the target's host name otherwise
    smtp_domain: str | None = None
    #: SMTP delivery inspection: auto (the embedded server's store, none for a
    #: target), none, or maildir:/path/{user}/Maildir (conformance.smtp.delivery)
    smtp_delivery: str = "auto"
    smtp_delivery_wait: float = 10.0  # seconds a queued delivery may take
    measure: bool = True  # take the INFO measurements after the probe (--no-measure: off)

    @property
    def address(self) -> str:
        host = self.host or "127.0.0.1"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def tls_settings(self) -> TlsSettings:
        return TlsSettings(
            mode=self.tls,
            ca=self.tls_ca,
            verify=self.tls_verify,
            server_name=self.tls_server_name,
            client_cert=self.tls_client_cert,
        )

    def redacted(self) -> dict[str, object]:
        """The configuration as reports may show it: no passwords."""
        data = asdict(self)
        data["accounts"] = {
            role: {k: ("***" if k == "password" else v) for k, v in acct.items()}
            for role, acct in self.accounts.items()
        }
        return data

    def secrets(self) -> list[str]:
        """Every password this configuration knows (for leak checks)."""
        return [a["password"] for a in self.accounts.values() if a.get("password")]


# --------------------------------------------------------------------------
# Target addresses
# --------------------------------------------------------------------------

_TARGET_RE = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>[0-9]{1,5})$"
)


_URL_RE = re.compile(
    r"^(?P<scheme>[A-Za-z0-9]+)://(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:/\[\]@]+))"
    r"(?::(?P<port>[0-9]{1,5}))?/?$"
)


def url_protocol(text: str) -> Protocol | None:
    """The protocol a target URL's scheme names (None for HOST:PORT)."""
    if not isinstance(text, str) or "://" not in text:
        return None
    return URL_PROTOCOLS.get(text.split("://", 1)[0].lower())


def parse_target_url(text: str) -> tuple[str, int, TlsMode | None]:
    """`pop3://host[:110]`, `pop3s://host[:995]`, `smtp://host[:25]`,
    `submission://host[:587]`, `smtps://host[:465]` or `HOST:PORT` ->
    (host, port, the TLS mode the scheme implies or None). ValueError
    names the problem."""
    if not isinstance(text, str) or "://" not in text:
        host, port = parse_target(text)
        return host, port, None
    m = _URL_RE.match(text.strip())
    if not m:
        raise ValueError(f"expected SCHEME://HOST[:PORT] ({', '.join(URL_SCHEMES)}), got {text!r}")
    scheme = m["scheme"].lower()
    if scheme not in URL_SCHEMES:
        raise ValueError(
            f"unknown scheme {m['scheme']!r} in {text!r} (known: {', '.join(URL_SCHEMES)})"
        )
    default_port, mode = URL_SCHEMES[scheme]
    port = int(m["port"]) if m["port"] else default_port
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port} in {text!r}")
    return (m["v6"] or m["host"]), port, mode


def parse_target(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` -> (host, port). ValueError names the problem
    without the flag or field (callers prefix it)."""
    m = _TARGET_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    port = int(m["port"])
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port} in {text!r}")
    return (m["v6"] or m["host"]), port


# --------------------------------------------------------------------------
# The config file
# --------------------------------------------------------------------------

TOP_KEYS = {
    "target",
    "tls",
    "accounts",
    "provision",
    "fixture",
    "autologout",
    "pool",
    "capabilities",
    "timeouts",
    "smtp",
}
TIMEOUT_KEYS = {"read": "read_timeout", "auth": "auth_timeout", "scenario": "scenario_timeout"}
ACCOUNT_KEYS = {"user", "password"}
ROLE_RE = re.compile(r"^(main|empty|apop|spare[1-9][0-9]*)$")


class _Doc:
    """The parsed file plus the composed node tree, to report line numbers."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        try:
            self.node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: Any = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else None
            raise self._error(line, "", f"not valid YAML: {exc.problem}") from None
        except yaml.YAMLError as exc:
            raise self._error(None, "", f"not valid YAML: {exc}") from None

    def _error(self, line: int | None, fieldname: str, message: str) -> ConfigError:
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(
            f"{where}: {fieldname}: {message}" if fieldname else f"{where}: {message}"
        )

    def line(self, *path: str | int) -> int | None:
        node = self.node
        best = node.start_mark.line + 1 if node is not None else None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == str(part):
                        node, best = value, key.start_mark.line + 1
                        break
                else:
                    return best
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    return best
                node = node.value[part]
                best = node.start_mark.line + 1
            else:
                return best
        return best

    def error(self, path: tuple[str | int, ...], message: str) -> ConfigError:
        name = ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
        return self._error(self.line(*path), name, message)


def _number(doc: _Doc, path: tuple[str | int, ...], value: object, *, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise doc.error(path, f"expected a number of seconds, got {value!r}")
    if integer and not isinstance(value, int):
        raise doc.error(path, f"expected a whole number of seconds, got {value!r}")
    if value <= 0:
        raise doc.error(path, f"must be positive, got {value!r}")
    return value


def check_provision(spec: str) -> None:
    """Raise ValueError if `spec` is not a provisioner spelling we can build."""
    if spec == "reference":
        return
    from conformance.provision import make_provisioner

    try:
        make_provisioner(spec)
    except ProvisionError as exc:
        raise ValueError(str(exc)) from None


def load_config(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Read a target config file into a `RunConfig` (on top of `base`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8") from None
    doc = _Doc(path, text)
    data = doc.data
    cfg = base if base is not None else RunConfig()
    if data is None:
        return cfg
    if not isinstance(data, dict):
        raise doc._error(1, "", "expected a mapping of settings (target:, accounts:, …)")
    for key in data:
        if key not in TOP_KEYS:
            known = ", ".join(sorted(TOP_KEYS))
            raise doc.error((str(key),), f"unknown key (known: {known})")

    if "target" in data:
        try:
            cfg.host, cfg.port, implied = parse_target_url(data["target"])
        except ValueError as exc:
            raise doc.error(("target",), str(exc)) from None
        if implied is not None:
            cfg.tls = implied
        named = url_protocol(data["target"])
        if named is not None:
            cfg.protocol = named

    if "smtp" in data:
        _load_smtp(doc, data["smtp"], cfg)

    if "tls" in data:
        _load_tls(doc, data["tls"], cfg, path.parent)

    if "provision" in data:
        spec = data["provision"]
        if not isinstance(spec, str) or not spec:
            raise doc.error(("provision",), f"expected a provisioner spec string, got {spec!r}")
        try:
            check_provision(spec)
        except ValueError as exc:
            raise doc.error(("provision",), str(exc)) from None
        if spec == "reference" and "target" in data:
            raise doc.error(
                ("provision",),
                "'reference' means the embedded server; with a target use none or maildir:TEMPLATE",
            )
        cfg.provision = spec

    if "fixture" in data:
        fx = data["fixture"]
        if not isinstance(fx, str) or not fx:
            raise doc.error(("fixture",), f"expected a directory path, got {fx!r}")
        fx_path = Path(fx) if Path(fx).is_absolute() else path.parent / fx
        if not (fx_path / "fixture.yaml").is_file():
            raise doc.error(("fixture",), f"no fixture.yaml in {fx_path}")
        cfg.fixture_dir = str(fx_path)

    if "autologout" in data and data["autologout"] is not None:
        cfg.autologout = int(_number(doc, ("autologout",), data["autologout"], integer=True))

    if "pool" in data:
        pool = data["pool"]
        if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
            raise doc.error(("pool",), f"expected a whole number of account pools, got {pool!r}")
        cfg.pool = pool

    if "capabilities" in data:
        caps = data["capabilities"]
        if caps == "auto":
            cfg.capabilities = "auto"
        elif isinstance(caps, list) and all(isinstance(c, str) and c for c in caps):
            cfg.capabilities = [c.upper() for c in caps]
        else:
            raise doc.error(
                ("capabilities",), f"expected 'auto' or a list of capability names, got {caps!r}"
            )

    if "timeouts" in data:
        tms = data["timeouts"]
        if not isinstance(tms, dict):
            raise doc.error(("timeouts",), "expected a mapping with read, auth, scenario")
        for key, value in tms.items():
            if key not in TIMEOUT_KEYS:
                raise doc.error(("timeouts", str(key)), "unknown key (known: auth, read, scenario)")
            setattr(
                cfg, TIMEOUT_KEYS[key], float(_number(doc, ("timeouts", key), value, integer=False))
            )

    if "accounts" in data:
        accts = data["accounts"]
        if not isinstance(accts, dict):
            raise doc.error(("accounts",), "expected a mapping of role -> {user, password}")
        out: dict[str, dict[str, str]] = {}
        for role, entry in accts.items():
            role = str(role)
            if not ROLE_RE.match(role):
                raise doc.error(
                    ("accounts", role), "unknown role (known: main, empty, apop, spare1, spare2, …)"
                )
            if not isinstance(entry, dict):
                raise doc.error(("accounts", role), "expected a mapping with user and password")
            for key in entry:
                if key not in ACCOUNT_KEYS and key != "login":
                    raise doc.error(
                        ("accounts", role, str(key)),
                        "unknown key (known: login, password, user)",
                    )
            for key in sorted(ACCOUNT_KEYS):
                value = entry.get(key)
                if not isinstance(value, str) or not value:
                    hint = " (quote it)" if isinstance(value, int | float) else ""
                    raise doc.error(("accounts", role, key), f"required non-empty string{hint}")
            out[role] = {"user": entry["user"], "password": entry["password"]}
            if "login" in entry:
                # RFC 1939 §13: one login method per user; `apop` logs in with APOP
                if entry["login"] not in ("pass", "apop"):
                    raise doc.error(("accounts", role, "login"), "expected pass or apop")
                out[role]["login"] = entry["login"]
        cfg.accounts = out
    return cfg


SMTP_KEYS = ("domain", "delivery", "delivery_wait")


def _load_smtp(doc: _Doc, smtp: object, cfg: RunConfig) -> None:
    if not isinstance(smtp, dict):
        raise doc.error(("smtp",), "expected a mapping with domain, delivery, delivery_wait")
    for key, value in smtp.items():
        if key not in SMTP_KEYS:
            raise doc.error(("smtp", str(key)), f"unknown key (known: {', '.join(SMTP_KEYS)})")
        if key == "delivery_wait":
            cfg.smtp_delivery_wait = float(_number(doc, ("smtp", key), value, integer=False))
            continue
        if not isinstance(value, str) or not value:
            raise doc.error(("smtp", key), f"expected a non-empty string, got {value!r}")
        if key == "domain":
            cfg.smtp_domain = value
        else:
            if value not in ("auto", "none") and not value.startswith("maildir:"):
                raise doc.error(
                    ("smtp", key), "expected auto, none or maildir:/path/{user}/Maildir"
                )
            cfg.smtp_delivery = value


def _tls_mode(value: object) -> TlsMode:
    if value not in TLS_MODES:
        raise ValueError(f"expected one of {', '.join(TLS_MODES)}, got {value!r}")
    return value  # type: ignore[return-value]


def _load_tls(doc: _Doc, tls: object, cfg: RunConfig, base: Path) -> None:
    """`tls: MODE` or `tls: {mode, ca, verify, server_name, client_cert}`."""
    if not isinstance(tls, dict):
        try:
            cfg.tls = _tls_mode(tls)
        except ValueError as exc:
            raise doc.error(("tls",), str(exc)) from None
        return
    for key in tls:
        if key not in TLS_KEYS:
            raise doc.error(("tls", str(key)), f"unknown key (known: {', '.join(TLS_KEYS)})")
    if "mode" in tls:
        try:
            cfg.tls = _tls_mode(tls["mode"])
        except ValueError as exc:
            raise doc.error(("tls", "mode"), str(exc)) from None
    for key in ("ca", "client_cert"):
        if key in tls and tls[key] is not None:
            value = tls[key]
            if not isinstance(value, str) or not value:
                raise doc.error(("tls", key), f"expected a PEM file path, got {value!r}")
            file = Path(value) if Path(value).is_absolute() else base / value
            if not file.is_file():
                raise doc.error(("tls", key), f"no such file: {file}")
            setattr(cfg, f"tls_{key}", str(file))
    if "verify" in tls:
        if not isinstance(tls["verify"], bool):
            raise doc.error(("tls", "verify"), f"expected true or false, got {tls['verify']!r}")
        cfg.tls_verify = tls["verify"]
    if "server_name" in tls and tls["server_name"] is not None:
        name = tls["server_name"]
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise doc.error(("tls", "server_name"), f"expected a host name, got {name!r}")
        cfg.tls_server_name = name


def finalize(cfg: RunConfig) -> RunConfig:
    """Defaults that depend on other settings: a real target is not ours to
    provision unless a provisioner is named, so `reference` becomes `none`."""
    if cfg.host is not None and cfg.provision == "reference":
        cfg.provision = "none"
    return cfg
