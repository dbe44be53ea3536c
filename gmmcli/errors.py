"""gmmcli's exceptions and warnings, shared by the core, the I/O layer and the CLI.

Errors that concern a parameter name it (``parameter``) and say what they say through
``describe(name)``, so that the command line can name the flag (``--reg-covar``) where
Python callers read the parameter (``reg_covar``). Each keeps its constructor's arguments
as ``args``, so it pickles (from a worker process) whole.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

FULL = {  # why a write failed, for the errors that mean there is no room
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file size limit was hit (ulimit -f)",
}


class GMMError(Exception):
    """Base of gmmcli's own errors: invalid data, options or models."""

    parameter: str | None = None

    def describe(self, name: Callable[[str], str] = str) -> str:
        """The message, with ``name(parameter)`` wherever a parameter is named."""
        return super().__str__()

    def __str__(self) -> str:
        return self.describe()


class UserError(GMMError):
    """A mistake in the user's input or options; the CLI prints it as one line, exit 2.

    The message writes each parameter it names in ``parameters`` as ``{parameter}``, so
    that ``describe(name)`` says ``drop_missing`` to Python and ``--drop-missing`` to the
    command line.
    """

    def __init__(self, message: str, parameters: tuple[str, ...] = ()):
        self.template, self.parameters = message, parameters
        super().__init__(message, parameters)

    def describe(self, name: Callable[[str], str] = str) -> str:
        return _named(self.template, self.parameters, name)


def _named(template: str, parameters: tuple[str, ...], name: Callable[[str], str]) -> str:
    """``template`` with each ``{parameter}`` written as ``name(parameter)``."""
    for parameter in parameters:
        template = template.replace("{" + parameter + "}", name(parameter))
    return template


class InvalidParameter(GMMError, ValueError):
    """A parameter outside what it may be: ``parameter`` must be ``requirement``."""

    def __init__(self, parameter: str, value: object, requirement: str):
        self.parameter, self.value, self.requirement = parameter, value, requirement
        super().__init__(parameter, value, requirement)

    def describe(self, name: Callable[[str], str] = str) -> str:
        return f"{name(self.parameter)} must be {self.requirement}, got {self.value!r}"


class ParameterConflict(GMMError, ValueError):
    """``parameter`` given where it does not work: it needs ``other`` to be ``needed``."""

    def __init__(self, parameter: str, other: str, needed: str):
        self.parameter, self.other, self.needed = parameter, other, needed
        super().__init__(parameter, other, needed)

    def describe(self, name: Callable[[str], str] = str) -> str:
        return (
            f"{name(self.parameter)} works with {name(self.other)} {self.needed} only; "
            f"leave it out or change {name(self.other)}"
        )


class DataError(GMMError, ValueError):
    """Data that cannot be fitted or predicted on: a shape, a NaN, a weight."""


class SingularCovarianceError(GMMError, ArithmeticError):
    """A covariance that is not positive definite even after regularisation;
    ``component`` is its index (None: the shared covariance of a tied model, or the
    data's). ``overflow``: it is not finite though the data are, its sums of squares
    having passed float64's range, which no regularisation mends: the data need
    rescaling."""

    parameter = "reg_covar"

    def __init__(self, component: int | None, overflow: bool = False):
        self.component, self.overflow = component, overflow
        super().__init__(component, overflow)

    @property
    def where(self) -> str:
        return "the shared covariance" if self.component is None else f"component {self.component}"

    def describe(self, name: Callable[[str], str] = str) -> str:
        if self.overflow:
            return (
                "the data's sums of squares overflow float64 (values near 1e150 or beyond), "
                "so no covariance can be computed; rescale the data, e.g. divide it by a "
                f"power of ten (a larger {name('reg_covar')} does not help)"
            )
        return (
            f"the covariance of {self.where} is singular (not positive definite); "
            f"increase {name('reg_covar')}, e.g. by a factor of 10"
        )


def one_line(err: BaseException, limit: int | None = 200) -> str:
    """An exception's text on one line, cut to ``limit`` characters, for a user message."""
    return " ".join(str(err).split())[:limit]


class GMMWarning(UserWarning):
    """Something about a fit the user should know: degenerate, not converged, suspicious input.

    A warning that names parameters writes them as UserError does (``{parameter}``, listed
    in ``parameters``), so that the command line names the flag."""

    def __init__(self, message: str, parameters: tuple[str, ...] = ()):
        self.template, self.parameters = message, parameters
        super().__init__(message, parameters)

    def describe(self, name: Callable[[str], str] = str) -> str:
        return _named(self.template, self.parameters, name)

    def __str__(self) -> str:
        return self.describe()
