"""Fits to labelled rows in the core: the fit of rows all labelled (one M-step, mclust's
EDDA), semi-supervised EM, and the E-step that keeps labelled rows to their class."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from scipy.stats import multivariate_normal
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

import gmmcli
from gmmcli.core.em import UNLABELLED, InMemoryRows, Params, Prepared, e_step
from gmmcli.core.generate import random_mixture
from gmmcli.core.labels import fit_labelled
from gmmcli.core.model import Classes
from gmmcli.core.options import FitOptions
from gmmcli.core.structures import get_covariance
from gmmcli.errors import DataError, InvalidParameter, UserError

NAMES = ["a", "b", "c"]


def _labelled(seed=0, n=600, n_features=3, separation=2.0, share=1.0):
    """Rows of a known 3-component mixture, their true classes, and those classes kept
    for a ``share`` of the rows (UNLABELLED elsewhere)."""
    rng = np.random.default_rng(seed)
    mixture = random_mixture(3, n_features, separation=separation, rng=rng)
    X, truth = mixture.sample(n, seed=seed + 1)
    kept = np.where(rng.random(n) < share, truth, UNLABELLED)
    return X, truth, kept


def _rows(X, classes, weights=None):
    weights = np.ones(len(X)) if weights is None else weights
    return InMemoryRows(X, weights, np.zeros(X.shape[1]), classes=classes)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_rows_all_labelled_give_exactly_the_m_step_of_the_labels(covariance_type):
    X, truth, _ = _labelled()
    weights = np.random.default_rng(4).integers(1, 4, len(X)).astype(float)
    options = FitOptions(covariance_type=covariance_type, reg_covar=0.0)
    model = fit_labelled(_rows(X, truth, weights), Classes.named(NAMES, 3), options)
    assert model.fit_info.n_iter == 0 and model.fit_info.init == "labels"
    assert model.classes.owners == (0, 1, 2)
    scatters = []
    for c in range(3):
        w = weights[truth == c]
        mean = w @ X[truth == c] / w.sum()
        assert_allclose(model.weights[c], w.sum() / weights.sum(), rtol=1e-12)
        assert_allclose(model.means[c], mean, rtol=1e-10, atol=1e-12)
        centred = X[truth == c] - mean
        scatters.append((centred * w[:, None]).T @ centred)
    counts = np.bincount(truth, weights)
    expected = {
        "full": [scatter / n for scatter, n in zip(scatters, counts, strict=True)],
        "tied": sum(scatters) / counts.sum(),
        "diag": [np.diag(scatter) / n for scatter, n in zip(scatters, counts, strict=True)],
        "spherical": [np.trace(s) / n / 3 for s, n in zip(scatters, counts, strict=True)],
    }[covariance_type]
    assert_allclose(model.covariances, expected, rtol=1e-10, atol=1e-12)


def test_the_log_likelihood_of_rows_all_labelled_is_the_mixtures():
    X, truth, _ = _labelled()
    model = fit_labelled(_rows(X, truth), Classes.named(NAMES, 3))
    densities = [
        w * multivariate_normal(mean, covariance).pdf(X)
        for w, mean, covariance in zip(model.weights, model.means, model.covariances, strict=True)
    ]
    assert_allclose(model.fit_info.log_likelihood, np.log(np.sum(densities, axis=0)).sum())


def test_tied_covariances_from_labels_are_linear_discriminant_analysis():
    """mclust's EDDA with EEE at reg_covar 0 against scikit-learn's LDA with the same
    priors (the classes' shares): the same labels, probabilities to 1e-8."""
    X, truth, _ = _labelled(seed=5, separation=1.5)
    options = FitOptions(covariance_type="tied", reg_covar=0.0)
    model = fit_labelled(_rows(X, truth), Classes.named(NAMES, 3), options)
    priors = np.bincount(truth) / len(truth)
    lda = LinearDiscriminantAnalysis(solver="lsqr", priors=priors).fit(X, truth)
    assert_allclose(model.predict_class_proba(X), lda.predict_proba(X), rtol=0, atol=1e-8)
    np.testing.assert_array_equal(model.predict_class(X), np.array(NAMES)[lda.predict(X)])


def test_full_covariances_from_labels_are_quadratic_discriminant_analysis():
    """EDDA with VVV: each class's maximum-likelihood mean and covariance and its share
    as prior, the posterior computed directly."""
    X, truth, _ = _labelled(seed=6, separation=1.5)
    model = fit_labelled(_rows(X, truth), Classes.named(NAMES, 3), FitOptions(reg_covar=0.0))
    log_joint = np.column_stack(
        [
            np.log(np.mean(truth == c))
            + multivariate_normal(
                X[truth == c].mean(axis=0), np.cov(X[truth == c].T, bias=True)
            ).logpdf(X)
            for c in range(3)
        ]
    )
    posterior = np.exp(log_joint - log_joint.max(axis=1, keepdims=True))
    posterior /= posterior.sum(axis=1, keepdims=True)
    assert_allclose(model.predict_class_proba(X), posterior, rtol=0, atol=1e-8)


def test_class_priors_replace_the_classes_shares():
    X, truth, _ = _labelled()
    model = fit_labelled(_rows(X, truth), Classes.named(NAMES, 3), class_priors=[2.0, 1.0, 1.0])
    assert_allclose(model.weights, [0.5, 0.25, 0.25])
    with pytest.raises(InvalidParameter, match="class_priors"):
        fit_labelled(_rows(X, truth), Classes.named(NAMES, 3), class_priors=[1.0, 1.0])
    _, _, some = _labelled(share=0.5)
    with pytest.raises(UserError, match="priors needs every row labelled"):
        fit_labelled(_rows(X, some), Classes.named(NAMES, 3), class_priors=[1.0, 1.0, 1.0])


def test_the_e_step_keeps_labelled_rows_at_their_class():
    """Whatever the parameters, a labelled row's weight goes to its class's component
    alone; an unlabelled row's is shared as usual."""
    X, truth, _ = _labelled()
    cov = get_covariance("full")
    rng = np.random.default_rng(2)
    covariances = np.stack([np.eye(3)] * 4)
    params = Params(
        np.full(4, 0.25), rng.normal(0, 3, (4, 3)), covariances, np.stack([np.eye(3)] * 4)
    )
    classes = np.where(np.arange(len(X)) % 2 == 0, truth, UNLABELLED)
    owners = np.array([0, 1, 2, UNLABELLED])
    prepared = Prepared.of(params, cov, owners=owners)
    labelled = classes != UNLABELLED
    stats = e_step(X[labelled], np.ones(labelled.sum()), classes[labelled], prepared=prepared)
    assert_allclose(stats.nk, [*np.bincount(classes[labelled], minlength=3), 0.0], atol=1e-12)
    free = e_step(X[~labelled], np.ones((~labelled).sum()), classes[~labelled], prepared=prepared)
    plain = e_step(X[~labelled], np.ones((~labelled).sum()), prepared=Prepared.of(params, cov))
    assert_allclose(free.nk, plain.nk, rtol=1e-12)


def test_partly_labelled_rows_beat_no_labels_in_eight_of_ten_seeds():
    """D = 3, K = 3, 10% of rows labelled: the accuracy of the predicted classes against
    that of an unlabelled fit under its best matching of components to classes."""
    wins = 0
    for seed in range(10):
        X, truth, kept = _labelled(seed=seed, n=3000, separation=1.0, share=0.1)
        semi = fit_labelled(_rows(X, kept), Classes.named(NAMES, 3), FitOptions(seed=seed))
        semi_accuracy = np.mean(semi.predict_class(X) == np.array(NAMES)[truth])
        plain = gmmcli.fit(X, 3, seed=seed).predict(X)
        best = max(
            np.mean(np.array(order)[plain] == truth) for order in itertools.permutations(range(3))
        )
        wins += semi_accuracy > best
    assert wins >= 8


def test_extra_components_have_no_class_and_come_after_by_weight():
    X, truth, kept = _labelled(n=900, share=0.2)
    model = fit_labelled(_rows(X, kept), Classes.named(NAMES, 5), FitOptions(seed=0))
    assert model.classes.owners == (0, 1, 2, UNLABELLED, UNLABELLED)
    assert model.weights[3] >= model.weights[4]
    probabilities = model.predict_class_proba(X)
    assert np.all(probabilities.sum(axis=1) <= 1 + 1e-12)  # the extra ones count for none


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_integer_weights_are_repeated_labelled_rows(seed):
    X, _, kept = _labelled(seed=seed % 50, n=240, share=0.3)
    counts = np.random.default_rng(seed).integers(1, 4, len(X))
    options = FitOptions(seed=0, tol=0, max_iter=5, init="kmeans++")
    weighted = fit_labelled(_rows(X, kept, counts.astype(float)), Classes.named(NAMES, 4), options)
    repeated = fit_labelled(
        _rows(np.repeat(X, counts, axis=0), np.repeat(kept, counts)),
        Classes.named(NAMES, 4),
        options,
    )
    assert_allclose(weighted.means, repeated.means, rtol=1e-8, atol=1e-10)
    assert_allclose(weighted.covariances, repeated.covariances, rtol=1e-8, atol=1e-10)


def test_bad_counts_of_components_and_empty_classes_are_refused():
    X, truth, kept = _labelled(share=0.5)
    with pytest.raises(InvalidParameter, match="at least the 3 classes"):
        Classes.named(NAMES, 2)
    with pytest.raises(InvalidParameter, match="every row is labelled"):
        fit_labelled(_rows(X, truth), Classes.named(NAMES, 4))
    weights = np.where(truth == 2, 0.0, 1.0)
    with pytest.raises(DataError, match="class 'c' has no row"):
        fit_labelled(_rows(X, truth, weights), Classes.named(NAMES, 3))


def _with_gaps(X, share=0.15, seed=9):
    X = X.copy()
    X[np.random.default_rng(seed).random(X.shape) < share] = np.nan
    return X


def test_rows_all_labelled_with_gaps_give_each_class_its_own_fit_through_gaps():
    """Full covariances: the classes do not share parameters, so the labelled fit is each
    class's one-component fit through its gaps, and its log-likelihood the mixture's of
    the observed features."""
    X, truth, _ = _labelled(seed=3)
    gapped = _with_gaps(X)
    options = FitOptions(tol=1e-12, max_iter=500)
    model = fit_labelled(_rows(gapped, truth), Classes.named(NAMES, 3), options)
    assert model.fit_info.missing_cells == int(np.isnan(gapped).sum())
    for c in range(3):
        alone = gmmcli.fit(gapped[truth == c], 1, missing="marginal", tol=1e-12, max_iter=500)
        assert_allclose(model.means[c], alone.means[0], rtol=1e-6, atol=1e-6)
        assert_allclose(model.covariances[c], alone.covariances[0], rtol=1e-5, atol=1e-6)
    expected = sum(np.log(_observed_density(x, model)) for x in gapped)
    assert_allclose(model.fit_info.log_likelihood, expected, rtol=1e-10)


def _observed_density(x, model, members=None):
    """Σ πₖ N(x_o | k) over ``members`` (default: every component), by scipy on the
    features x has."""
    o = ~np.isnan(x)
    if not o.any():
        return 1.0  # (a row with no feature: no information)
    members = range(len(model.weights)) if members is None else members
    full = model.covariance.full_matrices(model.covariances, *model.means.shape)
    return sum(
        model.weights[k] * multivariate_normal(model.means[k][o], full[k][np.ix_(o, o)]).pdf(x[o])
        for k in members
    )


def test_partly_labelled_rows_with_gaps_never_lose_likelihood():
    X, _, kept = _labelled(seed=4, share=0.3)
    options = FitOptions(seed=0, tol=0, max_iter=25)
    model = fit_labelled(_rows(_with_gaps(X), kept), Classes.named(NAMES, 3), options)
    history = np.array(model.fit_info.history)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))
    assert model.fit_info.largest_drop == 0.0


