"""Row-index columns, as R and pandas export them, stay out of the default features.

One rule for every reader (whole, streamed, stdin; CSV, TSV, Parquet; tables in memory):
a column named rownames, index, id, Unnamed: 0 (trimmed, any case), or an unnamed first
column, is no default feature, with a note naming --columns (a GMMWarning in Python); a
feature that counts 0, 1, 2, ... or 1, 2, 3, ... in the first rows gets a note naming
--exclude and stays. Every test runs in its own empty folder (conftest.py's in_tmp_path).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from cli_helpers import gmm, ok

import gmmcli
from gmmcli.errors import GMMWarning
from gmmcli.io import tables

pytestmark = pytest.mark.usefixtures("in_tmp_path")

STREAMED = "--chunk-rows 7"  # a file streamed in chunks of 7 rows
LEFT_OUT = "is taken for a row index"
COUNTS = "like a row index, but stays a feature; list it in --exclude to leave it out"


def exported(base, index: str, first: int, name: str = "indexed.csv") -> str:
    """base.csv with a first column ``index`` counting from ``first``, as R's write.csv
    (rownames 1..n, quoted) or pandas's to_csv (Unnamed: 0 after a read, 0..n-1) write it."""
    lines = base.csv.splitlines()
    rows = [f'"{index}",{lines[0]}', *(f"{first + i},{line}" for i, line in enumerate(lines[1:]))]
    Path(name).write_text("\n".join(rows) + "\n")
    return name


def as_parquet(path: str) -> str:
    parquet = Path(path).with_suffix(".parquet")
    pq.write_table(pa_csv.read_csv(path), parquet)
    return str(parquet)


# R's exports (unnamed, or rownames, from 1) and pandas's (Unnamed: 0 from 0), each read
# whole, streamed, from stdin or as Parquet.
EXPORTS = [
    ("", 1, "file"),
    ("", 1, "stdin"),
    ("rownames", 1, "streamed"),
    ("rownames", 1, "parquet streamed"),
    ("Unnamed: 0", 0, "file"),
    ("Unnamed: 0", 0, "parquet"),
]


@pytest.mark.parametrize(("index", "first", "way"), EXPORTS)
def test_fit_leaves_an_exported_index_out_with_a_note_naming_columns(files, index, first, way):
    path = exported(files, index, first)
    source = as_parquet(path) if way.startswith("parquet") else path
    source = "-" if way == "stdin" else source
    extra = STREAMED if way.endswith("streamed") else ""
    result = ok(gmm(f"fit {source} -k 2 {extra} -o -", input=Path(path).read_bytes()))
    assert json.loads(result.stdout)["feature_names"] == ["x0", "x1"]
    notes = [line for line in result.stderr.splitlines() if LEFT_OUT in line]
    assert len(notes) == 1 and notes[0].endswith("list it in --columns to keep it")
    assert (f"column '{index}'" if index else "the unnamed first column") in notes[0]
    assert COUNTS not in result.stderr  # an index left out is not also said to count


def test_the_same_model_with_the_index_as_without_it(files):
    Path("plain.csv").write_text(files.csv)
    plain = ok(gmm("fit plain.csv -k 2 -q -o -")).stdout
    assert ok(gmm(f"fit {exported(files, 'rownames', 1)} -k 2 -q -o -")).stdout == plain


@pytest.mark.parametrize("name", ["index", "ID", " Id ", "__index_level_0__"])
def test_every_index_name_trimmed_in_any_case(files, name):
    path = as_parquet(exported(files, "i", 1))  # Parquet keeps the spaces of a name
    pq.write_table(pq.read_table(path).rename_columns([name, "x0", "x1", "true_component"]), path)
    result = ok(gmm(f"fit {path} -k 2 -o -"))
    assert json.loads(result.stdout)["feature_names"] == ["x0", "x1"]
    assert f"column '{name}' {LEFT_OUT}" in result.stderr


@pytest.mark.parametrize("extra", ["", STREAMED])
def test_columns_naming_the_index_keeps_it_without_a_note(files, extra):
    path = exported(files, "rownames", 1)
    result = ok(gmm(f"fit {path} -k 2 --columns rownames,x0 {extra} -o -"))
    assert json.loads(result.stdout)["feature_names"] == ["rownames", "x0"]
    assert LEFT_OUT not in result.stderr and "counts" not in result.stderr


