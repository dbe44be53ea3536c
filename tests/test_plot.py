"""gmmcli plot: the geometry checked numerically, the pictures by size and format, the errors.

Pictures are checked by what can be measured without looking (format, pixel or page size,
the coordinates of the drawn artists), never by comparing pixels. Most renders use a small
size and dpi to keep the file fast.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg
from typer.testing import CliRunner

import gmmcli
from gmmcli import plot as pictures
from gmmcli.cli import app
from gmmcli.core.structures import COVARIANCE_TYPES, find_covariance
from gmmcli.errors import UserError

runner = CliRunner()
SMALL = ["--size", "4x3", "--dpi", "50"]  # 200 x 150 pixels, 288 x 216 points


# ----------------------------------------------------------------------------- helpers


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def svg_size(data: bytes) -> tuple[str, str]:
    head = data[:2000].decode()
    tag = re.search(r"<svg [^>]*>", head).group(0)
    return re.search(r'width="([^"]+)"', tag).group(1), re.search(r'height="([^"]+)"', tag).group(1)


def suptitle(figure) -> str:
    return figure._suptitle.get_text()  # Figure.get_suptitle is public from matplotlib 3.8


def supxlabel(figure) -> str:
    return figure._supxlabel.get_text()


def pdf_media_box(data: bytes) -> list[float]:
    assert data.startswith(b"%PDF-")
    boxes = re.findall(rb"/MediaBox \[ *([\d. ]+?) *\]", data)
    assert len(boxes) == 1  # one page
    return [float(v) for v in boxes[0].split()]


def write_csv(path, columns: dict) -> str:
    pa_csv.write_csv(pa.table(columns), str(path))
    return str(path)


def mahalanobis_squared(points: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """(p - μ)ᵀ Σ⁻¹ (p - μ) by a Cholesky solve."""
    factor = linalg.cholesky(cov, lower=True)
    z = linalg.solve_triangular(factor, (points - mean).T, lower=True)
    return (z**2).sum(axis=0)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, mixture):
    """Files for the three forms: 2-D data with true_component, a fit, a 3-D fit, a grid."""
    make_mixture = mixture
    folder = tmp_path_factory.mktemp("plot")
    X, labels = make_mixture(11, n_samples=400, n_features=2, spread=6.0)
    data = write_csv(folder / "data.csv", {"x": X[:, 0], "y": X[:, 1], "true_component": labels})
    model = gmmcli.fit(X, 3, seed=0, columns=["x", "y"])
    gmmcli.save(model, str(folder / "model.json"))
    X3, _ = make_mixture(12, n_samples=500, n_features=3, spread=6.0)
    data3 = write_csv(folder / "data3.csv", {f"f{i}": X3[:, i] for i in range(3)})
    model3 = gmmcli.fit(X3, 2, seed=0, columns=["f0", "f1", "f2"])
    gmmcli.save(model3, str(folder / "model3.json"))
    grid = write_csv(folder / "grid.csv", GRID)
    typo_grid = write_csv(folder / "typo-grid.csv", grid_of(["full", "fulll"]))
    odd_grid = write_csv(folder / "odd-grid.csv", grid_of(["full"], ["XYZ"]))
    class_grid = write_csv(folder / "class-grid.csv", class_grid_of(["a", "b", "c"]))
    blank = class_grid_of(["a", "b"])
    blank["class"][6] = None
    blank_class_grid = write_csv(folder / "blank-class-grid.csv", blank)
    stopped = {**GRID, "criterion": [None] * 6, "best": [False] * 6}  # kept, not ranked
    stopped_grid = write_csv(folder / "stopped-grid.csv", stopped)
    return {
        "folder": folder,
        "data": data,
        "model": str(folder / "model.json"),
        "X": X,
        "fit": model,
        "data3": data3,
        "model3": str(folder / "model3.json"),
        "X3": X3,
        "fit3": model3,
        "grid": grid,
        "typo_grid": typo_grid,
        "odd_grid": odd_grid,
        "class_grid": class_grid,
        "blank_class_grid": blank_class_grid,
        "stopped_grid": stopped_grid,
    }


# A hand-made select-k grid: K=1..3 for two types, one degenerate point, one failed point.
GRID = {
    "n_components": [1, 2, 3, 1, 2, 3],
    "covariance_type": ["full", "full", "full", "diag", "diag", "diag"],
    "bic": [900.0, 700.0, 720.0, 950.0, 760.0, None],
    "aic": [890.0, 680.0, 690.0, 940.0, 740.0, None],
    "criterion": [900.0, 700.0, 720.0, 950.0, 760.0, None],
    "degenerate": [False, False, True, False, False, None],
    "status": [
        "ok",
        "ok",
        "degenerate: component 2 holds fewer than D + 1 effective rows",
        "ok",
        "ok",
        "failed: the covariance of component 1 is singular (not positive definite)",
    ],
    "best": [False, True, False, False, False, False],
}


def image(path="x.png", size="4x3", dpi=50) -> pictures.Image:
    return pictures.Image.from_options(str(path), size, dpi)


# R mclust's fourteen covariance structures in its order, and scikit-learn's names of four.
MCLUST = ["EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE"]
MCLUST += ["VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV"]
SKLEARN = {"VII": "spherical", "VVI": "diag", "EEE": "tied", "VVV": "full"}


def grid_of(covariance_types, models=None, k_max=3) -> dict[str, list]:
    """A select-k grid with K = 1..k_max for each structure: a value falling with K and
    with the structure's place, no failures, the last point best; ``model`` when given."""
    n = len(covariance_types)
    columns = {
        "n_components": [k for _ in range(n) for k in range(1, k_max + 1)],
        "covariance_type": [c for c in covariance_types for _ in range(k_max)],
    }
    if models is not None:
        columns["model"] = [m for m in models for _ in range(k_max)]
    values = [1000.0 - 10 * i - 50 * k for i in range(n) for k in range(1, k_max + 1)]
    return {
        **columns,
        "bic": values,
        "criterion": values,
        "degenerate": [False] * len(values),
        "status": ["ok"] * len(values),
        "best": [False] * (len(values) - 1) + [True],
    }


