import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_component_table_is_generated_from_the_specs():
    result = subprocess.run([sys.executable, "scripts/component_docs.py", "--check"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "./dev.sh test   #" in readme
    assert "exec ./dev.sh test" in (REPO / ".ci" / "run").read_text()
