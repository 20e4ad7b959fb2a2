"""Render the README's component table from the component.yaml files (the single source of truth).

    python scripts/component_docs.py          rewrite the table in README.md
    python scripts/component_docs.py --check  exit 1 if README.md is out of date
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- component-table:start -->", "<!-- component-table:end -->"
UI_ONLY_TYPES = {"Metrics", "ClassificationMetrics"}


def specs() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(ROOT.glob("components/*/component.yaml")):
        found.append((path.parent.name, yaml.safe_load(path.read_text())))
    return found


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _input(spec: dict) -> str:
    default = ""
    if "default" in spec:
        default = f" = `{spec['default']}`" if spec["default"] != "" else ' = `""`'
    elif spec.get("optional"):
        default = " (optional)"
    return f"`{spec['name']}` ({spec.get('type', 'String')}){default}: {_cell(spec.get('description', ''))}"


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", " ".join(text.split()), maxsplit=1)[0]


def table() -> str:
    rows = ["| step | what it does | inputs | outputs |", "|---|---|---|---|"]
    for name, spec in specs():
        inputs = "<br>".join(_input(i) for i in spec.get("inputs", []))
        outputs = "<br>".join(
            f"`{o['name']}` ({o.get('type', 'String')}){' — KFP UI' if o.get('type') in UI_ONLY_TYPES else ''}: "
            f"{_cell(o.get('description', ''))}" for o in spec.get("outputs", []))
        rows.append(f"| `{name}` | {_cell(first_sentence(spec.get('description', '')))} | {inputs} | {outputs} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    current = README.read_text()
    wanted = render(current)
    if "--check" in argv:
        if current != wanted:
            print("README.md's component table is out of date: run python scripts/component_docs.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
