"""The JSON model format, version 2: mclust's ten constrained structures, held by their
volumes, shapes and orientations. Every one of the fourteen structures round-trips; each
file holds the keys of its structure's parts; and one test per way a version-2 file can be
broken (each a ModelFileError with one line naming the problem)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from modelfile_helpers import assert_rejected, edited

import gmmcli
from gmmcli.core.structures import COVARIANCE_TYPES, SKLEARN_NAMES
from gmmcli.io.modelfile import COMMON_KEYS

CONSTRAINED = [name for name in COVARIANCE_TYPES if name not in SKLEARN_NAMES]
K, D = 2, 3

PART_KEYS = {
    "EII": {"volume"},
    "EEI": {"volume", "shape"},
    "VEI": {"volumes", "shape"},
    "EVI": {"volume", "shapes"},
    "VEE": {"volumes", "shape", "orientation"},
    "EVE": {"volume", "shapes", "orientation"},
    "VVE": {"volumes", "shapes", "orientation"},
    "EEV": {"volume", "shape", "orientations"},
    "VEV": {"volumes", "shape", "orientations"},
    "EVV": {"volume", "shapes", "orientations"},
}
ENTRY_SHAPES = {  # the shape of each key's value for K components and D features
    "volume": (),
    "volumes": (K,),
    "shape": (D,),
    "shapes": (K, D),
    "orientation": (D, D),
    "orientations": (K, D, D),
}

# The README's example: VEV, variances 3 and 0.75 along axes turned by 30° for the first
# component, 1.6 and 0.4 along x0 and x1 for the second.
README_EXAMPLE = """{
  "format": "gmmcli-model",
  "version": 2,
  "covariance_type": "VEV",
  "n_components": 2,
  "n_features": 2,
  "feature_names": ["x0", "x1"],
  "weights": [0.6, 0.4],
  "means": [[0.0, 0.0], [4.0, 1.0]],
  "volumes": [1.5, 0.8],
  "shape": [2.0, 0.5],
  "orientations": [
    [[0.8660254037844387, -0.5], [0.5, 0.8660254037844387]],
    [[1.0, 0.0], [0.0, 1.0]]
  ],
  "training": null
}"""


@pytest.fixture(scope="module")
def data():
    """Two clusters in three correlated features."""
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(D, D))
    return np.concatenate([rng.normal(0.0, 1.0, (60, D)) @ mixing, rng.normal(5.0, 1.0, (40, D))])


@pytest.fixture(scope="module")
def fitted(data):
    """A fit of every one of the fourteen structures."""
    return {
        name: gmmcli.fit(data, K, covariance_type=name, seed=1, columns=["a", "b", "c"])
        for name in COVARIANCE_TYPES
    }


def text_of(fitted, name):
    return gmmcli.dumps(fitted[name])


# -- what a valid file is ------------------------------------------------------------


@pytest.mark.parametrize("name", list(COVARIANCE_TYPES))
def test_every_structure_round_trips(tmp_path, fitted, data, name):
    model = fitted[name]
    path = tmp_path / "model.json"
    gmmcli.save(model, str(path))
    once = gmmcli.load(str(path))
    # The first load keeps what the file holds, so it saves to the same bytes ...
    assert gmmcli.dumps(once) == path.read_text()
    twice = gmmcli.loads(gmmcli.dumps(once))
    # ... and from then on loads to the same model, bit for bit.
    np.testing.assert_array_equal(twice.covariances, once.covariances)
    assert np.array_equal(twice.predict_proba(data), once.predict_proba(data))
    assert np.array_equal(twice.score_samples(data), once.score_samples(data))
    assert twice.score(data) == once.score(data)
    assert once.covariance_type == model.covariance_type == name
    assert once.fit_info == model.fit_info
    assert once.feature_names == ["a", "b", "c"]
    assert json.loads(path.read_text())["version"] == (1 if name in SKLEARN_NAMES else 2)
    if name in SKLEARN_NAMES:  # covariances as they are: bit for bit from the fit on
        np.testing.assert_array_equal(once.covariances, model.covariances)
        assert np.array_equal(once.score_samples(data), model.score_samples(data))
    else:
        # The fitted covariances' parts are recovered by eigendecompositions, so the
        # covariances rebuilt from them differ by rounding: a few 1e-16 of the largest
        # entry (1e-15 measured), 1e-13 leaves room for other BLAS builds.
        scale = np.abs(model.covariances).max()
        np.testing.assert_allclose(once.covariances, model.covariances, rtol=0, atol=1e-13 * scale)
        np.testing.assert_allclose(once.score_samples(data), model.score_samples(data), rtol=1e-11)
        assert np.array_equal(once.predict(data), model.predict(data))


@pytest.mark.parametrize("name", CONSTRAINED)
def test_version_2_holds_the_structures_parts(fitted, name):
    document = json.loads(text_of(fitted, name))
    assert document["version"] == 2
    assert set(document) == set(COMMON_KEYS) | PART_KEYS[name]
    for key in PART_KEYS[name]:
        assert np.shape(document[key]) == ENTRY_SHAPES[key], key
    loaded = gmmcli.loads(text_of(fitted, name))
    for field, key in (("volumes", "volume"), ("shapes", "shape"), ("orientations", "orientation")):
        values = getattr(loaded.parts, field)
        if key in document:  # shared: the one entry, for every component
            assert np.array_equal(values, np.stack([document[key]] * K))
        elif field in document:
            assert np.array_equal(values, document[field])
    full = loaded.covariance.full_matrices(loaded.covariances, K, D)
    np.testing.assert_array_equal(full, loaded.parts.matrices())


def test_saving_is_deterministic(data):
    first = gmmcli.dumps(gmmcli.fit(data, 3, covariance_type="VVE", seed=4))
    second = gmmcli.fit(data, 3, covariance_type="VVE", seed=4)
    assert gmmcli.dumps(second) == first
    assert gmmcli.dumps(second) == first  # the parts recovered again, the same
    assert first == json.dumps(json.loads(first), sort_keys=True, indent=2) + "\n"


def test_the_readmes_example_loads_as_it_says():
    model = gmmcli.loads(README_EXAMPLE)
    assert model.covariance_type == "VEV"
    np.testing.assert_allclose(np.linalg.eigvalsh(model.covariances), [[0.75, 3.0], [0.4, 1.6]])
    np.testing.assert_allclose(np.linalg.eigh(model.covariances[0])[1][:, 1] ** 2, [0.75, 0.25])
    np.testing.assert_array_equal(model.covariances[1], np.diag([1.6, 0.4]))


def test_a_shape_product_within_the_tolerance_is_accepted():
    # |log ∏ a| = 5e-10 against 1e-9 · Σ |log a| = 1.4e-9
    text = edited(README_EXAMPLE, lambda d: d.update(shape=[2.0 * (1 + 5e-10), 0.5]))
    assert gmmcli.loads(text).parts.shapes[0, 0] == 2.0 * (1 + 5e-10)


def test_an_orientation_within_the_tolerance_is_accepted():
    def nudge(d):
        d["orientations"][1][0][0] = 1.0 + 4e-10  # OᵀO - I has 8e-10 on its diagonal

    assert gmmcli.loads(edited(README_EXAMPLE, nudge)).parts.orientations[1, 0, 0] == 1.0 + 4e-10


def test_a_model_keeps_the_parts_it_was_built_from_until_its_covariances_change():
    model = gmmcli.loads(README_EXAMPLE)
    document = json.loads(README_EXAMPLE)
    assert model.parts.volumes.tolist() == document["volumes"]
    model.covariances = model.covariances * 2.0
    np.testing.assert_allclose(model.parts.volumes, [3.0, 1.6])


def test_parts_of_the_four_are_none(fitted):
    assert all(fitted[name].parts is None for name in SKLEARN_NAMES)


# -- one test per kind of broken version-2 file ----------------------------------------


def _set(key, *path_and_value):
    """An edit that sets document[key][i][j]... (the path) to the value."""
    *path, value = path_and_value

    def edit(d):
        target = d[key] if path else d
        for index in path[:-1]:
            target = target[index]
        target[path[-1] if path else key] = value

    return edit


def _scale(key, *path_and_factor):
    """An edit that multiplies document[key][i]... by a factor."""
    *path, factor = path_and_factor

    def edit(d):
        target = d[key]
        for index in path[:-1]:
            target = target[index]
        target[path[-1]] *= factor

    return edit


BROKEN = {
    # (structure, edit, the message)
    "shape-product": ("VEV", _scale("shape", 0, 1.1), r"the shape has product 1\.[01]\d*, not 1$"),
    "shapes-product": (
        "EVE",
        _scale("shapes", 1, 2, 1.001),
        r"the shape of component 1 has product 1\.00\d*, not 1$",
    ),
    "shape-just-outside-tolerance": (
        "VEI",
        _scale("shape", 0, 1 + 1e-8),
        r"the shape has product 1\.0000000\d*, not 1$",
    ),
    "shape-zero": ("EEI", _set("shape", 0, 0.0), "the shape has an entry that is not positive$"),
    "shape-negative": (
        "EVV",
        _scale("shapes", 0, 0, -1.0),
        "the shape of component 0 has an entry that is not positive$",
    ),
    "orientations-not-orthonormal": (
        "VEV",
        _scale("orientations", 1, 0, 0, 1.5),
        r"the orientation of component 1 is not orthonormal \(an entry of OᵀO - I is .*\)$",
    ),
    "orientation-not-orthonormal": (
        "EVE",
        _set("orientation", 0, 1, 0.5),
        r"the orientation is not orthonormal \(an entry of OᵀO - I is .*\)$",
    ),
    "orientation-scaled": (
        "VVE",
        lambda d: d.update(orientation=(2.0 * np.array(d["orientation"])).tolist()),
        r"the orientation is not orthonormal \(an entry of OᵀO - I is 3\)$",
    ),
    "volumes-negative": (
        "VEV",
        _set("volumes", 1, -0.5),
        r"the volume of component 1 is -0\.5, not positive$",
    ),
    "volume-zero": ("EII", _set("volume", 0.0), r"the volume is 0\.0, not positive$"),
    "volume-a-list": (
        "EEV",
        lambda d: d.update(volume=[d["volume"]]),
        r"'volume' must be one number, not an array of shape \(1,\)$",
    ),
    "volume-a-string": ("EVI", _set("volume", "1.5"), "'volume' must be a number$"),
    "volumes-count": (
        "VEI",
        lambda d: d["volumes"].pop(),
        r"'volumes' has shape \(1,\), expected \(2,\)$",
    ),
    "shape-length": (
        "VEE",
        lambda d: d["shape"].pop(),
        r"'shape' has shape \(2,\), expected \(3,\)$",
    ),
    "shapes-of-one-component": (
        "EVI",
        lambda d: d.update(shapes=d["shapes"][0]),
        r"'shapes' has shape \(3,\), expected \(2, 3\)$",
    ),
    "orientations-of-one-component": (
        "EVV",
        lambda d: d.update(orientations=d["orientations"][0]),
        r"'orientations' has shape \(3, 3\), expected \(2, 3, 3\)$",
    ),
    "orientation-ragged": (
        "VEE",
        lambda d: d["orientation"][2].pop(),
        r"'orientation' must be \(nested\) arrays of numbers$",
    ),
    "shape-boolean": (
        "VEV",
        _set("shape", 1, True),
        r"'shape' must be \(nested\) arrays of numbers$",
    ),
    "unknown-key-covariances": (
        "VEV",
        lambda d: d.update(covariances=[]),
        r"has key 'covariances', unknown to format version 2 \(VEV models have 'volumes', "
        r"'shape' and 'orientations'\)$",
    ),
    "unknown-key-comment": (
        "EII",
        lambda d: d.update(comment="mine"),
        r"has key 'comment', unknown to format version 2 \(EII models have 'volume'\)$",
    ),
    "per-component-key-for-a-shared-part": (
        "EEV",
        lambda d: d.update(volumes=[d.pop("volume")] * 2),
        r"has key 'volumes', unknown to format version 2 \(EEV models have 'volume', "
        r"'shape' and 'orientations'\)$",
    ),
    "identity-part-given": (
        "EEI",
        lambda d: d.update(orientation=np.eye(3).tolist()),
        r"has key 'orientation', unknown to format version 2",
    ),
    "missing-volumes": (
        "VEV",
        lambda d: d.pop("volumes"),
        r"lacks 'volumes' \(VEV models have 'volumes', 'shape' and 'orientations'\)$",
    ),
    "missing-shape": ("VEV", lambda d: d.pop("shape"), r"lacks 'shape' \(VEV models have"),
    "missing-orientations": (
        "VEV",
        lambda d: d.pop("orientations"),
        r"lacks 'orientations' \(VEV models have",
    ),
    "missing-volume": ("EII", lambda d: d.pop("volume"), r"lacks 'volume' \(EII models have"),
    "version-1-naming-VEV": (
        "VEV",
        _set("version", 1),
        r"is format version 1, which has no VEV models \(mclust's ten constrained "
        r"structures are version 2\)$",
    ),
    "version-1-naming-eii-in-lower-case": (
        "EII",
        lambda d: d.update(version=1, covariance_type="eii"),
        r"is format version 1, which has no EII models",
    ),
    "version-4": (
        "VVE",
        _set("version", 4),
        r"has model format version 4; this gmmcli reads versions 1, 2 and 3 \(upgrade gmmcli "
        r"or refit\)$",
    ),
    "covariance-type-unknown": (
        "VEV",
        _set("covariance_type", "VXV"),
        r"covariance_type must be one of EII, spherical \(VII\), EEI",
    ),
    "means-of-other-features": (
        "VEV",
        lambda d: d.update(means=[row[:2] for row in d["means"]]),
        r"means have shape \(2, 2\), but n_components is 2 and n_features 3$",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_version_2_file(tmp_path, fitted, case):
    name, edit, match = BROKEN[case]
    assert_rejected(tmp_path, edited(text_of(fitted, name), edit), match)


@pytest.mark.parametrize(
    "name", ["full", "tied", "diag", "spherical"], ids=lambda n: f"version-2-naming-{n}"
)
def test_version_2_naming_one_of_the_four(tmp_path, fitted, name):
    content = edited(text_of(fitted, name), _set("version", 2))
    match = (
        rf"is format version 2, which has no {name} models \(full, tied, diag and spherical "
        r"are version 1\)$"
    )
    assert_rejected(tmp_path, content, match)


def test_version_2_with_parts_in_place_of_covariances_of_the_four(tmp_path, fitted):
    def as_parts(d):
        d.pop("covariances")
        d.update(version=2, volumes=[1.0, 1.0])

    assert_rejected(tmp_path, edited(text_of(fitted, "spherical"), as_parts), "version 2")


@pytest.mark.parametrize(
    ("name", "key", "place", "match"),
    [
        ("VEV", "volumes", lambda d, v: d["volumes"].__setitem__(0, v), "volumes contain a"),
        ("EII", "volume", lambda d, v: d.update(volume=v), "volumes contain a non-finite"),
        ("EVE", "shapes", lambda d, v: d["shapes"][1].__setitem__(0, v), "shapes contain a"),
        (
            "EEV",
            "orientations",
            lambda d, v: d["orientations"][0][1].__setitem__(1, v),
            "orientations",
        ),
    ],
    ids=["volumes", "volume", "shapes", "orientations"],
)
def test_a_part_overflowing_to_infinity(tmp_path, fitted, name, key, place, match):
    # 1e999 is valid JSON syntax, but Python parses it as inf
    content = edited(text_of(fitted, name), lambda d: place(d, "__TOKEN__"))
    assert_rejected(tmp_path, content.replace('"__TOKEN__"', "1e999"), match)
    nan = content.replace('"__TOKEN__"', "NaN")
    assert_rejected(tmp_path, nan, "contains the non-finite number NaN")


def test_a_broken_file_is_refused_in_one_line(tmp_path, fitted):
    content = edited(text_of(fitted, "VEV"), _scale("orientations", 0, 1, 1, 3.0))
    (tmp_path / "model.json").write_text(content)
    with pytest.raises(gmmcli.GMMError) as err:
        gmmcli.load(str(tmp_path / "model.json"))
    assert "\n" not in str(err.value)
