"""A Hypothesis state machine of issuance against a municipality, checked after every step.

Rules: prepare (for one of three residents), retry a prepare, commit, cancel, advance the
clock, change a resident's name. The model (plain Python below) says what each answer must be;
invariants compare every reservation's state and the issue records with it after each step.
A failure comes back as CheckFailed whose ``sent`` holds the shrunk steps and the seed.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    invariant,
    precondition,
    rule,
)

from conformance import fixtures as fx
from conformance.failures import CheckFailed
from conformance.hypo import _notes, _trim, captured_report, suite_settings
from conformance.seal_meta import subject_digests
from conformance.target import short_text
from konbini.common.v1 import types_pb2
from konbini.seal import subject_digest
from konbini.testing.v1 import testing_pb2

K = types_pb2
RESIDENCE = 1
BOUNDARY = dt.timedelta(seconds=5)  # too close to an expiry to judge (clocks keep running)
ENDED = (K.ISSUANCE_STATE_EXPIRED, K.ISSUANCE_STATE_CANCELLED)


@dataclass
class ModelReservation:
    """The model's view of one reservation."""

    request: Any
    person: int
    state: int  # RESERVED, COMMITTED or CANCELLED (expiry is derived from the clock)
    expires_at: dt.datetime


SHRINK_BUDGET = 20.0  # seconds of shrinking against a remote target before settling


