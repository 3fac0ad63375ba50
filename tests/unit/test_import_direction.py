"""The client package stands alone: nothing in `stepwatch/` imports the server's packages
(a client installed without the server works, and the server's internals can change)."""

from __future__ import annotations

import ast
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "stepwatch"
SERVER_PACKAGES = ("orchestrator_service", "ui_service")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_client_package_imports_nothing_of_the_server() -> None:
    files = sorted(CLIENT.rglob("*.py"))
    assert len(files) > 10  # the package is there
    wrong = {f"{f.relative_to(CLIENT.parent)}: {m}" for f in files for m in imports_of(f)
             if m.split(".")[0] in SERVER_PACKAGES}
    assert wrong == set()
