"""Stage packages import only downwards: no cycles between stages.

Each stage package (src/rluf/<stage>/) may import the core modules (rluf.config, rluf.hacking, rluf.policy,
...) and the stages listed for it below, at module level or inside a function alike. The command modules
(`<stage>/cli.py`) belong to the `rluf` command, above every stage, and may import any stage.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "rluf"
# stage -> the stages it may import (everything a stage uses must sit below it)
ALLOWED: dict[str, set[str]] = {
    "ingest": set(),
    "sim": set(),
    "signals": set(),
    "serve": set(),
    "rewards": {"ingest"},  # oasst_pairs reads OpenAssistant exports
    "judges": set(),
    "optimize": {"judges", "rewards", "sim"},
    "evaluate": {"judges", "rewards", "sim"},
    "abtest": {"signals", "sim"},
    "run": {"ingest", "serve", "sim", "signals", "rewards", "judges", "optimize", "evaluate", "abtest"},
}


def _imports(path: Path) -> set[str]:
    """The rluf packages a module imports (`rluf.X...` -> X)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "rluf":  # from rluf import hacking
                names += [f"rluf.{a.name}" for a in node.names]
        out |= {n.split(".")[1] for n in names if n.startswith("rluf.")}
    return out


def stage_graph() -> dict[str, dict[str, list[str]]]:
    """stage -> imported stage -> the modules that import it (cli.py excluded)."""
    graph: dict[str, dict[str, list[str]]] = {s: {} for s in ALLOWED}
    for stage in ALLOWED:
        for path in sorted((SRC / stage).rglob("*.py")):
            if path.name == "cli.py":
                continue
            for other in _imports(path) & set(ALLOWED) - {stage}:
                graph[stage].setdefault(other, []).append(str(path.relative_to(SRC.parent)))
    return graph


def test_every_stage_package_is_listed():
    stages = {p.name for p in SRC.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    assert stages == set(ALLOWED)


def test_stages_import_only_the_stages_below_them():
    wrong = [f"{stage} imports {other} in {where}" for stage, deps in stage_graph().items()
             for other, where in deps.items() if other not in ALLOWED[stage]]
    assert not wrong, "\n".join(wrong)


def test_the_allowed_imports_have_no_cycle():
    def visit(stage, path):
        if stage in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(stage):] + [stage])}")
        for other in ALLOWED[stage]:
            visit(other, path + [stage])

    for stage in ALLOWED:
        visit(stage, [])


def test_the_checker_sees_a_cycle(tmp_path):
    """The AST walk finds function-level imports too (a lazy import is still a dependency)."""
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from rluf.optimize.cli import x\n    import rluf.sim.world\n"
                 "from rluf import hacking\n")
    assert _imports(p) == {"optimize", "sim", "hacking"}


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_each_stage_imports_alone(stage):
    r = subprocess.run([sys.executable, "-c", f"import rluf.{stage}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
