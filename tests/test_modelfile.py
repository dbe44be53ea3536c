"""The JSON model format, version 1 (scikit-learn's four structures): what a valid file
looks like, and one test per way a file can be broken (each raising ModelFileError, a
UserError, that names the problem). Version 2 is tested in test_modelfile_v2.py."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from modelfile_helpers import assert_rejected, edited

import gmmcli
from gmmcli.errors import UserError
from gmmcli.io import modelfile
from gmmcli.io.modelfile import ModelFileError

TRAINING_KEYS = {
    "log_likelihood",
    "mean_log_likelihood",
    "n_iter",
    "converged",
    "degenerate",
    "n_samples",
    "total_weight",
    "bic",
    "aic",
    "init",
    "n_init",
    "tol",
    "reg_covar",
    "seed",
    "gmmcli_version",
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0.0, 1.0, (60, 2)), rng.normal(5.0, 1.0, (40, 2))])


@pytest.fixture(scope="module")
def model(data):
    return gmmcli.fit(data, 2, seed=3, columns=["x", "y"])


@pytest.fixture(scope="module")
def text(model):
    return gmmcli.dumps(model)


def test_model_file_error_is_a_user_error():
    assert issubclass(ModelFileError, UserError)
    assert issubclass(ModelFileError, gmmcli.GMMError)


# -- what a valid file is ------------------------------------------------------------


def test_format_has_the_documented_keys(text):
    document = json.loads(text)
    assert set(document) == {
        "format",
        "version",
        "covariance_type",
        "n_components",
        "n_features",
        "feature_names",
        "weights",
        "means",
        "covariances",
        "training",
    }
    assert document["format"] == "gmmcli-model"
    assert document["version"] == 1
    assert document["feature_names"] == ["x", "y"]
    assert set(document["training"]) >= TRAINING_KEYS
    assert document["training"]["gmmcli_version"] == gmmcli.__version__


def test_round_trip_predicts_bit_identically(tmp_path, model, data):
    path = tmp_path / "model.json"
    gmmcli.save(model, str(path))
    loaded = gmmcli.load(str(path))
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert np.array_equal(loaded.predict_proba(data), model.predict_proba(data))
    assert np.array_equal(loaded.score_samples(data), model.score_samples(data))
    assert loaded.fit_info == model.fit_info
    assert loaded.feature_names == model.feature_names
    assert gmmcli.dumps(loaded) == path.read_text()


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_every_covariance_type_round_trips(covariance_type, data):
    model = gmmcli.fit(data, 2, covariance_type=covariance_type, seed=1)
    text = gmmcli.dumps(model)
    loaded = gmmcli.loads(text)
    assert loaded.covariance_type == covariance_type
    assert gmmcli.dumps(loaded) == text
    assert np.array_equal(loaded.predict_proba(data), model.predict_proba(data))


def test_model_without_training_record_round_trips(data):
    model = gmmcli.GaussianMixture([0.25, 0.75], [[0.0], [3.0]], [[[1.0]], [[2.0]]])
    text = gmmcli.dumps(model)
    assert json.loads(text)["training"] is None
    loaded = gmmcli.loads(text)
    assert loaded.fit_info is None
    assert np.array_equal(loaded.predict_proba(data[:, :1]), model.predict_proba(data[:, :1]))


def test_json_is_sorted_and_byte_identical_on_rerun(tmp_path, data):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    gmmcli.save(gmmcli.fit(data, 3, seed=11, n_init=2), str(first))
    gmmcli.save(gmmcli.fit(data, 3, seed=11, n_init=2), str(second))
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text()
    # sorted at every level, no NaN/Infinity tokens, one trailing newline
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, allow_nan=False) + "\n"
    assert text.endswith("}\n")


def test_save_leaves_no_temporary_file(tmp_path, model):
    gmmcli.save(model, str(tmp_path / "model.json"))
    assert os.listdir(tmp_path) == ["model.json"]


def test_interrupted_save_keeps_the_old_file(tmp_path, model, monkeypatch):
    path = tmp_path / "model.json"
    path.write_text("previous contents")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gmmcli.save(model, str(path))
    assert path.read_text() == "previous contents"
    assert os.listdir(tmp_path) == ["model.json"]


def test_save_into_a_missing_folder_is_a_user_error(tmp_path, model):
    with pytest.raises(UserError, match="does not exist"):
        gmmcli.save(model, str(tmp_path / "missing" / "model.json"))
    assert os.listdir(tmp_path) == []


# -- one test per kind of broken file -----------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        gmmcli.load(str(tmp_path / "nope.json"))


def test_a_folder_is_not_a_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="cannot read"):
        gmmcli.load(str(tmp_path))


@pytest.mark.parametrize(
    "content",
    ["", "not json", '{"format": "gmmcli-model",', b"\xff\xfe{}"],
    ids=["empty", "text", "truncated", "not-utf8"],
)
def test_not_json(tmp_path, content):
    assert_rejected(tmp_path, content, "is not valid JSON")


def test_truncated_model(tmp_path, text):
    assert_rejected(tmp_path, text[: len(text) // 2], "is not valid JSON")


@pytest.mark.parametrize("content", ["[1, 2]", '"model"', "3", "null"])
def test_not_an_object(tmp_path, content):
    assert_rejected(tmp_path, content, "is not a JSON object")


@pytest.mark.parametrize("value", ["sklearn", None, 1])
def test_unknown_format(tmp_path, text, value):
    content = edited(text, lambda d: d.update(format=value))
    assert_rejected(tmp_path, content, "is not a gmmcli model")


def test_missing_format(tmp_path, text):
    assert_rejected(tmp_path, edited(text, lambda d: d.pop("format")), "is not a gmmcli model")


@pytest.mark.parametrize("value", [2, 3, 0, "1", 1.5, True, None])
def test_wrong_version(tmp_path, text, value):
    content = edited(text, lambda d: d.update(version=value))
    assert_rejected(tmp_path, content, "version")


@pytest.mark.parametrize(
    "key", ["covariance_type", "n_components", "n_features", "weights", "means", "covariances"]
)
def test_missing_key(tmp_path, text, key):
    assert_rejected(tmp_path, edited(text, lambda d: d.pop(key)), f"lacks '{key}'")


@pytest.mark.parametrize("key", sorted(modelfile.TRAINING_FIELDS))
def test_missing_training_key(tmp_path, text, key):
    content = edited(text, lambda d: d["training"].pop(key))
    assert_rejected(tmp_path, content, f"'training' lacks '{key}'")


UNKNOWN_COVARIANCE = r"covariance_type must be one of EII, spherical \(VII\), EEI"


def test_unknown_covariance_type(tmp_path, text):
    content = edited(text, lambda d: d.update(covariance_type="banded"))
    assert_rejected(
        tmp_path,
        content,
        UNKNOWN_COVARIANCE,
    )


@pytest.mark.parametrize("value", [["full"], {"full": 1}])  # found by tests/test_fuzz.py
def test_covariance_type_that_is_no_name(tmp_path, text, value):
    content = edited(text, lambda d: d.update(covariance_type=value))
    assert_rejected(
        tmp_path,
        content,
        UNKNOWN_COVARIANCE,
    )


@pytest.mark.parametrize(
    ("name", "edit", "match"),
    [
        ("extra mean row", lambda d: d["means"].append([0.0, 0.0]), "means have shape"),
        ("n_components", lambda d: d.update(n_components=3), "means have shape"),
        ("n_features", lambda d: d.update(n_features=3), "means have shape"),
        ("short weights", lambda d: d["weights"].pop(), "weights have shape"),
        ("covariance count", lambda d: d["covariances"].pop(), "covariances have shape"),
        ("covariance size", lambda d: d["covariances"][0].pop(), "arrays of numbers"),
        ("ragged means", lambda d: d["means"][0].pop(), "arrays of numbers"),
        ("names count", lambda d: d.update(feature_names=["x"]), "feature names"),
        ("names type", lambda d: d.update(feature_names=[1, 2]), "feature_names"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_wrong_shapes(tmp_path, text, name, edit, match):
    assert_rejected(tmp_path, edited(text, edit), match)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["weights"].__setitem__(0, repr(d["weights"][0])),
        lambda d: d["means"][0].__setitem__(0, "1.5"),
        lambda d: d["covariances"][1][0].__setitem__(0, True),
    ],
    ids=["weight-string", "mean-string", "covariance-bool"],
)
def test_array_entries_that_are_not_numbers(tmp_path, text, edit):
    assert_rejected(tmp_path, edited(text, edit), "arrays of numbers")


def _put_token(text, where, token):
    """Place a raw JSON token (NaN, Infinity, 1e999) where json.dumps cannot write it."""
    return edited(text, lambda d: where(d, "__TOKEN__")).replace('"__TOKEN__"', token)


WHERE = {
    "weights": lambda d, v: d["weights"].__setitem__(0, v),
    "means": lambda d, v: d["means"][1].__setitem__(0, v),
    "covariances": lambda d, v: d["covariances"][0][0].__setitem__(0, v),
    "log_likelihood": lambda d, v: d["training"].update(log_likelihood=v),
    "history": lambda d, v: d["training"]["history"].__setitem__(0, v),
}


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("where", list(WHERE))
def test_non_finite_token(tmp_path, text, where, token):
    assert_rejected(tmp_path, _put_token(text, WHERE[where], token), "non-finite")


@pytest.mark.parametrize("where", ["weights", "means", "covariances", "history"])
def test_number_overflowing_to_infinity(tmp_path, text, where):
    # 1e999 is valid JSON syntax, but Python parses it as inf
    assert_rejected(tmp_path, _put_token(text, WHERE[where], "1e999"), "non-finite|finite")


@pytest.mark.parametrize("key", ["log_likelihood", "total_weight", "reg_covar"])
def test_training_number_overflowing_to_infinity(tmp_path, text, key):
    content = _put_token(text, lambda d, v: d["training"].update({key: v}), "1e999")
    assert_rejected(tmp_path, content, "finite")


@pytest.mark.parametrize(
    "weights",
    [[0.5, 0.5 + 2e-9], [0.5, 0.5 - 2e-9], [0.7, 0.7], [1.5, -0.5]],
    ids=["over", "under", "double", "negative"],
)
def test_weights_not_summing_to_one(tmp_path, text, weights):
    content = edited(text, lambda d: d.update(weights=weights))
    assert_rejected(tmp_path, content, "sum to 1")


def test_weights_within_1e9_of_one_are_accepted(text):
    for weights in ([0.5, 0.5 + 5e-10], [0.5, 0.5 - 5e-10]):
        loaded = gmmcli.loads(edited(text, lambda d, w=weights: d.update(weights=w)))
        assert loaded.weights.tolist() == weights


def test_covariance_not_symmetric(tmp_path, text):
    def skew(d):
        d["covariances"][0][0][1] += 1e-6

    assert_rejected(tmp_path, edited(text, skew), "not symmetric")


@pytest.mark.parametrize(
    ("covariance_type", "covariances"),
    [
        ("full", [[[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]),
        ("full", [[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]]),
        ("tied", [[-1.0, 0.0], [0.0, 1.0]]),
        ("diag", [[1.0, -1.0], [1.0, 1.0]]),
        ("diag", [[1.0, 0.0], [1.0, 1.0]]),
        ("spherical", [1.0, 0.0]),
    ],
    ids=[
        "full-indefinite",
        "full-singular",
        "tied-negative",
        "diag-negative",
        "diag-zero",
        "spherical-zero",
    ],
)
def test_covariance_not_positive_definite(tmp_path, text, covariance_type, covariances):
    def replace(d):
        d.update(covariance_type=covariance_type, covariances=covariances)

    assert_rejected(tmp_path, edited(text, replace), "not a valid covariance|singular")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n_iter", "5"),
        ("n_iter", 5.0),
        ("n_iter", True),
        ("converged", 1),
        ("converged", "yes"),
        ("degenerate", None),
        ("degenerate_reason", 3),
        ("seed", 1.5),
        ("seed", "42"),
        ("init", None),
        ("log_likelihood", "-1.0"),
        ("log_likelihood", False),
        ("history", "[-1.0]"),
        ("history", ["-1.0"]),
        ("total_weight", 0),
    ],
)
def test_wrong_training_record_types(tmp_path, text, key, value):
    content = edited(text, lambda d: d["training"].update({key: value}))
    assert_rejected(tmp_path, content, f"'training.{key}'")


@pytest.mark.parametrize("value", [[], "fit", 3])
def test_training_record_not_an_object(tmp_path, text, value):
    content = edited(text, lambda d: d.update(training=value))
    assert_rejected(tmp_path, content, "'training' must be an object or null")
