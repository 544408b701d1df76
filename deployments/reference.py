"""A version's reference data: the rows its live inputs are compared with for drift.

Uploaded at registration as CSV (a header row of column names, then one row per example)
or Parquet, and kept beside the artifact in the same storage (`ModelVersion.reference_data`,
always read through the field's file API, never a local path). Without a file, the
version's sample input stands in (a few rows: a rough reference).

The columns must be the model's: as many as the sample input's rows have values, and,
when the version has an MLflow signature (known after validation), its input names, in
any order (they are put in the signature's order).

pandas is imported only when a file is read: the web process, which checks an upload at
registration, runs without the ML stack in a web-only install (requirements/web.in)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas

EXTENSIONS = (".csv", ".parquet")
MAX_COLUMNS = 1000


class ReferenceDataError(ValueError):
    """The reference file cannot be read, or its columns are not the model's."""


def read_table(handle, filename: str) -> pandas.DataFrame:
    """The file's rows as a data frame; ReferenceDataError naming what is wrong (ImportError
    without pandas)."""
    import pandas

    lowered = filename.lower()
    if not lowered.endswith(EXTENSIONS):
        raise ReferenceDataError("Upload the reference data as a .csv or .parquet file.")
    data = handle.read()
    if not data:
        raise ReferenceDataError("The reference file is empty.")
    if lowered.endswith(".parquet"):
        return _read_parquet(data)
    try:
        frame = pandas.read_csv(io.BytesIO(data))
    except (ValueError, UnicodeDecodeError, pandas.errors.ParserError) as exc:
        raise ReferenceDataError(f"Not a readable CSV file: {_first_line(exc)}") from None
    return _checked(frame)


def _read_parquet(data: bytes) -> pandas.DataFrame:
    import pandas

    if not data.startswith(b"PAR1"):
        raise ReferenceDataError("Not a Parquet file (it does not start with PAR1).")
    try:
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError:
        raise ReferenceDataError(
            "This installation cannot read Parquet (pyarrow is not installed); upload CSV."
        ) from None
    try:
        return _checked(pandas.read_parquet(io.BytesIO(data)))
    except (ValueError, OSError) as exc:
        raise ReferenceDataError(f"Not a readable Parquet file: {_first_line(exc)}") from None


def _checked(frame: pandas.DataFrame) -> pandas.DataFrame:
    if frame.empty or not len(frame.columns):
        raise ReferenceDataError("The reference file has no rows (a header row, then data).")
    if len(frame.columns) > MAX_COLUMNS:
        raise ReferenceDataError(f"At most {MAX_COLUMNS} columns.")
    if any(str(name).startswith("Unnamed: ") for name in frame.columns):
        raise ReferenceDataError("Every column needs a name in the header row.")
    return frame


def check_width(frame: pandas.DataFrame, sample_input) -> None:
    """Refuse a file whose column count is not the sample input rows' width."""
    if not sample_input or not isinstance(sample_input[0], list | dict):
        return
    width = len(sample_input[0])
    if len(frame.columns) != width:
        raise ReferenceDataError(
            f"The file has {len(frame.columns)} columns ({_names(frame.columns)}); the model "
            f"takes {width} (the sample input's rows have {width} values)."
        )


def in_signature_order(frame: pandas.DataFrame, signature: dict) -> pandas.DataFrame:
    """The frame's columns in the order of the signature's named inputs; ReferenceDataError if
    they are not the same names. Without named inputs, the frame as it is."""
    names = [column.get("name") for column in (signature or {}).get("inputs") or []]
    if not names or not all(names):
        return frame
    columns = [str(name) for name in frame.columns]
    if sorted(columns) != sorted(names):
        missing = sorted(set(names) - set(columns))
        extra = sorted(set(columns) - set(names))
        raise ReferenceDataError(
            "The reference columns are not the model signature's inputs"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not inputs: {', '.join(extra)}" if extra else "")
            + "."
        )
    frame.columns = columns
    return frame[names]


def _names(columns) -> str:
    shown = ", ".join(str(c) for c in list(columns)[:8])
    return shown + (", …" if len(columns) > 8 else "")


def _first_line(exc) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
