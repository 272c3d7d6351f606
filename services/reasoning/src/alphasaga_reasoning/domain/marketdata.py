"""Daily OHLCV market data: built-in datasets, user files, validation and the artifact format.

Every loader returns the same canonical frame, so later steps never care where prices
came from: a tz-naive ``DatetimeIndex`` (``datetime64[ns]``, midnight, named ``date``,
strictly ascending) and float64 columns ``open, high, low, close, volume``.

Validation is strict and fails early with a :class:`DataError` that names the source,
the 1-based data row (the header is not counted; for CSV, blank lines are not counted
either) and the problem, because a researcher fixing a file needs to know where to look.
Calendar gaps are only *reported*: markets do close (9/11, hurricanes), and refusing
such data would refuse most real histories.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the workspace

from alphasaga_contracts.research import BUILTIN_DATASETS, ResearchRequest

COLUMNS = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
CSV_HEADER = "date," + ",".join(COLUMNS)

DEFAULT_MIN_ROWS = 60
"""Fewest bars a research run accepts: enough for a 20-day feature window plus a
meaningful walk-forward split; callers may ask for more."""

DEFAULT_MAX_GAP_DAYS = 5
"""Largest calendar-day step between consecutive bars that is *not* reported. A normal
weekend is 3 days and a holiday next to a weekend is 4; 5 still covers Hurricane Sandy
(Fri 2012-10-26 to Wed 2012-10-31), whereas the 9/11 closure (7 days) is reported."""

_MAX_GAP_WARNINGS = 10
_PRICE_TOLERANCE = 1e-9  # relative slack for open/close vs. high/low rounding in files


class DataError(ValueError):
    """The market data cannot be used; the message says which file/dataset, row and why."""


# --------------------------------------------------------------------------- built-ins


def _arch_frame(name: str) -> pd.DataFrame:
    """The arch package ships S&P 500 and NASDAQ Composite daily bars, 1999-2018."""
    from arch.data import nasdaq, sp500

    raw = (sp500 if name == "sp500" else nasdaq).load()
    frame = raw.reset_index()
    return frame[["Date", "Open", "High", "Low", "Close", "Volume"]]


def _bokeh_frame(name: str) -> pd.DataFrame:
    """Bokeh's sample stocks (2000-2013) are *unadjusted*; AAPL and MSFT split inside the
    window, which would show up as -50% one-day returns and poison every measurement.
    We therefore scale open/high/low/close by ``adj_close / close`` (split and dividend
    adjusted) and volume by its inverse, the usual way to adjust a bar."""
    import bokeh_sampledata.stocks as stocks

    data = getattr(stocks, name.upper())
    frame = pd.DataFrame({key: data[key] for key in ("date", "open", "high", "low", "close", "volume", "adj_close")})
    factor = frame["adj_close"].astype(float) / frame["close"].astype(float)
    for column in PRICE_COLUMNS:
        frame[column] = frame[column].astype(float) * factor
    frame["volume"] = frame["volume"].astype(float) / factor
    return frame[["date", *COLUMNS]]


_BUILTIN_LOADERS: dict[str, Callable[[str], pd.DataFrame]] = {
    "sp500": _arch_frame,
    "nasdaq": _arch_frame,
    "aapl": _bokeh_frame,
    "ibm": _bokeh_frame,
    "msft": _bokeh_frame,
    "goog": _bokeh_frame,
}
assert set(_BUILTIN_LOADERS) == set(BUILTIN_DATASETS)


@functools.lru_cache(maxsize=len(BUILTIN_DATASETS))
def _builtin_cached(name: str) -> pd.DataFrame:
    return validate_ohlcv(_BUILTIN_LOADERS[name](name), f"dataset {name!r}")


def load_builtin(name: str) -> pd.DataFrame:
    """A built-in dataset by name, validated and canonical (a fresh copy on every call)."""
    if name not in _BUILTIN_LOADERS:
        raise DataError(f"dataset {name!r}: unknown; built-in datasets are {', '.join(BUILTIN_DATASETS)}")
    return _builtin_cached(name).copy()


# --------------------------------------------------------------------------- user files


def load_file(path: str | Path) -> pd.DataFrame:
    """A user's CSV (``.csv``, optionally compressed, e.g. ``.csv.gz``) or Parquet
    (``.parquet``/``.pq``) file, validated and canonical. Column names are matched
    case-insensitively; ``Adj Close`` and any other extra column are ignored."""
    file = Path(path)
    source = f"file {str(file)!r}"
    suffixes = [s.lower() for s in file.suffixes]
    if not file.is_file():
        raise DataError(f"{source}: not found or not a regular file")
    try:
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            raw = pd.read_parquet(file)
            if not isinstance(raw.index, pd.RangeIndex):  # a date index written by pandas
                raw = raw.reset_index()
        elif ".csv" in suffixes:
            raw = pd.read_csv(file, dtype=str, skipinitialspace=True)
        else:
            raise DataError(f"{source}: unsupported file type; use .csv or .parquet")
    except DataError:
        raise
    except Exception as exc:  # any reader failure is a data problem the user must fix
        raise DataError(f"{source}: cannot be read: {type(exc).__name__}: {exc}") from exc
    return validate_ohlcv(raw, source)


# --------------------------------------------------------------------------- validation


def _row(position: int) -> str:
    return f"data row {position + 1}"


def _pick_columns(raw: pd.DataFrame, source: str) -> dict[str, str]:
    """Map canonical names to the frame's own column names, ignoring case and spaces."""
    by_name: dict[str, str] = {}
    for column in raw.columns:
        key = str(column).strip().lower()
        if key in by_name:
            raise DataError(f"{source}: columns {by_name[key]!r} and {column!r} both mean {key!r}")
        by_name[key] = str(column)
    required = ("date", *PRICE_COLUMNS)
    missing = [name for name in required if name not in by_name]
    if missing:
        found = ", ".join(str(c) for c in raw.columns) or "none"
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; found: {found}")
    return {name: by_name[name] for name in (*required, "volume") if name in by_name}


