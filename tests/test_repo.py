"""The repository's contracts: the README's opening commands match CI, and fencli's modules import
one way (no cycle, lazy imports inside functions included)."""

import ast
import re
from pathlib import Path

from conftest import ROOT

ALLOWED_EDGES: set[tuple[str, str]] = set()  # none: every module imports one way


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    test_command = blocks[1].strip()
    assert "pytest" in test_command
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    assert ci_lines[-1].strip() == test_command


def import_graph() -> dict[str, set[str]]:
    """fencli module -> the fencli modules it imports anywhere in its source (functions included)."""
    files = {}
    for path in (ROOT / "fencli").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:  # `from pkg import mod` imports the submodule pkg.mod
                    sub = f"{source}.{alias.name}"
                    targets.add(sub if sub in files else source)
        # A package importing its own submodules (the CLI registering its commands, the format table)
        # is not counted: Python loads a package before any submodule, so the submodules' imports of
        # the package are what can close a circle, and those are kept.
        graph[module] = {t for t in targets if t in files and not t.startswith(module + ".") and t != module
                         and (module, t) not in ALLOWED_EDGES}
    return graph


def test_fencli_modules_import_without_a_cycle():
    graph = import_graph()
    assert {"fencli.io", "fencli.output", "fencli.formats.npy"} <= set(graph)  # the parse found them
    done: set[str] = set()

    def visit(module: str, stack: list[str]) -> None:
        if module in stack:
            cycle = stack[stack.index(module):] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, stack + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_the_export_stage_is_one_copy_in_a_checkout():
    """``fencli export`` / ``fencli train`` import the stage the tests and ``python -m export.*`` use
    (the top-level ``export`` of this checkout), not a second copy as ``fencli.export``; an installed
    wheel has only ``fencli.export`` (tests/test_wheel.py runs it)."""
    import export.run
    from fencli.cli.export import stage

    assert stage("run") is export.run and Path(export.run.__file__).resolve().parent == ROOT / "export"
