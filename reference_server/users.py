"""Users the POP3 and SMTP servers share (`UserDirectory`), and the users
file: one ``user:secret`` per line; ``#`` comments and blank lines.

The secret is everything after the first ``:`` (so it may contain ``:``).
Trailing CR/LF are stripped, other whitespace is kept as part of the secret.

Each user logs in by exactly one method (RFC 1939 section 13 recommends
it): a plain line makes a USER/PASS user; a line starting with the word
``apop`` and a space (``apop alice:secret``) makes an APOP user (the server
must run with ``--apop``), for whom PASS is refused.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path


class LoginMethod(enum.Enum):
    """How a user may authenticate. RFC 1939 section 13 recommends one
    method per user, so a user is either a PASS user or an APOP user."""

    PASS = "pass"
    APOP = "apop"


class UserDirectory:
    """Maps user names to their shared secret and their one login method,
    and records which users may act as others (the SASL authzid)."""

    def __init__(self, secrets_by_user: Mapping[str, str] | None = None) -> None:
        self._secrets: dict[str, str] = dict(secrets_by_user or {})
        self._methods: dict[str, LoginMethod] = {}
        self._proxies: dict[str, set[str]] = {}

    def secret_for(self, user: str) -> str | None:
        return self._secrets.get(user)

    def method_for(self, user: str) -> LoginMethod:
        return self._methods.get(user, LoginMethod.PASS)

    def set(self, user: str, secret: str, method: LoginMethod = LoginMethod.PASS) -> None:
        self._secrets[user] = secret
        self._methods[user] = method

    def remove(self, user: str) -> None:
        self._secrets.pop(user, None)
        self._methods.pop(user, None)
        self._proxies.pop(user, None)

    def clear(self) -> None:
        self._secrets.clear()
        self._methods.clear()
        self._proxies.clear()

    def accepts_plaintext_password(self, user: str) -> bool:
        """PASS, and the SASL mechanisms that carry the password, are for PASS users."""
        return user in self._secrets and self.method_for(user) is LoginMethod.PASS

    def grant(self, authcid: str, authzid: str) -> None:
        """Let ``authcid``'s credentials open ``authzid``'s maildrop (RFC 4616 section 2)."""
        self._proxies.setdefault(authcid, set()).add(authzid)

    def may_act_as(self, authcid: str, authzid: str) -> bool:
        return authzid in self._proxies.get(authcid, set()) and authzid in self._secrets

    def names(self) -> list[str]:
        return list(self._secrets)


class UsersFileError(ValueError):
    """The users file is missing or has a line that names no user."""


def parse_users(text: str, source: str = "users file") -> UserDirectory:
    users = UserDirectory()
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        method = LoginMethod.PASS
        if line.startswith("apop "):
            method, line = LoginMethod.APOP, line[len("apop ") :]
        name, separator, secret = line.partition(":")
        if not separator or not name or "/" in name or name in {".", ".."} or " " in name:
            raise UsersFileError(
                f"{source}:{line_number}: expected 'user:password' with a user name "
                "without '/' or spaces"
            )
        users.set(name, secret, method)
    return users


def load_users_file(path: Path) -> UserDirectory:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsersFileError(f"users file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as problem:
        raise UsersFileError(f"users file {str(path)!r} cannot be read: {problem}") from None
    return parse_users(text, str(path))
