"""``python -m reference_server``: see :mod:`reference_server.cli`."""

from reference_server.cli import main
from reference_server.quick_exit import exit_now

exit_now(main())
