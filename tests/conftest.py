"""Top-level test configuration.

pytest only honours `pytest_plugins` in the rootdir conftest, so plugins the
test packages need are enabled here: `pytester` drives the pytest plugin
(tests/cli) in a sandboxed pytest run.
"""

import signal
from collections.abc import Iterator

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def sigint_reaches_children() -> Iterator[None]:
    """Children started during the test get SIGINT's default action, as a
    terminal's foreground job does, whatever this pytest inherited: a shell
    runs a background job (`cmd &`) with SIGINT ignored, exec keeps an
    ignored signal ignored, and Python then installs no KeyboardInterrupt
    handler, so a Ctrl-C test would send a signal nobody receives. A
    Python-level handler here is reset to the default in every exec'd child."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
