"""select-k's grid kept on disk as it is fitted, and resumed from it.

A :class:`GridTable` rewrites the --table file as grid points finish (a stopped run keeps
the rows it finished), with a fingerprint of the data file (its size, modification time,
and a hash of its first and last MB) and of every option that changes a fit. With
``resume``, an existing table's rows are reused when its fingerprint is this run's; a table
made otherwise is refused, saying what differs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gmmcli import __version__
from gmmcli.core.options import FitOptions, Grid
from gmmcli.core.select import GridPoint, table_columns, table_points
from gmmcli.errors import UserError
from gmmcli.inputs import Output, Report, Source
from gmmcli.io import gridtable
from gmmcli.io.atomic import check_distinct

if TYPE_CHECKING:
    from gmmcli.jobs import ClassChoice


@dataclass
class GridTable:
    """Where select-k keeps its grid: the table at ``path`` is rewritten as grid points
    finish, with a fingerprint of the data and of every option that changes a fit. With
    ``resume``, the rows of an existing table made with the same fingerprint are reused
    (each where its own K and covariance type are in the grid)."""

    path: str
    resume: bool = False
    fingerprint: dict = field(default_factory=dict)

    @classmethod
    def given(
        cls, path: str | None, resume: bool, source: Source, output: str | None
    ) -> GridTable | None:
        """The command line's --table (None without one), checked before anything is read:
        a file select-k can write, whose fingerprint file is not ``output``."""
        if path is None:
            if resume:
                raise UserError(
                    "{resume} goes on with the grid in {table}; give {table}", ("resume", "table")
                )
            return None
        Output(path).check(source)
        meta = gridtable.fingerprint_file(path)
        if meta is not None and output is not None:
            try:
                check_distinct({"output": output, "table": meta})
            except UserError:
                raise UserError(
                    f"{{output}} '{output}' is where {{table}} keeps its fingerprint ('{meta}'); "
                    "write the model elsewhere",
                    ("output", "table"),
                ) from None
        return cls(path, resume)

    def check(self, source: Source) -> None:
        """Before anything is read: with ``resume``, a table that can be read back, and
        data in a file, which can be compared with what made the table."""
        if self.resume and not gridtable.read_back(self.path):
            raise UserError(
                f"{{resume}} reads the grid in {{table}}, which '{self.path}' cannot give back; "
                "give a file",
                ("resume", "table"),
            )
        if self.resume and source.data == "-":
            raise UserError(
                "{resume} needs the data in a file: stdin cannot be compared with the data "
                "the table was made from",
                ("resume",),
            )

    def open(
        self,
        source: Source,
        grid: Grid,
        options: FitOptions,
        report: Report,
        by_class: ClassChoice | None = None,
    ) -> dict:
        """Take the run's fingerprint; with ``resume``, the rows made with it, by (K,
        covariance type), and for select-k with labels (``by_class``) by class first; a
        UserError saying what differs for a table made otherwise."""
        self.fingerprint = _fingerprint(source, grid, options, by_class)
        if not self.resume:
            return {}
        if not os.path.exists(self.path):
            report.note(f"no grid in '{self.path}' yet: fitting every point")
            return {}
        columns, stored = gridtable.read_grid(self.path)
        if not isinstance(stored, dict):
            raise UserError(
                f"{{table}} '{self.path}' has no fingerprint of the data and options that made "
                "it (written by an older gmmcli, or its .meta.json is gone): run without "
                "{resume} to start over",
                ("table", "resume"),
            )
        difference = _difference(stored, self.fingerprint, source)
        if difference:
            raise UserError(
                f"{{table}} '{self.path}' was made {difference}: run without {{resume}} to "
                "start over (the table is replaced), or give another {table}",
                ("table", "resume", *self.fingerprint["options"]),
            )
        try:
            points = table_points(columns)
            labels = columns["class"] if by_class is not None else [None] * len(points)
        except (KeyError, ValueError) as err:
            what = f"it has no column {err}" if isinstance(err, KeyError) else str(err)
            raise UserError(
                f"'{self.path}' is no select-k table ({what}); give the "
                "table select-k wrote, or run without {resume}",
                ("resume",),
            ) from None
        report.note(f"reusing the grid points in '{self.path}'")
        by_key: dict = {}
        for label, p in zip(labels, points, strict=True):
            by_key.setdefault(label, {})[p.n_components, p.covariance_type] = p
        return by_key if by_class is not None else by_key.get(None, {})

    def save(self, points: list[GridPoint], labels: list[str] | None = None) -> None:
        """The grid, ranked: the table select-k gives (with labels, each point's class
        first)."""
        columns = {} if labels is None else {"class": labels}
        gridtable.write_grid({**columns, **table_columns(points)}, self.path, self.fingerprint)

    def keep(self, points: list[GridPoint], labels: list[str] | None = None) -> None:
        """The points fitted so far (unranked), where they can be read back."""
        if gridtable.read_back(self.path):
            self.save(points, labels)


# The fit's options that change a grid point's row (K and the covariance type are the
# row's own).
FIT_OPTIONS = (
    "init",
    "init_sample",
    "hc_rows",
    "n_init",
    "max_iter",
    "tol",
    "reg_covar",
    "seed",
    "dtype",
)


def _fingerprint(
    source: Source, grid: Grid, options: FitOptions, by_class: ClassChoice | None
) -> dict:
    """What makes a grid point's row: gmmcli's version, the data file, and the options by
    parameter: how the rows are read, how each point is fitted, the folds, the labels and
    how the classes are joined (None without labels, as tables made before have it)."""
    return {
        "gmmcli": __version__,
        "data": None if source.data == "-" else gridtable.file_fingerprint(source.path),
        "options": {
            "columns": source.columns,
            "exclude": source.exclude,
            "weight_column": source.weight_column,
            "missing": source.missing,
            "format": source.file_format(),
            **{name: getattr(options, name) for name in FIT_OPTIONS},
            "cv_folds": grid.cv_folds,
            "labels": source.label_column,
            "shared_structure": None if by_class is None else by_class.shared,
            "class_priors": _shared_priors(by_class),
        },
    }


def _shared_priors(by_class: ClassChoice | None) -> str | None:
    """The class priors as NAME=P, scaled to sum to 1 (to 12 digits), where they change the
    points' rows: with a shared structure (else they only join the classes' winners)."""
    if by_class is None or not by_class.shared or by_class.priors is None:
        return None
    total = sum(by_class.priors.values())
    return ",".join(f"{name}={p / total:.12g}" for name, p in sorted(by_class.priors.items()))


def _difference(stored: dict, fingerprint: dict, source: Source) -> str:
    """How a stored fingerprint differs from this run's, in words ("" if it does not)."""
    if stored.get("gmmcli") != fingerprint["gmmcli"]:
        return f"by gmmcli {stored.get('gmmcli')}, not {fingerprint['gmmcli']}"
    if stored.get("data") != fingerprint["data"]:
        return f"from other data ({source.quoted} changed: size, modification time or content)"
    old = stored.get("options") or {}
    for parameter, value in fingerprint["options"].items():
        if old.get(parameter) != value:
            return f"with {{{parameter}}} {_shown(old.get(parameter))}, not {_shown(value)}"
    return ""


def _shown(value: object) -> str:
    if value is None or value == []:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return ",".join(value) if isinstance(value, list) else str(value)
