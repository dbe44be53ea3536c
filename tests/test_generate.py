"""Random mixtures of every structure (core/generate.py): each keeps its structure's
constraint and sharing, its model file loads, and scikit-learn's four draw as they always
have. End to end through the command line: test_cli_generate.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gmmcli
from gmmcli.core.generate import VARIANCE_RANGE, random_covariances, random_mixture
from gmmcli.core.structures import COVARIANCE_TYPES, SKLEARN_NAMES, get_covariance

CONSTRAINED = [name for name in COVARIANCE_TYPES if name not in SKLEARN_NAMES]
K, D = 3, 4

# What random_covariances(name, 2, 2, default_rng(2026)) drew before mclust's ten were
# added: a change to the random stream of the four changes every seeded `generate`.
FOUR_DRAWS = {
    "full": [
        [[1.1707978379127713, -0.18607442703371768], [-0.18607442703371765, 0.8037248582827282]],
        [[1.4363822399059676, 0.027939048501558175], [0.027939048501558313, 1.427792592933635]],
    ],
    "tied": [
        [1.1707978379127713, -0.18607442703371768],
        [-0.18607442703371765, 0.8037248582827282],
    ],
    "diag": [[0.5147217764105234, 1.0678957988581854], [0.8607220813721821, 0.7446006325296577]],
    "spherical": [0.5147217764105234, 1.0678957988581854],
}


@pytest.mark.parametrize("name", list(COVARIANCE_TYPES))
def test_every_structure_gives_a_model_with_its_constraint_whose_file_loads(name):
    model = random_mixture(K, D, covariance_type=name, rng=np.random.default_rng(7))
    structure = get_covariance(name)
    assert model.covariance_type == name
    assert model.covariances.shape == structure.shape(K, D)
    assert structure.constraint_error(model.covariances, D) is None
    text = gmmcli.dumps(model)
    loaded = gmmcli.loads(text)
    assert json.loads(text)["version"] == (1 if name in SKLEARN_NAMES else 2)
    np.testing.assert_array_equal(loaded.covariances, model.covariances)
    assert gmmcli.dumps(loaded) == text


@pytest.mark.parametrize("name", CONSTRAINED)
def test_the_parts_are_shared_as_the_structure_says(name):
    parts = random_mixture(K, D, covariance_type=name, rng=np.random.default_rng(3)).parts
    structure = get_covariance(name)
    identity = {"shapes": np.ones(D), "orientations": np.eye(D)}
    for letter, field in (
        (structure.volume, "volumes"),
        (structure.shape_kind, "shapes"),
        (structure.orientation, "orientations"),
    ):
        values = getattr(parts, field)
        if letter == "I":
            assert np.array_equal(values, np.stack([identity[field]] * K)), field
        elif letter == "E":
            assert np.array_equal(values, np.stack([values[0]] * K)), field
        else:  # drawn for every component
            assert len({v.tobytes() for v in values}) == K, field
    low, high = VARIANCE_RANGE
    assert np.all((low <= parts.volumes) & (parts.volumes <= high))
    np.testing.assert_allclose(np.prod(parts.shapes, axis=1), 1.0, rtol=1e-12)
    gram = np.swapaxes(parts.orientations, 1, 2) @ parts.orientations
    np.testing.assert_allclose(gram, np.stack([np.eye(D)] * K), atol=1e-12)


@pytest.mark.parametrize("name", [*COVARIANCE_TYPES, "vev", "VVV", "eii"])
def test_random_covariances_of_any_name(name):
    structure = get_covariance(name)
    covariances = random_covariances(name, K, D, np.random.default_rng(5))
    assert covariances.shape == structure.shape(K, D)
    assert structure.constraint_error(covariances, D) is None
    assert np.all(np.linalg.eigvalsh(structure.full_matrices(covariances, K, D)) > 0)


@pytest.mark.parametrize("name", list(FOUR_DRAWS))
def test_the_four_draw_as_they_always_have(name):
    drawn = random_covariances(name, 2, 2, np.random.default_rng(2026))
    # the same stream: to rounding, however BLAS computes the rotation
    np.testing.assert_allclose(drawn, FOUR_DRAWS[name], rtol=1e-12)


@pytest.mark.parametrize(("mclust", "sklearn"), [("VVV", "full"), ("eee", "tied"), ("VVI", "diag")])
def test_mclusts_names_of_the_four_draw_as_scikit_learns(mclust, sklearn):
    by_mclust = random_mixture(2, 3, covariance_type=mclust, rng=np.random.default_rng(1))
    by_sklearn = random_mixture(2, 3, covariance_type=sklearn, rng=np.random.default_rng(1))
    assert by_mclust.covariance_type == sklearn
    np.testing.assert_array_equal(by_mclust.covariances, by_sklearn.covariances)