class ShrinkGate:
    """Bounds the time spent shrinking against a remote target: after ``budget`` seconds from
    the first failure, a run whose steps are not a prefix of a run already seen failing stops
    calling the target (and so passes), while runs seen failing are still replayed in full, so
    Hypothesis's final replay of the smallest one fails again."""

    def __init__(self, budget: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.monotonic = monotonic
        self.failing: list[tuple[Any, ...]] = []
        self.first_failure: float | None = None

    def record_failure(self, steps: tuple[Any, ...]) -> None:
        self.failing.append(steps)
        if self.first_failure is None:
            self.first_failure = self.monotonic()

    def allows(self, steps: tuple[Any, ...]) -> bool:
        if self.first_failure is None or self.monotonic() - self.first_failure <= self.budget:
            return True
        return any(f[: len(steps)] == steps for f in self.failing)


def gated(body: Callable[..., None]) -> Callable[..., None]:
    """A rule or invariant that logs its step, stops calling the target once the shrink gate
    says so, and reports the steps of a failing run to the gate."""

    @functools.wraps(body)
    def run(self: Any, **kwargs: Any) -> None:
        if body.__name__ not in INVARIANTS:
            self.steps.append((body.__name__, *sorted(kwargs.items())))
            if not self.dead and not self.gate.allows(tuple(self.steps)):
                self.dead = True
        if self.dead:
            return
        try:
            self.ensure_loaded()
            body(self, **kwargs)
        except CheckFailed:
            self.gate.record_failure(tuple(self.steps))
            raise

    return run


INVARIANTS = frozenset({"states_agree", "one_record_per_commit"})


def machine_for(ctx: Any, gate: ShrinkGate | None = None) -> type[RuleBasedStateMachine]:
    """The state machine class bound to a MunicipalityContext."""
    from conformance.checks.municipality import scenarios

    shared_gate = gate or ShrinkGate(SHRINK_BUDGET)

    class IssuanceMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.gate = shared_gate
            self.steps: list[Any] = []
            self.dead = False
            self.reservations: list[ModelReservation] = []
            self.committed: set[str] = set()
            self.ids: list[str] = []
            self.clock_set = ctx.now
            self.clock_mono = time.monotonic()

        # -- the model's clock (the target's clock keeps running after SetClock) --------
        def model_now(self) -> dt.datetime:
            return self.clock_set + dt.timedelta(seconds=time.monotonic() - self.clock_mono)

        def expired(self, r: ModelReservation) -> bool | None:
            """True / False, or None when too close to call."""
            delta = self.model_now() - r.expires_at
            if abs(delta) < BOUNDARY:
                return None
            return delta > dt.timedelta(0)

        @initialize()
        def load(self) -> None:
            # The target is provisioned at the first live step, so that a run the shrink gate
            # stops costs no call at all.
            self.data, self.people = scenarios.population(ctx, 3)
            self.loaded = False

        def ensure_loaded(self) -> None:
            if not self.loaded:
                ctx.wire.start_example()
                ctx.load(fx.dataset_of(self.data))
                self.clock_set, self.clock_mono = ctx.now, time.monotonic()
                self.loaded = True

        @rule(person=st.integers(0, 2))
        @gated
        def prepare(self, person: int) -> None:
            p = self.people[person]
            request = ctx.prepare_request(p.serial, RESIDENCE, fx.request_options(RESIDENCE))
            response = ctx.expect_issued(
                request, ctx.prepare(request), "ISSUE-TWO-PHASE", "an eligible adult"
            )
            want = subject_digest(ctx.code, [(p.id, self.data.residents[person].name)])
            if any(d != want for d in subject_digests(response.documents)):
                raise CheckFailed(
                    "FRESH-NEXT",
                    short_text(request),
                    "another subject digest",
                    "the document does not show the register as it is now",
                )
            self.reservations.append(
                ModelReservation(
                    request,
                    person,
                    K.ISSUANCE_STATE_RESERVED,
                    response.expires_at.ToDatetime(tzinfo=dt.UTC),
                )
            )
            self.ids.append(response.reservation_id)

        @precondition(lambda self: bool(self.reservations))
        @rule(pick=st.integers(0, 7))
        @gated
        def retry_prepare(self, pick: int) -> None:
            n = pick % len(self.reservations)
            request = self.reservations[n].request
            answer = ctx.prepare(request)
            if not answer.ok or answer.response.reservation_id != self.ids[n]:  # type: ignore[union-attr]
                raise CheckFailed(
                    "ONCE-REQUEST-ID",
                    short_text(request),
                    answer.describe(),
                    f"a retry did not return reservation {self.ids[n]}",
                )

        @precondition(lambda self: bool(self.reservations))
        @rule(pick=st.integers(0, 7))
        @gated
        def commit(self, pick: int) -> None:
            n = pick % len(self.reservations)
            r = self.reservations[n]
            expired = self.expired(r)
            answer = ctx.commit(self.ids[n])
            if r.state == K.ISSUANCE_STATE_CANCELLED:
                ctx.expect_refused(
                    f"commit {self.ids[n]}",
                    answer,
                    {"RESERVATION_CANCELLED"},
                    "ISSUE-CANCELLED-FINAL",
                    "cancelled before",
                )
            elif r.state == K.ISSUANCE_STATE_COMMITTED:
                if not answer.ok and answer.error.reason != "RESERVATION_COMMITTED":  # type: ignore[union-attr]
                    raise CheckFailed(
                        "ONCE-REQUEST-ID",
                        f"commit {self.ids[n]} again",
                        answer.describe(),
                        "a second commit was refused oddly",
                    )
            elif expired is True:
                ctx.expect_refused(
                    f"commit {self.ids[n]}",
                    answer,
                    {"RESERVATION_EXPIRED"},
                    "ISSUE-EXPIRY",
                    "past its expiry",
                )
                r.state = K.ISSUANCE_STATE_EXPIRED
            elif expired is False:
                if not answer.ok:
                    raise CheckFailed(
                        "ISSUE-TWO-PHASE",
                        f"commit {self.ids[n]}",
                        answer.describe(),
                        "commit of a live reservation failed",
                    )
                r.state = K.ISSUANCE_STATE_COMMITTED
                self.committed.add(self.ids[n])
            elif answer.ok:  # too close to call: follow what the target decided
                r.state = K.ISSUANCE_STATE_COMMITTED
                self.committed.add(self.ids[n])

        @precondition(lambda self: bool(self.reservations))
        @rule(pick=st.integers(0, 7))
        @gated
        def cancel(self, pick: int) -> None:
            n = pick % len(self.reservations)
            r = self.reservations[n]
            answer = ctx.cancel(self.ids[n])
            if r.state == K.ISSUANCE_STATE_COMMITTED:
                ctx.expect_refused(
                    f"cancel {self.ids[n]}",
                    answer,
                    {"RESERVATION_COMMITTED"},
                    "ISSUE-COMMITTED-FINAL",
                    "committed before",
                )
            elif not answer.ok:
                raise CheckFailed(
                    "ISSUE-TWO-PHASE",
                    f"cancel {self.ids[n]}",
                    answer.describe(),
                    "cancel of an uncommitted reservation failed",
                )
            elif r.state == K.ISSUANCE_STATE_RESERVED and self.expired(r) is False:
                r.state = K.ISSUANCE_STATE_CANCELLED

        @rule(minutes=st.sampled_from((1, 4, 9, 11, 25)))
        @gated
        def advance_clock(self, minutes: int) -> None:
            self.clock_set = self.model_now() + dt.timedelta(minutes=minutes)
            self.clock_mono = time.monotonic()
            ctx.set_clock(self.clock_set)

        @rule(person=st.integers(0, 2), surname=st.sampled_from(fx.SURNAMES))
        @gated
        def change_name(self, person: int, surname: str) -> None:
            resident = self.data.residents[person]
            resident.name = f"{surname} {resident.name.split(' ')[-1]}"
            ctx.fixture.LoadDataset(
                testing_pb2.LoadDatasetRequest(
                    request_id=ctx.rid("load"), replace=True, municipality=fx.dataset_of(self.data)
                )
            )

        @invariant()
        @gated
        def states_agree(self) -> None:
            for n, r in enumerate(self.reservations):
                answer = ctx.reservation(reservation_id=self.ids[n])
                if not answer.ok:
                    raise CheckFailed(
                        "DURABLE-CRASH",
                        f"GetReservation({self.ids[n]})",
                        answer.describe(),
                        "a reservation vanished",
                    )
                got = answer.response.state  # type: ignore[union-attr]
                expired = self.expired(r)
                if r.state == K.ISSUANCE_STATE_COMMITTED:
                    want: tuple[int, ...] = (K.ISSUANCE_STATE_COMMITTED,)
                elif r.state in ENDED or expired is True:
                    want = ENDED
                elif expired is None:
                    continue
                else:
                    want = (K.ISSUANCE_STATE_RESERVED,)
                if got not in want:
                    raise CheckFailed(
                        "ISSUE-TWO-PHASE",
                        f"GetReservation({self.ids[n]})",
                        K.IssuanceState.Name(got),
                        f"the model expects {[K.IssuanceState.Name(w) for w in want]}",
                    )

        @invariant()
        @gated
        def one_record_per_commit(self) -> None:
            if not self.reservations:
                return
            records = [r.reservation_id for r in ctx.issue_records()]
            if sorted(records) != sorted(self.committed):
                raise CheckFailed(
                    "ONCE-REQUEST-ID",
                    "ListIssueRecords",
                    str(records),
                    f"the model committed {sorted(self.committed)}",
                )

    return IssuanceMachine


def run_machine(
    ctx: Any, *, seed: int, examples: int, steps: int = 8, shrink_budget: float = SHRINK_BUDGET
) -> None:
    """Run the machine; on failure the CheckFailed carries the shrunk steps and the seed."""
    machine = machine_for(ctx, ShrinkGate(shrink_budget))
    test = get_state_machine_test(machine, settings=suite_settings(examples, steps=steps))
    test = hypothesis.seed(seed)(test)
    with captured_report() as lines:
        try:
            test()
        except CheckFailed as failure:
            failure.sent = f"{failure.sent}\n-- shrunk steps (seed {seed}):\n" + _trim(
                lines + _notes(failure)
            )
            raise
