"""Every step's component.yaml agrees with its click command: KFP loads and compiles it, inputs map to
options (name, type, default, required), outputs map to ``--x-output-path`` options, and main.py runs."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from tests.support import COMPONENTS, REPO, load_step, step_names

generate_specs = importlib.import_module("scripts.generate_specs")

PARAMETER_TYPES = {"String", "Integer", "Float", "Boolean"}
UI_TYPES = {"Metrics", "ClassificationMetrics"}  # filled through --executor-input, not an output path
CLICK_TYPES = {
    "String": (click.types.StringParamType, click.Choice, click.Path),
    "Integer": (click.types.IntParamType,),
    "Float": (click.types.FloatParamType,),
    "Boolean": (click.types.BoolParamType,),
}
STEPS = step_names()


def spec_of(name: str) -> dict[str, Any]:
    return yaml.safe_load((COMPONENTS / name / "component.yaml").read_text())


def options_of(name: str) -> dict[str, click.Option]:
    """The step's click options by their long flag, e.g. ``--n-estimators``."""
    command = load_step(name).cli
    return {flag: param for param in command.params if isinstance(param, click.Option)
            for flag in param.opts if flag.startswith("--")}


def as_text(value: Any) -> str | None:
    """A default as KFP would pass it; None for no default (click >= 8.3 marks that with a Sentinel)."""
    if value is None or type(value).__name__ == "Sentinel":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def passed_arguments(args: list[Any], condition: dict | None = None) -> list[tuple[str, dict, dict | None]]:
    """``(flag, placeholder, if-condition)`` for every ``--flag {inputValue|inputUri|outputPath|outputUri|...}``."""
    found = []
    for index, item in enumerate(args):
        if isinstance(item, dict) and "if" in item:
            branch = item["if"]
            nested = list(branch.get("then", [])) + list(branch.get("else", []))
            found.extend(passed_arguments(nested, branch["cond"]))
        elif isinstance(item, str) and item.startswith("--") and index + 1 < len(args):
            placeholder = args[index + 1]
            if isinstance(placeholder, dict) and placeholder.keys() & {"inputValue", "outputPath", "executorInput",
                                                                       "inputUri", "outputUri"}:
                found.append((item, placeholder, condition))
    return found


def dashed(name: str) -> str:
    return "--" + name.replace("_", "-")


@pytest.mark.parametrize("name", STEPS)
def test_kfp_loads_and_compiles_the_spec(name, tmp_path):
    from kfp import compiler, components

    component = components.load_component_from_file(str(COMPONENTS / name / "component.yaml"))
    compiler.Compiler().compile(component, str(tmp_path / f"{name}.yaml"))
    container = spec_of(name)["implementation"]["container"]
    assert container["command"] == ["python", "/app/main.py"]
    version = (REPO / "VERSION").read_text().strip()
    assert container["image"] == f"{generate_specs.RELEASE_REGISTRY}/mlops-components/{name}:{version}"


def test_no_committed_spec_is_stale():
    """Each component.yaml is generated from its step's click command: rerun the generator after changing one."""
    stale = [name for name in STEPS
             if (COMPONENTS / name / "component.yaml").read_text(encoding="utf-8") != generate_specs.render(name)]
    assert not stale, f"stale component.yaml: {stale}: run python scripts/generate_specs.py"


def test_the_generator_refuses_what_stock_kfp_cannot_pass():
    @click.command()
    @click.option("--depth", type=int, default=None, help="Optional, no default.")
    def no_default(depth):
        pass

    with pytest.raises(generate_specs.SpecError, match="--depth is optional without a default"):
        generate_specs.component_spec("x", no_default, "img")

    @click.command()
    @click.option("--model-uri-output-path", default=None)
    def untyped_output(model_uri_output_path):
        pass

    with pytest.raises(generate_specs.SpecError, match="no KFP metadata"):
        generate_specs.component_spec("x", untyped_output, "img")


def test_the_generator_warns_about_a_switch_kfp_cannot_set(capsys):
    @click.command()
    @click.option("--calibrate", is_flag=True, default=False)
    @click.option("--shuffle", type=click.BOOL, is_flag=False, flag_value=True, default=True)
    @click.option("--no-shuffle", is_flag=True, default=False)
    def switches(calibrate, shuffle, no_shuffle):
        pass

    spec = generate_specs.component_spec("x", switches, "img")
    assert [entry["name"] for entry in spec["inputs"]] == ["shuffle"]
    assert capsys.readouterr().err.splitlines() == [
        "warning: x: --calibrate is a CLI-only switch (KFP cannot set it); give it a value-taking twin "
        "(type=click.BOOL, is_flag=False) to make it an input"]


