"""Labels on the command line and in Python: fit --label-column (rows all or partly
labelled), model files of version 3, classify's class columns, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from cli_helpers import error_line, gmm, ok, read_csv, stopped_after

import gmmcli
from gmmcli.core.model import Classes
from gmmcli.core.structures import get_covariance
from gmmcli.io import modelfile

SPECIES = ["setosa", "versicolor", "virginica"]


def _table(seed=0, n=300, share=1.0):
    """Three labelled clusters in two features; a ``share`` of rows keep their label."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    X = centres[truth] + rng.normal(0, 1, (n, 2))
    labels = np.where(rng.random(n) < share, np.array(SPECIES)[truth], "")
    return pa.table({"x": X[:, 0], "y": X[:, 1], "species": labels}), truth


def _write_labelled(path: str, labels: list | dict, n: int = 300) -> None:
    """_table(n=n) written to ``path`` with ``labels``: a label a row, or {row: label} in
    place of its own."""
    table, _ = _table(n=n)
    if isinstance(labels, dict):
        labels = [labels.get(i, label) for i, label in enumerate(table["species"].to_pylist())]
    pa_csv.write_csv(table.set_column(2, "species", pa.array(labels)), path)


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table, _ = _table()
    pa_csv.write_csv(table, "all.csv")
    pq.write_table(table, "all.parquet")
    partial, _ = _table(share=0.2)
    pa_csv.write_csv(partial, "some.csv")
    return tmp_path


def test_rows_all_labelled_fit_to_a_model_of_classes(work):
    ok(gmm("fit all.csv --label-column species -o model.json -q"))
    data = json.loads(Path("model.json").read_text())
    assert data["version"] == 3
    assert data["class_names"] == SPECIES
    assert data["component_classes"] == SPECIES
    assert data["training"]["n_iter"] == 0 and data["training"]["init"] == "labels"
    assert data["feature_names"] == ["x", "y"]  # the labels are no feature
    api = gmmcli.fit("all.csv", labels="species", seed=0)
    assert modelfile.dumps(api) == Path("model.json").read_text()
    ok(gmm("fit all.parquet --label-column species -o parquet.json -q"))
    assert Path("parquet.json").read_text() == Path("model.json").read_text()


def test_a_streamed_fit_with_labels_is_the_same_bytes_as_a_whole_one(work):
    for name in ("some.csv", "all.csv"):
        k = "-k 4" if name == "some.csv" else ""
        ok(gmm(f"fit {name} --label-column species {k} -o whole.json -q"))
        ok(gmm(f"fit {name} --label-column species {k} --chunk-rows 37 -o streamed.json -q"))
        assert Path("streamed.json").read_bytes() == Path("whole.json").read_bytes()


def test_partly_labelled_rows_with_more_components(work):
    ok(gmm("fit some.csv --label-column species -k 4 -o model.json -q"))
    data = json.loads(Path("model.json").read_text())
    assert data["component_classes"] == [*SPECIES, None]
    model = modelfile.load("model.json")
    assert model.classes == Classes(tuple(SPECIES), (0, 1, 2, -1))
    assert model.fit_info.n_iter > 0


def test_classify_adds_the_predicted_class_and_its_probabilities(work):
    ok(gmm("fit all.csv --label-column species -o model.json -q"))
    ok(gmm("classify all.csv -m model.json -o out.csv -q"))
    out = read_csv("out.csv")
    names = out.column_names
    assert names[-4:] == ["predicted_label", *(f"p_label_{name}" for name in SPECIES)]
    _, truth = _table()
    predicted = out.column("predicted_label").to_pylist()
    assert np.mean(np.array(predicted) == np.array(SPECIES)[truth]) > 0.95
    by_class = np.column_stack([out.column(f"p_label_{n}").to_numpy() for n in SPECIES])
    np.testing.assert_allclose(by_class.sum(axis=1), 1.0, rtol=1e-12)
    # fed back: the class columns are replaced, not taken for features
    ok(gmm("classify out.csv -m model.json -o again.csv -q"))
    assert read_csv("again.csv").column_names == names


