"""``python -m reference_server.smtp``: see :mod:`reference_server.smtp.cli`."""

from reference_server.quick_exit import exit_now
from reference_server.smtp.cli import main

exit_now(main())