@pytest.mark.parametrize("name", STEPS)
def test_inputs_match_the_click_options(name):
    spec, options = spec_of(name), options_of(name)
    passed = {placeholder["inputValue"]: (flag, condition)
              for flag, placeholder, condition in passed_arguments(spec["implementation"]["container"]["args"])
              if "inputValue" in placeholder}
    artifacts = {placeholder["inputUri"]: flag for flag, placeholder, _ in passed_arguments(
        spec["implementation"]["container"]["args"]) if "inputUri" in placeholder}
    artifact_flags = set()
    for entry in spec.get("inputs", []):
        if entry["name"] in artifacts:  # an input artifact: its URI goes to the option naming it
            flag = artifacts[entry["name"]]
            assert options[flag].kfp == {"artifact_input": entry["name"], "type": entry["type"],
                                         "file": options[flag].kfp["file"]}, (name, flag)
            assert entry["type"] not in PARAMETER_TYPES and options[flag].required
            artifact_flags.add(flag)
            continue
        input_name, flag = entry["name"], dashed(entry["name"])
        assert flag in options, f"{name}: input {input_name} has no option {flag}"
        option = options[flag]
        kind = entry.get("type", "String")
        assert isinstance(option.type, CLICK_TYPES.get(kind, CLICK_TYPES["String"])), (name, flag, kind, option.type)
        assert not option.is_flag and not option.multiple, f"{name}: {flag} must take one value"
        required = "default" not in entry and not entry.get("optional", False)
        assert option.required == required, f"{name}: {flag} required={option.required}, spec says {required}"
        assert as_text(option.default) == as_text(entry.get("default")), (name, flag, option.default, entry)
        assert input_name in passed, f"{name}: input {input_name} is never passed to the command"
        passed_flag, condition = passed[input_name]
        assert passed_flag == flag
        if "default" not in entry and entry.get("optional"):  # KFP has no value to pass when it is absent
            assert condition == {"isPresent": input_name}, f"{name}: pass {flag} only under isPresent"
    # Every option KFP users could need is an input; only off-by-default CLI switches may stay CLI-only, and a
    # PipelineTaskFinalStatus input (KFP refuses it outside exit tasks, which add it: pipelines/production.py).
    declared = {dashed(entry["name"]) for entry in spec.get("inputs", [])} | artifact_flags
    missing = {flag for flag, option in options.items() if flag not in declared and not flag.endswith("-output-path")
               and flag not in {"--executor-input", "--output-dir"}
               and not (option.is_flag and option.default is False)
               and not getattr(option, "kfp", {}).get("exit_handler_only")}
    if "--output-dir" in options and "artifact_output" not in getattr(options["--output-dir"], "kfp", {}):
        assert "--output-dir" in declared, f"{name}: --output-dir is neither an input nor an output artifact"
    assert not missing, f"{name}: options without a component input: {sorted(missing)}"


@pytest.mark.parametrize("name", STEPS)
def test_outputs_match_the_output_path_options(name):
    spec, options = spec_of(name), options_of(name)
    passed = passed_arguments(spec["implementation"]["container"]["args"])
    output_paths = {placeholder["outputPath"]: flag for flag, placeholder, _ in passed if "outputPath" in placeholder}
    executor_input = [flag for flag, placeholder, _ in passed if "executorInput" in placeholder]
    output_uris = {placeholder["outputUri"]: flag for flag, placeholder, _ in passed if "outputUri" in placeholder}
    outputs = spec.get("outputs", [])
    reported = {entry["name"] for entry in (options["--executor-input"].kfp.get("ui_outputs") or [])
                } if "--executor-input" in options else set()  # artifacts only ExecutorOutput reports
    for entry in outputs:
        if entry["name"] in output_uris:  # the step's folder is this artifact
            assert output_uris[entry["name"]] == "--output-dir"
            assert options["--output-dir"].kfp == {"artifact_output": entry["name"], "type": entry["type"]}
            assert executor_input == ["--executor-input"], f"{name}: kfp.local sees artifacts only in ExecutorOutput"
        elif entry.get("type") in UI_TYPES or entry["name"] in reported:
            assert executor_input == ["--executor-input"] and "--executor-input" in options, entry["name"]
        else:
            flag = f"{dashed(entry['name'])}-output-path"
            assert output_paths.get(entry["name"]) == flag and flag in options, f"{name}: output {entry['name']}"
            assert not options[flag].required
    declared = {f"{dashed(entry['name'])}-output-path" for entry in outputs
                if entry.get("type") not in UI_TYPES and entry["name"] not in {*output_uris, *reported}}
    assert {flag for flag in options if flag.endswith("-output-path")} == declared


@pytest.mark.parametrize("name", STEPS)
def test_main_py_runs_as_a_script(name):
    shown = subprocess.run([sys.executable, str(Path(COMPONENTS / name / "main.py")), "--help"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Usage: ")