def test_labels_are_trimmed_text_and_integers_sort_by_value(tmp_path):
    X = np.random.default_rng(0).normal(0, 1, (60, 2)) + np.repeat([[0, 0], [6, 0], [0, 6]], 20, 0)
    labels = np.repeat([" 10", "2 ", "1"], 20).astype(object)
    labels[::7] = None
    model = gmmcli.fit(X, labels=labels, seed=0)
    assert model.classes.names == ("1", "2", "10")
    assert model.predict_class(X[[0, 25, 59]]).tolist() == ["10", "2", "1"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("fit all.csv --label-column nope", "column 'nope' not found"),
        ("fit all.csv --label-column species -k 2", "at least the 3 classes"),
        ("fit all.csv --label-column species -k 4", "every row is labelled"),
        ("fit all.csv --label-column species --columns x,species", "never a feature"),
        ("fit all.csv --label-column species --class-priors setosa", "is not NAME=P"),
        (
            "fit all.csv --label-column species --class-priors setosa=1,versicolor=1",
            "lacks class 'virginica'",
        ),
        (
            "fit all.csv --label-column species --class-priors "
            "setosa=1,versicolor=1,virginica=1,rose=1",
            "names class 'rose', which no row has",
        ),
        ("fit all.csv --class-priors setosa=1", "--class-priors needs --label-column"),
        ("fit some.csv --label-column species --class-priors a=1", "names class 'a'"),
        (
            "fit some.csv --label-column species --class-priors setosa=1,versicolor=1,virginica=2",
            "--class-priors needs every row labelled",
        ),
        ("fit all.csv --label-column species --class-priors a=1,a=2", "names class 'a' twice"),
    ],
)
def test_bad_labels_are_one_line(work, command, message):
    assert message in error_line(gmm(command + " -o out.json"))
    assert not Path("out.json").exists()


def test_a_label_column_with_no_label_is_refused(work):
    table, _ = _table()
    empty = table.set_column(2, "species", pa.array([""] * table.num_rows))
    pa_csv.write_csv(empty, "empty.csv")
    line = error_line(gmm("fit empty.csv --label-column species -o out.json"))
    assert "column 'species' of empty.csv has no label" in line


def test_a_model_file_of_classes_round_trips_and_bad_classes_are_refused(work):
    table, _ = _table()
    model = gmmcli.fit(table, labels="species", covariance_type="EEI", seed=0)
    text = modelfile.dumps(model)
    again = modelfile.loads(text)
    assert again.classes == model.classes and modelfile.dumps(again) == text
    data = json.loads(text)
    for edit, message in [
        (lambda d: d.pop("class_names"), "lacks 'class_names'"),
        (lambda d: d.update(component_classes=["setosa"] * 3), "must name a component"),
        (lambda d: d.update(component_classes=["rose", None, None]), "'component_classes'"),
        (lambda d: d.update(class_names=[1, 2, 3]), "'class_names' must be"),
        (lambda d: d.update(comment="x"), "unknown to format version 3"),
    ]:
        broken = json.loads(text)
        edit(broken)
        with pytest.raises(modelfile.ModelFileError, match=message):
            modelfile.loads(json.dumps(broken))
    assert data["version"] == 3 and "volume" in data


def test_fit_with_labels_in_a_pipe(work):
    """A real process reading the CSV from stdin (spooled, then read whole)."""
    with open("all.csv", "rb") as data:
        done = subprocess.run(
            [sys.executable, "-m", "gmmcli", "fit", "-", "--label-column", "species", "-q"],
            stdin=data,
            capture_output=True,
            check=True,
        )
    assert json.loads(done.stdout)["class_names"] == SPECIES


