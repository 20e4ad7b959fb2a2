import io
import json
import zipfile

import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.preprocessing import FunctionTransformer

from mlops_runtime import models, storage
from mlops_runtime.errors import ModelError


def fitted(seed=0):
    features, target = load_iris(return_X_y=True, as_frame=True)
    return RandomForestClassifier(n_estimators=5, random_state=seed).fit(features, target)


def save(model, folder):
    data = models.dumps(model)
    uri = storage.join(folder, models.MODEL_FILE)
    storage.write_bytes(uri, data)
    card = {"model_sha256": storage.sha256_hex(data), "feature_names": list(model.feature_names_in_)}
    storage.write_bytes(models.card_uri_for(uri), json.dumps(card).encode())
    return uri


def test_same_model_same_bytes():
    assert models.dumps(fitted()) == models.dumps(fitted())
    assert models.dumps(fitted(0)) != models.dumps(fitted(1))


def test_round_trip_predicts_the_same(tmp_path):
    model = fitted()
    loaded, card = models.load_model(save(model, str(tmp_path)))
    features, _ = load_iris(return_X_y=True, as_frame=True)
    assert (loaded.predict(features) == model.predict(features)).all()
    assert card["feature_names"] == list(features.columns)


def test_tampered_model_is_refused(tmp_path):
    uri = save(fitted(), str(tmp_path))
    data = bytearray(storage.read_bytes(uri))
    data[-30] ^= 0xFF
    storage.write_bytes(uri, bytes(data))
    with pytest.raises(ModelError, match="does not match its model card"):
        models.load_model(uri, label="--model-uri")


def test_untrusted_types_are_refused_even_with_a_matching_card(tmp_path):
    import skops.io as sio

    data = sio.dumps(FunctionTransformer(func=print))
    with pytest.raises(ModelError, match="untrusted types"):
        models.loads(data)


def test_missing_card_is_a_model_error(tmp_path):
    uri = str(tmp_path / models.MODEL_FILE)
    storage.write_bytes(uri, models.dumps(fitted()))
    with pytest.raises(ModelError, match="model card not found"):
        models.load_model(uri)


def test_garbage_is_not_a_model():
    with pytest.raises(ModelError, match="not a readable skops"):
        models.loads(b"not a zip file")
    pickled = io.BytesIO()
    with zipfile.ZipFile(pickled, "w") as archive:
        archive.writestr("schema.json", "{}")
    with pytest.raises(ModelError):
        models.loads(pickled.getvalue())


def test_tree_padding_bytes_never_reach_the_file():
    # a tree's node records have padding bytes (uninitialised memory): a loaded model saves to the same bytes
    data = models.dumps(fitted())
    assert models.dumps(models.loads(data)) == data


@pytest.mark.parametrize("family", sorted(models.TRUSTED_TYPES_BY_ESTIMATOR))
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_each_estimator_pipeline_round_trips(tmp_path, family, task):
    import numpy as np
    import pandas as pd

    from mlops_runtime import estimators

    rng = np.random.default_rng(0)
    features = pd.DataFrame({"x": rng.normal(size=200), "colour": rng.choice(["a", "b", None], 200),
                             "day": pd.date_range("2024-01-01", periods=200, freq="D").astype(str)})
    target = pd.Series(rng.choice(["p", "q"], 200) if task == "classification" else rng.normal(size=200), name="y")
    kinds = {"x": "numeric", "colour": "categorical", "day": "datetime"}
    hyperparameters = estimators.Hyperparameters(n_estimators=3, max_iter=5)
    pipeline = estimators.build(family, task, kinds, hyperparameters, seed=0)
    pipeline, _, _ = estimators.fit(pipeline, features, target, family=family, task=task, search_iterations=0, seed=0)
    loaded, _ = models.load_model(save(pipeline, str(tmp_path)))
    unseen = features.assign(colour="never seen")
    assert (loaded.predict(unseen) == pipeline.predict(unseen)).all()
    assert models.dumps(pipeline) == models.dumps(estimators.fit(
        estimators.build(family, task, kinds, hyperparameters, seed=0), features, target, family=family, task=task,
        search_iterations=0, seed=0)[0])
