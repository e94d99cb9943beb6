"""Interop tests run real servers installed from Debian; they skip, naming
the missing binary, when the server is not installed (`.ci/run` installs
dovecot-pop3d and mailutils-pop3d)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for path in (str(REPO), str(Path(__file__).resolve().parent)):
    if path not in sys.path:
        sys.path.insert(0, path)