def test_score_with_labels_reports_errors_brier_and_confusion(work):
    table, truth = _table()
    weights = np.random.default_rng(3).integers(1, 4, table.num_rows).astype(float)
    labels = table.column("species").to_numpy(zero_copy_only=False).copy()
    labels[::10] = ""  # no label: scored, but not in the figures of the labels
    scored = table.set_column(2, "species", pa.array(labels)).append_column("w", pa.array(weights))
    pa_csv.write_csv(scored, "scored.csv")
    ok(gmm("fit all.csv --label-column species -o model.json -q"))
    result = ok(gmm("score scored.csv -m model.json --label-column species --weight-column w"))
    summary = json.loads(result.stdout)
    model = modelfile.load("model.json")
    X = np.column_stack([table.column("x").to_numpy(), table.column("y").to_numpy()])
    p = model.predict_class_proba(X)
    has = labels != ""
    codes = np.array([SPECIES.index(label) for label in labels[has]])
    w = weights[has]
    wrong = p[has].argmax(axis=1) != codes
    brier = np.square(p[has] - np.eye(3)[codes]).sum(axis=1)
    np.testing.assert_allclose(summary["error_rate"], w @ wrong / w.sum(), rtol=1e-12)
    np.testing.assert_allclose(summary["brier"], w @ brier / w.sum(), rtol=1e-12)
    for i, label in enumerate(SPECIES):
        for j, predicted in enumerate(SPECIES):
            expected = w[(codes == i) & (p[has].argmax(axis=1) == j)].sum()
            assert summary["confusion"][label][predicted] == expected
    assert "label (rows) by predicted class" in result.stderr
    streamed = ok(
        gmm(
            "score scored.csv -m model.json --label-column species --weight-column w -q "
            "--chunk-rows 37"
        )
    )
    assert (
        streamed.stdout
        == ok(
            gmm("score scored.csv -m model.json --label-column species --weight-column w -q")
        ).stdout
    )


def test_score_refuses_a_label_the_model_does_not_know_and_a_model_of_no_classes(work):
    ok(gmm("fit all.csv --label-column species -o model.json -q"))
    _write_labelled("rose.csv", {7: "rose"})
    line = error_line(gmm("score rose.csv -m model.json --label-column species"))
    assert "label 'rose' at row 8 of rose.csv is not one of the model's classes" in line
    ok(gmm("fit all.csv -k 3 -o plain.json -q"))
    assert "the model has no classes" in error_line(
        gmm("score all.csv -m plain.json --label-column species")
    )


def test_generate_from_a_model_of_classes_draws_their_labels(work):
    ok(gmm("fit some.csv --label-column species -k 4 -o model.json -q"))
    ok(gmm("generate --model model.json -n 400 --seed 2 -o drawn.csv"))
    drawn = read_csv("drawn.csv")
    components = drawn.column("true_component").to_numpy()
    labels = drawn.column("true_label").to_pylist()
    names = [*SPECIES, ""]  # (an empty cell: no class)
    assert labels == [names[k] for k in components]
    assert "" in labels  # the component of no class was drawn too
    ok(gmm("fit drawn.csv --label-column true_label -k 4 -o again.json -q"))


@pytest.mark.filterwarnings("ignore:degenerate fit")  # the extra component holds few rows
def test_init_model_with_classes_refines_with_labels_kept(work):
    ok(gmm("fit some.csv --label-column species -k 4 --max-iter 2 -o start.json -q"))
    ok(gmm("fit some.csv --label-column species --init-model start.json -o refined.json -q"))
    start, refined = modelfile.load("start.json"), modelfile.load("refined.json")
    assert refined.classes == start.classes
    assert refined.fit_info.init == "explicit"
    api = gmmcli.fit("some.csv", labels="species", start=start, seed=0)
    assert modelfile.dumps(api) == Path("refined.json").read_text()
    # without labels: a plain refine that keeps the components' classes
    ok(gmm("fit some.csv --init-model start.json -o plain.json -q"))
    assert modelfile.load("plain.json").classes == start.classes


def test_init_model_and_labels_must_agree(work):
    ok(gmm("fit all.csv -k 3 -o plain.json -q"))
    assert "has no classes" in error_line(
        gmm("fit all.csv --label-column species --init-model plain.json -o out.json")
    )
    ok(gmm("fit all.csv --label-column species -o model.json -q"))
    _write_labelled("rose.csv", {3: "rose"})
    line = error_line(gmm("fit rose.csv --label-column species --init-model model.json -o o.json"))
    assert "holds 'rose', not one of the model's classes" in line


