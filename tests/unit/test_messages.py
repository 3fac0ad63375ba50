"""The typed messages between processes round-trip: pg_notify notices and the Dask queue."""

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from orchestrator_service import dask_batch
from orchestrator_service.store import notices

ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=32)
owners = st.from_regex(r"[a-z0-9.:-]{1,20}/[0-9]{1,7}/[0-9a-f]{8}", fullmatch=True)
notice = st.one_of(
    st.builds(notices.LogHead, owners, ids, st.integers(0, 2**62), st.booleans()),
    st.builds(notices.LogGrew, owners, ids, st.integers(0, 10_000)),
    st.builds(notices.CancelAsked, owners, ids),
    st.builds(notices.Deleted, owners, st.lists(ids, min_size=1, max_size=20).map(tuple)),
)


@given(st.lists(notice, max_size=20))
def test_notices_round_trip(said: list[notices.Notice]) -> None:
    assert notices.decode(notices.encode(said)) == said


def test_a_notice_line_this_version_does_not_know_is_skipped() -> None:
    payload = "x someone what\n" + notices.encode([notices.CancelAsked("o/1/abcdef01", "j1")])
    assert notices.decode(payload) == [notices.CancelAsked("o/1/abcdef01", "j1")]


child = st.integers(0, 1_000_000)
text = st.text(max_size=50)
message = st.one_of(
    st.builds(dask_batch.Hello, st.integers(0, 1000), text),
    st.builds(dask_batch.Bye, st.integers(0, 1000)),
    st.builds(dask_batch.Log, st.none() | child, st.integers(1, 2), text, st.integers(0, 10**9)),
    st.builds(dask_batch.ChildResult, child, text),
    st.builds(dask_batch.ChildRunning, child),
    st.builds(dask_batch.ChildOk, child, st.lists(st.tuples(
        text, st.lists(text, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=5), st.integers(-2**63, 2**63 - 1), max_size=3)), max_size=3)),
    st.builds(dask_batch.ChildFailed, child, text),
    st.builds(dask_batch.StepFail, child, text, text),
)


@given(st.lists(message, max_size=20))
def test_dask_messages_survive_the_schedulers_msgpack(sent: list[dask_batch.Message]) -> None:
    # The scheduler carries a queue's items as msgpack: tuples become lists, classes are lost.
    wire = msgpack.unpackb(msgpack.packb([dask_batch.encode(m) for m in sent]))
    got = [dask_batch.decode(m) for m in wire]
    assert got == sent and [type(m) for m in got] == [type(m) for m in sent]
