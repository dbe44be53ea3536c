"""The Dask engine: the same model and outputs as the local engine, on a LocalCluster.

Clusters run on loopback only, with worker processes of one thread each.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from core_helpers import blocks_of
from typer.testing import CliRunner

distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

from gmmcli import fit, inputs  # noqa: E402
from gmmcli.cli import app  # noqa: E402
from gmmcli.core.em import SERIAL  # noqa: E402
from gmmcli.core.fit import fit_rows  # noqa: E402
from gmmcli.core.options import ALL_NAMES, FitOptions  # noqa: E402
from gmmcli.engines import cluster  # noqa: E402
from gmmcli.engines import local as local_engine  # noqa: E402
from gmmcli.errors import GMMWarning  # noqa: E402
from gmmcli.inputs import Source, open_rows  # noqa: E402
from gmmcli.io import modelfile  # noqa: E402

NAMES = ["a", "b", "c"]
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INITS = ("kmeans", "kmeans++", "random", "random-from-data")
ROW_GROUP = 400


def local_cluster(n_workers: int = 2):
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )


@pytest.fixture(autouse=True)
def small_partitions(monkeypatch):
    """Partitions of 32 row groups, so that the test files make several."""
    monkeypatch.setattr(cluster, "PARTITION_BYTES", ROW_GROUP * 32)


@pytest.fixture(scope="module")
def client():
    with local_cluster() as running, distributed.Client(running) as connected:
        yield connected


@pytest.fixture(scope="module")
def data(tmp_path_factory, mixture):
    """Well-separated rows with integer weights: one file, and the same rows in a folder of
    three files (the last one with two row groups)."""
    X, _ = mixture(11, n_samples=2400, n_features=3, n_components=3, spread=10.0)
    weights = np.random.default_rng(1).integers(0, 4, len(X)).astype(float)
    ids = pa.array(np.arange(len(X)), mask=np.arange(len(X)) % 7 == 0)  # int64 with nulls
    labels = pa.array([f"row {i}" for i in range(len(X))])
    features = {n: X[:, j] for j, n in enumerate(NAMES)}
    table = pa.table({**features, "w": weights, "id": ids, "label": labels})
    root = tmp_path_factory.mktemp("cluster")
    pq.write_table(table, root / "all.parquet", row_group_size=ROW_GROUP)
    (root / "folder").mkdir()
    for i, (start, stop) in enumerate([(0, 700), (700, 1500), (1500, 2400)]):
        pq.write_table(table.slice(start, stop - start), root / "folder" / f"p{i}.parquet", 450)
    return root, X, weights


def assert_same_model(a, b, rtol=1e-10):
    np.testing.assert_allclose(a.weights, b.weights, rtol=rtol)
    np.testing.assert_allclose(a.means, b.means, rtol=rtol)
    np.testing.assert_allclose(a.covariances, b.covariances, rtol=rtol, atol=1e-13)
    np.testing.assert_allclose(a.fit_info.log_likelihood, b.fit_info.log_likelihood, rtol=rtol)
    assert a.fit_info.n_iter == b.fit_info.n_iter


def cluster_rows(client, path, weight_column="w"):
    files = cluster.ParquetFiles(cluster.parquet_files(str(path)), partition_bytes=ROW_GROUP * 32)
    return cluster.load_rows(client, files, NAMES, weight_column=weight_column)


def test_rows_stay_in_partitions(client, data):
    root, X, _ = data
    rows = cluster_rows(client, root / "all.parquet")
    assert rows.n_parts == 6  # one per row group
    assert rows.first_rows == list(range(0, 2400, ROW_GROUP))
    assert rows.n_rows == len(X)
    holders = client.who_has(rows.parts)
    assert all(len(where) == 1 for where in holders.values())


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init", INITS)
def test_same_model_as_the_local_engine(client, data, covariance_type, init):
    root, X, weights = data
    options = dict(covariance_type=covariance_type, init=init, n_init=2, seed=5, tol=1e-6)
    local = fit(X, 3, weights=weights, **options)
    remote = fit_rows(
        cluster_rows(client, root / "all.parquet"), 3, FitOptions(**options), feature_names=NAMES
    )
    assert_same_model(local, remote)


def test_the_hc_start_is_the_local_one(client, data):
    # 2,400 rows: the hc start draws 300 of them by weight in the partitions, sums their
    # weights in another pass and assigns the others in a third, as a local fit does.
    root, X, weights = data
    options = dict(init="hc", hc_rows=300, n_init=2, seed=5, tol=1e-6)
    local = fit(X, 3, weights=weights, **options)
    remote = fit_rows(cluster_rows(client, root / "folder"), 3, FitOptions(**options))
    assert_same_model(local, remote)


@pytest.mark.parametrize("covariance_type", ALL_NAMES)
def test_fixed_iterations_give_the_local_model_to_rounding(client, data, covariance_type):
    # Partitions cut the rows elsewhere than local blocks: sums differ in the last bits
    # only, so a fixed number of iterations lands within 1e-12 (a tolerance might stop EM
    # one iteration apart).
    root, X, weights = data
    options = dict(covariance_type=covariance_type, seed=3, tol=0, max_iter=30)
    local = fit(X, 3, weights=weights, **options)
    remote = fit_rows(cluster_rows(client, root / "folder"), 3, FitOptions(**options))
    assert_same_model(local, remote, rtol=1e-12)


def test_a_folder_and_a_glob_give_the_model_of_the_whole_file(client, data):
    root, X, weights = data
    local = fit(X, 3, weights=weights, seed=2)
    for path in (root / "folder", root / "folder" / "p*.parquet"):
        assert_same_model(local, fit_rows(cluster_rows(client, path), 3, FitOptions(seed=2)))


def test_a_worker_killed_mid_fit_is_replaced_and_the_fit_is_unchanged(data):
    """SIGKILL one worker process after iteration 3: Dask recomputes its partitions from the
    files on the restarted worker, and the fit ends as if nothing had happened."""
    root, _, _ = data
    with local_cluster() as running, distributed.Client(running) as own:
        rows = cluster_rows(own, root / "all.parquet")
        options = FitOptions(seed=4, tol=0, max_iter=8)
        expected = fit_rows(rows, 3, options)
        holder = next(iter(own.who_has(rows.parts[:1]).values()))[0]
        victim = own.run(os.getpid, workers=[holder])[holder]
        killed = []

        def kill(restart, iteration, mean_log_likelihood):
            if iteration == 3 and not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        survived = fit_rows(rows, 3, options, on_iteration=kill)
        assert killed
        with pytest.raises(ProcessLookupError):
            os.kill(victim, 0)
        assert victim not in own.run(os.getpid).values()
    assert_same_model(expected, survived, rtol=0)


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_the_dask_engine_leaves_a_row_index_out_of_the_features(data):
    """The first file's schema and first rows choose the features, by the local rule."""
    root, _, _ = data
    source = Source(str(root / "folder"), weights="w", engine="dask")
    with pytest.warns(GMMWarning, match="column 'id' is taken for a row index by its name"):
        _, _, names = inputs._cluster_files(source, None, [])
    assert names == NAMES


