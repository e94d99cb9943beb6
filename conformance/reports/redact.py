"""Last line of defence for secrets: replace every known password in a run's
messages, failures and transcript before anything is written. The engine
already redacts PASS/APOP/AUTH arguments; this also catches a server that
echoes a password back."""

from __future__ import annotations

import dataclasses

from conformance.core.results import RunResult

MASK = "***"


def scrub_text(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


def scrub_run(run: RunResult, secrets: list[str]) -> None:
    if not secrets:
        return
    raw = [(s.encode("utf-8"), MASK.encode()) for s in secrets]
    for r in run.results:
        r.message = scrub_text(r.message, secrets)
        r.failures = [
            dataclasses.replace(
                f,
                expected=scrub_text(f.expected, secrets),
                actual=scrub_text(f.actual, secrets),
                step_text=scrub_text(f.step_text, secrets),
            )
            for f in r.failures
        ]
        entries = []
        for e in r.transcript:
            data = e.data
            for secret, mask in raw:
                data = data.replace(secret, mask)
            entries.append(e if data == e.data else dataclasses.replace(e, data=data))
        r.transcript = entries
    run.target.greeting = scrub_text(run.target.greeting, secrets)