def class_grid_of(names, best=None) -> dict[str, list]:
    """A grid for each class (select-k --label-column --table): grid_of's two structures
    under each class in ``names``' order, class c's values 100·c above the first's, its
    best point its row ``best[c]`` (default: row c)."""
    columns: dict[str, list] = {"class": []}
    for c, name in enumerate(names):
        grid = grid_of(["full", "VEV"], ["VVV", "VEV"])
        grid["bic"] = grid["criterion"] = [v + 100 * c for v in grid["criterion"]]
        grid["best"] = [i == (c if best is None else best[c]) for i in range(6)]
        columns["class"] += [name] * 6
        for key, values in grid.items():
            columns.setdefault(key, []).extend(values)
    return columns


def of_class(columns: dict[str, list], name: str) -> dict[str, list]:
    """The rows of one class of a grid for each class."""
    mine = [i for i, c in enumerate(columns["class"]) if c == name]
    return {key: [values[i] for i in mine] for key, values in columns.items()}


def panel_lines(axes) -> dict:
    """A grid plot's line of each structure, by mclust's name."""
    lines = [x for x in axes.lines if (x.get_gid() or "").startswith("line-")]
    return {x.get_gid().removeprefix("line-"): x for x in lines}


def grid_lines(figure) -> dict:
    """A grid picture's line of each structure, by mclust's name."""
    return panel_lines(figure.axes[0])


def rings(axes) -> np.ndarray:
    """Where a grid plot rings its best points."""
    found = [c.get_offsets() for c in axes.collections if c.get_gid() == "best"]
    return np.concatenate(found) if found else np.empty((0, 2))


def best_note(axes) -> str:
    """The line under a panel's title that names its best point."""
    (note,) = [t.get_text() for t in axes.texts if t.get_gid() == "best-note"]
    return note


def line_styles(figure) -> dict[str, tuple[str, str]]:
    """(colour, marker) of each structure's line, by mclust's name."""
    from matplotlib.colors import to_hex

    return {n: (to_hex(x.get_color()), x.get_marker()) for n, x in grid_lines(figure).items()}


def marked_points(line) -> np.ndarray:
    """The points a line marks (its sound ones)."""
    return line.get_xydata()[line.get_markevery()]


def legend_texts(figure) -> list[str]:
    legend = figure.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()]


# ------------------------------------------------------------------------ the layering


def test_importing_gmmcli_loads_no_matplotlib():
    code = (
        "import sys, gmmcli, gmmcli.core, gmmcli.cli, gmmcli.plot\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib')\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


# ---------------------------------------------------------------------------- geometry


@st.composite
def covariances_2d(draw):
    """A 2x2 covariance with condition number below ~10^4, and a mean."""
    entries = draw(st.lists(st.floats(-3, 3), min_size=4, max_size=4))
    scale = draw(st.floats(1e-2, 1e2))
    A = np.array(entries).reshape(2, 2)
    cov = scale * (A @ A.T + 0.05 * np.eye(2))
    mean = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=2)))
    return mean, cov


@settings(deadline=None, max_examples=60)
@given(covariances_2d(), st.floats(0.1, 5.0))
def test_ellipse_points_are_at_mahalanobis_distance_r(mean_cov, radius):
    mean, cov = mean_cov
    points = pictures.ellipse(mean, cov, radius)
    np.testing.assert_allclose(mahalanobis_squared(points, mean, cov), radius**2, rtol=1e-9)
    np.testing.assert_array_equal(points[0], points[-1])  # closed
    # Semi-axes r·√λ: the farthest and nearest points (t = 0, π/2, … are sampled exactly).
    distance = np.linalg.norm(points - mean, axis=1)
    lam = np.linalg.eigvalsh(cov)
    np.testing.assert_allclose(distance.max(), radius * np.sqrt(lam.max()), rtol=1e-9)
    np.testing.assert_allclose(distance.min(), radius * np.sqrt(lam.min()), rtol=1e-9)


