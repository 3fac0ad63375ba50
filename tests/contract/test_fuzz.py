"""Fuzz every RPC's request fields against the real server: only the promised codes come back.

Requests are built on the wire by hand, so strings can carry bad UTF-8, numbers
can take any value their wire type can hold (negative enums too), and whole
messages can be garbage. The answer is OK, INVALID_ARGUMENT, NOT_FOUND,
OUT_OF_RANGE or FAILED_PRECONDITION, never UNKNOWN or INTERNAL; health stays
SERVING. STEPWATCH_FUZZ_EXAMPLES scales the run (default 60 per RPC).
"""

from __future__ import annotations

import os

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.v1 import orchestrator_pb2_grpc as pb_grpc

from .conftest import Server

EXAMPLES = int(os.environ.get("STEPWATCH_FUZZ_EXAMPLES", "60"))
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION}
SERVICE = "/stepwatch.v1.OrchestratorService/"
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers go on the wire as 10-byte two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_field(number: int, raw: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(raw)) + raw


def int_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


BAD_UTF8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b", b"\xf0\x28\x8c\xbc"])
STRINGS = st.one_of(
    st.text(max_size=300).map(lambda s: s.encode()),
    st.binary(max_size=300),
    st.tuples(st.text(max_size=20), BAD_UTF8).map(lambda t: t[0].encode() + t[1]),
    st.integers(1, 200_000).map(lambda n: b"x" * n),
    st.sampled_from([b"", b"0" * 32, b"v1:9223372036854775808", b"djE6LTU=", b"djE6MV8w"]),
)
NUMBERS = st.one_of(st.integers(0, 2**64 - 1), st.integers(-(2**63), -1),
                    st.sampled_from([0, 1, 2**31 - 1, 2**32, 2**63, 2**64 - 1]))


def message(fields: dict[int, str]) -> st.SearchStrategy[bytes]:
    """Wire bytes of a request: each field maybe present, string or number as its type says."""
    parts = []
    for number, kind in fields.items():
        value = (STRINGS.map(lambda raw, n=number: length_field(n, raw)) if kind == "string"
                 else NUMBERS.map(lambda v, n=number: int_field(n, v)))
        parts.append(st.one_of(st.just(b""), value))
    fuzzed = st.tuples(*parts).map(b"".join)
    return st.one_of(fuzzed, fuzzed, st.binary(max_size=64))  # and now and then, garbage


def toml_texts() -> st.SearchStrategy[bytes]:
    """Definitions that almost parse: real keys, hostile values (no shell: nothing runs)."""
    value = st.one_of(NUMBERS.map(str), st.floats(allow_nan=True).map(repr),
                      st.text(max_size=20).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'),
                      st.just("[" * 50 + "]" * 50), st.just("true"))
    step = st.tuples(st.sampled_from(["scan_files", "summarize", "filter_tags", "nope"]),
                     st.sampled_from(["max_child_failures", "max_attempts", "timeout",
                                      "concurrency", "depends", "root", "include", "tags"]), value)
    return st.lists(step, min_size=1, max_size=4).map(lambda steps: (
        'name = "fuzz"\n' + "".join(
            f'[steps.s{i}]\ntype = "{t}"\ninclude = ["*.none"]\ntags = ["x"]\n{k} = {v}\n'
            for i, (t, k, v) in enumerate(steps))).encode("utf-8", "surrogatepass"))


def call(channel: grpc.Channel, method: str, request: bytes, stream: bool) -> grpc.StatusCode:
    identity = lambda b: b  # noqa: E731 - bytes go out and come back as they are
    try:
        if stream:
            responses = channel.unary_stream(SERVICE + method, request_serializer=identity,
                                             response_deserializer=identity)(request, timeout=20)
            for _ in zip(range(2), responses, strict=False):  # the first answers, then hang up
                pass
            responses.cancel()
        else:
            channel.unary_unary(SERVICE + method, request_serializer=identity,
                                response_deserializer=identity)(request, timeout=20)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.CANCELLED and stream:
            return grpc.StatusCode.OK  # our own hang-up after the first answers
        assert err.code() in ALLOWED, f"{method}: {err.code()} {err.details()!r} for {request[:80]!r}"
        return err.code()
    return grpc.StatusCode.OK


RPCS = {  # method: (fields by number, server-streaming)
    "ListJobDefinitions": ({}, False),
    "SubmitJob": ({1: "string", 2: "string", 3: "string"}, False),
    "GetJob": ({1: "string"}, False),
    "ListJobs": ({1: "number", 2: "string", 3: "number", 4: "string", 5: "string", 6: "string"},
                 False),
    "CancelJob": ({1: "string"}, False),
    "WatchJob": ({1: "string", 2: "number"}, True),
    "WatchJobs": ({1: "number"}, True),
    "ListChildren": ({1: "string", 2: "string", 3: "number", 4: "number", 5: "number", 6: "number",
                      7: "string"}, False),
    "WatchLogs": ({1: "string", 2: "string", 3: "number", 4: "number", 5: "number"}, True),
    "ListDocuments": ({1: "string", 2: "string", 3: "number", 4: "string"}, False),
    "RerunJob": ({1: "string", 2: "number", 3: "string"}, False),
    "CreateSchedule": ({1: "string", 2: "string", 3: "string", 5: "number", 6: "number",
                        7: "number", 8: "string"}, False),
    "ListSchedules": ({}, False),
    "GetSchedule": ({1: "string"}, False),
    "PauseSchedule": ({1: "string"}, False),
    "ResumeSchedule": ({1: "string"}, False),
    "DeleteSchedule": ({1: "string"}, False),
    "TriggerSchedule": ({1: "string"}, False),
    "CreateSubscription": ({1: "string", 2: "number", 3: "number", 4: "string", 5: "string",
                            6: "string"}, False),
    "ListSubscriptions": ({}, False),
    "DeleteSubscription": ({1: "string"}, False),
    "ListDeliveries": ({1: "string", 2: "string", 3: "number"}, False),
}


