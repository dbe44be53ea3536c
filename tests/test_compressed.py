"""Compressed CSV and TSV (.gz, .zst, .bz2 after .csv or .tsv), read and written by extension
through pyarrow's codecs: the same results as the plain file, the same bytes on reruns.

Every test runs in its own empty folder (conftest.py's in_tmp_path).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from cli_helpers import error_line, gmm, ok, read_csv, snapshot

from gmmcli.engines import stream

pytestmark = pytest.mark.usefixtures("in_tmp_path")

STREAMED = "--chunk-rows 7"  # a file streamed in chunks of 7 rows
CODECS = {"gz": "gzip", "zst": "zstd", "bz2": "bz2"}


def compress(data: bytes, path: str) -> str:
    """``data`` written to ``path`` with the codec its extension names."""
    with pa.output_stream(path, compression=CODECS[path.rsplit(".", 1)[1]]) as sink:
        sink.write(data)
    return path


def decompressed(path: str) -> bytes:
    with pa.input_stream(path, compression=CODECS[path.rsplit(".", 1)[1]]) as source:
        return source.read()


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("data.csv.gz", ""),
        ("data.csv.zst", STREAMED),
        ("data.csv.bz2", ""),
        ("data.tsv.gz", STREAMED),
    ],
)
def test_fit_reads_compressed_files_whole_and_streamed_as_the_plain_file(files, name, extra):
    text = files.csv.replace(",", "\t") if ".tsv" in name else files.csv
    compress(text.encode(), name)
    plain = ok(gmm("fit data.csv -k 2 -q -o -")).stdout
    assert ok(gmm(f"fit {name} -k 2 {extra} -q -o -")).stdout == plain


@pytest.mark.parametrize("extra", ["", STREAMED])
def test_classify_and_score_read_and_write_compressed(files, extra):
    compress(files.blobs.encode(), "blobs.csv.bz2")
    ok(gmm("classify blobs.csv -m blobs.json -q -o plain.csv"))
    ok(gmm(f"classify blobs.csv.bz2 -m blobs.json {extra} -q -o labelled.csv.gz"))
    assert decompressed("labelled.csv.gz") == Path("plain.csv").read_bytes()
    plain = ok(gmm("score blobs.csv -m blobs.json -q --per-sample plain.tsv")).stdout
    scored = ok(gmm(f"score blobs.csv.bz2 -m blobs.json {extra} -q --per-sample per.tsv.zst"))
    assert scored.stdout == plain
    assert decompressed("per.tsv.zst") == Path("plain.tsv").read_bytes()


def test_select_k_and_plot_read_compressed_and_the_grid_is_written_so(files):
    compress(files.csv.encode(), "data.csv.zst")
    command = "--k-max 2 --covariance-types full --n-init 1 -q -o -"
    plain = ok(gmm(f"select-k data.csv --table grid.csv {command}")).stdout
    assert ok(gmm(f"select-k data.csv.zst --table grid.csv.gz {command}")).stdout == plain
    grids = [pa_csv.read_csv(pa.BufferReader(decompressed("grid.csv.gz"))), read_csv("grid.csv")]
    assert grids[0].drop_columns("seconds") == grids[1].drop_columns("seconds")  # (times differ)
    pytest.importorskip("matplotlib")
    ok(gmm("plot data.csv.zst -o data.png --size 2x2 --dpi 20 -q"))


@pytest.mark.parametrize("codec", CODECS)
def test_written_twice_the_same_bytes_with_no_time_in_a_gzip_header(codec):
    command = f"generate -n 50 --seed 1 -q -o g.csv.{codec}"
    ok(gmm(command))
    first = Path(f"g.csv.{codec}").read_bytes()
    ok(gmm(command))
    assert Path(f"g.csv.{codec}").read_bytes() == first
    assert decompressed(f"g.csv.{codec}") == ok(gmm("generate -n 50 --seed 1 -q")).stdout_bytes
    if codec == "gz":
        assert first[:4] == b"\x1f\x8b\x08\x00"  # gzip, deflate, no flags (no name)
        assert first[4:8] == b"\x00\x00\x00\x00"  # MTIME 0: no time stamp
        assert gzip.decompress(first) == decompressed("g.csv.gz")


def truncated(base) -> None:
    data = Path(compress(base.blobs.encode(), "cut.csv.gz")).read_bytes()
    Path("cut.csv.gz").write_bytes(data[: len(data) // 2])


BAD = [
    ("fit cut.csv.gz -k 2 -o m.json", "cannot read 'cut.csv.gz': Truncated compressed stream"),
    (f"fit cut.csv.gz -k 2 {STREAMED} -o m.json", "cannot read 'cut.csv.gz'"),
    (f"classify cut.csv.gz -m model.json {STREAMED} -o out.csv", "cannot read 'cut.csv.gz'"),
    ("fit fake.csv.gz -k 2 -o m.json", "cannot read 'fake.csv.gz': zlib inflate failed"),
    ("fit empty.csv.zst -k 2 -o m.json", "'empty.csv.zst' has no data rows"),
    ("classify data.csv -m model.json -o out.parquet.gz", "Parquet compresses its own pages"),
    ("fit data.csv.lz4 -k 2 -o m.json", "use .csv or .tsv (compressed: .csv.gz, .csv.zst"),
    ("fit data.gz -k 2 -o m.json", "cannot tell the format of 'data.gz'"),
    ("classify data.parquet.gz -m model.json -o m.csv", "Parquet compresses its own pages"),
    ("classify x.parquet -m model.json --engine dask -o out.csv.gz", "named like a file"),
]


@pytest.mark.parametrize(("command", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_compressed_input_or_output_is_one_line_and_writes_nothing(files, command, message):
    truncated(files)
    Path("fake.csv.gz").write_text(files.csv)  # plain text under a gzip name
    compress(b"", "empty.csv.zst")
    for name in ("data.csv.lz4", "data.gz", "data.parquet.gz"):
        Path(name).write_text(files.csv)
    before = snapshot()
    assert message in error_line(gmm(command))
    assert snapshot() == before


def test_a_compressed_file_is_taken_for_all_the_rows_it_holds(tmp_path):
    """Repeated rows compress far beyond any fixed ratio: the rows the memory limit plans
    for are counted, not guessed from the compressed size."""
    path = tmp_path / "same.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n" + b"1.5,2.5\n" * 200_000, mtime=0))
    assert path.stat().st_size < 5_000  # 1.6 MB of text
    assert stream.layout(str(path), "csv").n_rows >= 200_000
