"""ServedModel.predict runs a Pipeline's transformers once for both outputs; its outputs are exactly the model's."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from mlops_runtime.served_model import ModelSource
from tests.serving.serving_fixtures import TARGET, customers, fit_pipeline, register


@pytest.mark.parametrize("final", [None, ExtraTreesClassifier(n_estimators=15, random_state=2),
                                   GradientBoostingClassifier(n_estimators=10, random_state=2),
                                   LogisticRegression(max_iter=500)], ids=["forest", "extra-trees", "boosting",
                                                                          "logistic"])
def test_outputs_equal_the_models_predict_and_predict_proba(tmp_path, final):
    train = customers(rows=500, seed=4)
    model = fit_pipeline(train, n_estimators=25)
    if final is not None:
        model.steps[-1] = ("model", final)
        model.fit(train.drop(columns=[TARGET]), train[TARGET])
    register(str(tmp_path / "registry"), "churn", model, train)
    served = ModelSource(registry_uri=str(tmp_path / "registry"), model_name="churn").load()
    rows = customers(rows=300, seed=9).drop(columns=[TARGET])
    calls = []
    transformer = served.model.steps[0][1]
    original = transformer.transform
    transformer.transform = lambda table: calls.append(len(table)) or original(table)  # counts, changes nothing

    _, outputs = served.predict(rows)

    assert calls == [300]  # the transformers ran once for both outputs
    assert outputs["predict"].tolist() == model.predict(rows).tolist()
    np.testing.assert_array_equal(outputs["predict_proba"], model.predict_proba(rows))