def test_select_k_with_labels_is_a_grid_for_each_class_joined(work):
    """mclust's MclustDA: each class's winner is the one select-k picks on that class's
    rows alone; the model's log-likelihood is Σ log Σ_c prior_c f_c(x), its parameters
    the winners' and C − 1 priors, its class probabilities prior_c f_c / Σ."""
    result = ok(
        gmm(
            "select-k all.csv --label-column species --k-max 3 "
            "--covariance-types full,diag,EII --table grid.csv -o da.json"
        )
    )
    grid = read_csv("grid.csv")
    assert grid.column_names[0] == "class"
    assert grid.num_rows == 3 * 3 * 3
    data = json.loads(Path("da.json").read_text())
    assert data["version"] == 3 and [c["name"] for c in data["classes"]] == SPECIES
    table, truth = _table()
    X = np.column_stack([table.column("x").to_numpy(), table.column("y").to_numpy()])
    model = modelfile.load("da.json")
    mixtures = model.classes.mixtures
    for c, entry in enumerate(data["classes"]):
        _, alone = gmmcli.select_k(
            X[truth == c], range(1, 4), covariance_types=["full", "diag", "EII"]
        )
        chosen = entry["mixture"]
        assert (chosen["n_components"], chosen["covariance_type"]) == (
            alone.n_components,
            alone.covariance_type,
        )
        assert entry["prior"] == pytest.approx(np.mean(truth == c), rel=1e-12)
    priors = np.array([entry["prior"] for entry in data["classes"]])
    densities = np.column_stack([np.exp(m.score_samples(X)) for m in mixtures]) * priors
    training = data["training"]
    assert f"the classes joined: log-likelihood {training['log_likelihood']:.6g}" in result.stderr
    np.testing.assert_allclose(
        training["log_likelihood"], np.log(densities.sum(axis=1)).sum(), rtol=1e-10
    )
    assert training["n_parameters"] == sum(m.n_parameters for m in mixtures) + 2
    np.testing.assert_allclose(
        model.predict_class_proba(X),
        densities / densities.sum(axis=1, keepdims=True),
        rtol=0,
        atol=1e-10,
    )
    assert modelfile.dumps(model) == Path("da.json").read_text()
    ok(gmm("classify all.csv -m da.json -o out.csv -q"))
    assert "predicted_label" in read_csv("out.csv").column_names
    smaller = "select-k all.csv --label-column species --k-max 2 --covariance-types EII -q"
    ok(gmm(f"{smaller} -o whole.json"))
    ok(gmm(f"{smaller} --chunk-rows 41 -o streamed.json"))  # (a pass a chunk: slower)
    assert Path("streamed.json").read_bytes() == Path("whole.json").read_bytes()


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("select-k some.csv --label-column species", "needs every row labelled"),
        ("select-k all.csv --label-column species --criterion aic", "ranked by BIC alone"),
        ("select-k all.csv --class-priors a=1", "needs --label-column"),
        ("select-k all.csv --shared-structure", "--shared-structure needs --label-column"),
    ],
)
def test_bad_select_k_with_labels_is_one_line(work, command, message):
    assert message in error_line(gmm(command + " --k-max 2 -o out.json"))


def test_a_criterion_other_than_bic_is_refused_before_the_data_are_read(work):
    result = gmm("select-k all.csv --label-column species --criterion icl -o out.json")
    assert result.stderr.splitlines() == [error_line(result)]


def test_select_k_with_a_shared_structure_is_edda(work):
    """Every class one component of one structure, fitted from the labels, the structure
    of the lowest total BIC chosen (mclust's EDDA)."""
    command = "select-k all.csv --label-column species --shared-structure --k-max 1"
    result = ok(gmm(f"{command} --covariance-types full,tied,diag,EII --table g.csv -o m.json"))
    assert "every class (one structure shared)" in result.stderr
    assert read_csv("g.csv").num_rows == 3 * 4
    bics = {}
    for structure in ("full", "tied", "diag", "EII"):
        model = gmmcli.fit("all.csv", labels="species", covariance_type=structure, seed=0)
        bics[structure] = model.fit_info.bic
    chosen = modelfile.load("m.json")
    assert chosen.covariance_type == get_covariance(min(bics, key=bics.get)).name
    assert chosen.fit_info.bic == pytest.approx(min(bics.values()), rel=1e-12)
    assert json.loads(Path("m.json").read_text())["component_classes"] == SPECIES


def test_labels_are_read_as_text_as_written(tmp_path):
    """ "007" and "7" are two classes (a CSV reader would make both the number 7), read
    whole or streamed."""
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 1, (40, 2)), rng.normal(6, 1, (40, 2))])
    labels = ["007"] * 40 + ["7"] * 40
    lines = ["x,y,lab", *(f"{a},{b},{lab}" for (a, b), lab in zip(X, labels, strict=True))]
    path = tmp_path / "codes.csv"
    path.write_text("\n".join(lines) + "\n")
    whole = gmmcli.fit(str(path), labels="lab", seed=0)
    assert whole.classes.names == ("007", "7")  # by value, then as text
    streamed = gmmcli.fit(str(path), labels="lab", seed=0, chunk_rows=17)
    assert modelfile.dumps(streamed) == modelfile.dumps(whole)


