"""Top-level test configuration.

pytest only honours `pytest_plugins` in the rootdir conftest, so plugins the
test packages need are enabled here: `pytester` drives the pytest plugin
(tests/cli) in a sandboxed pytest run.
"""

pytest_plugins = ["pytester"]
