"""Project-level promises: README in sync with the schema, the engine/UI boundary, CI = the README command."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from finetune.__main__ import schema_markdown

ROOT = Path(__file__).resolve().parent.parent
ENGINE = sorted((ROOT / "finetune").glob("*.py"))


def test_readme_config_table_matches_schema():
    assert schema_markdown() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make test" in readme and "make run" in readme
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1].strip() == "make test"


def test_engine_modules_never_import_gradio():
    for path in ENGINE:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "gradio" for n in names), f"{path.name} imports gradio"


def test_engine_imports_and_plans_with_gradio_unavailable():
    # A finder that refuses gradio: the engine's CLI must still work end to end (plan loads data + tokenizer).
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'gradio' or name.startswith('gradio.'):\n"
        "            raise ImportError('gradio blocked for this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from finetune.__main__ import main\n"
        "sys.exit(main(['plan', 'presets/demo.yaml', '--json']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"optimizer_steps": 114' in out.stdout


def _engine_imports() -> dict[str, set[str]]:
    """Engine module -> the engine modules it imports, at the top or inside a function alike."""
    graph: dict[str, set[str]] = {}
    for path in ENGINE:
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "finetune":
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("finetune."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("finetune.")}
        graph[path.stem] = found - {"ui"}
    return graph


def test_engine_imports_form_a_dag_below_the_cli():
    graph = _engine_imports()
    assert not [m for m, deps in graph.items() if "__main__" in deps], "a module reaches up into the CLI"
    done: set[str] = set()

    def visit(module: str, trail: tuple[str, ...]) -> None:
        assert module not in trail, "import cycle: " + " -> ".join((*trail, module))
        if module not in done:
            for dep in sorted(graph.get(module, ())):
                visit(dep, (*trail, module))
            done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_one_entry_point():
    """Every verb lives under `python -m finetune`; no other engine module runs as a script."""
    scripts = [p.name for p in ENGINE if p.stem != "__main__" and "__name__ ==" in p.read_text("utf-8")]
    assert scripts == []