def test_whole_numbers_with_a_zero_fraction_are_the_same_classes_in_csv_and_parquet(tmp_path):
    """pandas writes integers with gaps as floats: "2.0" in CSV, 2.0 in Parquet."""
    rng = np.random.default_rng(6)
    codes = np.repeat([1.0, 2.0, 10.0], 30)
    X = rng.normal(0, 1, (90, 2)) + codes[:, None]
    codes[::9] = np.nan
    table = pa.table({"x": X[:, 0], "y": X[:, 1], "lab": codes})
    pa_csv.write_csv(
        table.set_column(2, "lab", pa.array([f"{c:.1f}" for c in codes])), tmp_path / "a.csv"
    )
    pq.write_table(table, tmp_path / "a.parquet")
    from_csv = gmmcli.fit(str(tmp_path / "a.csv"), labels="lab", seed=0)
    from_parquet = gmmcli.fit(str(tmp_path / "a.parquet"), labels="lab", seed=0)
    assert from_csv.classes.names == ("1", "2", "10")
    assert modelfile.dumps(from_csv) == modelfile.dumps(from_parquet)


def test_labels_spelled_as_missing_are_no_label_in_every_format(work):
    """R writes NA for a missing label, pandas NaN: no label, as in a number column, not a
    class of that name; the same in CSV (whole or streamed), Parquet and Python."""
    table, _ = _table(share=0.3)
    nulls = ["NA", "NaN", " n/a"]
    spelled = [label or nulls[i % 3] for i, label in enumerate(table["species"].to_pylist())]
    pa_csv.write_csv(table, "empty.csv")
    ok(gmm("fit empty.csv --label-column species -q -o empty.json"))
    table = table.set_column(2, "species", pa.array(spelled))
    pa_csv.write_csv(table, "na.csv")
    pq.write_table(table, "na.parquet")
    for command in ["na.csv", "na.csv --chunk-rows 40", "na.parquet"]:
        ok(gmm(f"fit {command} --label-column species -q -o na.json"))
        assert Path("na.json").read_text() == Path("empty.json").read_text()


def test_python_labels_with_nan_or_none_are_partial_labels():
    pd = pytest.importorskip("pandas")
    table, _ = _table(share=0.3)
    X = np.column_stack([table["x"].to_numpy(), table["y"].to_numpy()])
    species = [label or None for label in table["species"].to_pylist()]
    expected = modelfile.dumps(gmmcli.fit(X, labels=species, seed=0))
    with_nan = [float("nan") if label is None else label for label in species]
    for labels in [with_nan, pd.Series(with_nan), pd.Series(species, dtype="string")]:
        assert modelfile.dumps(gmmcli.fit(X, labels=labels, seed=0)) == expected
    with pytest.raises(gmmcli.GMMError, match="one label a row"):
        gmmcli.fit(X, labels=np.zeros((len(X), 2)))


def test_refitting_a_joined_model_writes_its_new_parameters(work):
    grid = "--k-max 2 --covariance-types full,EII"
    ok(gmm(f"select-k all.csv --label-column species {grid} -o da.json -q"))
    da = modelfile.load("da.json")
    score = json.loads(ok(gmm("score all.csv -m da.json -q")).stdout)
    assert score["bic"] == pytest.approx(da.fit_info.bic, rel=1e-12)  # the same parameters
    ok(gmm("fit all.csv --init-model da.json -o refit.json -q"))
    refit = json.loads(Path("refit.json").read_text())
    assert "classes" not in refit and refit["component_classes"] is not None
    rescored = json.loads(ok(gmm("score all.csv -m refit.json -q")).stdout)
    assert rescored["log_likelihood"] == pytest.approx(refit["training"]["log_likelihood"])


def test_select_k_priors_are_scaled_and_small_classes_are_one_line(work):
    priors = "--class-priors setosa=1,versicolor=1,virginica=2"
    ok(gmm(f"select-k all.csv --label-column species --k-max 1 {priors} -o p.json -q"))
    assert [c["prior"] for c in json.loads(Path("p.json").read_text())["classes"]] == [
        0.25,
        0.25,
        0.5,
    ]
    assert modelfile.load("p.json").classes.priors == (0.25, 0.25, 0.5)
    _write_labelled("small.csv", ["setosa"] * 39 + ["rose"], n=40)
    line = error_line(gmm("select-k small.csv --label-column species --k-max 3 -o s.json"))
    assert "no grid point of class 'rose' is sound" in line and "K=1 " in line  # (a row)


