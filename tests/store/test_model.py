"""Model-based test: random sequences of create/begin/heartbeat/complete/fail/reset/expire, run
against an independent model of the rules and against several backends at once.

The model is written from the design page, not from ``rules.py``: it predicts which calls succeed
and what the build looks like after each step. Every backend must match the model and so each
other; milestones complete only in plan order, ``current_state`` never decreases except by a
reset, and history is append-only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.store import BuildStore
from tests.conftest import FakeClock

PLAN = [0, 5, 10, 15, 100]
LEASE = 30
BACKENDS = ["sqlite", "file", "dynalite", "s3", "azblob", "gs"]


@dataclass
class ModelLease:
    ref: int
    owner: str
    code: int
    fresh: bool = True


@dataclass
class Model:
    completed: list[int] = field(default_factory=lambda: [0])
    lease: ModelLease | None = None
    attempts: dict[int, str] = field(default_factory=dict)  # token ref -> status
    codes: dict[int, int] = field(default_factory=dict)  # token ref -> milestone
    completed_by: dict[int, int] = field(default_factory=dict)  # milestone -> token ref that completed it

    @property
    def next_code(self) -> int | None:
        return next((c for c in PLAN if c not in self.completed), None)

    def abandon_stale(self) -> None:
        if self.lease is not None and not self.lease.fresh:
            self.attempts[self.lease.ref] = "abandoned"
            self.lease = None


def _outcome(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return "ok", call()
    except Conflict:
        return "conflict", None


def make_machine(stores: list[BuildStore], clock: FakeClock) -> type[RuleBasedStateMachine]:
    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.model = Model()
            self.build_id = f"m{id(self)}-{clock.now.timestamp():.0f}"
            self.tokens: dict[int, list[str]] = {}  # ref -> token in each store
            self.histories: list[list[tuple[int, int, str, str]]] = [[] for _ in stores]
            self.state_floor = 0

        @initialize()
        def create(self) -> None:
            for store in stores:
                # The model has no attempt cap (tests/store/test_lifecycle.py proves it): 30 steps
                # could otherwise begin one milestone more than the default 10 times.
                store.create_build(
                    self.build_id, pipeline="model", cloud="local", image_type="t", plan=PLAN, max_attempts=1000
                )

        def _all(self, call: Callable[[BuildStore, int], object]) -> list[tuple[str, object]]:
            outcomes = [_outcome(lambda s=store, i=i: call(s, i)) for i, store in enumerate(stores)]
            kinds = {kind for kind, _ in outcomes}
            assert len(kinds) == 1, (
                f"backends disagree: {[(s.url.split(':')[0], k) for s, (k, _) in zip(stores, outcomes, strict=True)]}"
            )
            return outcomes

        @rule(code=st.sampled_from(PLAN), owner=st.sampled_from(["a", "b"]))
        def begin(self, code: int, owner: str) -> None:
            m = self.model
            outcomes = self._all(lambda s, i: s.begin(self.build_id, code, owner=owner, lease_seconds=LEASE))
            kind = outcomes[0][0]
            lease = m.lease
            if code in m.completed:
                expected = "conflict"
            elif lease is not None and lease.fresh:
                expected = "same" if (lease.owner, lease.code) == (owner, code) else "conflict"
            elif code != m.next_code:
                expected = "conflict"
            else:
                expected = "new"
            assert kind == ("conflict" if expected == "conflict" else "ok"), (expected, kind)
            if expected == "same":
                assert lease is not None
                assert [o.token for _, o in outcomes] == self.tokens[lease.ref]  # type: ignore[attr-defined]
            if expected == "new":
                m.abandon_stale()
                ref = len(self.tokens)
                self.tokens[ref] = [o.token for _, o in outcomes]  # type: ignore[attr-defined]
                m.attempts[ref], m.codes[ref] = "in_progress", code
                m.lease = ModelLease(ref, owner, code)

        def _refs(self) -> list[int]:
            return list(self.tokens)

        @rule(data=st.data())
        def heartbeat(self, data: st.DataObject) -> None:
            if not self.tokens:
                return
            ref = data.draw(st.sampled_from(self._refs()))
            m = self.model
            kind = self._all(lambda s, i: s.heartbeat(self.build_id, m.codes[ref], token=self.tokens[ref][i]))[0][0]
            holds = m.lease is not None and m.lease.ref == ref
            assert kind == ("ok" if holds else "conflict")
            if holds:
                assert m.lease is not None
                m.lease.fresh = True

        @rule(data=st.data(), succeed=st.booleans())
        def finish(self, data: st.DataObject, succeed: bool) -> None:
            if not self.tokens:
                return
            ref = data.draw(st.sampled_from(self._refs()))
            m = self.model
            code, status = m.codes[ref], "completed" if succeed else "failed"
            if succeed:
                kind = self._all(lambda s, i: s.complete(self.build_id, code, token=self.tokens[ref][i]))[0][0]
            else:
                kind = self._all(lambda s, i: s.fail(self.build_id, code, token=self.tokens[ref][i], error="boom"))[0][
                    0
                ]
            if m.attempts[ref] == status:
                # A retried call after a lost response is a no-op, while its result still stands: a
                # complete whose milestone was reset since is refused.
                stands = not succeed or m.completed_by.get(code) == ref
                assert kind == ("ok" if stands else "conflict")
            elif m.lease is not None and m.lease.ref == ref:
                assert kind == "ok"
                m.attempts[ref] = status
                if succeed:
                    m.completed.append(code)
                    m.completed_by[code] = ref
                m.lease = None
            else:
                assert kind == "conflict"

        @rule(to=st.sampled_from(PLAN[1:]))
        def reset(self, to: int) -> None:
            m = self.model
            kind = self._all(lambda s, i: s.reset(self.build_id, to=to, reason="model"))[0][0]
            if m.lease is not None and m.lease.fresh:
                assert kind == "conflict"
                return
            assert kind == "ok"
            m.abandon_stale()
            m.completed = [c for c in m.completed if c < to]
            m.completed_by = {c: r for c, r in m.completed_by.items() if c < to}
            self.state_floor = 0

        @rule()
        def expire(self) -> None:
            clock.advance(LEASE + 1)
            if self.model.lease is not None:
                self.model.lease.fresh = False

        @invariant()
        def backends_match_the_model(self) -> None:
            m = self.model
            for i, store in enumerate(stores):
                rec = store.get(self.build_id)
                assert rec.completed == m.completed
                assert rec.completed == PLAN[: len(rec.completed)]  # plan order
                assert (rec.lease.owner if rec.lease else None) == (m.lease.owner if m.lease else None)
                by_token = {a.lease_id: a.status for a in rec.attempts if a.kind == "run"}
                for ref, tokens in self.tokens.items():
                    assert by_token[tokens[i]] == m.attempts[ref], (ref, m.attempts[ref], by_token[tokens[i]])
                history = [(a.state, a.attempt, a.owner, a.started_at) for a in rec.attempts]
                assert history[: len(self.histories[i])] == [h[:4] for h in self.histories[i]]  # append-only
                self.histories[i] = history  # type: ignore[assignment]
                assert rec.current_state >= self.state_floor or rec.events[-1].kind == "reset"
            self.state_floor = stores[0].get(self.build_id).current_state

    return StoreMachine


@pytest.mark.slow
def test_backends_follow_the_model(make_store: Callable[..., BuildStore], clock: FakeClock) -> None:
    stores = [make_store(b, clock=clock) for b in BACKENDS]
    machine = make_machine(stores, clock)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
