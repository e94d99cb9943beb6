"""`make_provisioner(spec)`: the `--provision` / `provision:` spellings."""

from __future__ import annotations

from collections.abc import Mapping

from conformance.core.errors import ProvisionError
from conformance.provision.base import NoneProvisioner, Provisioner
from conformance.provision.delivery import CommandProvisioner, SmtpProvisioner
from conformance.provision.files import MaildirProvisioner, MboxProvisioner

# --------------------------------------------------------------------------
# Factory


def _split_spec(spec: str) -> tuple[str, dict[str, str], str]:
    head, sep, arg = spec.partition(":")
    kind, *opts = head.split(",")
    options: dict[str, str] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        options[key.strip()] = value if eq else ""
    return kind.strip(), options, arg if sep else ""


def _flag(value: str, spec: str) -> bool:
    if value in ("", "yes", "true", "1"):
        return True
    if value in ("no", "false", "0"):
        return False
    raise ProvisionError(f"provisioner {spec!r}: exact={value!r}: expected yes or no")


def _host_port(arg: str, spec: str) -> tuple[str, int]:
    if arg.startswith("["):
        host, _, rest = arg[1:].partition("]")
        port_text = rest.lstrip(":")
    else:
        host, _, port_text = arg.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ProvisionError(f"provisioner {spec!r}: expected smtp:HOST:PORT")
    return host, int(port_text)


_ALLOWED_OPTIONS: Mapping[str, frozenset[str]] = {
    "maildir": frozenset({"owner", "group", "mode", "eol", "exact"}),
    "mbox": frozenset({"owner", "group", "mode", "eol", "exact"}),
    "smtp": frozenset({"rcpt", "from", "timeout"}),
    "command": frozenset({"exact", "timeout"}),
    "none": frozenset(),
}

_USAGE = (
    "expected none, maildir:TEMPLATE, mbox:TEMPLATE (TEMPLATE has {user}), "
    "smtp:HOST:PORT or command:COMMAND"
)


def make_provisioner(
    spec: str,
    *,
    owner: str | int | tuple[int | None, int | None] | None = None,
    mode: str | int | None = None,
    target: tuple[str, int] | None = None,
    timeout: float | None = None,
) -> Provisioner:
    """Build a provisioner from its config/CLI spelling (see the module doc).
    `reference` is handled by the embedded server, which owns its store.

    `target` is the POP3 server's (host, port); the delivery provisioners
    (smtp, command) use it to empty maildrops and to wait for deliveries."""
    kind, options, arg = _split_spec(spec)
    if kind not in _ALLOWED_OPTIONS:
        raise ProvisionError(f"unknown provisioner {spec!r}: {_USAGE}")
    unknown = set(options) - _ALLOWED_OPTIONS[kind]
    if unknown:
        allowed = ", ".join(sorted(_ALLOWED_OPTIONS[kind])) or "none"
        raise ProvisionError(
            f"provisioner {spec!r}: unknown option {sorted(unknown)[0]!r} (allowed: {allowed})"
        )
    if "owner" in options or "group" in options:
        if ":" in options.get("owner", ""):
            raise ProvisionError(f"provisioner {spec!r}: write owner=USER,group=GROUP")
        owner = f"{options.get('owner', '')}" + (
            f":{options['group']}" if "group" in options else ""
        )
    mode = options.get("mode", mode)
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            raise ProvisionError(f"provisioner {spec!r}: timeout must be seconds") from None
    wait = timeout if timeout is not None else 30.0

    if kind == "none":
        if arg:
            raise ProvisionError(f"provisioner {spec!r}: 'none' takes no argument")
        return NoneProvisioner()
    if not arg:
        raise ProvisionError(f"provisioner {spec!r} needs an argument: {_USAGE}")
    exact = _flag(options.get("exact", "yes"), spec)
    if kind == "maildir":
        eol = options.get("eol", "raw")
        return MaildirProvisioner(arg, owner=owner, mode=mode, eol=eol, exact=exact)
    if kind == "mbox":
        eol = options.get("eol", "lf")
        return MboxProvisioner(arg, owner=owner, mode=mode, eol=eol, exact=exact)
    if kind == "smtp":
        host, port = _host_port(arg, spec)
        return SmtpProvisioner(
            host,
            port,
            rcpt=options.get("rcpt", "{user}@localhost"),
            sender=options.get("from", "mailspec@mailspec.test"),
            target=target,
            timeout=wait,
        )
    # command
    exact = _flag(options.get("exact", "no"), spec)
    return CommandProvisioner(arg, exact=exact, target=target, timeout=wait)