def test_a_class_with_no_sound_point_keeps_its_table_ranked_and_plotted(work):
    _write_labelled("small.csv", ["setosa"] * 39 + ["rose"], n=40)
    command = "select-k small.csv --label-column species --k-max 2 --covariance-types EII"
    line = error_line(gmm(f"{command} --reg-covar 0 --table grid.csv -o s.json"))
    assert line.startswith("error: no grid point of class 'rose' is sound (")
    assert "--reg-covar" in line and "reg_covar" not in line  # described for the command
    grid = read_csv("grid.csv")
    assert grid.filter(grid["best"])["class"].to_pylist() == ["setosa"]  # rose: no best point
    pytest.importorskip("matplotlib")
    ok(gmm("plot --table grid.csv -o grid.png -q"))


def test_more_components_of_no_class_than_unlabelled_rows_are_one_line(work):
    table, _ = _table(n=30)
    labels = ["setosa"] * 10 + ["versicolor"] * 9 + ["virginica"] * 9 + ["", ""]
    pa_csv.write_csv(table.set_column(2, "species", pa.array(labels)), "few.csv")
    line = error_line(gmm("fit few.csv --label-column species -k 6 -o o.json"))
    assert "3 components of no class start on the unlabelled rows, but only 2" in line


def test_the_same_column_cannot_be_labels_and_weights(work):
    line = error_line(gmm("fit all.csv --label-column x --weight-column x -o o.json"))
    assert "cannot be both the labels and the weights" in line


def test_a_broken_classes_section_is_refused_in_one_line(work):
    ok(gmm("select-k all.csv --label-column species --k-max 1 -o da.json -q"))
    text = Path("da.json").read_text()
    for edit, message in [
        (lambda d: d["classes"][0].update(prior=[0.5]), "'prior' must be a number"),
        (lambda d: d.update(n_features=3), "has 2 features, the model 3"),
        (lambda d: d.pop("n_features"), "'n_features' must be"),
        (lambda d: d.update(extra=1), "unknown to a model of classes"),
    ]:
        broken = json.loads(text)
        edit(broken)
        with pytest.raises(modelfile.ModelFileError, match=message):
            modelfile.loads(json.dumps(broken))


@pytest.mark.parametrize(
    ("command", "named"),
    [
        ("fit all.csv -k 3 --columns x,p_0", "p_0"),
        ("fit all.csv -k 3 --columns x,component", "component"),
        ("fit all.csv --label-column species --columns x,log_likelihood", "log_likelihood"),
        ("select-k all.csv --columns p_label_x,x", "p_label_x"),
        ("select-k all.csv --label-column species --columns x,predicted_label", "predicted_label"),
    ],
)
def test_a_prediction_cannot_be_named_as_a_feature(work, command, named):
    line = error_line(gmm(f"{command} -o out.json"))
    assert line == (
        f"error: column '{named}' has the name of one of gmmcli's predictions (classify or "
        "score writes it from a model), so a model cannot take it as a feature: rename the "
        "column, or leave it out of --columns"
    )


def test_predictions_may_weigh_rows_and_label_them(work):
    """A component's probabilities as weights (a model of its rows), predicted labels as
    labels (self-training)."""
    ok(gmm("fit all.csv --label-column species -q -o m.json"))
    ok(gmm("classify all.csv -m m.json -q -o c.csv"))
    ok(gmm("fit c.csv -k 1 --columns x,y --weight-column p_0 -q -o w.json"))
    ok(gmm("fit c.csv --columns x,y --label-column predicted_label -q -o l.json"))
    assert json.loads(Path("l.json").read_text())["class_names"] == SPECIES


def test_generated_truth_may_be_named_as_labels(work):
    ok(gmm("generate -n 300 -d 2 -k 3 --seed 1 -q -o g.csv"))
    ok(gmm("fit g.csv --label-column true_component -q -o m.json"))
    ok(gmm("classify g.csv -m m.json -q -o c.csv"))
    ok(gmm("score c.csv -m m.json --label-column true_component -q"))


