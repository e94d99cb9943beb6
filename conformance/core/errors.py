"""Error types. Each carries an actionable message and maps to an exit code
(docs/cli.md): 2 = usage, config or scenario-file error; 3 = target
unreachable or provisioning failed."""

from __future__ import annotations


class MailspecError(Exception):
    exit_code = 2


class ScenarioError(MailspecError):
    """A scenario file is malformed: `file:line: field: what is wrong`."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.detail = path, line, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class ConfigError(MailspecError):
    """The target config file or a CLI flag is invalid; names the field/flag."""


class TargetUnreachable(MailspecError):
    """No POP3 server answered at the target address."""

    exit_code = 3


class ProvisionError(MailspecError):
    """The fixture could not be put into (or verified in) the target's store."""

    exit_code = 3
