"""POP3 (RFC 1939 and extensions): reply reader and framing oracle,
capability probe, login, maildrop set-up checks and verification."""
