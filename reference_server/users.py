"""The users file: one ``user:secret`` per line; ``#`` comments and blank lines.

The secret is everything after the first ``:`` (so it may contain ``:``).
Trailing CR/LF are stripped, other whitespace is kept as part of the secret.

Each user logs in by exactly one method (RFC 1939 section 13 recommends
it): a plain line makes a USER/PASS user; a line starting with the word
``apop`` and a space (``apop alice:secret``) makes an APOP user (the server
must run with ``--apop``), for whom PASS is refused.
"""

from __future__ import annotations

from pathlib import Path

from .protocol import LoginMethod, UserDirectory


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
