"""When a catalog selection keeps no row, it says which predicate of its SQL dropped the last ones."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import pytest

from glacierwatch.catalog.queries import explain_selection, select, selection_predicates
from glacierwatch.config import CatalogConfig


def _catalog(n: int = 6, **overrides: object) -> pd.DataFrame:
    """``n`` clear summer scenes that pass the paper's inference filter, with ``overrides`` applied."""
    rows = [{"glims_id": "G007000E46000N", "path": f"s{i}.tif", "date": dt.date(2010, 7, 1 + i), "satellite": "L5",
             "cloud_cover": 2.0, "cloud_cover_land": 2.0, "image_quality": 9, "n_pixels": 80_000,
             "nodata_pixels": 0, "zero_pixel_pct": 0.0, "box_cloud_fraction": 0.0, "status": "ok",
             "hemisphere": "N"} for i in range(n)]
    frame = pd.DataFrame(rows)
    for key, value in overrides.items():
        frame[key] = value
    return frame


def test_predicates_are_read_from_the_selection_sql() -> None:
    _, source, predicates = selection_predicates("inference")
    assert "scenes" in source
    assert any("$min_pixels" in p for p in predicates) and any("summer_months" in p for p in predicates)
    assert len(predicates) == 8  # the AND inside EXISTS (...) is not split
    assert selection_predicates("inference-glaciers") is None


def test_all_rows_pass_no_explanation() -> None:
    assert select(_catalog(), "inference").shape[0] == 6
    explanation = explain_selection(_catalog(), "inference")
    assert explanation.first_emptying() is None and [left for _, left in explanation.steps] == [6] * 8


@pytest.mark.parametrize(("overrides", "names", "hint"), [
    ({"n_pixels": 30_000}, "n_pixels > 50000", "min_pixels"),
    ({"image_quality": None}, "image_quality = 9", "image_quality = \"none\""),
    ({"nodata_pixels": 40}, "nodata_pixels <= 0", "cover less than the glacier grid"),
    ({"date": dt.date(2010, 1, 5)}, "summer_months", "summer months"),
])
def test_the_predicate_that_empties_the_selection_is_named(overrides: dict, names: str, hint: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    catalog = _catalog(**overrides)
    with caplog.at_level(logging.WARNING, logger="glacierwatch.catalog.queries"):
        result = select(catalog, "inference")
    assert result.empty
    message = result.attrs["why_empty"]
    assert message.startswith("0 of 6 scenes (of 6 in the catalog) have") and names in message and hint in message
    assert any(message in r.getMessage() for r in caplog.records)


def test_the_counts_follow_the_sql_order() -> None:
    catalog = _catalog(4)
    catalog.loc[0, "cloud_cover"] = 50.0  # dropped by cloud cover first
    catalog["n_pixels"] = 10_000  # then every other one by size
    explanation = explain_selection(catalog, "inference", config=CatalogConfig())
    lefts = [left for _, left in explanation.steps]
    assert lefts[:4] == [4, 3, 3, 0]
    assert explanation.message().startswith("0 of 3 scenes (of 4 in the catalog) have n_pixels > 50000")
