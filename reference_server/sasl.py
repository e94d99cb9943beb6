"""SASL mechanisms for the POP3 AUTH command (RFC 5034), with no I/O.

A mechanism is a small state machine: :meth:`Mechanism.start` takes the
optional initial response, :meth:`Mechanism.respond` each decoded client
response, and both return one :data:`Step` -- a :class:`Challenge` to send
as ``+ <base64>``, :class:`Authenticated` with the user to log in as, or
:class:`Refused`.  Base64 framing, ``*`` cancellation and the session state
live in :mod:`.protocol`; this module sees decoded octets only.

Every mechanism works from the users file's plaintext secret:

* ``PLAIN`` (RFC 4616): ``authzid NUL authcid NUL password``; an authzid other
  than the authcid is refused unless the directory grants it.
* ``LOGIN`` (draft-murchison-sasl-login): ``Username:`` then ``Password:``.
* ``CRAM-MD5`` (RFC 2195): HMAC-MD5 of a one-time challenge.
* ``SCRAM-SHA-256`` (RFC 7677 / RFC 5802), server side by ``scramp``; the
  salted keys are derived from the secret at the start of each exchange.

PLAIN and LOGIN carry the password itself, so like PASS they serve only
users whose login method is PASS (RFC 1939 section 13: one method per user);
CRAM-MD5 and SCRAM keep the secret off the wire and serve every user.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

# scramp (and the asn1crypto and importlib.metadata it loads, ~30 ms) is
# imported at the first AUTH that needs it, not at every server start.

#: RFC 4616 section 2 (POP3-4616-PLAIN-02): each PLAIN field may be 255 octets.
MAX_PLAIN_FIELD_OCTETS = 255
#: RFC 7677 section 4: SCRAM-SHA-256 iteration count of at least 4096.
SCRAM_ITERATIONS = 4096


@dataclass(frozen=True)
class Challenge:
    """Send ``+ <base64 of data>`` and wait for the next client response."""

    data: bytes


@dataclass(frozen=True)
class Authenticated:
    """The exchange proved the credentials of ``user`` (the authorization id)."""

    user: str


@dataclass(frozen=True)
class Refused:
    """The exchange ends with ``-ERR``; ``credentials`` marks an ``[AUTH]`` failure."""

    text: str
    credentials: bool = True


Step = Challenge | Authenticated | Refused


class Credentials(Protocol):
    """What a mechanism asks of the user directory."""

    def secret_for(self, user: str) -> str | None: ...

    def accepts_plaintext_password(self, user: str) -> bool: ...

    def may_act_as(self, authcid: str, authzid: str) -> bool: ...


class Mechanism:
    """One AUTH exchange. Subclasses set :attr:`name` and the two flags."""

    name: ClassVar[str]
    #: RFC 5034 section 4: an initial response given to a mechanism that
    #: cannot start with client data is refused.
    accepts_initial_response: ClassVar[bool] = True
    #: The password itself crosses the wire (RFC 2595 section 6, RFC 5034 section 4).
    plaintext: ClassVar[bool] = False

    def __init__(self, users: Credentials, hostname: str) -> None:
        self.users = users
        self.hostname = hostname

    def start(self, initial: bytes | None) -> Step:
        raise NotImplementedError

    def respond(self, data: bytes) -> Step:
        raise NotImplementedError

    def check_password(self, user: str, password: str) -> bool:
        secret = self.users.secret_for(user)
        if secret is None or not self.users.accepts_plaintext_password(user):
            return False
        return hmac.compare_digest(secret.encode("utf-8"), password.encode("utf-8"))


def _text(data: bytes) -> str | None:
    """UTF-8 text without NUL, else None (RFC 4616 section 2: fields are UTF-8)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def _prepared(identity: str) -> str | None:
    """`identity` after SASLprep (RFC 4013), or None when prohibited
    characters make it invalid."""
    import scramp  # type: ignore[import-untyped]
    from scramp.utils import saslprep

    try:
        return str(saslprep(identity))
    except (ValueError, scramp.ScramException):  # scramp raises its own type for
        return None  # prohibited characters (RFC 4013 section 2.3), e.g. controls


class PlainMechanism(Mechanism):
    """RFC 4616: one message, ``[authzid] NUL authcid NUL passwd``."""

    name = "PLAIN"
    plaintext = True

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")  # RFC 5034 section 4: empty challenge
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        fields = data.split(b"\x00")
        if len(fields) != 3:  # RFC 4616 section 2: exactly two NUL separators
            return Refused("malformed PLAIN message")
        texts = [_text(field) for field in fields]
        authzid, authcid, password = texts
        if authzid is None or authcid is None or password is None:
            return Refused("PLAIN fields must be UTF-8")
        if not authcid or not password:  # RFC 4616 section 2: empty fails
            return Refused("invalid user name or password")
        if not self.check_password(authcid, password):
            return Refused("invalid user name or password")
        # RFC 4616 section 2 / RFC 5034 section 4: compare identities as
        # SASLprep (RFC 4013) prepares them, so equal names match equal.
        prepared = _prepared(authzid) if authzid else ""
        if prepared is None:
            return Refused("authorization identity is not a valid SASLprep string")
        if prepared and prepared != authcid and not self.users.may_act_as(authcid, prepared):
            return Refused("not authorised to act as that user")
        return Authenticated(prepared or authcid)