@pytest.fixture(scope="module")
def a_job_id(stub: pb_grpc.OrchestratorServiceStub) -> str:
    job = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=(
        'name = "fuzz_target"\n[steps.a]\ntype = "scan_files"\ninclude = ["*.none"]\n'))).job
    return job.job_id


@pytest.mark.parametrize("method", list(RPCS))
def test_every_rpc_answers_only_promised_codes(method: str, channel: grpc.Channel,
                                               server: Server, a_job_id: str) -> None:
    fields, stream = RPCS[method]
    real_id = length_field(1, a_job_id.encode())
    requests = message(fields)
    if method in ("WatchJob", "GetJob", "CancelJob", "RerunJob", "ListDocuments"):
        # a real job too, with hostile extras
        requests = st.one_of(requests, NUMBERS.map(lambda n: real_id + int_field(2, n)))
    if method in ("ListChildren", "WatchLogs"):  # a real job and step, hostile numbers
        step = length_field(2, b"a")
        requests = st.one_of(requests, st.tuples(NUMBERS, st.integers(3, 7)).map(
            lambda t: real_id + step + int_field(t[1], t[0])))
    if method == "SubmitJob":
        requests = st.one_of(requests, toml_texts().map(lambda t: length_field(2, t)))

    @FUZZ
    @given(request=requests)
    def check(request: bytes) -> None:
        call(channel, method, request, stream)

    check()
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_the_promised_limits_answer_invalid_argument(stub: pb_grpc.OrchestratorServiceStub) -> None:
    cases = {
        "definition_toml": "#" * ((1 << 20) + 1),
        "steps.a.max_child_failures": 'name = "x"\n[steps.a]\ntype = "scan_files"\n'
                                      'include = ["*"]\nmax_child_failures = 4294967296\n',
        "steps.a.timeout": 'name = "x"\n[steps.a]\ntype = "scan_files"\ninclude = ["*"]\n'
                           'timeout = 1e300\n',
        "description": 'name = "x"\ndescription = "' + "d" * 5000 + '"\n[steps.a]\n'
                       'type = "scan_files"\ninclude = ["*"]\n',
        "name": f'name = "{"n" * 201}"\n[steps.a]\ntype = "scan_files"\ninclude = ["*"]\n',
    }
    for field, toml in cases.items():
        with pytest.raises(grpc.RpcError) as err:
            stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in err.value.details()
        assert len(err.value.details()) < 2000
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(pb.GetJobRequest(job_id="j" * 1_000_000))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(err.value.details()) < 300
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(pb.GetJobRequest(job_id="f" * 200))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and len(err.value.details()) < 300


def test_deep_nesting_and_long_chains_are_checked_without_recursion(
        stub: pb_grpc.OrchestratorServiceStub) -> None:
    deep = 'name = "x"\nv = ' + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitJob(pb.SubmitJobRequest(definition_toml=deep))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ring = 'name = "ring"\n' + "".join(
        f'[steps.s{i}]\ntype = "filter_tags"\ntags = ["t"]\ndepends = ["s{(i + 1) % 1200}"]\n'
        for i in range(1200))
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitJob(pb.SubmitJobRequest(definition_toml=ring))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dependency cycle" in err.value.details() and len(err.value.details()) < 2000


@pytest.mark.parametrize("form", ["array", "inline", "header", "array-of-tables", "dotted"])
def test_100_000_levels_of_any_toml_form_are_refused_at_once(
        stub: pb_grpc.OrchestratorServiceStub, form: str) -> None:
    """Refused before parsing (tomllib recurses on brackets and is quadratic on dotted keys):
    INVALID_ARGUMENT inside a 10 s deadline, not UNKNOWN, not a minute of a server thread."""
    n = 100_000
    keys = ".".join(["a"] * n)
    body = {"array": "v = " + "[" * n + "]" * n, "inline": "v = " + "{a=" * n + "1" + "}" * n,
            "header": f"[{keys}]", "array-of-tables": f"[[{keys}]]", "dotted": f"{keys} = 1"}[form]
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitJob(pb.SubmitJobRequest(definition_toml=f'name = "x"\n{body}\n'), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "levels deep" in err.value.details()


def test_forged_page_tokens_are_refused(stub: pb_grpc.OrchestratorServiceStub) -> None:
    import base64

    for raw in ["v1:-5", "v1:1_0", "v1:9223372036854775808", "v2.5.0000", "junk"]:
        token = base64.urlsafe_b64encode(raw.encode()).decode()
        with pytest.raises(grpc.RpcError) as err:
            stub.ListJobs(pb.ListJobsRequest(page_token=token))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_request_id_makes_submit_idempotent(stub: pb_grpc.OrchestratorServiceStub) -> None:
    toml = 'name = "idem"\n[steps.a]\ntype = "scan_files"\ninclude = ["*.none"]\n'
    first = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml, request_id="retry-me-1")).job
    again = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml, request_id="retry-me-1")).job
    other = stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml, request_id="retry-me-2")).job
    plain = [stub.SubmitJob(pb.SubmitJobRequest(definition_toml=toml)).job for _ in range(2)]
    assert again.job_id == first.job_id
    assert len({first.job_id, other.job_id, *(j.job_id for j in plain)}) == 4
