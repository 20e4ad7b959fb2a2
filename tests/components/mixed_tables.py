"""Tables of the kinds people have, for the load_data and split tests: mixed types, gaps, a real CSV."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd


def penguins_csv() -> Path:
    """The Palmer penguins table (344 rows, text columns, NaNs) as the palmerpenguins wheel ships it."""
    return Path(str(resources.files("palmerpenguins") / "data" / "penguins.csv"))


def mixed_table(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """Every column kind a split must carry through: floats with NaN, ints, text with gaps, booleans
    (with and without missing values), a pandas category, datetimes (naive and UTC), ISO text dates,
    a row id (to check order) and two targets: ``label`` (3 classes) and ``amount`` (a float)."""
    rng = np.random.default_rng(seed)
    colours = np.array(["red", "green", "blue", "teal"], dtype=object)
    start = pd.Timestamp("2024-01-01")
    when = start + pd.to_timedelta(rng.integers(0, 400 * 86_400, rows), unit="s")
    table = pd.DataFrame({
        "row_id": np.arange(rows),
        "x": np.where(rng.random(rows) < 0.1, np.nan, rng.normal(size=rows)),
        "count": rng.integers(-5, 1000, rows),
        "big": rng.integers(2**62, 2**63 - 1, rows, dtype=np.int64),
        "colour": pd.Series(colours[rng.integers(0, 4, rows)]).where(rng.random(rows) > 0.1).astype("str"),
        "flag": rng.random(rows) < 0.5,
        "maybe": pd.array(np.where(rng.random(rows) < 0.2, None, rng.random(rows) < 0.5), dtype="boolean"),
        "size": pd.Categorical(rng.choice(["S", "M", "L"], rows), categories=["S", "M", "L"], ordered=True),
        "when": pd.Series(when).astype("datetime64[us]").where(rng.random(rows) > 0.05),
        "when_utc": pd.Series(when).dt.tz_localize("UTC").astype("datetime64[us, UTC]"),
        "day": pd.Series(when).dt.strftime("%Y-%m-%d").astype("str"),
        "amount": np.round(rng.lognormal(3, 1, rows), 2),
        "label": rng.choice(["cat", "dog", "eel"], rows, p=[0.5, 0.3, 0.2]),
    })
    return table
