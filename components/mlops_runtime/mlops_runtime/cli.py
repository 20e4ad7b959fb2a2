"""The command wrapper every step uses: click parsing plus the shared error and exit-code contract.

Any failure prints exactly one line, ``error: <input>: <what is wrong>``, on stderr and exits with
the code documented in :mod:`mlops_runtime.errors`. SIGTERM (what Kubernetes sends to stop a pod)
unwinds the step like an error, so the objects it had published are removed again.
"""
from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from . import outputs
from .errors import BadInputError, ComponentError, ExitCode, UsageError
from .log import step_logging

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM."""


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise Terminated(signal.Signals(signum).name)


class StepCommand(click.Command):
    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            with step_logging(self.name or "step") as log:
                code = self._exit_code(log, args, prog_name or self.name, complete_var, **extra)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if standalone_mode:
            sys.exit(code)
        return code

    def _exit_code(self, log: logging.Logger, *main_args: Any, **extra: Any) -> int:
        """Run the command; report any failure as one stderr line and return the documented exit code."""
        try:
            args = main_args[0] if main_args and main_args[0] is not None else sys.argv[1:]
            refuse_undecodable(list(args))
            result = super().main(*main_args, standalone_mode=False, **extra)
            # click returns the exit code of --help this way
            return result if isinstance(result, int) and not isinstance(result, bool) else ExitCode.OK
        except click.ClickException as error:
            click.echo(f"error: {' '.join(error.format_message().split())}", err=True)
            return ExitCode.USAGE
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            return ExitCode.USAGE
        except ComponentError as error:
            click.echo(f"error: {error.one_line()}", err=True)
            return error.exit_code
        except Terminated as error:
            click.echo(f"error: stopped by {error}; published outputs were removed", err=True)
            return 128 + signal.SIGTERM
        except Exception as error:  # a bug: keep the traceback in the log, one line on stderr
            log.debug("internal error", exc_info=True)
            click.echo(f"error: internal error: {type(error).__name__}: {' '.join(str(error).split())}", err=True)
            return ExitCode.INTERNAL


def refuse_undecodable(args: list[str]) -> None:
    """Refuse an argument that is not valid UTF-8 (Python keeps such bytes as lone surrogates, which no
    URI, JSON document or log line can carry), naming its option."""
    for index, arg in enumerate(args):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as error:
            byte = arg[error.start].encode("utf-8", "surrogateescape")
            if arg.startswith("--"):
                option = arg.partition("=")[0]
            elif index and args[index - 1].startswith("-"):
                option = args[index - 1].partition("=")[0]
            else:
                option = f"argument {index + 1}"
            option = option.encode("utf-8", "backslashreplace").decode()
            raise UsageError(f"not valid UTF-8 (byte 0x{byte.hex()} at character {error.start + 1})",
                             label=option) from None


class FloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN (every comparison with NaN is false, so click lets it through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number in the range {self._describe_range()}.", param, ctx)
        return number


def step(name: str, help: str | None = None) -> Callable[[Callable[..., Any]], click.Command]:
    """Decorator for a step's entrypoint: ``@step("train")`` above the click options."""
    return click.command(name=name, cls=StepCommand, help=help, context_settings=CONTEXT_SETTINGS)


