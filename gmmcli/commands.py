"""The command line's frame: the Typer app, how a subcommand registers (an example in its
help, its errors as exit codes) and how a usage error reads."""

from __future__ import annotations

import functools
import os
import sys

import typer
from typer.core import TyperGroup

from gmmcli.console import error
from gmmcli.errors import FULL, GMMError
from gmmcli.flags import Command, PlainHelp, flag
from gmmcli.stopping import interrupted

EXIT_USER_ERROR = 2
EXIT_STRICT = 3


class PlainErrors(PlainHelp, TyperGroup):
    """Usage errors (an unknown option, a missing argument) as one plain line, exit 2."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as err:  # a usage error, as Typer's parser raises it
            message = err.format_message().replace("\n", " ")
            if message:  # (none when no arguments asked for the help, shown already)
                where = (
                    f" (see '{err.ctx.command_path} --help')" if getattr(err, "ctx", None) else ""
                )
                error(message + where)
            sys.exit(err.exit_code)
        except typer.Abort as err:  # click's, from a KeyboardInterrupt (a Stopped too)
            sys.exit(interrupted(err.__cause__))
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="gmmcli",
    cls=PlainErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def command(*, example: str, **kwargs):
    """Register a subcommand whose help ends with an example and whose errors map to exits."""

    def register(func):
        @functools.wraps(func)
        def run(*args, **kw):
            try:
                return func(*args, **kw)
            except GMMError as err:
                error(err.describe(flag))
                raise typer.Exit(EXIT_USER_ERROR) from None
            except KeyboardInterrupt as err:
                raise typer.Exit(interrupted(err)) from None
            except OSError as err:
                if not isinstance(err, BrokenPipeError) and err.errno not in FULL:
                    raise
                # The reader went away (| head: stop quietly) or stdout's disk is full:
                # stdout is sent nowhere, so that its last flush at exit cannot fail.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                if isinstance(err, BrokenPipeError):
                    raise typer.Exit(0) from None
                error(f"cannot write to stdout: {FULL[err.errno]}; make room, then run again")
                raise typer.Exit(EXIT_USER_ERROR) from None

        return app.command(epilog=f"Example: {example}", cls=Command, **kwargs)(run)

    return register


def strict_failure(message: str, written: str = "nothing written") -> typer.Exit:
    error(f"{message} (--strict); {written}")
    return typer.Exit(EXIT_STRICT)
