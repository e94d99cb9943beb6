"""mailspec conformance suite: replays YAML scenarios against a POP3 target."""

__version__ = "0.1.0"
