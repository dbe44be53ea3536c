"""Where outputs go and what survives a fault: devices, pipes and links written as the user
meant, an output never the input, signals that clean up like Ctrl-C, full disks, kills,
concurrent writers, folder outputs and corrupt Parquet.

Subprocess tests run the installed ``gmmcli`` script (``python -m gmmcli`` if there is
none); the rest run in process. A FIFO and a link in a temporary folder stand in for
devices: tests never write to /dev.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_helpers import error_line, gmm, ok, snapshot

from gmmcli.errors import UserError
from gmmcli.io import atomic

pytestmark = pytest.mark.usefixtures("in_tmp_path")

SCRIPT = Path(sys.executable).with_name("gmmcli")
GMMCLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "gmmcli"]
TIMEOUT = 60  # seconds; far above what any command here needs


def leftovers(folder: Path = Path(".")) -> list[str]:
    """Hidden temporary files or folders left in ``folder``."""
    return sorted(p.name for p in folder.glob(".*") if p.name.endswith((".tmp", ".old")))


# --- devices, pipes and links ----------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "fit data.csv -k 2 -q -o {fifo}",
        "select-k data.csv --k-max 2 --covariance-types diag -q --table {fifo} -o m.json",
        "generate -n 50 -q -o g.csv --truth {fifo}",
        "classify data.csv -m model.json -q -o {fifo}",
    ],
)
def test_a_fifo_is_written_through_not_replaced(files, command):
    os.mkfifo("out.csv")
    with ThreadPoolExecutor(1) as pool:
        read = pool.submit(Path("out.csv").read_bytes)
        result = gmm(command.format(fifo="out.csv"))
        with contextlib.suppress(OSError):  # a reader still waiting for a writer ends
            os.close(os.open("out.csv", os.O_WRONLY | os.O_NONBLOCK))
        ok(result)
        assert read.result(TIMEOUT).strip()  # the whole output went through the pipe
    assert Path("out.csv").is_fifo()
    assert leftovers() == []


def test_devices_and_descriptors_are_written_through():
    os.mkfifo("pipe")
    Path("file").write_text("x")
    os.symlink("pipe", "link-to-pipe")
    assert atomic.writes_through("pipe") and atomic.writes_through("link-to-pipe")
    assert atomic.writes_through("/dev/stdout") and atomic.writes_through("/dev/fd/1")
    assert not atomic.writes_through("file") and not atomic.writes_through("new.csv")


def test_dev_stdout_redirected_to_a_file_keeps_the_redirection(files):
    with open("out.json", "wb") as out:
        done = subprocess.run(
            [*GMMCLI, "fit", "data.csv", "-k", "2", "-q", "-o", "/dev/stdout"],
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=TIMEOUT,
        )
    assert done.returncode == 0, done.stderr.decode()
    assert Path("out.json").read_text() == files.model
    assert leftovers() == []


def test_a_link_keeps_being_a_link_to_the_replaced_target(files):
    Path("real").mkdir()
    Path("real/model.json").write_text("old")
    os.chmod("real/model.json", 0o640)
    os.symlink("real/model.json", "link.json")
    ok(gmm("fit data.csv -k 2 -q -o link.json"))
    assert os.readlink("link.json") == "real/model.json"
    assert Path("real/model.json").read_text() == files.model
    assert os.stat("real/model.json").st_mode & 0o777 == 0o640
    assert leftovers() == [] and leftovers(Path("real")) == []


# --- an output that is an input, or another output ---------------------------------------


@pytest.mark.parametrize("name", ["data.csv", "./sub/../data.csv", "hard.csv", "soft.csv"])
def test_fit_refuses_an_output_that_is_its_input(files, name):
    Path("sub").mkdir()
    os.link("data.csv", "hard.csv")
    os.symlink("data.csv", "soft.csv")
    before = snapshot()
    line = error_line(gmm(f"fit data.csv -k 2 -o {name}"))
    assert f"--output '{name}' is the same file as the input 'data.csv'" in line
    assert snapshot() == before


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("classify data.csv -m model.json -o model.json --output-format csv", "'model.json'"),
        ("score data.csv -m model.json --per-sample data.csv", "--per-sample 'data.csv'"),
        ("generate -m model.json -o model.json", "--output 'model.json'"),
        ("fit data.csv --init-model model.json -o model.json", "--output 'model.json'"),
        ("plot --table grid.png -o grid.png", "--output 'grid.png' is the same file as"),
        ("select-k data.csv -o g.csv --table g.csv", "--table 'g.csv' is the same file as"),
        ("generate -o g.csv --truth g.csv", "--truth 'g.csv' is the same file as --output"),
    ],
)
def test_outputs_may_not_be_inputs_or_each_other(files, command, words):
    before = snapshot()
    assert words in error_line(gmm(command))
    assert snapshot() == before


def test_an_output_may_not_be_the_file_on_stdin(files):
    with open("data.csv", "rb") as stdin:
        done = subprocess.run(
            [*GMMCLI, "fit", "-", "-k", "2", "-o", "data.csv"],
            stdin=stdin,
            capture_output=True,
            timeout=TIMEOUT,
        )
    assert done.returncode == 2
    assert b"--output 'data.csv' is the same file as stdin" in done.stderr
    assert Path("data.csv").read_text() == files.csv


def test_score_per_sample_may_not_be_the_stdout_of_its_summary(files):
    done = subprocess.run(
        f"{' '.join(GMMCLI)} score data.csv -m model.json --per-sample /dev/stdout | cat",
        shell=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0  # cat's
    assert b"--per-sample '/dev/stdout' is the same file as stdout" in done.stderr
    assert done.stdout == b""


@pytest.mark.parametrize("flag", ["-o labelled.csv", "--per-sample scores.parquet"])
def test_a_dask_folder_named_like_a_file_is_refused(files, flag):
    command = "classify" if flag.startswith("-o") else "score"
    before = snapshot()
    line = error_line(gmm(f"{command} data.csv -m model.json --engine dask {flag}"))
    assert "is named like a file, but a folder of Parquet files" in line
    assert snapshot() == before


# --- signals ---------------------------------------------------------------------------


def start(args: list[str], **kwargs) -> subprocess.Popen:
    """gmmcli with ``args``, reading a pipe this test writes to and never closes."""
    return subprocess.Popen(
        [*GMMCLI, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def feed_until(process: subprocess.Popen, text: str, pattern: str) -> None:
    """Write ``text`` to the process, then wait until a file matching ``pattern`` exists."""
    process.stdin.write(text.encode())
    process.stdin.flush()
    deadline = time.monotonic() + TIMEOUT
    while not glob.glob(pattern):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, f"no {pattern}"
        time.sleep(0.02)


def until_closed(stream) -> str:
    """What ``stream`` (a pipe) holds once every writer has closed it; fails, rather than
    hanging, if a process left behind still holds it after TIMEOUT seconds."""
    os.set_blocking(stream.fileno(), False)
    read, deadline = b"", time.monotonic() + TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while selector.select(max(0.0, deadline - time.monotonic())):
            if not (piece := os.read(stream.fileno(), 65536)):
                return read.decode()
            read += piece
    raise AssertionError(f"a process still holds the pipe after {TIMEOUT} s: {read!r}")


def stopped(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    """Send ``signum`` and wait (stdin still open): the exit code and stderr."""
    try:
        process.send_signal(signum)
        code = process.wait(TIMEOUT)
        return code, until_closed(process.stderr)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdin.close()
        process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_classify_and_leaves_no_partial_output(files, signum):
    process = start(["classify", "-", "-m", "model.json", "-o", "lab.csv"])
    feed_until(process, files.csv, ".lab.csv.*.tmp")
    code, stderr = stopped(process, signum)
    assert code == 128 + signum, stderr
    assert stderr.strip().splitlines() == [
        f"error: interrupted by {signal.Signals(signum).name}; nothing was written"
    ]
    assert not Path("lab.csv").exists() and leftovers() == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_fit_from_a_pipe_and_removes_the_stdin_spool(files, signum):
    Path("tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(Path("tmp").resolve())}
    process = start(["fit", "-", "-k", "2", "-o", "m.json"], env=env)
    feed_until(process, files.csv, "tmp/gmmcli-stdin-*")
    code, stderr = stopped(process, signum)
    assert code == 128 + signum, stderr
    assert os.listdir("tmp") == [] and not Path("m.json").exists()


def state(pid: int) -> str | None:
    """A process's state letter (R, S, Z for a zombie, ...); None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """The live (not zombie) child processes of ``pid``."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError):
            letter, parent = Path(stat).read_text().rsplit(")", 1)[1].split()[:2]
            if int(parent) == pid and letter != "Z":
                found.append(int(Path(stat).parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_signal_ends_the_worker_processes_of_select_k_jobs(files):
    args = ["select-k", "blobs.csv", "--jobs", "2", "--k-max", "30", "--n-init", "10", "--tol", "0"]
    process = start(args)
    deadline = time.monotonic() + TIMEOUT
    while len(workers := children(process.pid)) < 2:  # the pool's (or a resource tracker)
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    code, _ = stopped(process, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    while alive := [pid for pid in workers if state(pid) not in (None, "Z")]:
        assert time.monotonic() < deadline, alive
        time.sleep(0.05)


# --- faults while writing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("-o big.csv", "cannot write 'big.csv': the file size limit was hit (ulimit -f)"),
        ("-o big.parquet", "cannot write 'big.parquet': the file size limit was hit (ulimit -f)"),
        ("> stdout.csv", "cannot write to stdout: the file size limit was hit (ulimit -f)"),
    ],
)
def test_the_file_size_limit_is_one_line_and_keeps_the_old_file(output, message):
    Path("big.csv").write_text("old")
    Path("big.parquet").write_text("old")
    command = f"ulimit -f 16; exec {' '.join(GMMCLI)} generate -n 50000 -d 5 -q {output}"
    done = subprocess.run(["bash", "-c", command], capture_output=True, timeout=TIMEOUT)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert stderr.strip().splitlines() == [f"error: {message}; make room, then run again"]
    assert Path("big.csv").read_text() == Path("big.parquet").read_text() == "old"
    assert leftovers() == []


def test_no_room_for_the_stdin_spool_names_the_temporary_folder(tmp_path):
    ok(gmm("generate -n 5000 -d 5 -q -o big.csv"))
    spool = tmp_path / "spool"
    spool.mkdir()
    command = f"ulimit -f 16; exec {' '.join(GMMCLI)} fit - -k 2 -q -o m.json < big.csv"
    env = {**os.environ, "TMPDIR": str(spool)}
    done = subprocess.run(["bash", "-c", command], capture_output=True, timeout=TIMEOUT, env=env)
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [
        f"error: cannot copy stdin to a temporary file in '{spool}': the file size limit was "
        "hit (ulimit -f); set TMPDIR to a folder with room, or give the data as a file"
    ]
    assert list(spool.iterdir()) == [] and not Path("m.json").exists()


def test_a_full_disk_is_one_line_and_keeps_the_old_file(files, monkeypatch):
    Path("m.json").write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    line = error_line(gmm("fit data.csv -k 2 -o m.json"))
    assert line == "error: cannot write 'm.json': the disk is full; make room, then run again"
    assert Path("m.json").read_text() == "old" and leftovers() == []


@pytest.mark.parametrize(
    "command",
    [
        "select-k data.csv --k-max 2 --covariance-types diag -q --table grid.csv -o m.json",
        "generate -n 50 -q -o g.csv --truth t.json",
    ],
)
def test_a_full_disk_at_a_second_output_keeps_the_first_old_file_too(files, monkeypatch, command):
    outputs = ["grid.csv", "m.json"] if command.startswith("select-k") else ["g.csv", "t.json"]
    for name in outputs:
        Path(name).write_text("old")
    synced = []

    def full_at_the_second(fd):
        synced.append(fd)
        if len(synced) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full_at_the_second)
    line = error_line(gmm(command))
    assert "the disk is full" in line
    assert leftovers() == []
    assert [Path(name).read_text() for name in outputs] == ["old", "old"]


