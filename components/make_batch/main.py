"""make_batch: draw a production-like batch from a table or a bundled dataset, optionally shifted.

Shifts (``--shift``, several separated by ``;``, applied in order) use the source table as the reference:

    FEATURE:mean=+0.5   add 0.5 reference standard deviations of FEATURE to it
    FEATURE:scale=2     spread FEATURE around its reference mean by a factor of 2 (x -> m + 2 (x - m))
    FEATURE:swap=A/B    exchange the categories A and B of FEATURE (both must occur in the source)
    FEATURE:nan=0.1     make 10% of the batch's FEATURE values missing (rows drawn at random)

``--label-noise F`` replaces the label of a fraction F of the rows with another class drawn at random:
a concept shift that lowers any model's accuracy on the batch even where the features look unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import click
import numpy as np
import pandas as pd

from mlops_runtime import datasets, outputs, step_io, tables
from mlops_runtime.cli import FloatRange, output_path_option, step
from mlops_runtime.errors import BadInputError, UsageError
from mlops_runtime.lineage import input_record, lineage
from mlops_runtime.log import get_logger

BATCH_FILE = "batch.parquet"
SHIFT_KINDS = ("mean", "scale", "swap", "nan")
MAX_SEED = 2**32 - 1
# A batch is held in memory a few times over (drawn, shifted, serialised): bound it well below a machine's RAM.
MAX_ROWS = 10_000_000
MAX_CELLS = 50_000_000

log = get_logger("make_batch")


@dataclass(frozen=True)
class Shift:
    feature: str
    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.feature}:{self.kind}={self.value}"


def parse_shift(text: str) -> Shift:
    """``FEATURE:KIND=VALUE`` with the value checked for its kind (the feature is checked against the data)."""
    head, equals, value = text.partition("=")
    feature, colon, kind = head.rpartition(":")
    if not equals or not colon or not feature or not value:
        raise click.BadParameter(f"'{text}' is not FEATURE:KIND=VALUE (e.g. 'petal length (cm):mean=+0.5')")
    kind = kind.strip()
    if kind not in SHIFT_KINDS:
        raise click.BadParameter(f"'{text}': unknown shift '{kind}' (use {', '.join(SHIFT_KINDS)})")
    if kind == "swap":
        first, slash, second = value.partition("/")
        if not slash or not first or not second or first == second:
            raise click.BadParameter(f"'{text}': swap needs two different categories, A/B")
        return Shift(feature, kind, value)
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"'{text}': '{value}' is not a number") from None
    if not math.isfinite(number):
        raise click.BadParameter(f"'{text}': '{value}' is not a finite number")
    if kind == "scale" and number <= 0:
        raise click.BadParameter(f"'{text}': the scale factor must be positive")
    if kind == "nan" and not 0 < number <= 1:
        raise click.BadParameter(f"'{text}': the missing fraction must be in (0, 1]")
    return Shift(feature, kind, value)


def _dataset_or_none(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if not value:  # KFP passes an unset optional input as an empty string
        return None
    if value not in datasets.DATASETS:
        raise click.BadParameter(f"'{value}' is not one of {', '.join(datasets.DATASETS)}")
    return value


def _parse_shifts(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[Shift]:
    return [parse_shift(part.strip()) for part in (value or "").split(";") if part.strip()]


def _category(column: pd.Series, text: str, shift: Shift) -> object:
    """``text`` as a value of ``column``'s type; it must occur in the reference column."""
    value: object = text
    if pd.api.types.is_numeric_dtype(column):
        try:
            number = float(text)
        except ValueError:
            raise BadInputError(f"'{shift}': column '{shift.feature}' is numeric, '{text}' is not a number",
                                label="--shift") from None
        value = int(number) if pd.api.types.is_integer_dtype(column) and number.is_integer() else number
    if not column.isin([value]).any():
        raise BadInputError(f"'{shift}': '{text}' does not occur in column '{shift.feature}'", label="--shift")
    return value


