"""mclust's fourteen structures: each M-step against a direct numerical maximisation, the
order constraints put on the likelihood, monotone EM and the parameter counts."""

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize

import gmmcli
from gmmcli.core import constrained
from gmmcli.core.constrained import Parts
from gmmcli.core.covariance import unpack
from gmmcli.core.em import accumulate
from gmmcli.core.structures import COVARIANCE_TYPES, SKLEARN_NAMES, get_covariance

N_FEATURES, N_COMPONENTS = 3, 2


def _statistics(cov, seed):
    """(nk, means, second) of random soft memberships of skewed random rows."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(90, N_FEATURES)) @ rng.normal(size=(N_FEATURES, N_FEATURES))
    weights = rng.uniform(0.5, 2.0, len(X))
    resp = rng.dirichlet(np.ones(N_COMPONENTS), len(X)).T
    stats = accumulate(X, weights, resp, cov)
    return stats.nk, stats.sx / stats.nk[:, None], stats.second


def _objective(covariances, scatter, nk):
    """Σₖ nₖ log|Σₖ| + tr(Σₖ⁻¹ Wₖ): minus twice the expected complete-data log-likelihood,
    less n·D·log 2π (infinite where a covariance is singular)."""
    sign, logdet = np.linalg.slogdet(covariances)
    if np.any(sign <= 0) or not np.all(np.isfinite(logdet)):
        return np.inf
    traces = np.trace(np.linalg.solve(covariances, scatter), axis1=1, axis2=2)
    return float(nk @ logdet + traces.sum())


def _expected_log_likelihood(objective, nk):
    return -0.5 * (objective + nk.sum() * N_FEATURES * np.log(2 * np.pi))


def _rotations(vectors):
    """Rotations of 3-space by each vector's length about its direction (Rodrigues)."""
    angles = np.linalg.norm(vectors, axis=1)[:, None, None]
    x, y, z = (vectors / np.maximum(angles[:, :, 0], 1e-300)).T
    zero = np.zeros_like(x)
    cross = np.stack([[zero, -z, y], [z, zero, -x], [-y, x, zero]]).transpose(2, 0, 1)
    return np.eye(3) + np.sin(angles) * cross + (1 - np.cos(angles)) * (cross @ cross)


