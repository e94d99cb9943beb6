"""The mail store the POP3 and SMTP servers share: Maildir and mbox
maildrops, their locks and crash-safe writes (maildrop.py)."""
