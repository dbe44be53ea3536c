"""How a command-line run stops: SIGTERM and SIGHUP unwind it as Ctrl-C (SIGINT) does, so
temporary files and the stdin spool are removed on the way out, and it exits with 128 +
the signal's number; a write past the file size limit fails instead of killing it."""

from __future__ import annotations

import atexit
import gc
import signal

from gmmcli.console import error


class Stopped(KeyboardInterrupt):
    """A run stopped by the signal ``signum``."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @classmethod
    def raise_for(cls, signum: int, frame: object) -> None:
        """The signal handler."""
        raise cls(signum)


def handle_signals() -> None:
    """In the command-line process only: SIGTERM and SIGHUP raise Stopped (unless ignored,
    as under nohup); SIGXFSZ is ignored, so that a write past `ulimit -f` fails with EFBIG,
    a one-line error, instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, Stopped.raise_for)


def exit_without_collecting() -> None:
    """In the command-line process only: at exit, freeze the objects of the run (gc.freeze)
    so that the interpreter's last garbage collection skips them: a tenth of a second or
    more after a large classify. Files and temporary files are closed by then."""
    atexit.register(gc.freeze)


def interrupted(err: BaseException | None, detail: str = "; nothing was written") -> int:
    """Say the run was interrupted (by which signal, unless Ctrl-C) and what it wrote (the
    ``written`` a job gave the exception, or ``detail``); the exit code, 128 + the
    signal's number."""
    signum = getattr(err, "signum", signal.SIGINT)
    by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    error(f"interrupted{by}{getattr(err, 'written', detail)}")
    return 128 + signum
