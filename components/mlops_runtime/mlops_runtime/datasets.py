"""Datasets shipped inside scikit-learn (no download), as one table with a named label column."""
from __future__ import annotations

import pandas as pd

from .errors import BadInputError

DATASETS = ("iris", "wine", "breast_cancer", "digits")


def bundled_table(dataset: str, target_column: str, *, label: str = "--target-column") -> pd.DataFrame:
    """The bundled ``dataset``'s features with its label in the column ``target_column`` (last)."""
    from sklearn import datasets

    if dataset not in DATASETS:
        raise BadInputError(f"unknown bundled dataset '{dataset}' (choose from {', '.join(DATASETS)})",
                            label="--dataset")
    bunch = getattr(datasets, f"load_{dataset}")(as_frame=True)
    features = bunch.frame.drop(columns=["target"])
    if target_column in features.columns:
        raise BadInputError(f"'{target_column}' is a feature column of the {dataset} dataset; choose another name",
                            label=label)
    return features.assign(**{target_column: bunch.frame["target"]})