def test_principal_view_projects_covariances_as_vt_sigma_v(fitted):
    X, model = fitted["X3"], fitted["fit3"]
    view = pictures.choose_view(X, ["f0", "f1", "f2"], None)
    V = view.axes
    assert view.projected and V.shape == (3, 2)
    np.testing.assert_allclose(V.T @ V, np.eye(2), atol=1e-12)
    # V spans the top two eigenvectors of the data covariance ...
    data_cov = np.cov(X, rowvar=False, bias=True)
    lam, vectors = np.linalg.eigh(data_cov)
    np.testing.assert_allclose(np.abs(vectors[:, [2, 1]].T @ V), np.eye(2), atol=1e-10)
    # ... so the projected rows are uncorrelated, with the top two variances.
    projected = view.points(X)
    np.testing.assert_allclose(projected.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(
        np.cov(projected, rowvar=False, bias=True), np.diag(lam[[2, 1]]), atol=1e-10
    )
    # Covariances become Vᵀ Σ V and means (μ - centre) V, component by component.
    for k in range(model.n_components):
        sigma = model.covariances[k]
        np.testing.assert_allclose(view.covariances(model.covariances)[k], V.T @ sigma @ V)
        np.testing.assert_allclose(view.points(model.means)[k], (model.means[k] - X.mean(0)) @ V)
    assert view.labels[0].startswith("principal axis 1 (")


def test_principal_view_is_the_same_for_shuffled_rows(fitted):
    X = fitted["X3"]
    shuffled = X[np.random.default_rng(0).permutation(len(X))]
    np.testing.assert_allclose(
        pictures.principal_view(shuffled).axes, pictures.principal_view(X).axes, atol=1e-12
    )


def test_column_view_is_the_marginal_of_the_chosen_features(fitted):
    model = fitted["fit3"]
    view = pictures.choose_view(fitted["X3"], ["f0", "f1", "f2"], ["f2", "f0"])
    assert view.labels == ("f2", "f0") and not view.projected
    np.testing.assert_array_equal(
        view.covariances(model.covariances), model.covariances[:, [2, 0]][:, :, [2, 0]]
    )
    np.testing.assert_array_equal(view.points(model.means), model.means[:, [2, 0]])


def test_drawn_contours_are_the_projected_components(fitted):
    """The lines in the picture are the ellipses of Vᵀ Σ V at distance 1 and 2."""
    X, model = fitted["X3"], fitted["fit3"]
    view = pictures.principal_view(X)
    figure = pictures.fit_figure(X, np.arange(len(X)), view, model, image())
    lines = {line.get_gid(): line for line in figure.axes[0].lines}
    covariances, means = view.covariances(model.covariances), view.points(model.means)
    for k in range(model.n_components):
        for radius in (1, 2):
            points = lines[f"contour-{k}-{radius}"].get_xydata()
            d2 = mahalanobis_squared(points, means[k], covariances[k])
            np.testing.assert_allclose(d2, radius**2, rtol=1e-9)


def test_subsample_is_bounded_reproducible_and_sorted():
    a = pictures.subsample(100_000, 500, seed=3)
    assert len(a) == 500 and len(np.unique(a)) == 500
    assert np.all(np.diff(a) > 0) and a[0] >= 0 and a[-1] < 100_000
    np.testing.assert_array_equal(a, pictures.subsample(100_000, 500, seed=3))
    assert not np.array_equal(a, pictures.subsample(100_000, 500, seed=4))
    np.testing.assert_array_equal(pictures.subsample(40, 500, seed=3), np.arange(40))


def test_fit_picture_draws_at_most_max_points(fitted):
    X, model = fitted["X"], fitted["fit"]
    shown = pictures.subsample(len(X), 150, seed=0)
    figure = pictures.fit_figure(
        X, shown, pictures.column_view(["x", "y"], ["x", "y"]), model, image()
    )
    drawn = [c for c in figure.axes[0].collections if (c.get_gid() or "").startswith("rows-")]
    assert sum(len(c.get_offsets()) for c in drawn) == 150
    assert "150 of 400 rows" in figure.axes[0].get_title()


@pytest.mark.parametrize(
    ("text", "size"), [("8x6", (8.0, 6.0)), (" 8.5 X 11 ", (8.5, 11.0)), ("4×3", (4.0, 3.0))]
)
def test_size_is_width_by_height(text, size):
    assert pictures.parse_size(text) == size


@pytest.mark.parametrize("text", ["8", "8x", "x6", "0x6", "8x-1", "axb", "8x6x2", "8,6"])
def test_bad_size_is_a_user_error(text):
    with pytest.raises(UserError, match="--size must be WIDTHxHEIGHT"):
        pictures.parse_size(text)


# --------------------------------------------------------------- the three forms, by CLI


FORMS = {
    "fit": lambda f: [f["data"], "--model", f["model"]],
    "projected fit": lambda f: [f["data3"], "-m", f["model3"]],
    "data": lambda f: [f["data"]],
    "grid": lambda f: ["--table", f["grid"]],
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("extension", ["png", "svg", "pdf"])
def test_each_form_writes_an_image_of_the_requested_size(fitted, tmp_path, form, extension):
    out = tmp_path / f"picture.{extension}"
    result = runner.invoke(app, ["plot", *FORMS[form](fitted), "-o", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert len(data) > 1000
    if extension == "png":
        assert png_size(data) == (200, 150)  # 4x3 inches at 50 dpi
    elif extension == "svg":
        assert svg_size(data) == ("288pt", "216pt")  # 72 points an inch
    else:
        assert pdf_media_box(data) == [0, 0, 288, 216]
    assert os.listdir(tmp_path) == [out.name]  # no temporary file left behind
    assert f"drew {out}" in result.stderr


def test_rows_with_missing_values_are_left_out_and_counted(fitted, tmp_path):
    X = fitted["X"]
    y = X[:, 1].copy()
    y[[3, 7]] = np.nan
    data = write_csv(tmp_path / "holes.csv", {"x": X[:, 0], "y": y})
    out = tmp_path / "holes.png"
    result = runner.invoke(app, ["plot", data, "-m", fitted["model"], "-o", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    assert "left out 2 row(s) with missing values" in result.stderr
    assert png_size(out.read_bytes()) == (200, 150)


def test_with_marginal_rows_with_gaps_are_drawn_hollow_at_their_conditional_means(fitted, tmp_path):
    X, model = fitted["X"], fitted["fit"]
    gapped = X.copy()
    gapped[[3, 7], 1] = np.nan
    gapped[5] = np.nan  # nothing observed: left out
    placed = model.impute(gapped[np.arange(len(X)) != 5])
    figure = pictures.fit_figure(
        gapped[np.arange(len(X)) != 5],
        np.arange(len(X) - 1),
        pictures.column_view(["x", "y"], ["x", "y"]),
        model,
        image(),
        placed,
    )
    hollow = [c for c in figure.axes[0].collections if (c.get_gid() or "").endswith("with-gaps")]
    points = np.vstack([c.get_offsets() for c in hollow])
    np.testing.assert_allclose(np.sort(points[:, 1]), np.sort(placed[[3, 6], 1]))
    assert all(len(c.get_facecolors()) == 0 for c in hollow)  # hollow: edges only
    data = write_csv(
        tmp_path / "gaps.csv",
        {
            "x": pa.array(gapped[:, 0], from_pandas=True),
            "y": pa.array(gapped[:, 1], from_pandas=True),
        },
    )
    command = ["plot", data, "-m", fitted["model"], "--missing", "marginal", *SMALL]
    result = runner.invoke(app, [*command, "-o", str(tmp_path / "gaps.png")])
    assert result.exit_code == 0, result.output
    assert "left out 1 row(s) with missing values" in result.stderr


def test_default_size_is_8x6_at_150_dpi(fitted, tmp_path):
    out = tmp_path / "fit.png"
    result = runner.invoke(app, ["plot", fitted["data"], "-m", fitted["model"], "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert png_size(out.read_bytes()) == (1200, 900)


@pytest.mark.parametrize("extension", ["png", "svg", "pdf"])
def test_same_command_same_bytes(fitted, tmp_path, extension):
    args = ["plot", fitted["data3"], "-m", fitted["model3"], *SMALL, "--max-points", "200"]
    first, second = tmp_path / f"a.{extension}", tmp_path / f"b.{extension}"
    assert runner.invoke(app, [*args, "-o", str(first)]).exit_code == 0
    assert runner.invoke(app, [*args, "-o", str(second)]).exit_code == 0
    assert first.read_bytes() == second.read_bytes()


def test_plot_reads_stdin_in_a_pipe(fitted, tmp_path):
    out = tmp_path / "piped.png"
    gmmcli_bin = os.path.join(os.path.dirname(sys.executable), "gmmcli")
    done = subprocess.run(
        f"'{gmmcli_bin}' generate -k 2 -n 300 --seed 1 -q | "
        f"'{gmmcli_bin}' plot - -o '{out}' --size 3x2 --dpi 40 -q",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""
    assert png_size(out.read_bytes()) == (120, 80)


# ------------------------------------------------------------------- what is in them


def test_data_picture_prefers_component_to_true_component(fitted, tmp_path, monkeypatch):
    X = fitted["X"]
    data = write_csv(
        tmp_path / "labelled.csv",
        {
            "x": X[:, 0],
            "y": X[:, 1],
            "true_component": np.zeros(len(X), dtype=int),
            "component": np.arange(len(X)) % 2,
        },
    )
    seen = {}
    draw = pictures.data_figure

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return draw(*args, **kwargs)

    monkeypatch.setattr(pictures, "data_figure", spy)
    out = tmp_path / "labelled.png"
    assert runner.invoke(app, ["plot", data, "-o", str(out), *SMALL]).exit_code == 0
    name, values = seen["labels"]
    assert name == "component" and list(values) == list(np.arange(len(X)) % 2)


def test_data_picture_colours_each_label_with_a_legend_entry(fitted):
    X, labels = fitted["X"], [None, *range(1, len(fitted["X"]))]
    labels = [None if v is None else v % 3 for v in labels]
    view = pictures.column_view(["x", "y"], ["x", "y"])
    figure = pictures.data_figure(
        X, np.arange(len(X)), view, image(), source="d.csv", labels=("true_component", labels)
    )
    legend = figure.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert legend.get_title().get_text() == "true_component"
    assert [t.split(" ")[0] for t in texts] == ["0", "1", "2", "(empty)"]
    assert sum(int(re.search(r"\((\d+) rows", t).group(1)) for t in texts) == len(X)


def drawn_data(monkeypatch, args: list[str]):
    """(the plot command's result, the keywords data_figure was called with, its figure)."""
    seen = {}
    draw = pictures.data_figure

    def spy(*args, **kwargs):
        seen["figure"] = draw(*args, **kwargs)
        seen.update(kwargs)
        return seen["figure"]

    monkeypatch.setattr(pictures, "data_figure", spy)
    result = runner.invoke(app, ["plot", *args, *SMALL])
    assert result.exit_code == 0, result.output
    return result, seen


@pytest.mark.parametrize("species", [["b", "a", "c"], [2, 1, 3]], ids=["text", "numbers"])
def test_color_by_colours_by_a_label_column_that_is_no_feature(
    fitted, tmp_path, monkeypatch, species
):
    """As R exports iris: its row names (1..n, an index left out) and a Species column."""
    X = fitted["X"]
    label = [species[i % 3] for i in range(len(X))]
    columns = {"rownames": range(1, len(X) + 1), "x": X[:, 0], "Species": label, "y": X[:, 1]}
    data = write_csv(tmp_path / "iris.csv", columns)
    args = [data, "--color-by", "Species", "-o", str(tmp_path / "iris.png")]
    result, seen = drawn_data(monkeypatch, args)
    assert "column 'rownames' is taken for a row index by its name" in result.stderr
    assert "features: x, y (400 rows)" in result.stderr
    assert seen["labels"] == ("Species", label)
    legend = seen["figure"].axes[0].get_legend()
    assert legend.get_title().get_text() == "Species"
    assert [t.get_text().split(" ")[0] for t in legend.get_texts()] == [
        str(v) for v in sorted(species)
    ]


def test_exclude_leaves_a_column_out_of_the_drawn_features(fitted, tmp_path, monkeypatch):
    X = fitted["X"]
    data = write_csv(tmp_path / "three.csv", {"x": X[:, 0], "noise": X[:, 0] * 2, "y": X[:, 1]})
    args = [data, "--exclude", "noise", "-o", str(tmp_path / "two.png")]
    result, seen = drawn_data(monkeypatch, args)
    assert "features: x, y (400 rows)" in result.stderr
    assert seen["figure"].axes[0].get_xlabel() == "x"  # two features drawn as they are


def test_a_model_of_classes_names_each_components_class_in_the_key(fitted):
    X, truth = fitted["X"], pa_csv.read_csv(fitted["data"])["true_component"].to_numpy()
    labels = np.where(truth == 0, "a", np.where(truth == 1, "b", None)).astype(object)
    model = gmmcli.fit(X, 4, labels=labels, seed=0, columns=["x", "y"])  # 2 of no class
    view = pictures.column_view(["x", "y"], ["x", "y"])
    figure = pictures.fit_figure(X, np.arange(len(X)), view, model, image())
    texts = [t.get_text() for t in figure.axes[0].get_legend().get_texts()][:4]
    assert [text.split(":")[0] for text in texts] == ["0 (a)", "1 (b)", "2", "3"]


def test_fit_picture_title_and_key(fitted):
    model, X = fitted["fit"], fitted["X"]
    view = pictures.column_view(["x", "y"], ["x", "y"])
    figure = pictures.fit_figure(X, np.arange(len(X)), view, model, image())
    title = suptitle(figure)
    assert title.startswith("3 full components")
    assert f"{model.fit_info.log_likelihood:.6g}" in title
    texts = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert texts[:3] == [f"{k}: {w:.3f}" for k, w in enumerate(model.weights)]
    assert "Mahalanobis distance 1" in texts and "Mahalanobis distance 2" in texts
    assert (figure.axes[0].get_xlabel(), figure.axes[0].get_ylabel()) == ("x", "y")


def test_model_without_training_record_shows_the_data_log_likelihood(fitted):
    model, X = fitted["fit"], fitted["X"]
    bare = gmmcli.GaussianMixture(model.weights, model.means, model.covariances, "full")
    view = pictures.column_view(["x", "y"], ["x", "y"])
    figure = pictures.fit_figure(X, np.arange(len(X)), view, bare, image())
    assert f"{float(bare.score_samples(X).sum()):.6g} (these rows)" in suptitle(figure)


@pytest.mark.parametrize("covariance_type", ["tied", "diag", "spherical"])
def test_every_covariance_type_draws_its_full_matrices(fitted, covariance_type):
    X = fitted["X"]
    model = gmmcli.fit(X, 2, covariance_type=covariance_type, seed=0, max_iter=20)
    view = pictures.column_view(["x", "y"], ["x", "y"])
    figure = pictures.fit_figure(X, np.arange(len(X)), view, model, image())
    full = model.covariance.full_matrices(model.covariances, 2, 2)
    line = next(x for x in figure.axes[0].lines if x.get_gid() == "contour-1-2")
    d2 = mahalanobis_squared(line.get_xydata(), model.means[1], full[1])
    np.testing.assert_allclose(d2, 4.0, rtol=1e-9)


def test_grid_picture_marks_degenerate_failed_and_best():
    figure = pictures.grid_figure(GRID, image(), source="grid.csv")
    axes = figure.axes[0]
    by_gid = {c.get_gid(): c for c in axes.collections}
    hollow = by_gid["degenerate-VVV"]
    np.testing.assert_array_equal(hollow.get_offsets(), [[3, 720.0]])
    np.testing.assert_allclose(hollow.get_facecolors()[0], [1, 1, 1, 1])  # white inside
    full, diag = grid_lines(figure)["VVV"], grid_lines(figure)["VVI"]
    np.testing.assert_array_equal(marked_points(full), [[1, 900.0], [2, 700.0]])  # not K=3
    np.testing.assert_array_equal(marked_points(diag), [[1, 950.0], [2, 760.0]])
    np.testing.assert_array_equal(by_gid["best"].get_offsets(), [[2, 700.0]])
    failed = supxlabel(figure)
    assert failed.startswith("1 point without a value")
    assert "K = 3, VVI (diag): failed: the covariance of component 1 is singular" in failed
    assert suptitle(figure) == "model selection by BIC"
    assert axes.get_title() == "best: K = 2, VVV (full), BIC 700"
    assert axes.get_ylabel() == "BIC (lower is better)"
    assert legend_texts(figure)[:2] == ["VVI (diag)", "VVV (full)"]  # mclust's order


def test_a_ranked_grid_whose_degenerate_point_has_no_value_draws():
    """cv gives a degenerate point no value: still a ranked grid, not a stopped one."""
    by_cv = {**GRID, "criterion": [900.0, 700.0, None, 950.0, 760.0, None]}
    figure = pictures.grid_figure(by_cv, image(), source="grid.csv")
    assert supxlabel(figure).startswith("2 points without a value")


def test_a_grid_of_one_k_has_that_k_as_its_one_tick():
    one_k = {name: [values[1], values[4]] for name, values in GRID.items()}  # K = 2
    axes = pictures.grid_figure(one_k, image(), source="grid.csv").axes[0]
    assert axes.get_xticks().tolist() == [2]
    assert axes.get_xlim() == (1, 3)


def test_grid_criterion_is_named_by_the_column_it_copies():
    aic_grid = {**GRID, "criterion": GRID["aic"]}
    assert pictures.criterion_name(GRID) == "bic"
    assert pictures.criterion_name(aic_grid) == "aic"
    assert pictures.criterion_name({**GRID, "criterion": [1.0] * 6}) is None


# ------------------------------------------------------ the covariance structures of a grid


def drawn_grids(monkeypatch) -> list:
    """The figures grid_figure returns from now on, kept to look into."""
    drawn, draw = [], pictures.grid_figure

    def spy(*args, **kwargs):
        drawn.append(draw(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(pictures, "grid_figure", spy)
    return drawn


def test_all_fourteen_structures_have_a_colour_and_a_marker_of_their_own(tmp_path, monkeypatch):
    table = write_csv(tmp_path / "grid.csv", grid_of([SKLEARN.get(m, m) for m in MCLUST], MCLUST))
    drawn = drawn_grids(monkeypatch)
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["plot", "--table", table, "-o", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    assert png_size(out.read_bytes()) == (200, 150)
    (figure,) = drawn
    styles = line_styles(figure)
    assert list(styles) == MCLUST  # in mclust's order
    assert len(set(styles.values())) == 14
    assert len({colour for colour, _ in styles.values()}) == 14  # colour alone tells them apart
    assert len({marker for _, marker in styles.values()}) == 14  # and so does the marker
    for i, name in enumerate(MCLUST):  # each line holds its own rows
        line = grid_lines(figure)[name]
        np.testing.assert_array_equal(
            line.get_xydata(), [[k, 1000 - 10 * i - 50 * k] for k in (1, 2, 3)]
        )
    names = [f"{m} ({SKLEARN[m]})" if m in SKLEARN else m for m in MCLUST]
    assert legend_texts(figure) == [*names, "degenerate (hollow)", "best"]
    from matplotlib.colors import to_hex

    keys = figure.axes[0].get_legend().legend_handles[:14]
    assert [(to_hex(h.get_color()), h.get_marker()) for h in keys] == list(styles.values())


@pytest.mark.parametrize("subset", [["VEV"], ["VVV", "VEV"], ["VVV", "EII", "VEV", "diag"]])
def test_a_structure_looks_the_same_whatever_else_the_grid_holds(subset):
    every = line_styles(pictures.grid_figure(grid_of(MCLUST, MCLUST), image(), source="g"))
    some = line_styles(pictures.grid_figure(grid_of(subset), image(), source="g"))
    names = [pictures.find_structure(n).name for n in subset]
    assert list(some) == [m for m in MCLUST if m in names]  # mclust's order, not the table's
    assert some == {m: every[m] for m in names}


def test_without_a_model_column_the_structure_is_read_from_covariance_type():
    written = ["FULL", "Diag", "spherical", "tied", "vev", "Eii"]  # any name, in any case
    mclust = ["VVV", "VVI", "VII", "EEE", "VEV", "EII"]
    old = pictures.grid_figure(grid_of(written), image(), source="old.csv")
    new = pictures.grid_figure(
        grid_of([SKLEARN.get(m, m) for m in mclust], mclust), image(), source="new.csv"
    )
    assert line_styles(old) == line_styles(new)
    assert list(line_styles(old)) == ["EII", "VII", "VVI", "EEE", "VEV", "VVV"]
    assert legend_texts(old)[:6] == legend_texts(new)[:6]


def test_an_old_grid_plots_through_the_command(fitted, tmp_path, monkeypatch):
    assert "model" not in GRID  # written before select-k's table had a model column
    drawn = drawn_grids(monkeypatch)
    out = tmp_path / "old.png"
    result = runner.invoke(app, ["plot", "--table", fitted["grid"], "-o", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    assert list(line_styles(drawn[0])) == ["VVI", "VVV"]


@pytest.mark.parametrize("blank", [None, ""])
def test_a_row_without_a_model_name_is_read_by_its_covariance_type(blank):
    grid = grid_of(["full", "VEV"], [blank, "VEV"])  # an old grid with new rows added
    assert list(line_styles(pictures.grid_figure(grid, image(), source="g"))) == ["VEV", "VVV"]


def test_a_one_feature_grid_draws_e_and_v(tmp_path, monkeypatch):
    table = write_csv(tmp_path / "grid.csv", grid_of(["EII", "spherical"], ["E", "V"]))
    drawn = drawn_grids(monkeypatch)
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["plot", "--table", table, "-o", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    styles = line_styles(drawn[0])
    assert list(styles) == ["E", "V"] and styles["E"] != styles["V"]
    assert legend_texts(drawn[0])[:2] == ["E", "V"]
    from matplotlib.colors import to_hex

    for name, (colour, marker) in styles.items():
        assert (colour, marker) == (
            to_hex(pictures.STRUCTURES[name].colour),
            pictures.STRUCTURES[name].marker,
        )


def test_every_style_differs_from_every_other():
    styles = [(s.colour.lower(), s.marker) for s in pictures.STRUCTURES.values()]
    assert list(pictures.STRUCTURES) == [*MCLUST, "E", "V"]
    assert len(set(styles)) == len(styles) == 16
    assert len({colour for colour, _ in styles}) == 16


@pytest.mark.parametrize("name", list(COVARIANCE_TYPES))
def test_the_plot_names_the_structures_as_the_core_does(name):
    core = find_covariance(name)
    assert pictures.find_structure(name).name == core.mclust_name
    alias = "" if name == core.mclust_name else name
    assert pictures.find_structure(core.mclust_name.lower()).alias == alias


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (grid_of(["full", "fulll"]), "covariance_type in g.csv row 4 is 'fulll', not a"),
        (grid_of(["full", "VEV"], ["VVV", "XYZ"]), "model in g.csv row 4 is 'XYZ', not a"),
        (grid_of(["full", None]), "covariance_type in g.csv row 4 is None, not a"),
        (grid_of(["full", "full"], ["VVV", 3.0]), "model in g.csv row 4 is 3.0, not a"),
    ],
)
def test_an_unknown_structure_is_refused_naming_the_known_ones(grid, message):
    with pytest.raises(UserError) as caught:
        pictures.grid_figure(grid, image(), source="g.csv")
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert "(EII, VII, EEI, VEI, EVI, VVI, EEE, VEE, EVE, VVE, EEV, VEV, EVV, VVV, E, V" in text
    assert "spherical, diag, tied, full" in text


@pytest.mark.parametrize(("size", "beside"), [("8x6", True), ("4x3", False)])
def test_a_key_of_fourteen_stays_clear_of_the_lines_and_inside_the_picture(size, beside):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    grid = grid_of(MCLUST, MCLUST)
    grid["bic"][0] = grid["criterion"][0] = None
    grid["status"][0] = "failed: singular"  # a note under the plot
    figure = pictures.grid_figure(grid, image(size=size), source="g.csv")
    FigureCanvasAgg(figure).draw()  # lays the figure out
    renderer = figure.canvas.get_renderer()
    plot = figure.axes[0].get_window_extent(renderer)
    key = figure.axes[0].get_legend().get_window_extent(renderer)
    note = figure._supxlabel.get_window_extent(renderer)
    assert not key.overlaps(plot) and not key.overlaps(note)
    page = figure.bbox
    assert page.x0 <= key.x0 and key.x1 <= page.x1 and page.y0 <= key.y0 and key.y1 <= page.y1
    assert (key.x0 >= plot.x1) == beside and (key.y1 <= plot.y0) == (not beside)


# ---------------------------------------------------------------- a grid for each class


def panels(figure) -> dict:
    """A picture's plots by their titles."""
    return {axes.get_title(): axes for axes in figure.axes}


@pytest.mark.parametrize("names", [["versicolor", "setosa"], ["c", "a", "b"]])
def test_a_grid_for_each_class_draws_a_panel_per_class_in_the_tables_order(names):
    grid = class_grid_of(names, best=[1, 4, 0][: len(names)])
    figure = pictures.grid_figure(grid, image(size="8x6"), source="g.csv")
    assert [axes.get_title() for axes in figure.axes] == names  # not sorted
    for c, axes in enumerate(figure.axes):
        mine = of_class(grid, names[c])
        lines = panel_lines(axes)
        assert list(lines) == ["VEV", "VVV"]  # mclust's order, as in a plot of one grid
        for name, first in (("VVV", 0), ("VEV", 3)):  # each line holds its class's rows alone
            np.testing.assert_array_equal(
                lines[name].get_xydata(),
                [[k, mine["criterion"][first + k - 1]] for k in (1, 2, 3)],
            )
        chosen = mine["best"].index(True)
        np.testing.assert_array_equal(
            rings(axes), [[mine["n_components"][chosen], mine["criterion"][chosen]]]
        )
        structure = mine["model"][chosen]
        value = f"{mine['criterion'][chosen]:.6g}"
        assert (
            best_note(axes) == f"best: K = {mine['n_components'][chosen]}, {structure}, BIC {value}"
        )
    assert suptitle(figure) == "model selection by BIC, a grid for each class"
    assert figure._supylabel.get_text() == "BIC (lower is better)"
    (key,) = figure.legends  # one key for every panel
    assert [t.get_text() for t in key.get_texts()] == [
        "VEV",
        "VVV (full)",
        "degenerate (hollow)",
        "best",
    ]


def test_panels_are_laid_out_each_nearest_4_by_3():
    wide, tall = image(size="8x6"), image(size="6x8")
    shapes = {n: pictures.panel_grid(n, wide) for n in (1, 2, 3, 4, 5, 7, 10)}
    assert shapes == {1: (1, 1), 2: (1, 2), 3: (2, 2), 4: (2, 2), 5: (2, 3), 7: (3, 3), 10: (3, 4)}
    assert pictures.panel_grid(2, tall) == (2, 1) and pictures.panel_grid(10, tall) == (4, 3)
    assert pictures.panel_grid(3, image(size="12x2")) == (1, 3)  # a strip: in a row
    assert pictures.panel_grid(4, image(size="3x12")) == (4, 1)
    for n in range(1, 40):
        rows, columns = pictures.panel_grid(n, wide)
        assert rows * columns >= n > (rows - 1) * columns  # no empty row
        assert rows <= columns <= rows + 1


def test_ten_classes_fit_the_default_size_each_panel_readable():
    names = [f"class {c}" for c in range(10)]
    grid = class_grid_of(names, best=[c % 6 for c in range(10)])
    figure = pictures.grid_figure(grid, image(size="8x6"), source="g.csv")
    assert len(figure.axes) == 10
    for axes in figure.axes:
        box = axes.get_position()  # laid out (the size was checked)
        least_width, least_height = pictures.MIN_PANEL_INCHES
        assert box.width * 8 >= max(least_width, 0.9)  # measured: 0.97 x 1.16 inches
        assert box.height * 6 >= max(least_height, 1.0)
    xlabels = [axes.get_xlabel() for axes in figure.axes]  # under the lowest in each column
    assert xlabels == [""] * 6 + ["K"] * 4


def test_a_class_grid_written_as_csv_keeps_its_classes_as_written(tmp_path, monkeypatch):
    names = ["10", "9", "01"]  # read as numbers, they would be 10, 9 and 1
    table = write_csv(tmp_path / "grid.csv", class_grid_of(names))
    drawn = drawn_grids(monkeypatch)
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["plot", "--table", table, "-o", str(out), "--dpi", "20"])
    assert result.exit_code == 0, result.output
    assert [axes.get_title() for axes in drawn[0].axes] == names
    assert png_size(out.read_bytes()) == (160, 120)


def test_a_class_without_a_sound_point_is_a_panel_without_a_ring():
    grid = class_grid_of(["a", "b"])
    grid["criterion"][2] = grid["bic"][2] = None  # and one of class a's
    grid["status"][2] = "failed: EM did not converge"
    for i in range(6, 12):  # class b: every point failed
        grid["criterion"][i] = grid["bic"][i] = None
        grid["status"][i] = "failed: the covariance of component 1 is singular"
        grid["best"][i] = False
    figure = pictures.grid_figure(grid, image(size="8x6"), source="g.csv")
    a, b = panels(figure)["a"], panels(figure)["b"]
    assert len(rings(a)) == 1 and len(rings(b)) == 0
    assert best_note(b) == "no best point"
    assert all(np.isnan(line.get_xydata()[:, 1]).all() for line in panel_lines(b).values())
    failed = supxlabel(figure)
    assert failed.startswith("7 points without a value:\nclass a, K = 3, VVV (full): failed: EM")
    assert "class b, K = 1, VVV (full): failed: the covariance of component 1 is singular" in failed
    assert "… and 1 more (see the table)" in failed


def shared_grid_of(names, cells=None) -> dict[str, list]:
    """A table as select-k --shared-structure writes it: each point of grid_of's under every
    class in turn, alike (``cells``: a column given its own values, listed point by point)."""
    grid = grid_of(["full", "VEV"], ["VVV", "VEV"])
    grid["best"] = [i == 1 for i in range(6)]  # K = 2 of VVV: the whole model's best
    grid["seconds"] = [0.5 + i for i in range(6)]
    columns: dict[str, list] = {"class": [name for _ in range(6) for name in names]}
    for key, values in grid.items():
        columns[key] = [v for v in values for _ in names]
    for key, values in (cells or {}).items():
        columns[key] = values
    return columns


def test_a_shared_structure_grid_is_drawn_once_with_the_whole_models_best():
    grid = shared_grid_of(["a", "b", "c"])
    figure = pictures.grid_figure(grid, image(size="8x6"), source="g.csv")
    (axes,) = figure.axes  # the classes' grids are one: one plot, not three alike
    one = grid_of(["full", "VEV"], ["VVV", "VEV"])
    np.testing.assert_array_equal(
        panel_lines(axes)["VVV"].get_xydata(), [[k, one["criterion"][k - 1]] for k in (1, 2, 3)]
    )
    np.testing.assert_array_equal(rings(axes), [[2, one["criterion"][1]]])  # ringed once
    assert suptitle(figure) == "model selection by BIC"
    assert axes.get_title() == (
        f"best: K = 2, VVV (full), BIC {one['criterion'][1]:g}\n"
        "K components in each of 3 classes, one structure shared by all; "
        "the whole model's criteria"
    )


def test_classes_that_differ_in_any_cell_are_drawn_apart():
    seconds = [0.5 + i + 0.01 * c for i in range(6) for c in range(2)]  # fitted one by one
    grid = shared_grid_of(["a", "b"], {"seconds": seconds})
    figure = pictures.grid_figure(grid, image(size="8x6"), source="g.csv")
    assert [axes.get_title() for axes in figure.axes] == ["a", "b"]


def labelled_rows(path) -> str:
    """Three labelled clusters in two features, 180 rows, as CSV."""
    rng = np.random.default_rng(3)
    truth = np.repeat([0, 1, 2], 60)
    X = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])[truth] + rng.normal(0, 1, (180, 2))
    names = np.array(["setosa", "versicolor", "virginica"])[truth]
    return write_csv(path, {"x": X[:, 0], "y": X[:, 1], "species": names})


@pytest.mark.parametrize("shared", [False, True], ids=["by-class", "shared-structure"])
def test_select_k_by_class_plots_each_classs_choice(tmp_path, monkeypatch, shared):
    from gmmcli.core import select as selection
    from gmmcli.io import tables

    data, table = labelled_rows(tmp_path / "labelled.csv"), str(tmp_path / "grid.csv")
    select = ["select-k", data, "--label-column", "species", "--k-max", "2", "--n-init", "1"]
    select += ["--covariance-types", "EII,diag,full", "--table", table, "-q"]
    select += ["-o", str(tmp_path / "model.json"), *(["--shared-structure"] if shared else [])]
    result = runner.invoke(app, select)
    assert result.exit_code == 0, result.output
    drawn = drawn_grids(monkeypatch)
    out = str(tmp_path / "grid.png")
    result = runner.invoke(app, ["plot", "--table", table, "-o", out, "--dpi", "20"])
    assert result.exit_code == 0, result.output
    (figure,) = drawn
    columns = tables.read_table(table, text="class").to_pydict()
    chosen = {}  # select-k's ranking (ties within rounding to fewer parameters), by class
    for name in ("setosa", "versicolor", "virginica"):
        points = selection.table_points(of_class(columns, name))
        best = selection.choose(points, "bic")
        chosen[name] = [[best.n_components, best.bic]]
    if shared:
        (axes,) = figure.axes
        assert chosen["setosa"] == chosen["versicolor"] == chosen["virginica"]
        np.testing.assert_array_equal(rings(axes), chosen["setosa"])
        assert "one structure shared by all" in axes.get_title()
    else:
        assert list(panels(figure)) == ["setosa", "versicolor", "virginica"]
        for name, axes in panels(figure).items():
            np.testing.assert_array_equal(rings(axes), chosen[name])
            mine = of_class(columns, name)
            for structure, line in panel_lines(axes).items():
                rows = [i for i, m in enumerate(mine["model"]) if m == structure]
                np.testing.assert_array_equal(
                    line.get_xydata(), [[mine["n_components"][i], mine["bic"][i]] for i in rows]
                )


def test_a_grid_without_classes_is_one_plot_as_before():
    figure = pictures.grid_figure(GRID, image(), source="grid.csv")
    (axes,) = figure.axes
    assert not figure.legends and axes.get_legend() is not None  # its key beside its plot
    assert axes.get_title() == "best: K = 2, VVV (full), BIC 700"
    assert not [t for t in axes.texts if t.get_gid() == "best-note"]


# ------------------------------------------------------------------------------ errors


def test_missing_matplotlib_exits_2_naming_the_extra(fitted, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    out = tmp_path / "fit.png"
    result = runner.invoke(app, ["plot", fitted["data"], "-m", fitted["model"], "-o", str(out)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "pip install 'gmmcli[plot]'" in lines[0]
    assert not out.exists()


BAD = [
    (["{data}", "--size", "8by6"], "--size must be WIDTHxHEIGHT"),
    (["{data}", "--size", "0x6"], "--size must be WIDTHxHEIGHT"),
    (["{data}", "--size", "400x300"], "pixels a side"),
    (["{data}", "--dpi", "0"], "--dpi must be at least 1"),
    (["{data}", "-o", "{folder}/fit.jpg"], "name the output .png, .svg or .pdf"),
    (["{data}", "-o", "{folder}/fit"], "name the output .png, .svg or .pdf"),
    ([], "give a DATA file to draw (--model for a fit), or --table"),
    (["{data}", "--table", "{grid}"], "give a DATA file or --table, not both"),
    (["{empty}"], "every row of"),
    (["--table", "{grid}", "-m", "{model}"], "leave out --model, --columns, --exclude and"),
    (["--table", "{grid}", "--color-by", "x"], "leave out --model, --columns, --exclude and"),
    (["--table", "{grid}", "--exclude", "x"], "leave out --model, --columns, --exclude and"),
    (["{data}", "-m", "{model}", "--color-by", "x"], "--color-by colours the data alone"),
    (["{data}", "--color-by", "nope"], "--color-by names 'nope', which is not a column"),
    (["{data}", "--exclude", "nope"], "column 'nope' not found"),
    (["--table", "{data}"], "is not a select-k grid (no column 'n_components')"),
    (["--table", "{typo_grid}"], "row 4 is 'fulll', not a covariance structure gmmcli knows"),
    (["--table", "{odd_grid}"], "row 1 is 'XYZ', not a covariance structure gmmcli knows"),
    (["--table", "{blank_class_grid}"], "row 7 is empty, and a grid for each class names"),
    (["--table", "{stopped_grid}"], "is a grid not yet ranked (its select-k run stopped"),
    (["--table", "{class_grid}", "--size", "4x3"], "2 x 2 panels, a grid for each class, are"),
    (["{data}", "--columns", "x"], "--columns takes two names"),
    (["{data}", "--columns", "x,y,true_component"], "--columns takes two names"),
    (["{data3}", "-m", "{model3}", "--columns", "f0,g"], "'g', which is not among the features"),
    (["{data}", "--columns", "x,nope"], "column 'nope' not found"),
    (["{data}", "--columns", "x,y", "-m", "{model3}"], "column 'f0' not found"),
    (["{one}"], "draws two features and there is only one (x)"),
    (["{data}", "-o", "{folder}/missing/fit.png"], "does not exist"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_exits_2_and_changes_nothing(fitted, tmp_path, args, message):
    folder = tmp_path
    before = b"an existing picture"
    (folder / "fit.png").write_bytes(before)
    one = write_csv(folder / "one.csv", {"x": [1.0, 2.0, 3.0]})
    empty = write_csv(folder / "empty.csv", {"x": [1.0, None], "y": [None, 2.0]})
    names = {**fitted, "folder": folder, "one": one, "empty": empty}
    args = [a.format(**names) for a in args]
    if "-o" not in args:
        args += ["-o", str(folder / "fit.png")]
    result = runner.invoke(app, ["plot", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()  # notes (the features read) may come first
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:]
    assert message in lines[-1]
    assert (folder / "fit.png").read_bytes() == before
    assert sorted(os.listdir(folder)) == ["empty.csv", "fit.png", "one.csv"]


def test_failure_while_saving_leaves_no_partial_file(fitted, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, handle, **kwargs):
        handle.write(b"half a picture")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Figure, "savefig", broken)
    out = tmp_path / "fit.png"
    out.write_bytes(b"the old picture")
    result = runner.invoke(app, ["plot", fitted["data"], "-m", fitted["model"], "-o", str(out)])
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    assert out.read_bytes() == b"the old picture"
    assert os.listdir(tmp_path) == ["fit.png"]
