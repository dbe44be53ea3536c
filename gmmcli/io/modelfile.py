"""The JSON model format: dump, load, validate. Never pickle.

Version 1 holds scikit-learn's four structures (full, tied, diag, spherical) by their
covariances, as since gmmcli 0.1.0. Version 2 holds mclust's ten constrained structures by
what defines them: volumes, shapes and orientations, one entry where the structure shares a
part, one per component where it varies and none where it is the identity; covariances
follow on load. Version 3 is a model whose components name classes (a fit with labels):
either structure's keys, and ``class_names`` (in class order) with ``component_classes``
(each component's class name, null for one of no class). A model is written in the
lowest version that holds it, so files of the four stay readable by older gmmcli, and the
loaders of versions 2 and 3 refuse keys they do not know, so that a later format is not
misread as theirs.

Floats are written by ``repr`` (Python's json does this), so a saved model loads back
bit-identical; keys are sorted and there are no timestamps, so reruns give the same bytes.
A model of the ten keeps the parts it was loaded from, so it saves to the same bytes; one
fitted or given by covariances is saved with the parts recovered from them, whose
covariances differ from the fitted ones by rounding only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gmmcli import __version__
from gmmcli.core.constrained import Constrained, Parts
from gmmcli.core.covariance import Covariance
from gmmcli.core.discriminant import joined
from gmmcli.core.em import UNLABELLED
from gmmcli.core.model import Classes, FitInfo, GaussianMixture
from gmmcli.core.structures import get_covariance
from gmmcli.errors import GMMError, UserError
from gmmcli.io.atomic import atomic_write_bytes

FORMAT = "gmmcli-model"
VERSION = 1  # scikit-learn's four structures, by their covariances
PARTS_VERSION = 2  # mclust's ten constrained structures, by their parts
CLASSES_VERSION = 3  # a model whose components name classes, of any structure
CLASS_KEYS = ("class_names", "component_classes")
VERSIONS = (VERSION, PARTS_VERSION, CLASSES_VERSION)
# The keys of every version-2 file; its part keys (PART_KEYS) depend on its structure.
COMMON_KEYS = (
    *("format", "version", "covariance_type", "n_components", "n_features"),
    *("feature_names", "weights", "means", "training"),
)


@dataclass(frozen=True)
class PartKeys:
    """How a version-2 file holds one part of the covariances: ``shared`` is the key of
    the one entry of a part every component shares (letter E), ``field`` (also the Parts
    field) that of one entry per component (letter V); a part that is the identity (I)
    has no key. An entry has ``axes`` axes of length D: a number, a vector, a matrix."""

    letter: str  # the structure's attribute holding the part's letter
    field: str
    shared: str
    axes: int


PART_KEYS = (
    PartKeys("volume", "volumes", "volume", 0),
    PartKeys("shape_kind", "shapes", "shape", 1),
    PartKeys("orientation", "orientations", "orientation", 2),
)

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
OPTIONAL_TRAINING_FIELDS: dict[str, tuple[type, ...]] = {"missing_cells": (int,)}  # newer


class ModelFileError(UserError):
    """A model file or text that is not a valid gmmcli model."""


def _part_keys(structure: Constrained) -> list[tuple[PartKeys, str]]:
    """Each part a version-2 file of ``structure`` holds, with its key."""
    keys = []
    for part in PART_KEYS:
        letter = getattr(structure, part.letter)
        if letter != "I":
            keys.append((part, part.shared if letter == "E" else part.field))
    return keys


def _mixture_dict(model: GaussianMixture) -> dict[str, Any]:
    """A mixture's keys: its structure, sizes, weights, means and covariances (or parts)."""
    data: dict[str, Any] = {
        "covariance_type": model.covariance_type,
        "n_components": model.n_components,
        "n_features": model.n_features,
        "weights": model.weights.tolist(),
        "means": model.means.tolist(),
    }
    parts = model.parts  # None for scikit-learn's four
    if parts is None:
        data["covariances"] = model.covariances.tolist()
    else:
        for part, key in _part_keys(model.covariance):
            values = getattr(parts, part.field)
            data[key] = (values if key == part.field else values[0]).tolist()
    return data


def to_dict(model: GaussianMixture) -> dict[str, Any]:
    """The model as plain JSON-ready data: format version 1 for scikit-learn's four
    structures, 2 for mclust's ten, 3 for a model with classes."""
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION if model.parts is None else PARTS_VERSION,
        "feature_names": model.feature_names,
        "training": None,
    }
    classes = model.classes
    if classes is not None and classes.mixtures is not None:
        data.update(version=CLASSES_VERSION, n_features=model.n_features)
        data["classes"] = [
            {"name": name, "prior": prior, "mixture": _mixture_dict(mixture)}
            for name, prior, mixture in zip(
                classes.names, classes.priors, classes.mixtures, strict=True
            )
        ]
    else:
        data.update(_mixture_dict(model))
    if classes is not None and classes.mixtures is None:
        names = classes.names
        data["version"] = CLASSES_VERSION
        data["class_names"] = list(names)
        data["component_classes"] = [classes.class_of(k) for k in range(len(classes.owners))]
    info = model.fit_info
    if info is not None:
        fields = {**TRAINING_FIELDS, **OPTIONAL_TRAINING_FIELDS}
        training = {name: getattr(info, name) for name in fields}
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