def _parse_dates(values: pd.Series, source: str) -> pd.Series:
    """ISO 8601 first; otherwise one format inferred from the first row (pandas' rule,
    month-first for ambiguous slash dates). Time of day is dropped: the data is daily.
    Time zones are dropped keeping the local (exchange) calendar date."""
    if values.isna().any():
        position = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataError(f"{source}: {_row(position)}: missing date")
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(values, format="ISO8601", errors="coerce")
            if parsed.isna().any():
                inferred = pd.to_datetime(values, errors="coerce")
                if inferred.isna().sum() < parsed.isna().sum():
                    parsed = inferred
        if parsed.isna().any():
            position = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise DataError(f"{source}: {_row(position)}: unparseable date {values.iloc[position]!r}")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_localize(None)
    return parsed.dt.normalize().astype("datetime64[ns]")


def _parse_numbers(values: pd.Series, name: str, source: str, *, required: bool) -> pd.Series:
    """Floats, with a row-precise error for text that is not a number. Text goes through
    Python's ``float`` (correctly rounded), so CSV values are read bit-for-bit."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype("float64")
    else:
        numbers = pd.Series([_to_float(v) for v in values], index=values.index, dtype="float64")
    bad = numbers.isna() & values.notna()
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: {_row(position)}: {name} is not a number ({values.iloc[position]!r})")
    if required and numbers.isna().any():
        missing = numbers.isna().to_numpy()
        position = int(np.flatnonzero(missing)[0])
        raise DataError(f"{source}: {_row(position)}: missing {name} ({int(missing.sum())} row(s) in all)")
    infinite = ~np.isfinite(numbers.to_numpy()) & numbers.notna().to_numpy()
    if infinite.any():
        position = int(np.flatnonzero(infinite)[0])
        raise DataError(f"{source}: {_row(position)}: {name} is not finite")
    return numbers


def _to_float(value: object) -> float:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return float("nan")
    if isinstance(value, bool):
        return float("nan")  # True/False is not a price
    try:
        return float(str(value).strip().replace("_", "!"))  # Python accepts 1_000; files don't
    except ValueError:
        return float("nan")


def _num(value: float) -> str:
    """A number as the file would show it (no ``np.float64(...)`` wrapper)."""
    return repr(float(value))


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def validate_ohlcv(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check a raw frame (a ``date`` column plus OHLC[V], any case) and return the
    canonical frame. ``source`` names the file or dataset in error messages.

    Fatal problems, each reported at its first offending row: missing or unparseable
    date; missing or non-numeric price; non-positive price; negative volume; high below
    low; open or close outside [low, high]; a date earlier than the previous row's
    (unsorted); a date equal to the previous row's (duplicate). Missing volume counts as
    0.0, as does an absent volume column."""
    if len(raw) == 0:
        raise DataError(f"{source}: no data rows")
    out = _canonical(raw, source)
    _check_prices(out, source)
    _check_dates(out, source)
    return out


