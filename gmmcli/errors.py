"""gmmcli's exceptions and warnings, shared by the core, the I/O layer and the CLI."""


class GMMError(Exception):
    """Base of gmmcli's own errors: invalid data, options or models."""


class UserError(GMMError):
    """A mistake in the user's input or options; the CLI prints it as one line, exit 2."""


def one_line(err: BaseException, limit: int | None = 200) -> str:
    """An exception's text on one line, cut to ``limit`` characters, for a user message."""
    return " ".join(str(err).split())[:limit]


class GMMWarning(UserWarning):
    """Something about a fit the user should know: degenerate, not converged, suspicious input."""
