"""SMTP in the suite (RFC 5321): the reply reader and its framing rules.

* :mod:`conformance.smtp.reader`  -- sans-I/O, incremental reader of SMTP replies
* :mod:`conformance.smtp.framing` -- the reply-grammar rules it reports against
"""