class LoginMechanism(Mechanism):
    """The LOGIN mechanism: user name and password as two responses.

    An initial response, when given and not empty, is taken as the user name
    (draft-murchison-sasl-login section 2.1 allows it)."""

    name = "LOGIN"
    plaintext = True

    def __init__(self, users: Credentials, hostname: str) -> None:
        super().__init__(users, hostname)
        self.user: str | None = None

    def start(self, initial: bytes | None) -> Step:
        if initial:
            return self.respond(initial)
        return Challenge(b"Username:")

    def respond(self, data: bytes) -> Step:
        text = _text(data)
        if text is None:
            return Refused("LOGIN responses must be UTF-8")
        if self.user is None:
            if not text:
                return Refused("invalid user name or password")
            self.user = text
            return Challenge(b"Password:")
        if not text or not self.check_password(self.user, text):
            return Refused("invalid user name or password")
        return Authenticated(self.user)


class CramMd5Mechanism(Mechanism):
    """RFC 2195: the client answers ``user SP hex(HMAC-MD5(secret, challenge))``."""

    name = "CRAM-MD5"
    accepts_initial_response = False

    def __init__(self, users: Credentials, hostname: str) -> None:
        super().__init__(users, hostname)
        self.challenge = (
            f"<{os.getpid()}.{secrets.token_hex(8)}.{int(time.time())}@{hostname}>"
        ).encode("ascii")

    def start(self, initial: bytes | None) -> Step:
        return Challenge(self.challenge)

    def respond(self, data: bytes) -> Step:
        text = _text(data)
        if text is None or " " not in text:
            return Refused("malformed CRAM-MD5 response")
        user, _, digest = text.rpartition(" ")
        secret = self.users.secret_for(user)
        if secret is None:
            return Refused("invalid user name or password")
        expected = hmac.new(secret.encode("utf-8"), self.challenge, hashlib.md5).hexdigest()
        if not hmac.compare_digest(expected, digest.lower()):
            return Refused("invalid user name or password")
        return Authenticated(user)


class ScramSha256Mechanism(Mechanism):
    """RFC 7677 SCRAM-SHA-256 without channel binding, through ``scramp``.

    POP3 cannot carry data on ``+OK`` (RFC 5034 section 4), so the server's
    final message is one more challenge; the client's empty answer ends it.
    An unknown user gets keys made from a random secret, so the refusal
    comes at the proof and does not reveal who exists."""

    name = "SCRAM-SHA-256"

    def __init__(self, users: Credentials, hostname: str) -> None:
        import scramp

        super().__init__(users, hostname)
        self._mechanism = scramp.ScramMechanism("SCRAM-SHA-256")
        self._server = self._mechanism.make_server(self._auth_info)
        self._user: str | None = None
        self._respond: Callable[[bytes], Step] = self._client_first

    def _auth_info(self, user: str) -> tuple[bytes, bytes, bytes, int]:
        self._user = user
        secret = self.users.secret_for(user)
        if secret is None:
            secret = secrets.token_hex(16)
        info: tuple[bytes, bytes, bytes, int] = self._mechanism.make_auth_info(
            secret, iteration_count=SCRAM_ITERATIONS
        )
        return info

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        text = _text(data)
        if text is None:
            return Refused("SCRAM messages must be UTF-8", credentials=False)
        import scramp

        try:
            return self._respond(data)
        except scramp.ScramException:
            return Refused("SCRAM authentication failed")

    def _client_first(self, data: bytes) -> Step:
        self._server.set_client_first(data.decode("utf-8"))
        self._respond = self._client_final
        return Challenge(self._server.get_server_first().encode("utf-8"))

    def _client_final(self, data: bytes) -> Step:
        self._server.set_client_final(data.decode("utf-8"))
        self._respond = self._acknowledged
        return Challenge(self._server.get_server_final().encode("utf-8"))

    def _acknowledged(self, data: bytes) -> Step:
        if data or self._user is None:
            return Refused("expected an empty response after the server's final message")
        return Authenticated(self._user)


MECHANISMS: dict[str, type[Mechanism]] = {
    mechanism.name: mechanism
    for mechanism in (PlainMechanism, LoginMechanism, CramMd5Mechanism, ScramSha256Mechanism)
}
DEFAULT_MECHANISMS: tuple[str, ...] = tuple(MECHANISMS)
