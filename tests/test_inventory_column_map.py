"""``[inventory] column_map``: national inventories (neither GLIMS nor RGI) read as ``glacierwatch run`` reads them."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import box

from glacierwatch.config import Config
from glacierwatch.errors import ConfigError
from glacierwatch.inventory import read_inventory_outlines, select_glaciers


def _sgi_like(path: Path) -> Path:
    """Two rectangles near Trient with SGI-style columns (id, name, year of the survey)."""
    frame = gpd.GeoDataFrame(
        {"sgi-id": ["B90-02", "B90-07"], "name": ["Glacier du Trient", "Petit glacier"], "year": [2010, 2009]},
        geometry=[box(7.00, 45.98, 7.04, 46.01), box(7.06, 45.99, 7.065, 45.993)], crs="EPSG:4326")
    frame.to_file(path, driver="GPKG")
    return path


def _config(tmp_path: Path, column_map: list[str]) -> Config:
    return Config.from_dict({"inventory": {"outlines": ["sgi.gpkg"], "column_map": column_map, "after": "2000-01-01",
                                           "min_area_km2": 0.01}}, base_dir=tmp_path)


def test_column_map_in_the_configuration_names_ids_names_and_dates(tmp_path: Path) -> None:
    _sgi_like(tmp_path / "sgi.gpkg")
    cfg = _config(tmp_path, ["source_id=sgi-id", "name=name", "src_date=year", "geog_area==Swiss Alps"])
    (outlines,) = read_inventory_outlines(cfg.inventory)
    assert list(outlines["source_id"]) == ["B90-02", "B90-07"]
    assert list(outlines["name"]) == ["Glacier du Trient", "Petit glacier"]
    assert [d.year for d in outlines["src_date"]] == [2010, 2009]
    assert set(outlines["geog_area"]) == {"Swiss Alps"}
    # without the map the same file has no names and no dates
    (bare,) = read_inventory_outlines(_config(tmp_path, []).inventory)
    assert bare["name"].isna().all() and bare["src_date"].isna().all()


def test_a_bad_column_map_is_a_config_error(tmp_path: Path) -> None:
    _sgi_like(tmp_path / "sgi.gpkg")
    with pytest.raises(ConfigError, match="inventory.column_map"):
        read_inventory_outlines(_config(tmp_path, ["glacier_number=sgi-id"]).inventory)


def test_the_real_sgi_2010_outlines_go_through_the_selection(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "sgi2010_trient_region"
    cfg = Config.from_dict({"inventory": {
        "outlines": [str(folder / "SGI_2010_trient_region_lv95.shp")],
        "column_map": ["source_id=SGI", "inventory_area_m2=Shape_Area", "src_date==2010-09-01",
                       "geog_area==Swiss Alps"],
        "min_area_km2": 1.0}}, base_dir=tmp_path)
    selection = select_glaciers(read_inventory_outlines(cfg.inventory), config=cfg.inventory)
    inventory = selection.inventory
    assert "B90-02" in set(inventory["source_id"]), inventory["source_id"].tolist()  # Trient, ~5.8 km²
    assert (inventory["area_km2"] >= 1.0).all()