def test_a_kill_in_the_middle_of_a_write_keeps_the_old_file(files):
    Path("lab.csv").write_text("old")
    process = start(["classify", "-", "-m", "model.json", "-o", "lab.csv", "--chunk-rows", "5"])
    feed_until(process, files.csv, ".lab.csv.*.tmp")
    code, _ = stopped(process, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert Path("lab.csv").read_text() == "old"  # the temporary file may stay: it was a kill


def test_two_runs_writing_one_file_leave_one_whole_output(files):
    # The first run is held in the middle of its write (its temporary output exists, its
    # stdin stays open) while the second writes the same file from start to end; then the
    # first is let go. Each replaces the file whole: the last to finish wins.
    first_args = ["classify", "-", "-m", "model.json", "--chunk-rows", "5", "-q"]
    second_args = ["classify", "blobs.csv", "-m", "blobs.json", "-q"]
    ok(gmm([*first_args, "-o", "ref1.csv"], input=files.csv))
    ok(gmm([*second_args, "-o", "ref2.csv"]))
    refs = [Path("ref1.csv").read_bytes(), Path("ref2.csv").read_bytes()]
    assert refs[0] != refs[1]
    first = start([*first_args, "-o", "same.csv"])
    try:
        feed_until(first, files.csv, ".same.csv.*.tmp")
        second = subprocess.run(
            [*GMMCLI, *second_args, "-o", "same.csv"], capture_output=True, timeout=TIMEOUT
        )
        assert second.returncode == 0, second.stderr.decode()
        assert first.poll() is None, "the first run must still be writing"
        assert Path("same.csv").read_bytes() == refs[1]
        assert len(leftovers()) == 1  # the first run's temporary file, not yet renamed
        first.stdin.close()
        assert first.wait(TIMEOUT) == 0, first.stderr.read().decode()
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()
        for stream in (first.stdin, first.stdout, first.stderr):
            stream.close()
    assert Path("same.csv").read_bytes() == refs[0]
    assert leftovers() == []


# --- folder outputs --------------------------------------------------------------------


def test_a_folder_output_is_never_a_mix_of_old_and_new_parts():
    Path("out").mkdir()
    for i in range(3):
        Path(f"out/part-0000{i}.parquet").write_text("old")
    before = snapshot()
    with pytest.raises(RuntimeError), atomic.atomic_folder("out") as building:
        Path(building, "part-00000.parquet").write_text("new")
        raise RuntimeError("a partition failed")
    assert snapshot() == before and leftovers() == []
    with atomic.atomic_folder("out") as building:
        Path(building, "part-00000.parquet").write_text("new")
    assert snapshot(Path("out")) == {"part-00000.parquet": b"new"} and leftovers() == []


def test_a_folder_output_names_its_own_failures_only(monkeypatch):
    with pytest.raises(FileNotFoundError), atomic.atomic_folder("out"):
        Path("nowhere/part-00000.parquet").write_text("new")  # the block's error, as it is

    def refuse(name, *args):
        raise PermissionError(errno.EACCES, "Permission denied", name)

    monkeypatch.setattr(os, "mkdir", refuse)
    refused = pytest.raises(UserError, match="cannot write 'out': Permission denied")
    with refused, atomic.atomic_folder("out"):
        pass
    assert leftovers() == [] and not Path("out").exists()


def test_a_folder_output_stopped_between_its_renames_is_put_back(monkeypatch):
    Path("out").mkdir()
    Path("out/part-00000.parquet").write_text("old")
    before = snapshot()
    rename = os.rename

    def stopped(source, target):  # a signal as the new folder is renamed into place
        if source.endswith(".tmp"):
            raise KeyboardInterrupt
        rename(source, target)

    monkeypatch.setattr(os, "rename", stopped)
    with pytest.raises(KeyboardInterrupt), atomic.atomic_folder("out") as building:
        Path(building, "part-00000.parquet").write_text("new")
    assert snapshot() == before and leftovers() == []


@pytest.mark.parametrize("renamed", [False, True])
def test_a_folder_left_by_a_kill_between_the_renames_is_named(files, renamed):
    Path("out").mkdir()
    Path("out/part-00000.parquet").write_text("old")
    leftover = ".out.0123456789abcdef.old"
    os.rename("out", leftover)  # atomic_folder's first rename; then a kill
    if renamed:  # killed after the second rename, while removing the old folder
        Path("out").mkdir()
    before = snapshot()
    line = error_line(gmm("classify data.csv -m model.json --engine dask -o out"))
    if renamed:
        assert f"'{leftover}' is left from a run stopped while replacing 'out'" in line
        assert "remove it" in line
    else:
        assert f"'{leftover}' holds the earlier output of 'out'" in line
        assert "rename it back to 'out' or remove it" in line
    assert snapshot() == before


# --- Parquet checksums and corrupt files ---------------------------------------------------


def corrupt(path: str, how: str) -> None:
    """Break a Parquet file: its footer, a byte of its first page's data (caught by the
    page checksum), or its first page's header (which then fails to decode)."""
    data = bytearray(Path(path).read_bytes())
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    if how == "footer":
        data = data[: len(data) - 20]
    elif how == "checksum":
        data[start + chunk.total_compressed_size // 2] ^= 0xFF
    else:
        data[start : start + 8] = b"\xff" * 8
    Path(path).write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["footer", "checksum", "page"])
@pytest.mark.parametrize("command", ["fit data.parquet -k 2", "classify data.parquet -m m.json"])
@pytest.mark.parametrize("streamed", ["", " --chunk-rows 100"])
def test_a_corrupt_parquet_file_is_one_line_naming_it(command, how, streamed):
    ok(gmm("generate -k 2 -n 2000 --seed 4 -q -o data.parquet"))
    ok(gmm("fit data.parquet -k 2 -q -o m.json"))
    corrupt("data.parquet", how)
    line = error_line(gmm(f"{command}{streamed} -q -o out.csv"))
    assert "data.parquet" in line
    if how == "checksum":
        assert "checksum" in line
    assert not Path("out.csv").exists() and leftovers() == []


# --- what is and is not the same file, or a write's error -------------------------------


def test_stdin_and_stdout_may_share_a_socket(files):
    # As under inetd or socat: one socket is both the input and the output.
    ours, theirs = socket.socketpair()
    with ours:
        with theirs:
            run = subprocess.Popen(
                [*GMMCLI, "classify", "-", "-m", "model.json", "--only-new-columns", "-q"],
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                stderr=subprocess.PIPE,
            )
        ours.sendall(Path("data.csv").read_bytes())
        ours.shutdown(socket.SHUT_WR)
        ours.settimeout(TIMEOUT)
        received = b""
        while chunk := ours.recv(1 << 16):
            received += chunk
        assert run.wait(timeout=TIMEOUT) == 0, run.stderr.read()
    assert received.startswith(b'"component"')


def test_an_input_error_inside_a_write_is_not_called_a_write_error(tmp_path):
    with pytest.raises(FileNotFoundError), atomic.atomic_writer(str(tmp_path / "out.csv")):
        open(tmp_path / "missing.csv")  # noqa: SIM115 - the block's own error
    assert leftovers(tmp_path) == []


def test_outputs_replaced_together_are_all_replaced_if_a_signal_lands_between(
    tmp_path, monkeypatch
):
    """A signal's exception raised just after the first rename (a table beside its
    fingerprint): the second is made still, so the pair never mixes two runs, and the
    exception goes on."""
    first, second = tmp_path / "grid.csv", tmp_path / "grid.csv.meta.json"
    first.write_text("old"), second.write_text("old")
    rename = os.replace
    calls = []

    def interrupted(source, target):
        rename(source, target)
        calls.append(target)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt), atomic.replaced_together():
        atomic.atomic_write_bytes(str(first), b"new")
        atomic.atomic_write_bytes(str(second), b"new")
    assert first.read_text() == second.read_text() == "new"
    assert sorted(path.name for path in tmp_path.iterdir()) == [first.name, second.name]
