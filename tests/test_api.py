"""The Python API does what the command line does: arrays, DataFrames, Arrow tables and
files (streamed past memory_limit) through the same way in, options checked once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import gmmcli
from gmmcli.engines import stream
from gmmcli.errors import GMMError, InvalidParameter

pytestmark = pytest.mark.filterwarnings("ignore::gmmcli.errors.GMMWarning")


@pytest.fixture
def frame(mixture) -> pd.DataFrame:
    """Two features, integer weights, a text column and a column gmmcli writes itself."""
    X, labels = mixture(11, n_samples=400, n_features=2, n_components=3, spread=8.0)
    weights = np.random.default_rng(0).integers(1, 4, len(X))
    return pd.DataFrame(
        {"name": [f"r{i}" for i in range(len(X))], "b": X[:, 1], "a": X[:, 0], "w": weights}
    ).assign(component=labels)


def same_model(one: gmmcli.GaussianMixture, other: gmmcli.GaussianMixture, rtol=0.0) -> None:
    for name in ("weights", "means", "covariances"):
        assert_allclose(getattr(one, name), getattr(other, name), rtol=rtol, atol=rtol)


def test_a_dataframe_fits_as_its_file_does_on_the_command_line(frame, tmp_path):
    """Default features: numeric columns but the weights and gmmcli's own; same model."""
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    from_frame = gmmcli.fit(frame, 3, weights="w", seed=1)
    from_file = gmmcli.fit(path, 3, weights="w", seed=1)
    array = frame[["b", "a"]].to_numpy()
    from_array = gmmcli.fit(array, 3, weights=frame["w"].to_numpy(), seed=1)
    assert from_frame.feature_names == from_file.feature_names == ["b", "a"]
    assert from_array.feature_names is None
    same_model(from_frame, from_file)
    same_model(from_frame, from_array)


def test_arrow_tables_and_pycapsule_objects_fit_alike(frame):
    table = pa.table(frame)

    class Capsule:  # any object with the Arrow PyCapsule stream interface
        def __arrow_c_stream__(self, requested_schema=None):
            return table.__arrow_c_stream__(requested_schema)

    expected = gmmcli.fit(frame, 2, weights="w", seed=3)
    same_model(gmmcli.fit(table, 2, weights="w", seed=3), expected)
    same_model(gmmcli.fit(Capsule(), 2, weights="w", seed=3), expected)


def test_a_parquet_file_read_in_chunks_is_fitted_streamed(frame, tmp_path, monkeypatch):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table(frame), path, row_group_size=64)
    whole = gmmcli.fit(path, 3, weights="w", seed=2, tol=0, max_iter=20)
    streamed_files = []
    real = stream.FileRows
    monkeypatch.setattr(
        stream, "FileRows", lambda *a, **k: streamed_files.append(a) or real(*a, **k)
    )
    streamed = gmmcli.fit(str(path), 3, weights="w", seed=2, tol=0, max_iter=20, chunk_rows=50)
    assert len(streamed_files) == 1  # read in chunks, not whole
    # Same rows, blocks cut elsewhere: running sums round differently.
    same_model(streamed, whole, rtol=1e-9)
    assert streamed.fit_info.n_samples == len(frame)


def test_a_model_predicts_on_a_table_by_feature_names(frame):
    model = gmmcli.fit(frame, 3, columns=["a", "b"], seed=0)
    reordered = frame[["w", "b", "a"]]
    expected = model.predict(frame[["a", "b"]].to_numpy())
    assert_array_equal(model.predict(reordered), expected)
    assert_array_equal(model.predict(pa.table(reordered)), expected)
    with pytest.raises(GMMError, match="no column 'a'"):
        model.predict(frame[["b"]])


def test_classify_path_to_path_and_in_memory_agree(frame, tmp_path):
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    model = gmmcli.fit(frame, 3, weights="w", seed=0)
    gmmcli.classify(path, model, tmp_path / "whole.csv")
    gmmcli.classify(path, model, tmp_path / "chunks.csv", chunk_rows=64)
    whole = (tmp_path / "whole.csv").read_bytes()
    assert (tmp_path / "chunks.csv").read_bytes() == whole
    table = gmmcli.classify(path, model)
    assert table.equals(pa_csv.read_csv(tmp_path / "whole.csv"))


