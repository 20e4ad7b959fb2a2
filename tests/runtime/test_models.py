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
