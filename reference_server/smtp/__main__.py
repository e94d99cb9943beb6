"""``python -m reference_server.smtp``: see :mod:`reference_server.smtp.cli`."""

from reference_server.smtp.cli import main

raise SystemExit(main())