def _canonical(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """The frame indexed by date, with float prices and volume (0.0 where missing)."""
    names = _pick_columns(raw, source)
    frame = raw.reset_index(drop=True)
    dates = _parse_dates(frame[names["date"]], source)
    out = pd.DataFrame(index=pd.DatetimeIndex(dates.to_numpy(), name="date"))
    for column in PRICE_COLUMNS:
        out[column] = _parse_numbers(frame[names[column]], column, source, required=True).to_numpy()
    if "volume" in names:
        volume = _parse_numbers(frame[names["volume"]], "volume", source, required=False)
        out["volume"] = volume.fillna(0.0).to_numpy()
    else:
        out["volume"] = 0.0
    return out


def _check_prices(out: pd.DataFrame, source: str) -> None:
    prices = out[list(PRICE_COLUMNS)].to_numpy()
    position = _first((prices <= 0).any(axis=1))
    if position is not None:
        row = out.iloc[position]
        column = next(c for c in PRICE_COLUMNS if row[c] <= 0)
        kind = "negative" if row[column] < 0 else "zero"
        raise DataError(
            f"{source}: {_row(position)}: {kind} {column} price ({_num(row[column])}); prices must be positive"
        )
    position = _first(out["volume"].to_numpy() < 0)
    if position is not None:
        raise DataError(f"{source}: {_row(position)}: negative volume ({_num(out['volume'].iloc[position])})")
    high, low = out["high"].to_numpy(), out["low"].to_numpy()
    position = _first(high < low)
    if position is not None:
        raise DataError(f"{source}: {_row(position)}: high {_num(high[position])} is below low {_num(low[position])}")
    slack_high = high * (1 + _PRICE_TOLERANCE)
    slack_low = low * (1 - _PRICE_TOLERANCE)
    for column in ("open", "close"):
        values = out[column].to_numpy()
        position = _first((values > slack_high) | (values < slack_low))
        if position is not None:
            raise DataError(
                f"{source}: {_row(position)}: {column} {_num(values[position])} lies outside "
                f"[low {_num(low[position])}, high {_num(high[position])}]"
            )


def _check_dates(out: pd.DataFrame, source: str) -> None:
    stamps = out.index.to_numpy()
    steps = stamps[1:] - stamps[:-1]
    position = _first(steps < np.timedelta64(0))
    if position is not None:
        raise DataError(
            f"{source}: {_row(position + 1)}: date {_day(stamps[position + 1])} is earlier than "
            f"the previous row's {_day(stamps[position])}; dates must be in ascending order"
        )
    position = _first(steps == np.timedelta64(0))
    if position is not None:
        raise DataError(
            f"{source}: {_row(position + 1)}: duplicate date {_day(stamps[position + 1])} (same as {_row(position)})"
        )


def _day(stamp: np.datetime64) -> str:
    return str(np.datetime_as_string(stamp, unit="D"))


def find_gaps(df: pd.DataFrame, max_gap_days: int = DEFAULT_MAX_GAP_DAYS) -> list[str]:
    """Warnings for steps between consecutive bars longer than ``max_gap_days`` calendar
    days (at most ten listed, then a count), because a long gap means returns that span
    days the strategy could not trade."""
    stamps = df.index.to_numpy()
    if stamps.size < 2:
        return []
    days = (stamps[1:] - stamps[:-1]) / np.timedelta64(1, "D")
    where = np.flatnonzero(days > max_gap_days)
    notes = [
        f"gap of {int(days[i])} calendar days between {_day(stamps[i])} and {_day(stamps[i + 1])}"
        for i in where[:_MAX_GAP_WARNINGS]
    ]
    if where.size > _MAX_GAP_WARNINGS:
        notes.append(f"... and {where.size - _MAX_GAP_WARNINGS} more gaps over {max_gap_days} days")
    return notes


def filter_dates(
    df: pd.DataFrame,
    start: dt.date | None,
    end: dt.date | None,
    *,
    source: str,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> pd.DataFrame:
    """Bars with ``start <= date <= end`` (both inclusive, either optional); fewer than
    ``min_rows`` left is a :class:`DataError`, since every later measurement would be noise."""
    mask = np.ones(len(df), dtype=bool)
    if start is not None:
        mask &= df.index >= pd.Timestamp(start)
    if end is not None:
        mask &= df.index <= pd.Timestamp(end)
    out = df.loc[mask]
    if len(out) < min_rows:
        window = f"{start or 'the first bar'} to {end or 'the last bar'}"
        raise DataError(f"{source}: {len(out)} row(s) remain from {window}; at least {min_rows} are needed")
    return out.copy()


def confined(path: str, roots: Sequence[Path]) -> Path:
    """``path`` resolved (symlinks and ``..`` followed), provided it lies inside one of the
    data ``roots``; a relative path is taken from the first root. A path anywhere else,
    or one the system cannot even resolve, is refused naming the path, never its content,
    nor the roots or the setting: the request may come from anyone who can write to the
    stream, and the refusal is the saga's failure, which anyone who may read sagas sees."""
    name = path if len(path) <= 200 else f"{path[:200]}… ({len(path):,} characters)"
    if not roots:
        raise DataError(f"file {name!r}: no data roots are configured on this server")
    try:
        resolved = (roots[0] / path).resolve()
        inside = any(resolved.is_relative_to(root.resolve()) for root in roots)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DataError(f"file {name!r}: not a usable path: {reason}") from None
    if not inside:
        raise DataError(f"file {name!r}: outside the data roots of this server")
    return resolved


def load_for_request(
    request: ResearchRequest,
    *,
    data_roots: Sequence[Path] = (),
    min_rows: int = DEFAULT_MIN_ROWS,
    max_gap_days: int = DEFAULT_MAX_GAP_DAYS,
) -> tuple[pd.DataFrame, list[str]]:
    """Load, validate and date-filter the request's data; return it with gap warnings
    (computed on the filtered range, the one the research will use). A user's file must
    lie inside ``data_roots``."""
    if request.dataset is not None:
        source = f"dataset {request.dataset!r}"
        df = load_builtin(request.dataset)
    else:
        assert request.data_path is not None  # guaranteed by ResearchRequest's validator
        source = f"file {str(Path(request.data_path))!r}"
        try:
            df = load_file(confined(request.data_path, data_roots))
        except OSError as exc:  # unreadable, vanished, too long a name: the input's fault
            raise DataError(f"{source}: cannot be read: {exc.strerror or exc}") from None
    df = filter_dates(df, request.start, request.end, source=source, min_rows=min_rows)
    return df, find_gaps(df, max_gap_days)


# --------------------------------------------------------------------------- artifact format


def dataset_to_csv_bytes(df: pd.DataFrame) -> bytes:
    """The dataset artifact: UTF-8 CSV, header ``date,open,high,low,close,volume``, ISO
    dates, ``\\n`` line ends, floats in Python's shortest round-trip form. The same frame
    always gives the same bytes, so the content hash identifies the data."""
    if list(df.columns) != list(COLUMNS) or not isinstance(df.index, pd.DatetimeIndex):
        raise DataError("dataset artifact: expected a canonical frame (date index, OHLCV columns)")
    lines = [CSV_HEADER]
    days = np.datetime_as_string(df.index.to_numpy().astype("datetime64[D]"), unit="D")
    values = df.to_numpy(dtype=np.float64)
    for day, row in zip(days, values, strict=True):
        lines.append(day + "," + ",".join(repr(float(v)) for v in row))
    return ("\n".join(lines) + "\n").encode("utf-8")


def dataset_from_csv_bytes(data: bytes) -> pd.DataFrame:
    """Parse a dataset artifact back into the canonical frame, bit-for-bit (floats are
    parsed with correct rounding) and re-validated, so a corrupt artifact is refused."""
    source = "dataset artifact"
    text = data.decode("utf-8")
    header = text.split("\n", 1)[0].strip()
    if header != CSV_HEADER:
        raise DataError(f"{source}: header is {header!r}, expected {CSV_HEADER!r}")
    raw = pd.read_csv(io.StringIO(text), dtype=str)
    return validate_ohlcv(raw, source)