def apply_shift(batch: pd.DataFrame, reference: pd.DataFrame, shift: Shift, rng: np.random.Generator) -> pd.DataFrame:
    """The batch with one shift applied; ``reference`` (the whole source table) gives means, spreads, categories."""
    column = reference[shift.feature]
    values = batch[shift.feature]
    if shift.kind in ("mean", "scale"):
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            raise BadInputError(f"'{shift}': column '{shift.feature}' is not numeric", label="--shift")
        numbers = values.astype(float)
        if shift.kind == "mean":
            spread = float(column.astype(float).std())
            if not spread > 0:
                raise BadInputError(f"'{shift}': column '{shift.feature}' is constant in the source, so a shift "
                                    "in standard deviations is undefined", label="--shift")
            shifted = numbers + float(shift.value) * spread
        else:
            centre = float(column.astype(float).mean())
            shifted = centre + (numbers - centre) * float(shift.value)
        return batch.assign(**{shift.feature: shifted})
    if shift.kind == "swap":
        first_text, _, second_text = shift.value.partition("/")
        first, second = _category(column, first_text, shift), _category(column, second_text, shift)
        swapped = values.mask(values == first, second).mask(values == second, first)
        return batch.assign(**{shift.feature: swapped})
    count = round(float(shift.value) * len(batch))
    rows = rng.choice(len(batch), size=count, replace=False)
    missing = values.astype(float) if pd.api.types.is_integer_dtype(values) else values.copy()
    missing.iloc[rows] = np.nan if pd.api.types.is_numeric_dtype(missing) else None
    return batch.assign(**{shift.feature: missing})


def add_label_noise(batch: pd.DataFrame, target_column: str, fraction: float, classes: list[object],
                    rng: np.random.Generator) -> pd.DataFrame:
    """Give a fraction of the rows another label, drawn uniformly from the other classes."""
    count = round(fraction * len(batch))
    rows = rng.choice(len(batch), size=count, replace=False)
    labels = batch[target_column].to_numpy(copy=True)
    for row in rows:
        others = [c for c in classes if c != labels[row]]
        labels[row] = others[rng.integers(len(others))]
    return batch.assign(**{target_column: labels})


def load_source(source_uri: str | None, dataset: str | None, target_column: str) -> tuple[pd.DataFrame, dict, str]:
    if source_uri and dataset:
        raise UsageError("give --source-uri or --dataset, not both", label="--source-uri")
    if source_uri:
        table, record = step_io.read_input_table(source_uri, label="--source-uri")
        return table.reset_index(drop=True), record, "--source-uri"
    if not dataset:
        raise UsageError("give --source-uri (a table) or --dataset (a bundled dataset)", label="--source-uri")
    table = datasets.bundled_table(dataset, target_column)
    return table, input_record("--dataset", f"sklearn.datasets.load_{dataset}", tables.table_bytes(table)), "--dataset"


@step("make_batch", help="Draw a production batch of --n-rows rows from a table or a bundled dataset, optionally "
                         "shifted (--shift 'FEATURE:mean=+0.5 | scale=2 | swap=A/B | nan=0.1[; ...]') and with "
                         "label noise, and write it as <output-dir>/batch.parquet with its lineage in the metadata.")
@click.option("--source-uri", default=None,
              help="CSV or Parquet table (s3://bucket/key or a local path) to draw rows from; empty means none.")
@click.option("--dataset", default=None, callback=_dataset_or_none, metavar="|".join(datasets.DATASETS),
              help="scikit-learn bundled dataset to draw rows from instead of --source-uri; empty means none.")
@click.option("--target-column", default="target", show_default=True, help="Label column of the source.")
@click.option("--n-rows", type=click.IntRange(1, MAX_ROWS), default=200, show_default=True,
              help="Rows in the batch, drawn at random (with replacement only when the source has fewer rows); "
                   f"at most {MAX_ROWS:,} and at most {MAX_CELLS:,} values (rows × columns).")
