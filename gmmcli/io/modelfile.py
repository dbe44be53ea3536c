"""The JSON model format, version 1: dump, load, validate. Never pickle.

Floats are written by ``repr`` (Python's json does this), so a saved model loads back
bit-identical; keys are sorted and there are no timestamps, so reruns give the same bytes.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from gmmcli import __version__
from gmmcli.core.model import FitInfo, GaussianMixture
from gmmcli.errors import GMMError, UserError
from gmmcli.io.atomic import atomic_write_bytes

FORMAT = "gmmcli-model"
VERSION = 1

TRAINING_FIELDS: dict[str, tuple[type, ...]] = {
    "log_likelihood": (float, int),
    "n_iter": (int,),
    "converged": (bool,),
    "degenerate": (bool,),
    "degenerate_reason": (str, type(None)),
    "n_samples": (int,),
    "total_weight": (float, int),
    "n_parameters": (int,),
    "init": (str,),
    "n_init": (int,),
    "max_iter": (int,),
    "tol": (float, int),
    "reg_covar": (float, int),
    "seed": (int, type(None)),
    "largest_drop": (float, int),
    "history": (list,),
}


class ModelFileError(UserError):
    """A model file or text that is not a valid gmmcli model."""


def to_dict(model: GaussianMixture) -> dict[str, Any]:
    """The model as plain JSON-ready data."""
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "covariance_type": model.covariance_type,
        "n_components": model.n_components,
        "n_features": model.n_features,
        "feature_names": model.feature_names,
        "weights": model.weights.tolist(),
        "means": model.means.tolist(),
        "covariances": model.covariances.tolist(),
        "training": None,
    }
    info = model.fit_info
    if info is not None:
        training = {name: getattr(info, name) for name in TRAINING_FIELDS}
        training.update(
            mean_log_likelihood=info.mean_log_likelihood,
            bic=info.bic,
            aic=info.aic,
            gmmcli_version=__version__,
        )
        data["training"] = training
    return data


def dumps(model: GaussianMixture) -> str:
    """The model as JSON text (sorted keys, exact floats, trailing newline)."""
    return json.dumps(to_dict(model), sort_keys=True, allow_nan=False, indent=2) + "\n"


def _reject_constant(name: str) -> float:
    raise ModelFileError(f"contains the non-finite number {name}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ModelFileError(message)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_array(value: Any) -> np.ndarray:
    """A JSON (nested) list of numbers as a float array; strings and booleans are refused."""
    message = "weights, means and covariances must be (nested) arrays of numbers"
    try:
        entries = np.array(value, dtype=object)
    except ValueError:  # ragged nesting
        raise ModelFileError(message) from None
    _require(all(_is_number(v) for v in entries.flat), message)
    return entries.astype(float)


def _fit_info(training: Any) -> FitInfo | None:
    if training is None:
        return None
    _require(isinstance(training, dict), "'training' must be an object or null")
    values = {}
    for name, types in TRAINING_FIELDS.items():
        _require(name in training, f"'training' lacks '{name}'")
        value = training[name]
        valid = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        _require(valid, f"'training.{name}' has the wrong type ({type(value).__name__})")
        _require(
            not isinstance(value, float) or math.isfinite(value),
            f"'training.{name}' is not a finite number",
        )
        values[name] = value
    _require(
        all(_is_number(v) and math.isfinite(v) for v in values["history"]),
        "'training.history' must be a list of finite numbers",
    )
    _require(values["total_weight"] > 0, "'training.total_weight' must be positive")
    return FitInfo(**values)


def from_dict(data: Any) -> GaussianMixture:
    """A validated model from parsed JSON; ModelFileError names what is wrong."""
    _require(isinstance(data, dict), "is not a JSON object")
    _require(
        data.get("format") == FORMAT,
        f"is not a gmmcli model (format {data.get('format')!r}, expected {FORMAT!r})",
    )
    _require(
        data.get("version") == VERSION,
        f"has model format version {data.get('version')!r}; this gmmcli reads version "
        f"{VERSION} (upgrade gmmcli or refit)",
    )
    for key in ("covariance_type", "n_components", "n_features", "weights", "means"):
        _require(key in data, f"lacks '{key}'")
    _require("covariances" in data, "lacks 'covariances'")
    names = data.get("feature_names")
    _require(
        names is None or (isinstance(names, list) and all(isinstance(n, str) for n in names)),
        "'feature_names' must be a list of strings or null",
    )
    arrays = {k: _number_array(data[k]) for k in ("weights", "means", "covariances")}
    shape = arrays["means"].shape
    _require(
        shape == (data["n_components"], data["n_features"]),
        f"means have shape {shape}, but n_components is {data['n_components']} "
        f"and n_features {data['n_features']}",
    )
    try:
        return GaussianMixture(
            arrays["weights"],
            arrays["means"],
            arrays["covariances"],
            data["covariance_type"],
            names,
            _fit_info(data.get("training")),
        )
    except ModelFileError:
        raise
    except GMMError as err:
        raise ModelFileError(str(err)) from None


def _parse(text: str | bytes) -> GaussianMixture:
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"is not valid JSON ({err})") from None
    return from_dict(data)


def loads(text: str | bytes) -> GaussianMixture:
    """A model from JSON text."""
    try:
        return _parse(text)
    except ModelFileError as err:
        raise ModelFileError(f"model text {err}") from None


def save(model: GaussianMixture, path: str) -> None:
    """Write the model to ``path`` atomically."""
    atomic_write_bytes(path, dumps(model).encode())


def load(path: str) -> GaussianMixture:
    """Read and validate a model file; errors name the file and what is wrong."""
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ModelFileError(f"model file '{path}' does not exist") from None
    except OSError as err:
        raise ModelFileError(f"cannot read model file '{path}': {err.strerror}") from None
    try:
        return _parse(text)
    except ModelFileError as err:
        raise ModelFileError(f"model file '{path}' {err}") from None