def test_cli_fit_on_a_scheduler_address(client, data, tmp_path):
    root, _, _ = data
    code, _, err = run(
        "fit", root / "folder", "-k", 3, "--weight-column", "w", "-o", tmp_path / "dask.json",
        "--columns", "a,b,c", "--engine", "dask", "--scheduler", client.scheduler.address,
    )  # fmt: skip
    assert code == 0, err
    assert "3 partitions on 2 Dask workers" in err
    code, _, err = run(
        "fit", root / "all.parquet", "-k", 3, "--weight-column", "w", "--columns", "a,b,c",
        "-o", tmp_path / "local.json",
    )  # fmt: skip
    assert code == 0, err
    dask_model = json.loads((tmp_path / "dask.json").read_text())
    local_model = json.loads((tmp_path / "local.json").read_text())
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(dask_model[key], local_model[key], rtol=1e-10)


def classify_and_score(data_path, model, output, per_sample, engine_args):
    code, _, err = run("classify", data_path, "-m", model, "-o", output, *engine_args)
    assert code == 0, err
    code, summary, err = run(
        "score", data_path, "-m", model, "--weight-column", "w", "--per-sample", per_sample,
        *engine_args,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(summary)


@pytest.fixture(scope="module")
def model_file(data, tmp_path_factory):
    root, X, weights = data
    path = tmp_path_factory.mktemp("model") / "model.json"
    code, _, err = run(
        "fit", root / "all.parquet", "-k", 3, "--weight-column", "w", "--columns", "a,b,c",
        "-o", path,
    )  # fmt: skip
    assert code == 0, err
    return path


def test_cli_classify_and_score_write_folders_equal_to_the_local_outputs(
    client, data, model_file, tmp_path
):
    root, _, _ = data
    engine = ["--engine", "dask", "--scheduler", client.scheduler.address]
    remote = classify_and_score(
        root / "folder", model_file, tmp_path / "labels", tmp_path / "scores", engine
    )
    local = classify_and_score(
        root / "all.parquet", model_file, tmp_path / "l.parquet", tmp_path / "s.parquet", []
    )
    assert remote == local  # partitions cut rows mid-tile: the same bits all the same
    for folder, file in (("labels", "l.parquet"), ("scores", "s.parquet")):
        parts = sorted(os.listdir(tmp_path / folder))
        assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
        assert pq.read_table(tmp_path / folder).equals(pq.read_table(tmp_path / file))
    assert not glob.glob(str(tmp_path / ".*"))  # no temporary folder left behind


def test_cli_classify_replaces_an_existing_folder_whole(client, data, model_file, tmp_path):
    root, _, _ = data
    target = tmp_path / "labels"
    target.mkdir()
    (target / "part-00007.parquet").write_bytes(b"old")  # from an earlier run of 8 parts
    engine = ["--engine", "dask", "--scheduler", client.scheduler.address]
    code, _, err = run("classify", root / "folder", "-m", model_file, "-o", target, *engine)
    assert code == 0, err
    assert sorted(os.listdir(target)) == [f"part-0000{i}.parquet" for i in range(3)]
    assert os.listdir(tmp_path) == ["labels"]


def test_cli_bad_data_in_a_partition_leaves_the_old_folder(client, data, model_file, tmp_path):
    root, X, weights = data
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(2):
        column = X[:, 0].copy()
        if i == 1:
            column[7] = np.nan
        table = pa.table({"a": column, "b": X[:, 1], "c": X[:, 2], "w": weights})
        pq.write_table(table, bad / f"p{i}.parquet")
    target = tmp_path / "labels"
    target.mkdir()
    (target / "part-00000.parquet").write_bytes(b"old")
    engine = ["--engine", "dask", "--scheduler", client.scheduler.address]
    code, _, err = run("classify", bad, "-m", model_file, "-o", target, *engine)
    assert code == 2
    assert "column 'a' in partition 1 of" in err and "at row 8" in err
    assert "set --missing to drop" in err
    assert os.listdir(target) == ["part-00000.parquet"]
    assert (target / "part-00000.parquet").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["bad", "labels"]
    code, _, err = run("fit", bad, "-k", 2, "-o", tmp_path / "m.json", *engine)
    assert code == 2 and "partition 1 of" in err
    code, _, err = run(
        "fit", bad, "-k", 2, "-o", tmp_path / "m.json", "--drop-missing", *engine
    )  # fmt: skip
    assert code == 0, err
    assert "dropped 1 rows with missing values" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "DATA", "-k", "2", "--scheduler", "local:2"], "--scheduler works with"),
        (["fit", "-", "-k", "2", "--engine", "dask"], "not stdin"),
        (["fit", "DATA", "-k", "2", "--engine", "dask", "--memory-limit", "1GB"], "--memory-limit"),
        (["fit", "DATA", "-k", "2", "--engine", "dask", "--chunk-rows", "10"], "--chunk-rows"),
        (["fit", "CSV", "-k", "2", "--engine", "dask"], "is not a Parquet file"),
        (["fit", "NOWHERE/*.parquet", "-k", "2", "--engine", "dask"], "no Parquet files at"),
        (["fit", "DATA", "-k", "2", "--engine", "dask", "--columns", "a,zz"], "column 'zz'"),
        (["fit", "DATA", "-k", "2", "--engine", "dask", "--scheduler", "local:0"], "local:N"),
        (["classify", "DATA", "-m", "MODEL", "--engine", "dask"], "-o FOLDER"),
        (["fit", "DATA", "-k", "2", "--engine", "dask", "--format", "parquet"], "--format"),
        (
            ["score", "DATA", "-m", "MODEL", "--engine", "dask", "--weight-column", "nope"],
            "column 'nope' not found",
        ),
        (
            ["classify", "DATA", "-m", "MODEL", "-o", "KEEP", "--engine", "dask"],
            "holds 'notes.txt', which gmmcli did not write",
        ),
        (
            ["classify", "MIXED", "-m", "MODEL", "-o", "OUT", "--engine", "dask"],
            "other columns or types",
        ),
        (["classify", "DATA", "-m", "MODEL", "-o", "FILE", "--engine", "dask"], "is a file"),
        (["score", "DATA", "-m", "MODEL", "--engine", "dask", "--per-sample", "FILE"], "a file"),
    ],
)
def test_cli_bad_engine_options(data, model_file, tmp_path, args, message):
    root, _, _ = data
    (tmp_path / "file").write_text("x")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    (tmp_path / "mixed").mkdir()
    pq.write_table(pq.read_table(root / "all.parquet"), tmp_path / "mixed" / "a.parquet")
    pq.write_table(pq.read_table(root / "all.parquet").drop_columns(["id"]),
                   tmp_path / "mixed" / "b.parquet")  # fmt: skip
    places = {
        "DATA": root / "all.parquet",
        "CSV": tmp_path / "t.csv",
        "MODEL": model_file,
        "FILE": tmp_path / "file",
        "NOWHERE": tmp_path / "nowhere",
        "KEEP": tmp_path / "keep",
        "MIXED": tmp_path / "mixed",
        "OUT": tmp_path / "out",
    }
    args = [str(places.get(a, a)).replace("NOWHERE", str(tmp_path / "nowhere")) for a in args]
    code, _, err = run(*args)
    assert code == 2, err
    assert message in err
    lines = err.strip().splitlines()  # notes (the row index 'id' left out) may come first
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    assert sorted(os.listdir(tmp_path)) == ["file", "keep", "mixed", "t.csv"]
    assert os.listdir(tmp_path / "keep") == ["notes.txt"]


