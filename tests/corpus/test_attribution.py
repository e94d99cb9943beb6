"""Every failure lands on the requirement that broke (issue 8 item 5).

A scenario that lists several requirements must say, on each step that
checks something, which of them the step checks (`requirement:`);
otherwise its failures land on the first requirement of the list, which
is the wrong one for every other step. Only the set-up and tear-down of a
session may stay unattributed: the greeting read right after `open`, and
the closing `C: QUIT` with its reply and `expect_close` when nothing else
follows on that session."""

from __future__ import annotations

from collections import defaultdict, deque

import harness

from conformance.core.scenario import (
    AliveOrClosedStep,
    AssertStep,
    CommandStep,
    ExpectCloseStep,
    ExpectOpenStep,
    MailboxSameStep,
    NotAuthenticatedStep,
    OpenStep,
    PipelineStep,
    RecoverStep,
    ReplyStep,
    Scenario,
    SendStep,
    Step,
)

CHECKING_STEPS = (
    ReplyStep,
    AssertStep,
    ExpectCloseStep,
    ExpectOpenStep,
    AliveOrClosedStep,
    RecoverStep,
    MailboxSameStep,
    NotAuthenticatedStep,
)
#: Oracles that open a connection of their own: they do not continue the
#: session they are written on.
OWN_CONNECTION = (RecoverStep, MailboxSameStep)


def _literal(template: tuple[object, ...]) -> str:
    return "".join(part for part in template if isinstance(part, str))


def _verb(text: str) -> str:
    words = text.split()
    return words[0].upper() if words else ""


def housekeeping_steps(scenario: Scenario) -> set[int]:
    """Indexes of the greeting reads and of each session's closing QUIT."""
    exempt: set[int] = set()
    previous: dict[str, Step] = {}
    sent: dict[str, deque[str]] = defaultdict(deque)
    last_of_session: dict[str, int] = {}
    for step in scenario.steps:
        last_of_session[step.session] = step.index
    quit_reply: dict[str, int] = {}
    for step in scenario.steps:
        session = step.session
        if isinstance(step, CommandStep | SendStep):
            sent[session].append(_verb(_literal(step.template)))
        elif isinstance(step, PipelineStep):
            sent[session].extend(_verb(_literal(t)) for t in step.templates)
        elif isinstance(step, ReplyStep):
            if isinstance(previous.get(session), OpenStep):
                exempt.add(step.index)
            elif sent[session] and sent[session].popleft() == "QUIT":
                quit_reply[session] = step.index
        previous[session] = step
    for session, index in quit_reply.items():
        tail = [
            s
            for s in scenario.steps
            if s.session == session and s.index > index and s.index <= last_of_session[session]
            if not isinstance(s, OWN_CONNECTION)
        ]
        if all(isinstance(s, ExpectCloseStep) for s in tail):
            exempt.add(index)
            exempt.update(s.index for s in tail)
    return exempt


def unattributed(scenario: Scenario) -> list[str]:
    exempt = housekeeping_steps(scenario)
    return [
        f"step {step.index} ({step.text})"
        for step in scenario.steps
        if isinstance(step, CHECKING_STEPS) and step.requirement is None
        if step.index not in exempt
    ]


def test_multi_requirement_scenarios_attribute_every_checking_step():
    missing = {
        scenario.id: unattributed(scenario)
        for scenario in harness.corpus()
        if len(scenario.requirements) > 1 and unattributed(scenario)
    }
    assert missing == {}


def test_housekeeping_is_only_the_greeting_and_the_closing_quit():
    by_id = {s.id: s for s in harness.corpus()}
    scenario = by_id["stat.drop-listing"]
    texts = {s.index: s.text for s in scenario.steps}
    shown = sorted(texts[i] for i in housekeeping_steps(scenario))
    assert all(t.startswith(("S:", "expect_close")) for t in shown), shown
    assert texts[min(housekeeping_steps(scenario))].startswith("S:")