def _direct_minimum(name, scatter, nk, rng):
    """The structure's best covariances by BFGS over parameters that keep its constraint
    (log volumes, log shapes summing to zero, rotations by axis and angle), polished by
    Newton steps: (objective, covariances)."""
    volume, shape, orientation = get_covariance(name).mclust_name
    d, k = N_FEATURES, N_COMPONENTS
    counts = {"E": 1, "V": k, "I": 0}
    sizes = [counts[volume], counts[shape] * (d - 1), counts[orientation] * d * (d - 1) // 2]

    def parts(theta):
        volumes, shapes, angles = np.split(theta, np.cumsum(sizes)[:-1])
        log_shapes = np.zeros((k, d))
        if shape != "I":
            free = shapes.reshape(-1, d - 1)
            log_shapes[:] = np.hstack([free, -free.sum(axis=1, keepdims=True)])
        rotations = np.broadcast_to(np.eye(d), (k, d, d))
        if orientation != "I":
            rotations = np.broadcast_to(_rotations(angles.reshape(-1, 3)), (k, d, d))
        return np.exp(np.broadcast_to(volumes, k)[:, None] + log_shapes), rotations

    def objective(theta):
        values, rotations = parts(theta)
        rotated = np.einsum("kij,kil,klj->kj", rotations, scatter, rotations)
        return float(nk @ np.log(values).sum(axis=1) + (rotated / values).sum())

    starts = (rng.normal(scale=0.5, size=sum(sizes)) for _ in range(3))
    best = min((minimize(objective, x, method="BFGS") for x in starts), key=lambda found: found.fun)
    value, x = _newton_polished(objective, best.x)
    values, rotations = parts(x)
    return value, np.einsum("kij,kj,klj->kil", rotations, values, rotations)


def _newton_polished(objective, x, steps=8):
    """Newton steps on central-difference derivatives from near a minimum, while they lower
    the objective: BFGS alone stalls short of 1e-8 on ill-conditioned problems. Returns the
    value and leaves the point in ``_newton_polished.x``."""

    def gradient(point, h=1e-6):
        return np.array(
            [
                (objective(point + h * e) - objective(point - h * e)) / (2 * h)
                for e in np.eye(len(point))
            ]
        )

    value = objective(x)
    for _ in range(steps):
        h = 1e-4
        hessian = np.array(
            [(gradient(x + h * e) - gradient(x - h * e)) / (2 * h) for e in np.eye(len(x))]
        )
        step = np.linalg.lstsq(0.5 * (hessian + hessian.T), gradient(x), rcond=None)[0]
        if not objective(x - step) < value:
            break
        x = x - step
        value = objective(x)
    return value, x


def _full_statistics(seed):
    """(nk, Wₖ) of _statistics(), the scatter matrices computed here from the full moments."""
    nk, means, second = _statistics(get_covariance("full"), seed)
    scatter = unpack(second, N_FEATURES) - nk[:, None, None] * means[:, :, None] * means[:, None, :]
    return nk, scatter


ITERATIVE = ("VEI", "VEE", "EVE", "VVE", "VEV")
CASES = [(name, 1) for name in COVARIANCE_TYPES] + [(name, 0) for name in ITERATIVE]


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_m_step_is_the_structures_maximum(name, seed):
    cov = get_covariance(name)
    nk, scatter = _full_statistics(seed)
    own_stats = _statistics(cov, seed)
    estimate = cov.estimate(*own_stats, 0.0)
    ours = cov.full_matrices(estimate, N_COMPONENTS, N_FEATURES)
    value = _objective(ours, scatter, nk)
    direct, best = _direct_minimum(name, scatter, nk, np.random.default_rng(seed))
    ours_ll, direct_ll = (_expected_log_likelihood(v, nk) for v in (value, direct))
    np.testing.assert_allclose(ours_ll, direct_ll, rtol=1e-8)
    np.testing.assert_allclose(ours, best, rtol=1e-5, atol=1e-5 * np.abs(best).max())


def _rank(letter):
    return "IEV".index(letter)


NESTED = [
    (inner, outer)
    for inner, outer in itertools.permutations(COVARIANCE_TYPES, 2)
    if all(
        _rank(a) <= _rank(b)
        for a, b in zip(
            get_covariance(inner).mclust_name, get_covariance(outer).mclust_name, strict=True
        )
    )
]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_constraint_never_gains_likelihood(seed):
    """From the same memberships, a structure's M-step reaches no higher an expected
    log-likelihood than any structure it is a special case of (EII ≤ VII ≤ VVI ≤ VVV, ...)."""
    nk, scatter = _full_statistics(seed)
    value = {}
    for name, cov in COVARIANCE_TYPES.items():
        estimate = cov.estimate(*_statistics(cov, seed), 0.0)
        value[name] = _objective(cov.full_matrices(estimate, N_COMPONENTS, N_FEATURES), scatter, nk)
    assert len(NESTED) == 61
    for inner, outer in NESTED:
        assert value[inner] >= value[outer] - 1e-9 * abs(value[outer]), (inner, outer)


def test_parameter_counts_are_mclusts():
    # mclust's nVarParams for G = 3 components in d = 4 dimensions
    expected = {
        "EII": 1, "VII": 3, "EEI": 4, "VEI": 6, "EVI": 10, "VVI": 12, "EEE": 10,
        "VEE": 12, "EVE": 16, "VVE": 18, "EEV": 22, "VEV": 24, "EVV": 28, "VVV": 30,
    }  # fmt: skip
    counts = {c.mclust_name: c.n_parameters(3, 4) for c in COVARIANCE_TYPES.values()}
    assert counts == expected
    assert tuple(COVARIANCE_TYPES) == (
        *("EII", "spherical", "EEI", "VEI", "EVI", "diag", "tied"),
        *("VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "full"),
    )
    assert (
        tuple(n for n, c in COVARIANCE_TYPES.items() if getattr(c, "iterative", False)) == ITERATIVE
    )


def _three_blobs(n=600, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, 0.0], [1.0, 5.0, 2.0]])
    labels = rng.integers(0, 3, n)
    scales = rng.uniform(0.5, 1.5, (3, 3, 3))
    return centres[labels] + np.einsum("nij,nj->ni", scales[labels], rng.normal(size=(n, 3)))


@pytest.mark.filterwarnings("ignore:EM did not converge")
@pytest.mark.parametrize("name", list(COVARIANCE_TYPES))
def test_em_is_monotone_without_regularisation(name):
    model = gmmcli.fit(
        _three_blobs(), 3, covariance_type=name, reg_covar=0.0, tol=1e-10, max_iter=60, seed=1
    )
    history = np.array(model.fit_info.history)
    assert np.all(np.diff(history) >= -1e-12 * np.abs(history[1:]))
    assert model.fit_info.largest_drop == 0.0
    assert get_covariance(name).constraint_error(model.covariances, 3) is None


@pytest.mark.parametrize("name", [n for n in COVARIANCE_TYPES if n not in SKLEARN_NAMES])
def test_regularisation_keeps_the_structure(name):
    cov = get_covariance(name)
    estimate = cov.estimate(*_statistics(cov, 0), 0.5)
    assert cov.constraint_error(estimate, N_FEATURES) is None
    plain = cov.estimate(*_statistics(cov, 0), 0.0)
    assert not np.allclose(estimate, plain)