def test_the_api_refuses_a_prediction_named_as_a_feature():
    table = pa.table({"x": [0.0, 1.0, 2.0, 3.0], "p_1": [1.0, 0.0, 1.0, 0.0]})
    with pytest.raises(gmmcli.GMMError, match="cannot take it as a feature"):
        gmmcli.fit(table, 1, columns=["x", "p_1"])


def test_partly_labelled_rows_with_gaps_and_extra_components_streamed_as_whole(work):
    table, _ = _table(share=0.3)
    x = table["x"].to_numpy().copy()
    x[::7] = np.nan
    pa_csv.write_csv(table.set_column(0, "x", pa.array(x)), "gaps.csv")
    command = "fit gaps.csv --label-column species -k 5 --missing marginal -q"
    ok(gmm(f"{command} -o whole.json"))
    ok(gmm(f"{command} --chunk-rows 37 -o streamed.json"))
    assert Path("streamed.json").read_bytes() == Path("whole.json").read_bytes()
    data = json.loads(Path("whole.json").read_text())
    assert data["component_classes"][3:] == [None, None]
    assert data["training"]["missing_cells"] == len(x[::7])


@pytest.mark.parametrize("shared", ["", "--shared-structure"])
def test_a_grid_with_labels_through_gaps_records_the_cells_missing(work, shared):
    """The classes joined (MclustDA) recorded none: each class's winner counts its own."""
    table, _ = _table()
    x = table["x"].to_numpy().copy()
    x[::9] = np.nan
    pa_csv.write_csv(table.set_column(0, "x", pa.array(x)), "gaps.csv")
    command = f"select-k gaps.csv --label-column species {shared} --k-max 1 --missing marginal"
    ok(gmm(f"{command} --covariance-types EII -q -o m.json"))
    assert json.loads(Path("m.json").read_text())["training"]["missing_cells"] == len(x[::9])


@pytest.mark.parametrize("shared", ["", "--shared-structure"])
def test_a_grid_with_labels_resumes_to_the_same_result(work, shared):
    """A run on a smaller grid, then --resume on the whole one: the rows made before are
    reused (each class's, or the shared points'), and the table and model are those of a
    run from scratch."""
    command = f"select-k all.csv --label-column species {shared} --covariance-types full,EII"
    ok(gmm(f"{command} --k-max 3 --table fresh.csv -o fresh.json -q"))
    ok(gmm(f"{command} --k-max 1 --table grid.csv -o small.json -q"))
    first = read_csv("grid.csv")
    assert first.column_names[0] == "class" and set(first["n_components"].to_pylist()) == {1}
    result = ok(gmm(f"{command} --k-max 3 --table grid.csv --resume -o best.json"))
    assert "reusing the grid points in 'grid.csv'" in result.stderr
    assert Path("best.json").read_bytes() == Path("fresh.json").read_bytes()
    resumed, fresh = read_csv("grid.csv"), read_csv("fresh.csv")
    assert resumed.drop_columns(["seconds"]).equals(fresh.drop_columns(["seconds"]))
    kept = first.filter(pa.compute.equal(first["covariance_type"], "EII"))
    again = resumed.filter(
        pa.compute.and_(
            pa.compute.equal(resumed["covariance_type"], "EII"),
            pa.compute.equal(resumed["n_components"], 1),
        )
    )
    assert again["seconds"].equals(kept["seconds"])  # reused, not fitted again


@pytest.mark.parametrize(
    ("made", "change", "words"),
    [
        ("", "--label-column species", "--label-column none, not species"),
        ("--label-column species", "--label-column species --shared-structure", "off, not on"),
        (
            "--label-column species --shared-structure",
            "--label-column species --shared-structure --class-priors setosa=1,versicolor=1,"
            "virginica=2",
            "--class-priors none, not setosa=0.25,versicolor=0.25,virginica=0.5",
        ),
    ],
)
def test_resume_refuses_a_grid_made_with_other_labels(work, made, change, words):
    ok(gmm(f"select-k all.csv {made} --columns x,y --k-max 1 --table grid.csv -q"))
    line = error_line(
        gmm(f"select-k all.csv {change} --columns x,y --k-max 1 --table grid.csv --resume")
    )
    assert words in line and "run without --resume" in line