@pytest.mark.parametrize(
    "where", ["the input folder", "inside the input folder", "holding the files of a glob"]
)
def test_cli_output_folder_may_not_overlap_the_input(data, model_file, tmp_path, where):
    root, _, _ = data
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pq.read_table(root / "all.parquet"), folder / "part-00000.parquet")
    # (data given, output folder): a glob's files are inputs too, whatever its text
    given, target = {
        "the input folder": (folder, folder),
        "inside the input folder": (folder, folder / "labels"),
        "holding the files of a glob": (tmp_path / "i*" / "*.parquet", folder),
    }[where]
    before = sorted(os.listdir(folder))
    code, _, err = run("classify", given, "-m", model_file, "-o", target, "--engine", "dask")
    assert code == 2
    assert "overlaps the input" in err
    assert sorted(os.listdir(folder)) == before


def test_cli_fit_reads_files_that_differ_only_in_columns_it_does_not_use(client, data, tmp_path):
    root, X, weights = data
    table = pq.read_table(root / "all.parquet")
    (tmp_path / "mixed").mkdir()
    pq.write_table(table.slice(0, 1000), tmp_path / "mixed" / "a.parquet")
    pq.write_table(
        table.slice(1000).drop_columns(["id", "label"]), tmp_path / "mixed" / "b.parquet"
    )
    code, _, err = run(
        "fit", tmp_path / "mixed", "-k", 3, "--columns", "a,b,c", "--weight-column", "w",
        "--seed", 2, "-o", tmp_path / "m.json",
        "--engine", "dask", "--scheduler", client.scheduler.address,
    )  # fmt: skip
    assert code == 0, err
    local = fit(X, 3, weights=weights, seed=2)
    np.testing.assert_allclose(json.loads((tmp_path / "m.json").read_text())["means"], local.means,
                               rtol=1e-10)  # fmt: skip


