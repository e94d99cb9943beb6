"""The client side of the SASL mechanisms the AUTH scenarios use (RFC 5034),
as expression functions: `{sasl_plain(user, password)}` in a `C:` line.

PLAIN (RFC 4616), LOGIN (its two base64 prompts), CRAM-MD5 (RFC 2195) and
SCRAM-SHA-256 (RFC 7677, through `scramp`, no channel binding). Every value
crosses the wire as base64 (RFC 5034 §4). SCRAM keeps per-session state:
`ScramExchanges` holds it for one scenario run."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from conformance.core.expressions import ExpressionError

SCRAM_MECHANISM = "SCRAM-SHA-256"


def b64(text: Any) -> str:
    """base64 of text (UTF-8) or bytes; '' stays ''."""
    data = text if isinstance(text, bytes) else str(text).encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def b64_octets(text: Any) -> str:
    """base64 of text taken as octets (each character U+0000-U+00FF one
    octet, as in `send:`): for invalid UTF-8 in a SASL message."""
    try:
        return base64.b64encode(str(text).encode("latin-1")).decode("ascii")
    except UnicodeEncodeError:
        raise ExpressionError(f"b64_octets: {text!r} holds a character above U+00FF") from None


def unb64(text: Any) -> str:
    """The text a base64 challenge carries (UTF-8, undecodable octets as
    U+FFFD); ExpressionError if it is not base64."""
    return _decode(text).decode("utf-8", errors="replace")


def _decode(text: Any) -> bytes:
    try:
        return base64.b64decode(str(text).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ExpressionError(f"not base64: {text!r}") from None


def sasl_plain(authcid: Any, password: Any, authzid: Any = "") -> str:
    """RFC 4616 §2: [authzid] NUL authcid NUL passwd, base64."""
    return b64(f"{authzid}\0{authcid}\0{password}")


def cram_md5(challenge: Any, user: Any, secret: Any) -> str:
    """RFC 2195: user SP hex(HMAC-MD5(secret, challenge)), base64."""
    digest = hmac.new(str(secret).encode("utf-8"), _decode(challenge), hashlib.md5).hexdigest()
    return b64(f"{user} {digest}")


class ScramExchanges:
    """SCRAM-SHA-256 clients by session name, for one scenario."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def functions(self, session: str) -> dict[str, Callable[..., Any]]:
        """`scram_first(user, password)`, `scram_final(server_first)` and
        `scram_verify(server_final)` bound to `session`."""
        return {
            "__fn_scram_first__": lambda user, password: self.first(session, user, password),
            "__fn_scram_final__": lambda server_first: self.final(session, server_first),
            "__fn_scram_verify__": lambda server_final: self.verify(session, server_final),
        }

    def first(self, session: str, user: Any, password: Any) -> str:
        import scramp

        client = scramp.ScramClient([SCRAM_MECHANISM], str(user), str(password))
        self._clients[session] = client
        return b64(client.get_client_first())

    def final(self, session: str, server_first: Any) -> str:
        import scramp

        client = self._client(session)
        try:
            client.set_server_first(_decode(server_first).decode("utf-8"))
        except (scramp.ScramException, UnicodeDecodeError) as exc:
            raise ExpressionError(f"scram_final: the server-first message is bad: {exc}") from None
        return b64(client.get_client_final())

    def verify(self, session: str, server_final: Any) -> bool:
        """True when the server proved it knows the password (RFC 5802 §3)."""
        import scramp

        client = self._client(session)
        try:
            client.set_server_final(_decode(server_final).decode("utf-8"))
        except (scramp.ScramException, UnicodeDecodeError):
            return False
        return True

    def _client(self, session: str) -> Any:
        client = self._clients.get(session)
        if client is None:
            raise ExpressionError("scram_first() has not been called on this session")
        return client


PURE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "__fn_b64__": b64,
    "__fn_b64_octets__": b64_octets,
    "__fn_unb64__": unb64,
    "__fn_sasl_plain__": sasl_plain,
    "__fn_cram_md5__": cram_md5,
}