@pytest.mark.parametrize(
    ("made", "given"),
    [
        ("", "--class-priors setosa=1,versicolor=1,virginica=2"),  # they only join the winners
        (
            "--shared-structure --class-priors setosa=1,versicolor=1,virginica=2",
            "--shared-structure --class-priors virginica=0.5,setosa=0.25,versicolor=0.25",
        ),
    ],
)
def test_resume_takes_class_priors_that_leave_the_rows_alike(work, made, given):
    command = "select-k all.csv --label-column species --columns x,y --k-max 1 --table grid.csv"
    ok(gmm(f"{command} {made} -q"))
    result = ok(gmm(f"{command} {given} --resume"))
    assert "reusing the grid points in 'grid.csv'" in result.stderr
    assert "select-k 1/" not in result.stderr


@pytest.mark.parametrize("shared", ["", "--shared-structure"])
def test_a_grid_with_labels_resumed_on_a_smaller_one_leaves_the_rest_out(work, shared):
    command = f"select-k all.csv --label-column species {shared} --covariance-types full,EII"
    ok(gmm(f"{command} --k-max 2 --table grid.csv -q"))
    result = ok(gmm(f"{command},VII --k-max 1 --table grid.csv --resume -o best.json"))
    assert "6 rows of 'grid.csv' lie outside this grid: left out of it" in result.stderr
    points = 1 if shared else 3  # VII under K = 1: once, or for each class
    assert f"select-k {points}/{points}:" in result.stderr
    assert f"select-k {points + 1}/" not in result.stderr
    resumed = read_csv("grid.csv")
    assert set(resumed["n_components"].to_pylist()) == {1}
    assert resumed.num_rows == 9


def test_a_shared_structure_grid_with_no_sound_point_says_so_in_a_line(work):
    rows = "x,y,species\n" + "".join(
        f"{i % 5},{(i * 7) % 3},{'a' if i < 10 else 'b'}\n" for i in range(12)
    )
    Path("tiny.csv").write_text(rows)
    command = "select-k tiny.csv --label-column species --shared-structure --k-min 3 --k-max 3"
    line = error_line(gmm(f"{command} --covariance-types VVV -o m.json"))
    assert line.startswith("error: no grid point is sound (every one failed or is degenerate;")
    assert line.endswith("lower K (--k-min to --k-max))")  # select-k's flags, not fit's -k
    assert not Path("m.json").exists()


def test_a_stopped_grid_with_labels_keeps_its_rows_for_resume(work, monkeypatch):
    command = "select-k all.csv --label-column species --covariance-types full,EII --k-max 2"
    ok(gmm(f"{command} --table fresh.csv -o fresh.json -q"))
    stopped_after(monkeypatch, 5, f"{command} --table grid.csv -o best.json")  # (class 2's 2nd)
    kept = read_csv("grid.csv")
    assert kept["class"].to_pylist() == ["setosa"] * 4 + ["versicolor"]
    result = ok(gmm(f"{command} --table grid.csv --resume -o best.json"))
    assert "select-k 7/7:" in result.stderr and "select-k 8/" not in result.stderr
    assert Path("best.json").read_bytes() == Path("fresh.json").read_bytes()


def test_select_k_with_a_shared_structure_of_two_components_takes_class_priors(work):
    command = (
        "select-k all.csv --label-column species --shared-structure --k-min 2 --k-max 2 "
        "--covariance-types full,EII"
    )
    ok(gmm(f"{command} --class-priors setosa=1,versicolor=1,virginica=2 -o m.json -q"))
    weights = np.array(json.loads(Path("m.json").read_text())["weights"])
    np.testing.assert_allclose(
        [weights[0:2].sum(), weights[2:4].sum(), weights[4:6].sum()], [0.25, 0.25, 0.5]
    )


def test_a_shared_structure_grid_in_two_processes_is_the_same(work):
    command = "select-k all.csv --label-column species --shared-structure --k-max 2 -q"
    ok(gmm(f"{command} --covariance-types full,EII --table one.csv -o one.json"))
    ok(gmm(f"{command} --covariance-types full,EII --table two.csv -o two.json --jobs 2"))
    assert Path("two.json").read_bytes() == Path("one.json").read_bytes()
    one, two = read_csv("one.csv"), read_csv("two.csv")
    assert one.drop_columns(["seconds"]).equals(two.drop_columns(["seconds"]))
