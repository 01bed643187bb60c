"""Glacier and region trends as GeoParquet with the outline / region geometry (EPSG:4326)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from checks import nonempty

from glacierwatch.config import InventoryConfig
from glacierwatch.errors import InputError
from glacierwatch.geo_outputs import write_trends_geoparquet
from glacierwatch.inventory import read_outlines, select_glaciers, write_inventory
from glacierwatch.synth import WorldInfo
from glacierwatch.trends.core import TOTAL


@pytest.fixture(scope="module")
def inventory(tiny_world: WorldInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    selection = select_glaciers([read_outlines(tiny_world.outlines)], config=InventoryConfig())
    return write_inventory(selection, tmp_path_factory.mktemp("geo") / "inventory.parquet")["inventory"]


def _trends(inventory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    inv = gpd.read_parquet(inventory)
    glaciers = pd.DataFrame({"glims_id": inv["glims_id"], "region": inv["region"],
                             "rel_change_per_year": -0.01 * (1 + pd.RangeIndex(len(inv))),
                             "first_date": [dt.date(1990, 7, 1)] * len(inv)})
    regions = pd.DataFrame({"region": [*sorted(set(inv["region"])), TOTAL]})
    regions["n_glaciers"] = [int((inv["region"] == r).sum()) for r in regions["region"][:-1]] + [len(inv)]
    return glaciers, regions


def test_glacier_and_region_trends_carry_their_geometry(inventory: Path, tmp_path: Path) -> None:
    glaciers, regions = _trends(inventory)
    csv = tmp_path / "glacier_trends.csv"
    glaciers.to_csv(csv, index=False)
    paths = write_trends_geoparquet(csv, regions, inventory, tmp_path / "out")
    got = gpd.read_parquet(paths["glaciers"])
    assert got.crs.to_epsg() == 4326 and len(got) == len(glaciers)
    assert got["rel_change_per_year"].tolist() == pytest.approx(glaciers["rel_change_per_year"].tolist())
    outlines = gpd.read_parquet(inventory).to_crs(4326).set_index("glims_id").geometry
    for row in nonempty(got).itertuples():
        assert row.geometry.equals(outlines[row.glims_id])
    assert pd.api.types.is_datetime64_any_dtype(got["first_date"])  # the CSV's ISO text read back as dates
    reg = gpd.read_parquet(paths["regions"]).set_index("region")
    assert reg.crs.to_epsg() == 4326
    for row in nonempty(got).itertuples():  # each region's geometry covers its glaciers, the total covers all
        assert reg.geometry[row.region].buffer(1e-9).covers(row.geometry)
        assert reg.geometry[TOTAL].buffer(1e-9).covers(row.geometry)
    other = next(r for r in reg.index if r != TOTAL and r != got.region.iloc[0])
    assert not reg.geometry[other].intersects(got.geometry.iloc[0])
    assert reg.loc[TOTAL, "n_glaciers"] == len(glaciers)


def test_convex_hull_regions_and_glaciers_missing_from_the_inventory(inventory: Path, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    glaciers, regions = _trends(inventory)
    extra = pd.DataFrame({"glims_id": ["G001000E01000N"], "region": [glaciers["region"].iloc[0]],
                          "rel_change_per_year": [0.0], "first_date": [dt.date(2000, 1, 1)]})
    with caplog.at_level(logging.WARNING):
        paths = write_trends_geoparquet(pd.concat([glaciers, extra], ignore_index=True), regions, inventory,
                                        tmp_path, region_geometry="convex_hull")
    assert any("1 of" in r.getMessage() and "without geometry" in r.getMessage() for r in caplog.records)
    got = gpd.read_parquet(paths["glaciers"])
    assert got.geometry.iloc[-1] is None and got.geometry.iloc[:-1].notna().all()
    assert pd.api.types.is_datetime64_any_dtype(got["first_date"])
    reg = gpd.read_parquet(paths["regions"])
    assert (reg.geometry.geom_type == "Polygon").all()
    with pytest.raises(InputError, match="region_geometry"):
        write_trends_geoparquet(glaciers, regions, inventory, tmp_path, region_geometry="bbox")
    with pytest.raises(InputError, match="lacks column"):
        write_trends_geoparquet(glaciers.drop(columns="region"), regions, inventory, tmp_path)