def test_partly_labelled_rows_with_gaps_and_a_component_of_no_class():
    """EM through gaps with an extra component: it never loses, labelled rows keep to
    their class, and the recorded objective is the labelled rows' complete-data term plus
    the others' mixture term, each over the features a row has (scipy)."""
    X, truth, kept = _labelled(seed=5, share=0.3)
    gapped = _with_gaps(X)
    options = FitOptions(seed=0, tol=0, max_iter=30, covariance_type="full")
    model = fit_labelled(_rows(gapped, kept), Classes.named(NAMES, 4), options)
    assert model.classes.owners == (0, 1, 2, UNLABELLED)
    history = np.array(model.fit_info.history)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))
    expected = sum(
        np.log(_observed_density(x, model, None if c == UNLABELLED else [c]))
        for x, c in zip(gapped, kept, strict=True)
    )
    assert_allclose(model.fit_info.log_likelihood, expected, rtol=1e-10)
    assert model.fit_info.missing_cells == int(np.isnan(gapped).sum())


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_several_components_a_class_fit_through_gaps(covariance_type):
    """Rows all labelled, two components a class, gaps: EM never loses, each class keeps
    its rows' weight, and the recorded log-likelihood is the mixture's over the observed
    features (scipy)."""
    X, truth, _ = _labelled(seed=6, n=900)
    gapped = _with_gaps(X)
    options = FitOptions(covariance_type=covariance_type, seed=0, tol=0, max_iter=40)
    model = fit_labelled(_rows(gapped, truth), Classes.per_class(NAMES, 2), options)
    assert model.classes.owners == (0, 0, 1, 1, 2, 2)
    history = np.array(model.fit_info.history)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))
    for c in range(3):
        assert_allclose(model.weights[2 * c : 2 * c + 2].sum(), np.mean(truth == c), rtol=1e-9)
    expected = sum(np.log(_observed_density(x, model)) for x in gapped)
    assert_allclose(model.fit_info.log_likelihood, expected, rtol=1e-10)