def test_an_empty_component_keeps_only_its_own_parameters():
    cov = get_covariance("VEV")
    nk, means, second = _statistics(cov, 0)
    previous = cov.estimate(nk, means, second, 0.0)
    nk[1], second[1] = 0.0, 0.0
    after = cov.estimate(nk, means, second, 0.0, previous)
    before_parts, after_parts = cov.parts(previous, N_FEATURES), cov.parts(after, N_FEATURES)
    # its volume and orientation are its own: kept; the shape is shared: from component 0
    np.testing.assert_allclose(after_parts.volumes[1], before_parts.volumes[1], rtol=1e-12)
    np.testing.assert_allclose(
        np.abs(after_parts.orientations[1]), np.abs(before_parts.orientations[1]), atol=1e-10
    )
    alone = cov.estimate(nk[:1], means[:1], second[:1], 0.0)
    np.testing.assert_allclose(after[0], alone[0], rtol=1e-10)
    np.testing.assert_allclose(after_parts.shapes[1], after_parts.shapes[0], rtol=1e-12)


def test_a_capped_inner_loop_says_so(monkeypatch):
    monkeypatch.setattr(constrained, "INNER_MAX_ITER", 2)
    cov = get_covariance("VVE")
    with pytest.warns(
        gmmcli.GMMWarning, match="VVE M-step stopped at its cap of 2 inner iterations"
    ):
        cov.estimate(*_statistics(cov, 0), 0.0)


@pytest.mark.parametrize("name", list(COVARIANCE_TYPES))
def test_one_feature_collapses_to_equal_or_varying_variance(name):
    X = _three_blobs()[:, :1]
    model = gmmcli.fit(X, 2, covariance_type=name, seed=0)
    same = "EII" if get_covariance(name).mclust_name[0] == "E" else "VII"
    reference = gmmcli.fit(X, 2, covariance_type=same, seed=0)
    np.testing.assert_allclose(
        model.fit_info.log_likelihood, reference.fit_info.log_likelihood, rtol=1e-9
    )
    assert model.n_parameters == reference.n_parameters


def test_a_grid_takes_all_and_defaults_to_the_fourteen():
    assert gmmcli.Grid().covariance_types == tuple(COVARIANCE_TYPES)
    assert gmmcli.Grid(covariance_types=["ALL", "full"]).covariance_types == tuple(COVARIANCE_TYPES)
    assert gmmcli.Grid(covariance_types=["vev", "sklearn"]).covariance_types == (
        "VEV",
        *SKLEARN_NAMES,
    )


def test_one_feature_fits_e_and_v_once_each_and_says_so():
    X = _three_blobs()[:, :1]
    points, best = gmmcli.select_k(X, [1, 2], n_init=1)
    assert [(p.covariance_type, p.model, p.n_components) for p in points] == [
        ("EII", "E", 1), ("EII", "E", 2), ("spherical", "V", 1), ("spherical", "V", 2),
    ]  # fmt: skip
    assert best.n_components == 2


def test_the_table_names_each_structure_by_mclusts_name_too():
    points, _ = gmmcli.select_k(_three_blobs(200), [2], covariance_types=["VEV", "diag"], n_init=1)
    assert [(p.covariance_type, p.model) for p in points] == [("VEV", "VEV"), ("diag", "VVI")]


