"""The POP3 server: the sans-I/O session table (protocol.py) and its asyncio
transport (server.py)."""
