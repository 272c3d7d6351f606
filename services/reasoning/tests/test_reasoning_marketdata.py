"""Market data: built-ins, user files, validation messages, gaps, filtering, artifact format."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from alphasaga_contracts.research import BUILTIN_DATASETS, ResearchRequest
from alphasaga_reasoning.domain.marketdata import (
    COLUMNS,
    CSV_HEADER,
    DataError,
    dataset_from_csv_bytes,
    dataset_to_csv_bytes,
    filter_dates,
    find_gaps,
    load_builtin,
    load_file,
    load_for_request,
    validate_ohlcv,
)

BarsFactory = Callable[..., pd.DataFrame]

EXPECTED_ROWS = {"sp500": 5031, "nasdaq": 5031, "aapl": 3270, "ibm": 3270, "msft": 3270, "goog": 2148}


def _assert_canonical(df: pd.DataFrame) -> None:
    assert list(df.columns) == list(COLUMNS)
    assert isinstance(df.index, pd.DatetimeIndex)
    assert df.index.name == "date"
    assert df.index.tz is None
    assert str(df.index.dtype) == "datetime64[ns]"
    assert df.index.is_monotonic_increasing and df.index.is_unique
    assert (df.index == df.index.normalize()).all()
    assert all(str(t) == "float64" for t in df.dtypes)
    assert not df.isna().any().any()


# --------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_builtin_dataset_loads_and_validates(name: str) -> None:
    df = load_builtin(name)
    _assert_canonical(df)
    assert len(df) == EXPECTED_ROWS[name]
    assert (df[["open", "high", "low", "close"]] > 0).all().all()
    assert (df["high"] >= df["low"]).all()


def test_sp500_span_and_first_bar() -> None:
    df = load_builtin("sp500")
    assert df.index[0] == pd.Timestamp("1999-01-04")
    assert df.index[-1] == pd.Timestamp("2018-12-31")
    assert df["open"].iloc[0] == pytest.approx(1229.22998, rel=1e-6)


@pytest.mark.parametrize(("name", "split_day"), [("aapl", "2005-02-28"), ("msft", "2003-02-18")])
def test_bokeh_stocks_are_split_adjusted(name: str, split_day: str) -> None:
    # Unadjusted, the split day shows a ~-50% close-to-close move.
    close = load_builtin(name)["close"]
    position = close.index.get_loc(pd.Timestamp(split_day))
    move = math.log(close.iloc[position] / close.iloc[position - 1])
    assert abs(move) < 0.1


def test_builtin_returns_a_fresh_copy() -> None:
    first = load_builtin("ibm")
    first["close"] = -1.0
    assert (load_builtin("ibm")["close"] > 0).all()


def test_unknown_builtin_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"'spx'.*unknown"):
        load_builtin("spx")


# --------------------------------------------------------------------------- user files


def _csv(tmp_path: Path, frame: pd.DataFrame, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_valid_csv_loads(tmp_path: Path, make_bars: BarsFactory) -> None:
    raw = make_bars(80)
    df = load_file(_csv(tmp_path, raw))
    _assert_canonical(df)
    assert len(df) == 80
    np.testing.assert_array_equal(df["close"].to_numpy(), raw["close"].to_numpy())


def test_csv_with_negative_price_names_file_and_row(tmp_path: Path, make_bars: BarsFactory) -> None:
    raw = make_bars(80)
    raw.loc[2, "low"] = -1.5
    path = _csv(tmp_path, raw, "negative.csv")
    with pytest.raises(DataError) as info:
        load_file(path)
    message = str(info.value)
    assert "negative.csv" in message
    assert "data row 3:" in message
    assert "negative low" in message


def test_csv_with_unsorted_dates_names_file_and_row(tmp_path: Path, make_bars: BarsFactory) -> None:
    raw = make_bars(80)
    raw.loc[[3, 4], "date"] = raw.loc[[4, 3], "date"].to_numpy()
    path = _csv(tmp_path, raw, "unsorted.csv")
    with pytest.raises(DataError) as info:
        load_file(path)
    message = str(info.value)
    assert "unsorted.csv" in message
    assert "data row 5:" in message
    assert "ascending" in message


@pytest.mark.parametrize(
    ("row", "column", "value", "expected"),
    [
        (6, "date", "2020-01-08", r"data row 7: duplicate date 2020-01-08 \(same as data row 6\)"),
        (9, "high", 1.0, r"data row 10: high 1\.0 is below low"),
        (0, "close", None, r"data row 1: missing close"),
        (4, "open", 0.0, r"data row 5: zero open price"),
        (11, "date", "2020-13-45", r"data row 12: unparseable date '2020-13-45'"),
        (2, "close", 1000.0, r"data row 3: close 1000\.0 lies outside \[low"),
        (8, "volume", -5.0, r"data row 9: negative volume"),
    ],
    ids=["duplicate", "high_below_low", "missing", "zero", "bad_date", "close_above_high", "negative_volume"],
)
def test_csv_validation_messages(
    tmp_path: Path, make_bars: BarsFactory, row: int, column: str, value: object, expected: str
) -> None:
    raw = make_bars(80).astype(object)
    raw.loc[row, column] = value
    with pytest.raises(DataError, match=r"file '.*prices\.csv': " + expected):
        load_file(_csv(tmp_path, raw))


def test_non_numeric_price_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "text.csv"
    path.write_text("date,open,high,low,close\n2020-01-02,1,2,0.5,1.5\n2020-01-03,1,2,0.5,abc\n")
    with pytest.raises(DataError, match=r"data row 2: close is not a number \('abc'\)"):
        load_file(path)


def test_missing_column_is_reported(tmp_path: Path, make_bars: BarsFactory) -> None:
    with pytest.raises(DataError, match=r"missing column.*high"):
        load_file(_csv(tmp_path, make_bars(80).drop(columns=["high"])))


def test_columns_are_case_insensitive_and_extras_ignored(tmp_path: Path, make_bars: BarsFactory) -> None:
    raw = make_bars(70).drop(columns=["volume"])
    raw["Adj Close"] = raw["close"] * 0.9
    raw = raw.rename(columns={"date": "Date", "open": "Open", "high": "HIGH", "close": "Close"})
    df = load_file(_csv(tmp_path, raw))
    _assert_canonical(df)
    assert (df["volume"] == 0.0).all()
    np.testing.assert_array_equal(df["close"].to_numpy(), raw["Close"].to_numpy())


def test_us_style_dates_are_parsed(tmp_path: Path, make_bars: BarsFactory) -> None:
    raw = make_bars(70)
    raw["date"] = pd.to_datetime(raw["date"]).dt.strftime("%m/%d/%Y")
    df = load_file(_csv(tmp_path, raw))
    assert df.index[0] == pd.Timestamp("2020-01-01")
    assert df.index[-1] == pd.bdate_range("2020-01-01", periods=70)[-1]


def test_parquet_loads_like_csv(tmp_path: Path, make_bars: BarsFactory) -> None:
    raw = make_bars(90)
    typed = raw.assign(date=pd.to_datetime(raw["date"]))
    plain = tmp_path / "plain.parquet"
    typed.to_parquet(plain, index=False)
    indexed = tmp_path / "indexed.parquet"
    typed.rename(columns=str.title).set_index("Date").to_parquet(indexed)
    expected = load_file(_csv(tmp_path, raw))
    pd.testing.assert_frame_equal(load_file(plain), expected, check_exact=True)
    pd.testing.assert_frame_equal(load_file(indexed), expected, check_exact=True)


def test_parquet_error_names_the_row(tmp_path: Path, make_bars: BarsFactory) -> None:
    raw = make_bars(90)
    raw.loc[41, "close"] = -3.0
    path = tmp_path / "bad.parquet"
    raw.to_parquet(path, index=False)
    with pytest.raises(DataError, match=r"bad\.parquet.*data row 42: negative close"):
        load_file(path)


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv.*not found"):
        load_file(tmp_path / "nope.csv")
    other = tmp_path / "prices.xlsx"
    other.write_bytes(b"x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_file(other)


def test_empty_csv_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("date,open,high,low,close\n")
    with pytest.raises(DataError, match=r"empty\.csv.*no data rows"):
        load_file(path)


# --------------------------------------------------------------------------- gaps and filtering


def test_gaps_are_warnings_not_errors(make_bars: BarsFactory) -> None:
    raw = make_bars(80)
    dates = pd.to_datetime(raw["date"])
    dates.iloc[40:] += pd.Timedelta(days=14)
    df = validate_ohlcv(raw.assign(date=dates), "synthetic")
    notes = find_gaps(df)
    assert len(notes) == 1
    assert "gap of" in notes[0] and "calendar days" in notes[0]
    assert find_gaps(df, max_gap_days=30) == []


def test_weekends_and_long_weekends_are_not_gaps(make_bars: BarsFactory) -> None:
    df = validate_ohlcv(make_bars(300), "synthetic")  # business days only: 3-day weekends
    assert find_gaps(df) == []


def test_sp500_reports_the_911_closure() -> None:
    df, notes = load_for_request(ResearchRequest(dataset="sp500"))
    assert len(df) == 5031
    assert notes == ["gap of 7 calendar days between 2001-09-10 and 2001-09-17"]


def test_request_date_range_is_inclusive() -> None:
    request = ResearchRequest(dataset="sp500", start=dt.date(2010, 1, 4), end=dt.date(2010, 12, 31))
    df, notes = load_for_request(request)
    assert df.index[0] == pd.Timestamp("2010-01-04")
    assert df.index[-1] == pd.Timestamp("2010-12-31")
    assert len(df) == 252
    assert notes == []


def test_too_few_rows_after_filtering(make_bars: BarsFactory) -> None:
    df = validate_ohlcv(make_bars(80), "synthetic")
    with pytest.raises(DataError, match=r"synthetic: 10 row\(s\) remain .* at least 60 are needed"):
        filter_dates(df, None, dt.date(2020, 1, 14), source="synthetic")
    assert len(filter_dates(df, None, dt.date(2020, 1, 14), source="s", min_rows=10)) == 10


def test_min_rows_applies_to_requests(tmp_path: Path, make_bars: BarsFactory) -> None:
    path = _csv(tmp_path, make_bars(80))
    request = ResearchRequest(data_path=str(path))
    assert len(load_for_request(request, data_roots=[tmp_path])[0]) == 80
    with pytest.raises(DataError, match=r"80 row\(s\) remain.*at least 100"):
        load_for_request(request, data_roots=[tmp_path], min_rows=100)


def test_a_users_file_is_read_only_from_inside_the_data_roots(tmp_path: Path, make_bars: BarsFactory) -> None:
    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    inside = _csv(root, make_bars(80))
    outside = _csv(elsewhere, make_bars(80))
    (root / "link.csv").symlink_to(outside)

    def load(path: str) -> int:
        return len(load_for_request(ResearchRequest(data_path=path), data_roots=[root])[0])

    assert load(str(inside)) == 80
    assert load(inside.name) == 80, "a relative path is taken from the first root"
    for escape in (str(outside), f"{root}/../elsewhere/{outside.name}", str(root / "link.csv"), "/etc/passwd.csv"):
        with pytest.raises(DataError, match="outside the data roots") as refused:
            load(escape)
        assert "date,open" not in str(refused.value), "the path is named, never the content"
        # Anyone who can submit sees the saga's failure: it names no directory of the
        # server's, and no setting (issue #23).
        assert "ALPHASAGA_" not in str(refused.value)
        assert str(root) not in str(refused.value).replace(repr(escape), "")
    with pytest.raises(DataError, match=r"not a usable path|cannot be read|not found"):
        load("x" * 300 + ".csv")  # a name too long for the file system
    with pytest.raises(DataError, match="no data roots are configured") as refused:
        load_for_request(ResearchRequest(data_path=str(inside)))
    assert "ALPHASAGA_" not in str(refused.value)


# --------------------------------------------------------------------------- artifact format


@pytest.mark.parametrize("name", ["sp500", "aapl"])
def test_csv_round_trip_is_exact(name: str) -> None:
    df = load_builtin(name)
    data = dataset_to_csv_bytes(df)
    assert data.startswith((CSV_HEADER + "\n").encode())
    back = dataset_from_csv_bytes(data)
    pd.testing.assert_frame_equal(back, df, check_exact=True, check_freq=False)
    assert dataset_to_csv_bytes(back) == data


def test_csv_round_trip_of_awkward_floats(make_bars: BarsFactory) -> None:
    df = validate_ohlcv(make_bars(60), "synthetic")
    rng = np.random.default_rng(11)
    scale = 10.0 ** rng.uniform(-8, 8, len(df))
    for column in ("open", "high", "low", "close"):
        df[column] = df[column] * scale
    df["volume"] = rng.uniform(0, 1e12, len(df))
    back = dataset_from_csv_bytes(dataset_to_csv_bytes(df))
    for column in COLUMNS:
        assert back[column].to_numpy().tobytes() == df[column].to_numpy().tobytes()


def test_csv_artifact_first_line(make_bars: BarsFactory) -> None:
    df = validate_ohlcv(make_bars(60), "synthetic")
    lines = dataset_to_csv_bytes(df).decode().splitlines()
    assert lines[0] == "date,open,high,low,close,volume"
    assert lines[1].startswith("2020-01-01,")
    assert len(lines) == 61


def test_csv_artifact_with_wrong_header_is_refused() -> None:
    with pytest.raises(DataError, match="header"):
        dataset_from_csv_bytes(b"Date,Open,High,Low,Close\n2020-01-01,1,1,1,1\n")
