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