def test_several_components_a_class_keep_each_class_to_its_own():
    """Two components a class, one structure for all (select-k --shared-structure with
    K = 2): each class's rows stay on its two components, and the recorded
    log-likelihood is the mixture's over every component."""
    X, truth, _ = _labelled(seed=8, n=900)
    options = FitOptions(covariance_type="tied", seed=0, tol=1e-8, max_iter=300)
    model = fit_labelled(_rows(X, truth), Classes.per_class(NAMES, 2), options)
    assert model.classes.owners == (0, 0, 1, 1, 2, 2)
    for c in range(3):  # the class's components hold its rows' weight, as EM kept them
        assert_allclose(model.weights[2 * c : 2 * c + 2].sum(), np.mean(truth == c), rtol=1e-9)
    densities = sum(
        w * multivariate_normal(mean, model.covariances).pdf(X)
        for w, mean in zip(model.weights, model.means, strict=True)
    )
    assert_allclose(model.fit_info.log_likelihood, np.log(densities).sum(), rtol=1e-10)
    assert model.fit_info.n_parameters == get_covariance("tied").n_parameters(6, 3) + 6 * 3 + 5


def test_class_priors_weigh_classes_of_several_components():
    """Each class weighs its prior, its components sharing it as EM left them, and the
    log-likelihood is that mixture's."""
    X, truth, _ = _labelled(seed=8, n=600)
    options = FitOptions(covariance_type="diag", seed=0, tol=1e-8, max_iter=300)
    plain = fit_labelled(_rows(X, truth), Classes.per_class(NAMES, 2), options)
    weighted = fit_labelled(
        _rows(X, truth), Classes.per_class(NAMES, 2), options, class_priors=[2.0, 1.0, 1.0]
    )
    assert_allclose(weighted.means, plain.means, rtol=1e-12)
    for c, prior in enumerate([0.5, 0.25, 0.25]):
        share = plain.weights[2 * c : 2 * c + 2]
        assert_allclose(weighted.weights[2 * c : 2 * c + 2], prior * share / share.sum())
    densities = sum(
        w * multivariate_normal(mean, np.diag(var)).pdf(X)
        for w, mean, var in zip(weighted.weights, weighted.means, weighted.covariances, strict=True)
    )
    assert_allclose(weighted.fit_info.log_likelihood, np.log(densities).sum(), rtol=1e-10)


def test_a_class_probability_is_at_most_1():
    """A sum of a row's component probabilities can round above 1 (1.0000000000000002)."""
    p = np.random.default_rng(3).dirichlet(np.ones(4), size=2000)
    assert (p.sum(axis=1) > 1).any()  # what the test is about
    assert Classes(("a",), (0, 0, 0, 0)).probabilities(p).max() == 1.0
