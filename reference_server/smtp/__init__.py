"""mailspec reference SMTP server (RFC 5321 and its common extensions).

Layout, mirroring the POP3 server beside it:

* :mod:`reference_server.smtp.protocol` -- sans-I/O state machine, ``SmtpSession``
* :mod:`reference_server.smtp.delivery` -- crash-safe delivery into the shared store
* :mod:`reference_server.smtp.server`   -- asyncio transport, STARTTLS, smtps,
  ``start_smtp_server``
* :mod:`reference_server.smtp.cli`      -- ``python -m reference_server.smtp``

Messages land in the same Maildir / mbox maildrops the POP3 server reads,
so mail sent over SMTP is retrieved over POP3 (see
:mod:`reference_server.combined`).
"""

from reference_server.smtp.delivery import Deliverer, DeliveryError, Envelope
from reference_server.smtp.protocol import (
    CommandError,
    Reply,
    Response,
    SmtpConfig,
    SmtpSession,
    State,
    reply,
)
from reference_server.smtp.server import (
    SmtpServer,
    SmtpServerHandle,
    SmtpSettings,
    start_smtp_server,
)

__all__ = [
    "CommandError",
    "Deliverer",
    "DeliveryError",
    "Envelope",
    "Reply",
    "Response",
    "SmtpConfig",
    "SmtpServer",
    "SmtpServerHandle",
    "SmtpSession",
    "SmtpSettings",
    "State",
    "reply",
    "start_smtp_server",
]
