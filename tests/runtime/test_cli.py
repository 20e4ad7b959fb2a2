import os
import signal
import subprocess
import sys
import textwrap
import time

import click
from click.testing import CliRunner

from mlops_runtime import outputs, storage
from mlops_runtime.cli import executor_input_option, step
from mlops_runtime.errors import BadInputError, ExitCode


@step("demo")
@click.option("--count", type=click.IntRange(min=1), default=1)
@click.option("--fail", type=click.Choice(["none", "input", "bug"]), default="none")
@click.option("--output-dir", default=None)
def demo(count, fail, output_dir):
    with outputs.publication() as out:
        if output_dir:
            out.put(storage.join(output_dir, "first.txt"), b"1")
        if fail == "input":
            raise BadInputError("the table is empty", label="--data-uri")
        if fail == "bug":
            raise ZeroDivisionError("division by zero")


def run(*args):
    return CliRunner().invoke(demo, list(args))


def test_success_exits_zero():
    assert run().exit_code == 0


def test_usage_error_is_one_line_naming_the_option():
    result = run("--count", "0")
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "--count" in result.stderr


def test_bad_input_rolls_back_what_was_published(tmp_path):
    result = run("--fail", "input", "--output-dir", str(tmp_path))
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr == "error: --data-uri: the table is empty\n"
    assert list(tmp_path.iterdir()) == []


def test_internal_error_is_one_line_exit_1():
    result = run("--fail", "bug")
    assert result.exit_code == ExitCode.INTERNAL
    assert result.stderr == "error: internal error: ZeroDivisionError: division by zero\n"


def test_help_exits_zero():
    result = run("--help")
    assert result.exit_code == 0 and "--count" in result.stdout


def test_sigterm_removes_published_outputs(tmp_path):
    script = textwrap.dedent(f"""
        import time, click
        from mlops_runtime import outputs, storage
        from mlops_runtime.cli import step

        @step("slow")
        def cli():
            with outputs.publication() as out:
                out.put(storage.join({str(tmp_path)!r}, "partial.bin"), b"x")
                print("published", flush=True)
                time.sleep(30)

        cli()
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=os.environ.copy())
    assert process.stdout.readline().strip() == "published"
    assert (tmp_path / "partial.bin").exists()
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert time.monotonic() - started < 10
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in stderr
    assert list(tmp_path.iterdir()) == []


@step("metrics_demo")
@executor_input_option()
def metrics_demo(executor_input):
    raise AssertionError("never reached with a malformed executor input")


def test_malformed_executor_input_is_refused_before_any_work():
    for text, problem in (("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")):
        result = CliRunner().invoke(metrics_demo, ["--executor-input", text])
        assert result.exit_code == ExitCode.BAD_INPUT
        assert result.stderr.startswith("error: --executor-input: ") and problem in result.stderr
        assert result.stderr.count("\n") == 1


def test_an_option_that_is_not_utf8_is_a_usage_error_naming_it(tmp_path):
    for args, option in ((["--output-dir", str(tmp_path / "x\udcff")], "--output-dir"),
                         ([f"--output-dir={tmp_path}/\udcfe"], "--output-dir"), (["--count", "1\udcff"], "--count")):
        result = run(*args)
        assert result.exit_code == ExitCode.USAGE, result.stderr
        assert result.stderr.startswith(f"error: {option}: not valid UTF-8 (byte 0x") and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_non_utf8_argument_from_the_command_line(tmp_path):
    script = "from mlops_runtime.cli import step\nimport click\n" \
             "@step('x')\n@click.option('--name')\ndef cli(name):\n    print(name)\ncli()\n"
    done = subprocess.run([sys.executable, "-c", script, "--name", b"caf\xe9"], capture_output=True,
                          env=os.environ.copy())
    assert done.returncode == ExitCode.USAGE
    assert done.stderr == b"error: --name: not valid UTF-8 (byte 0xe9 at character 4)\n"