def test_quiet_silences_the_note(files):
    path = exported(files, "rownames", 1)
    assert ok(gmm(f"fit {path} -k 2 -q -o -")).stderr == ""


@pytest.mark.parametrize("first", [0, 1])
@pytest.mark.parametrize("extra", ["", STREAMED])
def test_a_feature_counting_like_an_index_stays_with_a_note_naming_exclude(files, first, extra):
    path = exported(files, "n", first)
    result = ok(gmm(f"fit {path} -k 2 {extra} -o -"))
    assert json.loads(result.stdout)["feature_names"] == ["n", "x0", "x1"]
    assert f"column 'n' counts {first}, {first + 1}, {first + 2}, ... {COUNTS}" in result.stderr
    result = ok(gmm(f"fit {path} -k 2 --exclude n {extra} -o -"))
    assert json.loads(result.stdout)["feature_names"] == ["x0", "x1"]
    assert "counts" not in result.stderr


def test_counting_is_judged_on_the_same_first_rows_whole_or_streamed(files):
    """n counts 1..39, then 99 in row 40: within the first rows, so no note, however
    small the chunks (a first chunk of 7 or of 3 rows alone counts)."""
    path = exported(files, "n", 1)
    text = Path(path).read_text().replace("\n40,", "\n99,")
    Path(path).write_text(text)
    for extra in ("", STREAMED, "--chunk-rows 3"):
        result = ok(gmm(f"fit {path} -k 2 {extra} -o -"))
        assert "counts" not in result.stderr
        assert json.loads(result.stdout)["feature_names"] == ["n", "x0", "x1"]


@pytest.mark.parametrize(
    ("values", "start"),
    [
        ([0, 1, 2, 3], 0),
        ([1, 2, 3], 1),
        ([1.0, 2.0, 3.0], 1),
        ([2, 3, 4], None),  # counts, but from neither 0 nor 1
        ([0, 1], None),  # too few to tell
        ([1, 2, 4], None),
        ([1, 2, None], None),
        ([1.0, 2.5, 3.0], None),
    ],
)
def test_counting_from(values, start):
    assert tables.counting_from(pa.chunked_array([pa.array(values)])) == start


def test_select_k_leaves_the_index_out(files):
    path = exported(files, "", 1)
    command = f"select-k {path} --k-max 2 --covariance-types full --n-init 1 -o -"
    result = ok(gmm(command))
    assert json.loads(result.stdout)["feature_names"] == ["x0", "x1"]
    assert f"the unnamed first column {LEFT_OUT}" in result.stderr


def test_classify_and_score_take_the_model_s_features_by_name(files):
    path = exported(files, "rownames", 1)
    for extra in ("", STREAMED):
        ok(gmm(f"classify {path} -m model.json {extra} -q -o labelled.csv"))
        labelled = pa_csv.read_csv("labelled.csv")
        assert labelled.column_names[:3] == ["rownames", "x0", "x1"]
        assert labelled["rownames"].to_pylist() == list(range(1, files.n_rows + 1))
        scores = json.loads(ok(gmm(f"score {path} -m model.json {extra} -q")).stdout)
        assert scores["n_samples"] == files.n_rows


def test_the_api_warns_of_an_index_in_a_dataframe(files):
    Path("plain.csv").write_text(files.csv)
    pd.read_csv("plain.csv").to_csv("exported.csv")  # pandas writes its index, unnamed
    frame = pd.read_csv("exported.csv")  # and reads it back as "Unnamed: 0"
    with pytest.warns(GMMWarning, match=r"column 'Unnamed: 0' .* list it in columns to keep"):
        model = gmmcli.fit(frame, 2, seed=0)
    assert model.feature_names == ["x0", "x1"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", GMMWarning)
        kept = gmmcli.fit(frame, 2, seed=0, columns=["Unnamed: 0", "x0", "x1"])
    assert kept.feature_names == ["Unnamed: 0", "x0", "x1"]


def test_the_api_warns_of_a_feature_counting_like_an_index(files):
    path = exported(files, "n", 0)
    with pytest.warns(GMMWarning, match="counts 0, 1, 2, .* list it in exclude to leave it out"):
        points, best = gmmcli.select_k(path, [1], covariance_types=["full"], n_init=1)
    assert best.feature_names == ["n", "x0", "x1"]
