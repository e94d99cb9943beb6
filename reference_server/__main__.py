"""``python -m reference_server``: see :mod:`reference_server.cli`."""

from reference_server.cli import main

raise SystemExit(main())
