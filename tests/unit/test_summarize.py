"""summarize reads files in chunks; the counts equal those of the whole text, wherever chunks cut."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator_service.step_types import summarize

TEXT = st.text(st.sampled_from(["a", "b", " ", "\n", "\t", "é", "€", "😀", "\u00a0", "\r"]),
               max_size=80)


def whole(text: str) -> dict[str, int]:
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    return {"lines": lines, "words": len(text.split()), "bytes": len(text.encode())}


@settings(max_examples=300, deadline=None)
@given(text=TEXT, chunk=st.integers(1, 9))
def test_chunked_counts_equal_whole_text_counts(tmp_path_factory: pytest.TempPathFactory,
                                                text: str, chunk: int) -> None:
    path = tmp_path_factory.mktemp("s") / "f.txt"
    path.write_bytes(text.encode())
    saved, summarize.CHUNK = summarize.CHUNK, chunk
    try:
        assert summarize.summarize_file(path) == whole(text)
    finally:
        summarize.CHUNK = saved


def test_bad_utf8_names_the_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"abc\n" * 3 + b"\xff" + b"tail")
    monkeypatch.setattr(summarize, "CHUNK", 5)
    with pytest.raises(ValueError, match=r"not UTF-8 text: .*bad.txt \(byte 12\)"):
        summarize.summarize_file(path)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=60), said=st.integers(0, 70), chunk=st.integers(1, 9))
def test_a_file_is_read_to_its_end_whatever_fstat_said(
        tmp_path_factory: pytest.TempPathFactory, data: bytes, said: int, chunk: int) -> None:
    """``said``: the size fstat gave, before the file grew or shrank to ``data``."""
    path = tmp_path_factory.mktemp("c") / "f"
    path.write_bytes(data)
    saved, summarize.CHUNK = summarize.CHUNK, chunk
    fd = os.open(path, os.O_RDONLY)
    try:
        assert b"".join(summarize._chunks(fd, said)) == data
    finally:
        os.close(fd)
        summarize.CHUNK = saved


def test_a_small_file_costs_one_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f.txt").write_text("two words\n")
    reads: list[int] = []
    real_read = os.read

    def read(fd: int, n: int) -> bytes:
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(summarize.os, "read", read)
    assert summarize.summarize_beneath(tmp_path, "f.txt") == {"lines": 1, "words": 2, "bytes": 10}
    assert reads == [11]