@pytest.mark.parametrize("name", [n for n in COVARIANCE_TYPES if n not in SKLEARN_NAMES])
def test_integer_weights_are_repeated_rows(name):
    """On well-conditioned data (tests/test_properties.py draws tiny problems for the four:
    there a shared shape or orientation of near-singular scatters can turn on rounding)."""
    X = _three_blobs(300)
    weights = np.random.default_rng(2).integers(0, 4, len(X))
    options = dict(covariance_type=name, seed=4, tol=1e-10, max_iter=200, n_init=1)
    weighted = gmmcli.fit(X, 3, weights=weights, **options)
    repeated = gmmcli.fit(np.repeat(X, weights, axis=0), 3, **options)
    np.testing.assert_allclose(weighted.covariances, repeated.covariances, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(weighted.means, repeated.means, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(
        weighted.fit_info.log_likelihood, repeated.fit_info.log_likelihood, rtol=1e-10
    )


# -- GaussianMixture refuses covariances that break their structure -----------------------


def _turned(angle):
    """The rotation of the plane by ``angle``."""
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def _built(volumes, shape, angles):
    """Two 2-D covariances λₖ Oₖ diag(A) Oₖᵀ."""
    return np.stack(
        [
            v * _turned(a) @ np.diag(shape) @ _turned(a).T
            for v, a in zip(volumes, angles, strict=True)
        ]
    )


BREAKING = {  # (structure, covariances that break it, which holds the one next to it)
    "EII-unequal-values": ("EII", [1.0, 2.0], "VII"),
    "EEI-unequal-rows": ("EEI", [[1.0, 2.0], [2.0, 1.0]], "VVI"),
    "EEI-unequal-volumes": ("EEI", [[1.0, 2.0], [2.0, 4.0]], "VEI"),
    "VEI-unequal-shapes": ("VEI", [[1.0, 2.0], [1.0, 3.0]], "VVI"),
    "EVI-unequal-volumes": ("EVI", [[1.0, 1.0], [2.0, 2.0]], "VVI"),
    "VEE-different-orientations": ("VEE", _built([1.0, 2.0], [2.0, 0.5], [0.3, 0.0]), "VEV"),
    "EVE-different-orientations": ("EVE", _built([1.0, 1.0], [2.0, 0.5], [0.3, 0.0]), "EEV"),
    "VVE-different-orientations": ("VVE", _built([1.0, 2.0], [2.0, 0.5], [0.3, 0.0]), "VEV"),
    "EEV-unequal-volumes": ("EEV", _built([1.0, 2.0], [2.0, 0.5], [0.3, 0.0]), "VEV"),
    "VEV-unequal-shapes": (
        "VEV",
        np.stack([_built([1.0], [2.0, 0.5], [0.3])[0], _built([2.0], [4.0, 0.25], [0.0])[0]]),
        "VVV",
    ),
    "EVV-unequal-volumes": ("EVV", _built([1.0, 2.0], [2.0, 0.5], [0.3, 0.0]), "VEV"),
}


@pytest.mark.parametrize("case", list(BREAKING))
def test_a_model_refuses_covariances_that_break_its_structure(case):
    name, covariances, holds = BREAKING[case]
    weights, means = [0.5, 0.5], [[0.0, 0.0], [3.0, 3.0]]
    words = get_covariance(name).describe()
    with pytest.raises(gmmcli.GMMError, match=rf"^the covariances do not have the {name} "):
        gmmcli.GaussianMixture(weights, means, covariances, name)
    with pytest.raises(gmmcli.GMMError, match=rf"\({words}\)$"):
        gmmcli.GaussianMixture(weights, means, covariances, name.lower())
    assert gmmcli.GaussianMixture(weights, means, covariances, holds).mclust_name == holds


@pytest.mark.parametrize("name", ["VEE", "EVE", "VVE", "EEV", "VEV", "EVV"])
def test_a_model_of_matrices_refuses_asymmetric_ones(name):
    covariances = _built([1.0, 1.0], [2.0, 0.5], [0.0, 0.0])
    covariances[0, 0, 1] += 1e-6
    with pytest.raises(gmmcli.GMMError, match="covariances are not symmetric"):
        gmmcli.GaussianMixture([0.5, 0.5], [[0.0, 0.0], [3.0, 3.0]], covariances, name)


def test_a_model_checks_a_covariance_is_valid_before_its_structure():
    with pytest.raises(gmmcli.GMMError, match="component 1 is singular"):
        gmmcli.GaussianMixture(
            [0.5, 0.5], [[0.0, 0.0], [3.0, 3.0]], [[1.0, 2.0], [-1.0, -2.0]], "VEI"
        )


def test_a_model_takes_covariances_that_keep_the_structure_to_rounding():
    covariances = _built([1.0, 2.0], [2.0, 0.5], [0.3, 0.3])
    covariances[1] *= 1 + 1e-12
    model = gmmcli.GaussianMixture([0.5, 0.5], [[0.0, 0.0], [3.0, 3.0]], covariances, "vee")
    assert model.covariance_type == "VEE"
    np.testing.assert_allclose(model.parts.volumes, [1.0, 2.0], rtol=1e-11)


def test_from_parts_refuses_parts_that_break_the_structure():
    parts = Parts(np.array([1.0, 2.0]), np.ones((2, 2)), np.stack([np.eye(2)] * 2))
    with pytest.raises(gmmcli.GMMError, match="the volumes differ across components"):
        gmmcli.GaussianMixture.from_parts([0.5, 0.5], [[0, 0], [3, 3]], parts, "EII")
    stretched = Parts(np.ones(2), np.array([[2.0, 0.5]] * 2), parts.orientations)
    with pytest.raises(gmmcli.GMMError, match="the shapes of EII are the identity, but others"):
        gmmcli.GaussianMixture.from_parts([0.5, 0.5], [[0, 0], [3, 3]], stretched, "EII")
    with pytest.raises(gmmcli.GMMError, match="full covariances are not built from parts"):
        gmmcli.GaussianMixture.from_parts([0.5, 0.5], [[0, 0], [3, 3]], parts, "full")