def test_cli_classify_of_a_hive_folder_keeps_the_files_columns(client, data, model_file, tmp_path):
    """Folder names like year=2020 add no column (as the local engine reads the files)."""
    root, _, _ = data
    table = pq.read_table(root / "all.parquet")
    (tmp_path / "hive" / "year=2020").mkdir(parents=True)
    pq.write_table(table, tmp_path / "hive" / "year=2020" / "part.parquet")
    engine = ["--engine", "dask", "--scheduler", client.scheduler.address]
    code, _, err = run(
        "classify", tmp_path / "hive", "-m", model_file, "-o", tmp_path / "out", *engine
    )
    assert code == 0, err
    assert pq.read_table(tmp_path / "out").column_names == [*table.column_names, "component",
                                                              "p_0", "p_1", "p_2"]  # fmt: skip


def test_one_block_thread_per_task_without_touching_the_client(data, monkeypatch):
    """Tasks run in the client's process with an in-process cluster. GMMCLI_THREADS=4 shares
    local passes out over four threads; the dask engine's rows come with the SERIAL reducer,
    so each partition's task runs its blocks one after the other in its own thread (Dask
    shares out the cores), the fit equals the local one, and the client's setting stays."""
    root, X, weights = data
    monkeypatch.setenv("GMMCLI_THREADS", "4")
    before = local_engine.default_threads()
    assert before == 4 and local_engine.reducer() is not SERIAL
    block_rows = ROW_GROUP // 4
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=None) as in_process:  # fmt: skip
        source = Source(str(root / "all.parquet"), columns=NAMES, weights="w", engine="dask",
                        scheduler=in_process.scheduler.address)  # fmt: skip
        with blocks_of(block_rows), open_rows(source) as opened:
            assert opened.reducer is SERIAL
            seen = opened.reducer.sum(
                opened.rows, lambda X, w: [(threading.current_thread().name, len(w))]
            )
            remote = fit_rows(opened.rows, 3, FitOptions(seed=2), reducer=opened.reducer)
    assert [rows for _, rows in seen] == [block_rows] * (len(X) // block_rows)
    assert not any(name.startswith("gmmcli-blocks") for name, _ in seen)
    assert threading.current_thread().name not in {name for name, _ in seen}
    assert local_engine.default_threads() == before
    assert_same_model(fit(X, 3, weights=weights, seed=2), remote)


def test_cli_a_page_failing_its_checksum_is_one_line_naming_the_input(client, data, tmp_path):
    root, _, _ = data
    path = tmp_path / "bad.parquet"
    pq.write_table(pq.read_table(root / "all.parquet"), path, write_page_checksum=True)
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)  # column a
    raw = bytearray(path.read_bytes())
    raw[(chunk.dictionary_page_offset or chunk.data_page_offset) + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    code, _, err = run("fit", path, "-k", 2, "--columns", "a,b", "-o", tmp_path / "m.json",
                       "--engine", "dask", "--scheduler", client.scheduler.address)  # fmt: skip
    assert code == 2, err
    assert err.strip().splitlines() == [line for line in err.splitlines() if "error:" in line]
    assert f"'{path}'" in err and "checksum" in err


@pytest.mark.parametrize("kind", ["link", "folder-named-like-a-part"])
def test_cli_refuses_an_output_folder_it_could_not_replace_safely(data, model_file, tmp_path, kind):
    root, _, _ = data
    target = tmp_path / "out"
    if kind == "link":
        (tmp_path / "real").mkdir()
        target.symlink_to(tmp_path / "real", target_is_directory=True)
    else:
        (target / "part-00000.parquet").mkdir(parents=True)
    code, _, err = run("classify", root / "all.parquet", "-m", model_file, "-o", target,
                       "--engine", "dask")  # fmt: skip
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1


def test_cli_unreachable_scheduler(data, tmp_path):
    root, _, _ = data
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code, _, err = run(
            "fit", root / "all.parquet", "-k", 2, "-o", tmp_path / "m.json",
            "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9",
        )  # fmt: skip
    assert code == 2
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err
    assert not (tmp_path / "m.json").exists()


def test_cli_without_the_extra_names_it(data, tmp_path, monkeypatch):
    root, _, _ = data
    monkeypatch.delitem(sys.modules, "gmmcli.engines.cluster")
    monkeypatch.delattr(sys.modules["gmmcli.engines"], "cluster")
    monkeypatch.setitem(sys.modules, "dask", None)  # import dask now fails
    code, _, err = run("fit", root / "all.parquet", "-k", 2, "--engine", "dask")
    assert code == 2
    assert "pip install 'gmmcli[dask]'" in err


def test_real_command_with_a_local_cluster_of_its_own(data, tmp_path):
    """The installed command starts and stops its own LocalCluster (--scheduler local:2)."""
    root, _, _ = data
    gmmcli = os.path.join(os.path.dirname(sys.executable), "gmmcli")
    done = subprocess.run(
        [gmmcli, "fit", str(root / "folder"), "-k", "3", "--seed", "2", "--columns", "a,b,c",
         "--engine", "dask",
         "--scheduler", "local:2", "-o", str(tmp_path / "m.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "on 2 Dask workers" in done.stderr
    model = json.loads((tmp_path / "m.json").read_text())
    _, X, weights = data
    local = fit(X, 3, seed=2)
    np.testing.assert_allclose(model["means"], local.means, rtol=1e-10)


def test_fit_classify_and_score_through_gaps_as_the_local_engine(client, data, tmp_path):
    """--missing marginal on the Dask engine: the local engine's model and outputs."""
    root, X, weights = data
    gapped = X.copy()
    gapped[np.random.default_rng(3).random(X.shape) < 0.2] = np.nan
    table = pa.table(
        {**{n: pa.array(gapped[:, j], from_pandas=True) for j, n in enumerate(NAMES)}, "w": weights}
    )
    pq.write_table(table, tmp_path / "gaps.parquet", row_group_size=ROW_GROUP)
    common = ["-k", 3, "--weight-column", "w", "--missing", "marginal", "-q"]
    engine = ["--engine", "dask", "--scheduler", client.scheduler.address]
    for name, where in (("dask.json", engine), ("local.json", [])):
        code, _, err = run("fit", tmp_path / "gaps.parquet", *common, "-o", tmp_path / name, *where)
        assert code == 0, err
    dask_model = json.loads((tmp_path / "dask.json").read_text())
    local_model = json.loads((tmp_path / "local.json").read_text())
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(dask_model[key], local_model[key], rtol=1e-10)
    fitted = (weights > 0) & ~np.isnan(gapped).all(axis=1)
    assert dask_model["training"]["missing_cells"] == int(np.isnan(gapped[fitted]).sum())
    summaries = [
        run(
            "score",
            tmp_path / "gaps.parquet",
            "-m",
            tmp_path / "local.json",
            "--weight-column",
            "w",
            "--missing",
            "marginal",
            *where,
        )  # fmt: skip
        for where in (engine, [])
    ]
    assert all(code == 0 for code, _, _ in summaries), summaries
    remote, here = (json.loads(out) for _, out, _ in summaries)
    np.testing.assert_allclose(remote["log_likelihood"], here["log_likelihood"], rtol=1e-12)
    assert remote["n_samples_missing_features"] == here["n_samples_missing_features"] > 0


def test_labels_on_the_dask_engine_fit_as_locally(client, tmp_path, mixture):
    """Partly labelled rows (semi-supervised) and rows all labelled (one M-step) in a
    folder of Parquet files: the same models as the local engine reading one file."""
    X, truth = mixture(5, n_samples=1200, n_features=2, n_components=3, spread=8.0)
    names = np.array(["a", "b", "c"])[truth].astype(object)
    some = names.copy()
    some[np.random.default_rng(2).random(len(X)) < 0.7] = None
    table = pa.table({"x": X[:, 0], "y": X[:, 1], "all": names.tolist(), "some": some.tolist()})
    pq.write_table(table, tmp_path / "one.parquet", row_group_size=ROW_GROUP)
    (tmp_path / "folder").mkdir()
    for i, start in enumerate((0, 500)):
        part = table.slice(start, 500 if start == 0 else None)
        pq.write_table(part, tmp_path / "folder" / f"p{i}.parquet", row_group_size=ROW_GROUP)
    engine = ["--engine", "dask", "--scheduler", client.scheduler.address]
    for command, out in (
        (["fit", "DATA", "--label-column", "some", "--exclude", "all", "-k", 4], "semi"),
        (
            [
                "fit",
                "DATA",
                "--label-column",
                "all",
                "--exclude",
                "some",
                "--covariance-type",
                "tied",
            ],
            "lda",
        ),
    ):
        for data, where in ((tmp_path / "folder", engine), (tmp_path / "one.parquet", [])):
            args = [data if a == "DATA" else a for a in command]
            code, _, err = run(*args, *where, "-o", tmp_path / f"{out}-{bool(where)}.json", "-q")
            assert code == 0, err
        dask_model = modelfile.load(str(tmp_path / f"{out}-True.json"))
        local_model = modelfile.load(str(tmp_path / f"{out}-False.json"))
        assert dask_model.classes == local_model.classes
        assert_same_model(dask_model, local_model, rtol=1e-9)
    scores = []
    for data, where in ((tmp_path / "folder", engine), (tmp_path / "one.parquet", [])):
        model = tmp_path / "lda-False.json"
        code, out, err = run("score", data, "-m", model, "--label-column", "all", *where, "-q")
        assert code == 0, err
        scores.append(json.loads(out))
    for key in ("error_rate", "brier", "log_likelihood"):
        assert scores[0][key] == pytest.approx(scores[1][key], rel=1e-12)
    assert scores[0]["confusion"] == scores[1]["confusion"]


def test_a_mistake_on_a_local_cluster_of_its_own_is_one_line(tmp_path):
    """The workers logged a failed task with its traceback before the one-line error."""
    path = tmp_path / "gap.parquet"
    pq.write_table(pa.table({"a": [0.0, 1.0, None, 3.0], "b": [1.0, 0.0, 2.0, 5.0]}), path)
    gmmcli = os.path.join(os.path.dirname(sys.executable), "gmmcli")
    done = subprocess.run(
        [gmmcli, "fit", str(path), "-k", "1", "--engine", "dask", "--scheduler", "local:1",
         "-o", str(tmp_path / "m.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Compute Failed" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: column 'a' in partition 0")