def test_methods_that_return_tables_refuse_an_input_past_memory_limit(frame, tmp_path):
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    model = gmmcli.fit(frame, 2, weights="w", seed=0)
    with pytest.raises(GMMError, match="memory_limit"):
        gmmcli.classify(path, model, memory_limit=100)


def test_score_reads_a_file_and_takes_weights_by_column(frame, tmp_path):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table(frame), path)
    model = gmmcli.fit(frame, 3, weights="w", seed=0)
    summary = gmmcli.score(path, model, weights="w", chunk_rows=100)
    ll = model.score_samples(frame[["b", "a"]])
    assert_allclose(summary["log_likelihood"], frame["w"].to_numpy() @ ll, rtol=1e-12)
    assert summary["total_weight"] == frame["w"].sum()


def test_select_k_on_a_dataframe(frame):
    points, winner = gmmcli.select_k(frame, range(2, 4), weights="w", covariance_types=["full"])
    assert [p.n_components for p in points] == [2, 3]
    assert winner.feature_names == ["b", "a"]


@pytest.mark.parametrize(
    ("keywords", "parameter"),
    [
        ({"tol": -1}, "tol"),
        ({"n_init": 0}, "n_init"),
        ({"covariance_type": "banded"}, "covariance_type"),
        ({"dtype": "float16"}, "dtype"),
        ({"chunk_rows": 0}, "chunk_rows"),
        ({"engine": "spark"}, "engine"),
        ({"memory_limit": "lots"}, "memory_limit"),
    ],
)
def test_options_are_checked_before_any_data_are_read(keywords, parameter):
    with pytest.raises(InvalidParameter) as caught:
        gmmcli.fit("no such file.csv", 2, **keywords)
    assert caught.value.parameter == parameter
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(f"{parameter} must be")


def test_an_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="n_iterations"):
        gmmcli.fit(np.zeros((4, 1)), 1, n_iterations=3)


def test_singular_covariance_names_the_parameter_and_the_component():
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 5, axis=0)
    with pytest.raises(gmmcli.SingularCovarianceError) as caught:
        gmmcli.fit(X, 2, reg_covar=0.0, seed=0)
    assert caught.value.component in (0, 1)
    assert "increase reg_covar" in str(caught.value)
    assert "--reg-covar" in caught.value.describe(lambda p: "--" + p.replace("_", "-"))
    assert not caught.value.overflow


@pytest.mark.parametrize("covariance_type", ["EII", "EEI", "VEI", "EVE", "VVE", "EEV", "VVV"])
def test_a_single_row_without_reg_covar_is_singular_in_every_structure(covariance_type):
    """The constrained structures' M-step met NaN from a zero scatter: an SVD raised
    LinAlgError (EVE, VVE), or the NaN was told as an overflow (EEI, VEI, EEV)."""
    with pytest.raises(gmmcli.SingularCovarianceError) as caught:
        gmmcli.fit(np.array([[1.0, 2.0]]), 1, covariance_type=covariance_type, reg_covar=0.0)
    assert not caught.value.overflow


@pytest.mark.parametrize("covariance_type", ["EEI", "EVE", "VVE", "EEV"])
def test_an_overflow_in_a_constrained_m_step_is_told_as_one(covariance_type):
    """Values near 1e153: the data's sums are finite (the summary passes) but the inner
    loop's are not; not a singular covariance, which a larger reg_covar would mend."""
    X = np.random.default_rng(0).normal(size=(60, 4)) * 1e153
    with pytest.raises(gmmcli.SingularCovarianceError) as caught:
        gmmcli.fit(X, 2, covariance_type=covariance_type, reg_covar=1.0, seed=0, init="random")
    assert caught.value.overflow


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "VEV"])
@pytest.mark.parametrize("how", ["fit", "select_k"])
def test_finite_data_whose_squares_overflow_are_told_apart_from_singular(covariance_type, how):
    """Values near 1e300 square past float64's range: a larger reg_covar cannot help."""
    X = np.random.default_rng(0).normal(size=(60, 2)) * 1e300
    with pytest.raises(gmmcli.SingularCovarianceError) as caught:
        if how == "fit":
            gmmcli.fit(X, 2, covariance_type=covariance_type, reg_covar=1.0, seed=0)
        else:
            gmmcli.select_k(X, [1, 2], covariance_types=[covariance_type], reg_covar=1.0)
    assert caught.value.overflow
    message = str(caught.value)
    assert "overflow" in message and "rescale the data" in message
    assert "singular" not in message


