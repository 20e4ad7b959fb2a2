"""Assertions shared by the step tests: the error contract and the KFP parameter output files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import Result

from mlops_runtime import storage
from mlops_runtime.errors import ExitCode

COMPONENTS = Path(__file__).resolve().parents[2] / "components"


def assert_refused(result: Result, code: int, option: str, output_dir: str) -> str:
    """The step failed with ``code``, one stderr line naming ``option``, no stdout and nothing published."""
    lines = result.stderr.splitlines()
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert len(lines) == 1, result.stderr
    if code == ExitCode.USAGE:  # click's own messages: "error: Invalid value for '--x': ..."
        assert lines[0].startswith("error: ") and option in lines[0], lines[0]
    else:
        assert lines[0].startswith(f"error: {option}: "), lines[0]
    assert result.stdout == ""
    assert storage.list_uris(output_dir) == []
    return lines[0]


def assert_succeeded(result: Result, expected: dict[str, str], parameter_files: dict[str, Path]) -> None:
    """Exit 0, the outputs as the one JSON line on stdout, and each KFP parameter file exact (no newline)."""
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [json.dumps(expected, sort_keys=True)]
    for name, path in parameter_files.items():
        assert path.read_bytes() == expected[name].encode()


def run_process(step: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a step as its container does (``python main.py ...``), with logging at its default level."""
    env = {key: value for key, value in os.environ.items() if key != "MLOPS_LOG_LEVEL"}
    return subprocess.run([sys.executable, str(COMPONENTS / step / "main.py"), *args], capture_output=True,
                          text=True, timeout=120, env=env, check=False)