def _number_array(data: dict[str, Any], key: str, number: bool = False) -> np.ndarray:
    """``data[key]``, a JSON (nested) list of numbers (or, if ``number``, a number), as a
    float array; strings and booleans are refused."""
    message = f"'{key}' must be " + ("a number" if number else "(nested) arrays of numbers")
    try:
        entries = np.array(data[key], dtype=object)
    except ValueError:  # ragged nesting
        raise ModelFileError(message) from None
    _require(all(_is_number(v) for v in entries.flat), message)
    return entries.astype(float)


def _listing(keys: list[str]) -> str:
    """'a', 'b' and 'c'."""
    quoted = [f"'{key}'" for key in keys]
    return " and ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)


def _fit_info(training: Any) -> FitInfo | None:
    if training is None:
        return None
    _require(isinstance(training, dict), "'training' must be an object or null")
    values = {}
    for name, types in {**TRAINING_FIELDS, **OPTIONAL_TRAINING_FIELDS}.items():
        if name in OPTIONAL_TRAINING_FIELDS and name not in training:
            continue
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


def _structure(name: Any) -> Covariance:
    try:
        return get_covariance(name)
    except GMMError as err:
        raise ModelFileError(str(err)) from None


def _check_version(version: Any) -> None:
    _require(
        type(version) is int and version in VERSIONS,
        f"has model format version {version!r}; this gmmcli reads versions "
        f"{', '.join(map(str, VERSIONS[:-1]))} and {VERSIONS[-1]} (upgrade gmmcli or refit)",
    )


def _check_structure(version: int, structure: Covariance) -> None:
    """The file's version is the one of its structure (version 3 has every one)."""
    if version == CLASSES_VERSION:
        return
    if isinstance(structure, Constrained):
        _require(
            version == PARTS_VERSION,
            f"is format version {version}, which has no {structure.name} models "
            f"(mclust's ten constrained structures are version {PARTS_VERSION})",
        )
    else:
        _require(
            version == VERSION,
            f"is format version {version}, which has no {structure.name} models "
            f"(full, tied, diag and spherical are version {VERSION})",
        )


def _own_keys(structure: Covariance) -> list[str]:
    """The keys of a structure's covariances: its parts' (mclust's ten constrained
    structures) or "covariances"."""
    if isinstance(structure, Constrained):
        return [key for _, key in _part_keys(structure)]
    return ["covariances"]


def _check_keys(data: dict[str, Any], structure: Covariance) -> None:
    """A file of version 2 or 3 has no key its version does not know."""
    version = data["version"]
    if version == VERSION:
        return
    own = [*_own_keys(structure), *(CLASS_KEYS if version == CLASSES_VERSION else ())]
    unknown = sorted(set(data) - {*COMMON_KEYS, *own})
    if unknown:
        raise ModelFileError(
            f"has key '{unknown[0]}', unknown to format version {version} "
            f"({structure.name} models have {_listing(own)})"
        )


def _classes(data: dict[str, Any], n_components: int) -> Classes | None:
    """A version-3 file's classes: its class names, and each component's class (or null)."""
    if data["version"] != CLASSES_VERSION:
        return None
    for key in CLASS_KEYS:
        _require(key in data, f"lacks '{key}' (format version 3 is a model with classes)")
    names, owners = data["class_names"], data["component_classes"]
    _require(
        isinstance(names, list) and names and all(isinstance(n, str) for n in names),
        "'class_names' must be a list of strings",
    )
    _require(
        isinstance(owners, list)
        and len(owners) == n_components
        and all(owner is None or owner in names for owner in owners),
        f"'component_classes' must list, for each of the {n_components} components, one of "
        "'class_names' or null",
    )
    try:
        owners = tuple(UNLABELLED if o is None else names.index(o) for o in owners)
        return Classes(tuple(names), owners)
    except GMMError as err:
        raise ModelFileError(str(err)) from None


def _parts(data: dict[str, Any], structure: Constrained, shape: tuple[int, int]) -> Parts:
    """The parts a version-2 or 3 file holds, one entry per component (shared entries
    repeated, identity parts filled in); missing and misshapen keys refused."""
    n_components, n_features = shape
    keys = _part_keys(structure)
    listing = _listing([key for _, key in keys])
    entries: dict[str, np.ndarray] = {
        "shapes": np.stack([np.ones(n_features)] * n_components),
        "orientations": np.stack([np.eye(n_features)] * n_components),
    }
    for part, key in keys:
        _require(key in data, f"lacks '{key}' ({structure.name} models have {listing})")
        expected = (n_features,) * part.axes
        if key == part.field:
            expected = (n_components, *expected)
        value = _number_array(data, key, number=expected == ())
        _require(
            value.shape == expected,
            f"'{key}' must be one number, not an array of shape {value.shape}"
            if expected == ()
            else f"'{key}' has shape {value.shape}, expected {expected}",
        )
        entries[part.field] = value if key == part.field else np.stack([value] * n_components)
    return Parts(entries["volumes"], entries["shapes"], entries["orientations"])