def test_the_readmes_python_examples_run_as_written(tmp_path, monkeypatch):
    """Every Python block of the README but the one that needs a Dask scheduler."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "10.0.0.5" not in b]
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    exec(compile("\n".join(blocks), "README.md", "exec"), {})
    assert (tmp_path / "labelled.csv").exists()


def test_messages_name_python_parameters_where_the_command_line_names_flags(tmp_path):
    path = tmp_path / "holes.csv"
    path.write_text("a,b\n1,2\n,3\n4,5\n")
    with pytest.raises(GMMError) as caught:
        gmmcli.fit(path, 1)
    assert "set missing to drop" in str(caught.value)
    assert "set --missing to drop" in caught.value.describe(lambda p: "--" + p.replace("_", "-"))
    assert gmmcli.fit(path, 1, drop_missing=True).fit_info.n_samples == 2


def test_a_dataframes_index_is_no_feature(frame):
    shuffled = frame.sample(frac=1.0, random_state=0)  # an index that is not 0..n-1
    model = gmmcli.fit(shuffled, 2, weights="w", seed=0)
    assert model.feature_names == ["b", "a"]
    assert "__index_level_0__" not in gmmcli.classify(shuffled, model).column_names


def test_weights_and_labels_as_an_array_or_a_name_each_where_they_make_sense(frame, tmp_path):
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    weights = frame["w"].to_numpy()
    with pytest.raises(GMMError, match="weights as an array needs the data in memory"):
        gmmcli.fit(path, 2, weights=weights)
    with pytest.raises(GMMError, match="no named columns"):
        gmmcli.fit(frame[["a", "b"]].to_numpy(), 2, weights="w")
    labels = np.where(frame["a"].to_numpy() > 0, "x", "y")
    with pytest.raises(GMMError, match="labels as an array needs the data in memory; for a "):
        gmmcli.fit(path, 2, labels=labels)
    with pytest.raises(GMMError, match="give labels as an array of labels"):
        gmmcli.fit(frame[["a", "b"]].to_numpy(), 2, labels="w")
    model = gmmcli.fit(frame, 2, weights="w", seed=0)
    by_name = gmmcli.score(frame, model, weights="w")
    by_array = gmmcli.score(frame.drop(columns="w"), model, weights=weights)
    assert by_array == by_name
    assert by_name["total_weight"] == weights.sum()


def test_arrays_predict_by_position_with_the_fits_shapes():
    values = [1.0, 2.0, 3.0, 10.0, 11.0, 12.0]
    model = gmmcli.fit(values, 2, seed=0)  # a 1-D array: one feature, six rows
    assert model.fit_info.n_samples == 6
    assert gmmcli.score(values, model)["n_samples"] == 6
    with pytest.raises(GMMError, match="the data have 2 columns, the model 1 features"):
        gmmcli.score(np.ones((4, 2)), model)


def test_one_column_name_alone_is_one_column(frame):
    model = gmmcli.fit(frame, 1, columns="a", exclude="name", seed=0)
    assert model.feature_names == ["a"]


def test_classify_in_memory_refuses_when_every_row_is_missing(frame):
    model = gmmcli.fit(frame, 2, columns=["a", "b"], seed=0)
    holes = frame.assign(a=np.nan)
    with pytest.raises(GMMError, match="every row"):
        gmmcli.classify(holes, model, drop_missing=True)


def test_select_k_takes_covariance_types_not_a_start(frame):
    with pytest.raises(TypeError, match="covariance_types"):
        gmmcli.select_k(frame, [2], covariance_type="diag")
    with pytest.raises(GMMError, match="fits no grid"):
        gmmcli.select_k(frame, [2, 3], means_init=np.zeros((2, 2)))
    points, _ = gmmcli.select_k(frame, [2], covariance_types="diag", weights="w")
    assert [p.covariance_type for p in points] == ["diag"]


def test_a_format_is_for_files_only(frame):
    with pytest.raises(GMMError, match="format names a file's format"):
        gmmcli.fit(frame, 2, format="csv")
