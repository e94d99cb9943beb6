"""mailspec reference POP3 server (RFC 1939 + RFC 2449, LAST from RFC 1225,
STLS and pop3s, SASL AUTH, UTF8/LANG).

Layout:

* :mod:`reference_server.pop3.protocol` -- sans-I/O state machine, ``Pop3Session``
* :mod:`reference_server.sasl`     -- SASL mechanisms for AUTH (sans-I/O)
* :mod:`reference_server.tls`      -- the TLS server context
* :mod:`reference_server.store.maildrop`  -- Maildir / mbox maildrops and locking
* :mod:`reference_server.pop3.server`   -- asyncio transport, ``start_server``
* :mod:`reference_server.users`    -- users file
* :mod:`reference_server.cli`      -- ``python -m reference_server``
* :mod:`reference_server.pytest_plugin` -- the ``pop3_server`` fixture

Extension seam: subclass :class:`Pop3Session` (override ``cmd_<keyword>``)
and/or a store (``MaildirStore`` / ``MboxStore`` with its ``maildrop_class``
overriding ``octet_count`` or ``commit``), then
``start_server(store=..., users=..., session_class=..., port=0)``.
"""

from reference_server.pop3.protocol import (
    CommandError,
    LoginHistory,
    Pop3Session,
    Reply,
    Response,
    SessionConfig,
    State,
    UserDirectory,
    err,
    ok,
)
from reference_server.pop3.server import Pop3Server, ServerHandle, ServerSettings, start_server
from reference_server.store.maildrop import (
    MaildirMaildrop,
    MaildirStore,
    Maildrop,
    MaildropError,
    MaildropLocked,
    MaildropStore,
    MboxMaildrop,
    MboxStore,
    StoredMessage,
    store_from_spec,
)

__all__ = [
    "CommandError",
    "LoginHistory",
    "MaildirMaildrop",
    "MaildirStore",
    "Maildrop",
    "MaildropError",
    "MaildropLocked",
    "MaildropStore",
    "MboxMaildrop",
    "MboxStore",
    "Pop3Server",
    "Pop3Session",
    "Reply",
    "Response",
    "ServerHandle",
    "ServerSettings",
    "SessionConfig",
    "State",
    "StoredMessage",
    "UserDirectory",
    "err",
    "ok",
    "start_server",
    "store_from_spec",
]
