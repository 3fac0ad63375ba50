"""Opening beneath the workspace: no symlink followed anywhere on the path (a folder swapped
for a link to the outside after the scan leads nowhere), hard links refused unless allowed,
and the glob the walk uses matches as pathlib's does. Real files in a temp folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator_service import beneath
from orchestrator_service.beneath import (
    NotBeneath,
    Workspace,
    list_beneath,
    open_beneath,
    open_workspace,
    stat_beneath,
)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    ws, out = tmp_path / "ws", tmp_path / "outside"
    (ws / "docs").mkdir(parents=True)
    (ws / "docs" / "a.md").write_text("inside\n")
    out.mkdir()
    (out / "a.md").write_text("the outside file, much longer than the inside one\n")
    return ws, out


@pytest.fixture(params=["path", "held"])
def top(request: pytest.FixtureRequest, tree: tuple[Path, Path]) -> Iterator[Workspace]:
    """The workspace as a path, or as a descriptor its user holds (the sync children's
    thread): the same answers either way, and a held descriptor stays open."""
    if request.param == "path":
        yield tree[0]
        return
    fd = open_workspace(tree[0])
    try:
        yield fd
        os.fstat(fd)  # still open: borrowed, never closed by a call
    finally:
        os.close(fd)


@pytest.mark.parametrize("walk", [False, True])
def test_a_folder_swapped_for_a_link_out_is_not_followed(tree: tuple[Path, Path], top: Workspace,
                                                         walk: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ws, out = tree
    if walk:  # the fallback for kernels without openat2
        monkeypatch.setattr(beneath, "_openat2", lambda *a: None)
    assert stat_beneath(top, "docs/a.md").st_size == 7
    (ws / "docs").rename(ws / "docs-old")
    (ws / "docs").symlink_to(out)  # the swap, after the scan listed docs/a.md
    # What a path-based stat did: it followed the swapped folder to the outside file.
    assert os.stat(ws / "docs" / "a.md", follow_symlinks=False).st_size > 7
    with pytest.raises(NotBeneath):
        stat_beneath(top, "docs/a.md")
    with pytest.raises(NotBeneath):
        open_beneath(top, "docs/a.md")
    assert stat_beneath(top, "docs-old/a.md").st_size == 7
    assert list(list_beneath(ws, ".", ["**/*.md"], [])) == ["docs-old/a.md"]


@pytest.mark.parametrize("rel", ["../outside/a.md", "/etc/passwd", "docs/../../outside/a.md",
                                 "docs//../../outside/a.md", "//etc/passwd", "docs/.."])
def test_paths_out_are_refused(top: Workspace, rel: str) -> None:
    with pytest.raises(NotBeneath, match="not inside the workspace"):
        open_beneath(top, rel)


def test_hard_links_are_refused_unless_allowed(tree: tuple[Path, Path]) -> None:
    ws, out = tree
    os.link(out / "a.md", ws / "docs" / "b.md")
    with pytest.raises(NotBeneath, match="hard links"):
        stat_beneath(ws, "docs/b.md")
    assert stat_beneath(ws, "docs/b.md", allow_hardlinks=True).st_nlink == 2


PATTERNS = [["**/*.md"], ["*.md"], ["a/*"], ["a/**/*.md"], ["**/[wz].*"], ["a/[[]k].md"],
            ["?.md"], ["**/*.txt", "*.md"], ["a/b/*.txt"], ["[!x]*.md"]]


@pytest.mark.parametrize("patterns", PATTERNS)
def test_the_walk_matches_as_pathlib_glob_does(tmp_path: Path, patterns: list[str]) -> None:
    for rel in ("x.md", "y.md", "a/y.md", "a/b/z.md", "a/b/w.txt", ".h/q.md", "a/[k].md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    want = sorted({p.relative_to(tmp_path).as_posix() for pat in patterns
                   for p in tmp_path.glob(pat) if p.is_file()})
    assert list(list_beneath(tmp_path, ".", patterns, [])) == want