class KfpOption(click.Option):
    """A click option that carries KFP metadata for the spec generator (``scripts/generate_specs.py``).

    ``kfp`` keys: ``output`` (the KFP output an ``--x-output-path`` option writes), ``type`` (its KFP type:
    String, Integer, Float, Boolean, HTML, Markdown...), ``description``; ``ui_outputs`` on
    ``--executor-input``: the artifacts reported through the executor output (Metrics, ClassificationMetrics);
    ``artifact_output`` on ``--output-dir``: the output artifact (of KFP ``type``) that the folder is
    (``{outputUri: name}``); ``artifact_input``: the input artifact (of KFP ``type``) whose URI the option
    takes (``{inputUri: name}``), see :func:`artifact_input_option`.
    """

    def __init__(self, *args: Any, kfp: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kfp = dict(kfp or {})


def _check_output_path(_ctx: click.Context, param: click.Parameter, path: str | None) -> str | None:
    """Refuse up front, before any work, a KFP output file that could not be written at the end."""
    if path:
        outputs.check_output_path(path, label=param.opts[0])
    return path


def output_path_option(name: str, help: str, kfp_type: str = "String") -> Callable[[Callable[..., Any]], Any]:
    """A ``--<name>-output-path`` option: the file KFP reads the output ``name`` (of type ``kfp_type``) from."""
    return click.option(outputs.parameter_option(name), f"{name}_output_path",
                        type=click.Path(dir_okay=False), default=None, callback=_check_output_path, cls=KfpOption,
                        kfp={"output": name, "type": kfp_type, "description": help},
                        help=f"File to write the '{name}' output parameter to (KFP outputPath). {help}")


def html_output_option(help: str, name: str = "report") -> Callable[[Callable[..., Any]], Any]:
    """``--<name>-output-path``: the file KFP uploads as the HTML artifact ``name`` (a copy of the step's report),
    which the KFP UI renders."""
    return click.option(outputs.parameter_option(name), f"{name}_output_path", type=click.Path(dir_okay=False),
                        default=None, callback=_check_output_path, cls=KfpOption,
                        kfp={"output": name, "type": "HTML", "description": help},
                        help=f"File to write a copy of the HTML report to (KFP outputPath of the HTML artifact "
                             f"'{name}'). {help}")


def _check_executor_input(_ctx: click.Context, _param: click.Parameter, text: str | None) -> str | None:
    """Refuse a malformed executor input up front, before any work (it is only read at the very end)."""
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise BadInputError(f"not valid JSON ({error})", label="--executor-input") from None
    if not isinstance(document, dict):
        raise BadInputError("expected a JSON object", label="--executor-input")
    found = outputs.executor_output(text)  # the same checks as when it is written, and of its file's folder
    if found is not None:
        outputs.check_output_path(found[0], label="--executor-input")
    return text


def executor_input_option(ui_outputs: dict[str, tuple[str, str]] | None = None) -> Callable[[Callable[..., Any]], Any]:
    """``--executor-input``; ``ui_outputs`` maps each artifact it reports to ``(KFP type, description)``."""
    described = [{"name": name, "type": kind, "description": text} for name, (kind, text) in (ui_outputs or {}).items()]
    return click.option("--executor-input", default=None, metavar="JSON", callback=_check_executor_input,
                        cls=KfpOption, kfp={"ui_outputs": described},
                        help="KFP executor input (set by KFP); used to report the output artifacts and UI metrics.")


OUTPUT_DIR_HELP = "URI prefix (s3://... or a local folder) for this step's objects."


def output_dir_option(artifact: str | None = None, kfp_type: str = "Artifact",
                      help: str = OUTPUT_DIR_HELP) -> Callable[..., Any]:
    """``--output-dir``; with ``artifact`` the folder is the KFP output artifact of that name and type
    (the spec passes ``{outputUri: artifact}``: a folder under the pipeline root)."""
    kfp = {"artifact_output": artifact, "type": kfp_type} if artifact else {}
    return click.option("--output-dir", required=True, cls=KfpOption, kfp=kfp,
                        help=f"{help} In KFP: the '{artifact}' {kfp_type} artifact." if artifact else help)


def artifact_input_option(flag: str, artifact: str, kfp_type: str, file_name: str, *, help: str,
                          **click_args: Any) -> Callable[..., Any]:
    """An input option taking a URI that KFP fills with the input artifact ``artifact`` (``{inputUri: ...}``).

    A folder a step published (it holds ``_manifest.json``) stands for its ``file_name``, e.g. split's
    ``splits`` folder for ``train.parquet``: :func:`mlops_runtime.step_io.resolve_in_folder`. A file URI is
    taken as it is.
    """
    def resolve(_ctx: click.Context, param: click.Parameter, uri: str | None) -> str | None:
        from .step_io import resolve_in_folder

        return resolve_in_folder(uri, file_name, label=param.opts[0]) if uri else uri

    return click.option(flag, cls=KfpOption, callback=resolve,
                        kfp={"artifact_input": artifact, "type": kfp_type, "file": file_name},
                        help=f"{help} Or a folder holding it (in KFP: the '{artifact}' {kfp_type} artifact).",
                        **click_args)