@click.option("--random-state", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the row draw, missing values and label noise: the same inputs give the same batch.")
@click.option("--shift", "shifts", default="", callback=_parse_shifts, metavar="FEATURE:KIND=VALUE[;...]",
              help="Shift features, relative to the source: mean=+0.5 (in standard deviations), scale=2 (spread "
                   "around the mean), swap=A/B (exchange two categories), nan=0.1 (fraction made missing). "
                   "Several shifts are separated by ';' and applied in order.")
@click.option("--label-noise", type=FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of rows whose label is replaced by another class (concept shift).")
# A value-taking option (bare flag = true) because KFP can only pass a Boolean input as a value.
@click.option("--with-labels", type=click.BOOL, is_flag=False, flag_value=True, default=True, show_default=True,
              metavar="[BOOLEAN]", help="Keep the label column (false: a batch as production sees it, unlabeled).")
@click.option("--without-labels", is_flag=True, default=False, help="Same as --with-labels false.")
@click.option("--output-dir", required=True, help="URI prefix (s3://... or a local folder) for this step's objects.")
@output_path_option("batch_uri", "URI of the written batch.parquet.")
def cli(source_uri: str | None, dataset: str | None, target_column: str, n_rows: int, random_state: int,
        shifts: list[Shift], label_noise: float, with_labels: bool, without_labels: bool, output_dir: str,
        batch_uri_output_path: str | None) -> None:
    keep_labels = with_labels and not without_labels
    if label_noise > 0 and not keep_labels:
        raise UsageError("label noise needs the labels: drop --without-labels", label="--label-noise")
    batch_uri = step_io.output_uri(output_dir, BATCH_FILE)
    source, record, source_label = load_source(source_uri, dataset, target_column)
    step_io.require_column(source, target_column, uri=source_uri or f"the {dataset} dataset", label="--target-column")
    for shift in shifts:
        if shift.feature == target_column:
            raise BadInputError(f"'{shift}': the label column cannot be shifted (use --label-noise)", label="--shift")
        step_io.require_column(source, shift.feature, uri=source_uri or f"the {dataset} dataset", label="--shift")

    if n_rows * source.shape[1] > MAX_CELLS:
        raise UsageError(f"{n_rows:,} rows of {source.shape[1]} columns are more than {MAX_CELLS:,} values; "
                         f"ask for at most {MAX_CELLS // source.shape[1]:,} rows", label="--n-rows")
    rng = np.random.default_rng(random_state)
    rows = rng.choice(len(source), size=n_rows, replace=n_rows > len(source))
    batch = source.iloc[np.sort(rows)].reset_index(drop=True)
    for shift in shifts:
        batch = apply_shift(batch, source, shift, rng)
    if label_noise > 0:
        classes = sorted(source[target_column].dropna().unique().tolist(), key=str)
        if len(classes) < 2:
            raise BadInputError(f"label noise needs at least two classes in '{target_column}'", label="--label-noise")
        batch = add_label_noise(batch, target_column, label_noise, classes, rng)
    if not keep_labels:
        batch = batch.drop(columns=[target_column])

    parameters = {"source_uri": source_uri or None, "dataset": None if source_uri else dataset,
                  "target_column": target_column, "n_rows": n_rows, "random_state": random_state,
                  "shifts": [str(s) for s in shifts], "label_noise": label_noise, "with_labels": keep_labels}
    step_lineage = lineage("make_batch", parameters, [record])
    metadata = step_io.lineage_metadata(step_lineage)
    try:
        payload = tables.table_bytes(batch, metadata)
    except (ValueError, TypeError) as error:  # pyarrow: e.g. a swap that mixed types in one column
        raise BadInputError(f"the batch cannot be stored as Parquet ({' '.join(str(error).split())[:200]})",
                            label=source_label) from None

    with outputs.publication(output_dir, lineage=step_lineage) as out:
        out.put(batch_uri, payload, label="--output-dir")
        out.parameters({"batch_uri": (batch_uri_output_path, batch_uri)})
    log.info("wrote %s: %d rows from %s, shifts [%s], label noise %.2f, %s", batch_uri, n_rows,
             source_uri or dataset, ", ".join(map(str, shifts)), label_noise, "labeled" if keep_labels else "unlabeled")
    step_io.print_outputs({"batch_uri": batch_uri})


if __name__ == "__main__":
    cli()