def from_dict(data: Any) -> GaussianMixture:
    """A validated model from parsed JSON; ModelFileError names what is wrong."""
    _require(isinstance(data, dict), "is not a JSON object")
    _require(
        data.get("format") == FORMAT,
        f"is not a gmmcli model (format {data.get('format')!r}, expected {FORMAT!r})",
    )
    _check_version(data.get("version"))
    names = data.get("feature_names")
    _require(
        names is None or (isinstance(names, list) and all(isinstance(n, str) for n in names)),
        "'feature_names' must be a list of strings or null",
    )
    if data["version"] == CLASSES_VERSION and "classes" in data:
        return _class_mixtures(data, names)
    return _mixture(data, data["version"], names)


CLASS_MIXTURES_KEYS = ("format", "version", "n_features", "feature_names", "classes", "training")
MIXTURE_KEYS = ("covariance_type", "n_components", "n_features", "weights", "means")


def _class_mixtures(data: dict[str, Any], names: list[str] | None) -> GaussianMixture:
    """A version-3 model of a mixture per class (discriminant analysis): its classes,
    each with its name, prior and mixture, joined (core.discriminant.joined)."""
    unknown = sorted(set(data) - set(CLASS_MIXTURES_KEYS))
    if unknown:
        raise ModelFileError(f"has key '{unknown[0]}', unknown to a model of classes (version 3)")
    n_features = data.get("n_features")
    _require(type(n_features) is int and n_features > 0, "'n_features' must be a positive integer")
    classes = data["classes"]
    _require(
        isinstance(classes, list) and classes and all(isinstance(c, dict) for c in classes),
        "'classes' must be a list of objects",
    )
    class_names, priors, mixtures = [], [], []
    for entry in classes:
        _require(
            set(entry) == {"name", "prior", "mixture"},
            "each of 'classes' must have 'name', 'prior' and 'mixture'",
        )
        _require(isinstance(entry["name"], str), "a class's 'name' must be a string")
        prior = entry["prior"]
        _require(
            _is_number(prior) and math.isfinite(prior) and prior >= 0,
            "a class's 'prior' must be a number, not negative",
        )
        _require(isinstance(entry["mixture"], dict), "a class's 'mixture' must be an object")
        mixture = _mixture(entry["mixture"], None, names, nested=True)
        _require(
            mixture.n_features == n_features,
            f"class {entry['name']!r}'s mixture has {mixture.n_features} features, the model "
            f"{n_features}",
        )
        class_names.append(entry["name"])
        priors.append(float(prior))
        mixtures.append(mixture)
    _require(abs(sum(priors) - 1) <= 1e-9, "the classes' priors must sum to 1")
    info = _fit_info(data.get("training"))
    try:
        return joined(class_names, np.array(priors), mixtures, names, info)
    except GMMError as err:
        raise ModelFileError(str(err)) from None


def _mixture(
    data: dict[str, Any], version: int | None, names: list[str] | None, nested: bool = False
) -> GaussianMixture:
    """One mixture's model from its keys (``nested``: a class's, in a version-3 model of
    classes: no format, version or training of its own)."""
    for key in MIXTURE_KEYS:
        _require(key in data, f"lacks '{key}'")
    structure = _structure(data["covariance_type"])
    if nested:
        unknown = sorted(set(data) - {*MIXTURE_KEYS, *_own_keys(structure)})
        _require(not unknown, f"a class's mixture has key '{unknown[0] if unknown else ''}'")
    else:
        _check_structure(version, structure)
        _check_keys(data, structure)
    constrained = isinstance(structure, Constrained)
    _require(constrained or "covariances" in data, "lacks 'covariances'")
    weights, means = _number_array(data, "weights"), _number_array(data, "means")
    _require(
        means.shape == (data["n_components"], data["n_features"]),
        f"means have shape {means.shape}, but n_components is {data['n_components']} "
        f"and n_features {data['n_features']}",
    )
    if constrained:
        parts = _parts(data, structure, means.shape)
    else:
        covariances = _number_array(data, "covariances")
    info = None if nested else _fit_info(data.get("training"))
    classes = None if nested else _classes(data, len(means))
    try:
        if constrained:
            return GaussianMixture.from_parts(
                weights, means, parts, structure.name, names, info, classes
            )
        return GaussianMixture(weights, means, covariances, structure.name, names, info, classes)
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
