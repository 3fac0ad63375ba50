"""A watcher behind the loop takes what is queued as one page (Subscription.take_events):
events only, in order, up to a limit, never past a marker (More) that sends it to the log.
(That 200 watchers of a real job each get every seq once, in order, through these pages:
tests/e2e/test_wire_log.py.)"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator_service.broker import Broker, More
from orchestrator_service.model import Event


def ev(seq: int) -> Event:
    return Event("j", seq, 0)


@given(st.lists(st.one_of(st.integers(1, 50), st.just(0)), max_size=30), st.integers(1, 40))
def test_take_events_is_the_queued_events_up_to_a_marker(items: list[int], limit: int) -> None:
    broker = Broker(buffer=100)
    with broker.subscribe("j") as sub:
        for i in items:  # 0 stands for a More marker
            if i:
                broker.publish([ev(i)])
            else:
                broker.poke("j", 99)
        taken = sub.take_events(limit)
        until_marker = []
        for i in items:
            if not i:
                break
            until_marker.append(i)
        assert [e.seq for e in taken] == until_marker[:limit]
        rest = sub._items  # what stays queued, in order, for next()
        assert len(rest) == len(items) - len(taken)
        if len(until_marker) > limit:
            assert isinstance(rest[0], Event) and rest[0].seq == until_marker[limit]
        elif len(until_marker) < len(items):
            assert isinstance(rest[0], More)
