"""Shared seeded data for the core's tests: mixture samples and explicit EM starts.

Both fixtures hand out plain functions (session scope, so hypothesis tests can use them):
every data set is a pure function of its seed.

The CLI test modules (test_cli_*.py) share three more: in_tmp_path, which they use for every
test, and base and files, the data and models the CLI makes of a seed.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

# One BLAS thread per test process. The tests multiply tiny matrices, where OpenBLAS's
# threads only add synchronisation; with pytest -n 2 on two busy cores its spinning
# threads made this suite ~9x slower (65 s against 7 s). Set before numpy is imported;
# subprocesses (the CLI tests) inherit it. An explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's and scipy's wheels use OpenBLAS

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from gmmcli.core.structures import get_covariance  # noqa: E402

# CI runs the same hypothesis examples every time, so a red build is reproducible.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def make_mixture(
    seed: int,
    n_samples: int = 300,
    n_features: int = 2,
    n_components: int = 3,
    spread: float = 4.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows drawn from a random mixture with correlated covariances, and their labels.

    ``spread`` is the standard deviation of the component centres; with the unit-scale
    covariances used here, 4 gives overlapping clusters and 20 well-separated ones.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, (n_components, n_features))
    labels = rng.integers(0, n_components, n_samples)
    X = np.empty((n_samples, n_features))
    for k in range(n_components):
        A = rng.normal(size=(n_features, n_features))
        cov = A @ A.T / n_features + 0.3 * np.eye(n_features)
        rows = labels == k
        X[rows] = rng.multivariate_normal(centres[k], cov, int(rows.sum()))
    return X, labels


def _stored_like(covariance_type: str) -> str:
    """Which of scikit-learn's four a structure's parameters are shaped like."""
    cov = get_covariance(covariance_type)
    forms = ("tied", "full", "spherical", "diag")  # subclasses before their bases
    return next(form for form in forms if isinstance(cov, type(get_covariance(form))))


def make_start(
    X: np.ndarray,
    n_components: int,
    covariance_type: str,
    seed: int,
    weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """weights_init / means_init / precisions_init in scikit-learn's shapes.

    Means are distinct rows of positive weight, mixing weights a random point of the
    simplex, precisions the inverse of the data covariance scaled differently per component.
    """
    rng = np.random.default_rng(seed)
    n_features = X.shape[1]
    positive = np.flatnonzero(np.ones(len(X)) if weights is None else np.asarray(weights) > 0)
    means = X[rng.choice(positive, n_components, replace=False)]
    data_cov = np.atleast_2d(np.cov(X[positive].T, bias=True)) + 1e-3 * np.eye(n_features)
    scales = rng.uniform(0.3, 1.0, n_components)
    full = np.stack([np.linalg.inv(data_cov * s) for s in scales])
    precisions = {
        "full": full,
        "tied": np.linalg.inv(data_cov),
        "diag": np.stack([np.diag(p) for p in full]),
        "spherical": np.array([np.diag(p).mean() for p in full]),
    }[_stored_like(covariance_type)]
    return {
        "weights_init": rng.dirichlet(np.full(n_components, 5.0)),
        "means_init": means,
        "precisions_init": precisions,
    }


@pytest.fixture(scope="session")
def mixture():
    """make_mixture(seed, n_samples, n_features, n_components, spread) -> (X, labels)."""
    return make_mixture


@pytest.fixture(scope="session")
def start():
    """make_start(X, n_components, covariance_type, seed, weights) -> explicit-init kwargs."""
    return make_start


# --- the CLI test modules ----------------------------------------------------------------


@pytest.fixture
def in_tmp_path(tmp_path, monkeypatch):
    """tmp_path as the current directory, so messages show short relative paths."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def base():
    """Seeded data and models as text, made once by the CLI itself.

    csv: 40 rows, 2 well-separated components (x0, x1, true_component); model: a 2-component
    fit of it; blobs: 300 rows of 3 components; blobs_model: a 3-component fit of blobs.
    """
    # Imported here, not at the top: the core's tests must not need the command line.
    from cli_helpers import gmm, ok

    csv = ok(gmm("generate -k 2 -n 40 --seed 3 --separation 6 -q")).stdout
    blobs = ok(gmm("generate -k 3 -n 300 --seed 1 -q")).stdout
    return SimpleNamespace(
        csv=csv,
        model=ok(gmm("fit - -k 2 -q -o -", input=csv)).stdout,
        blobs=blobs,
        blobs_model=ok(gmm("fit - -k 3 -q -o -", input=blobs)).stdout,
        n_rows=40,
    )


@pytest.fixture
def files(base, in_tmp_path):
    """data.csv and model.json (2 components), blobs.csv and blobs.json (3 components).

    Written to the current directory, which in_tmp_path makes the test's own tmp_path.
    """
    Path("data.csv").write_text(base.csv)
    Path("model.json").write_text(base.model)
    Path("blobs.csv").write_text(base.blobs)
    Path("blobs.json").write_text(base.blobs_model)
    return base
