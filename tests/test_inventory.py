"""Inventory stage: reading GLIMS / RGI / national outlines, the per-glacier rule, filters, outputs.

Real-data tests use ../shared/data (skipped with a reason when it is absent); the bad-input cases use
small generated shapefiles.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import Polygon, box

from glacierwatch.config import InventoryConfig
from glacierwatch.errors import ConfigError, DatasetNotFoundError, InputError
from glacierwatch.grid import GlacierGrid
from glacierwatch.ids import GLIMS_ID_PATTERN
from glacierwatch.inventory import (
    INVENTORY_COLUMNS,
    UNKNOWN_REGION,
    load_region_table,
    parse_column_map,
    parse_date,
    read_outlines,
    select_glaciers,
    write_inventory,
)
from glacierwatch.inventory.cli import register

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """A path under ../shared/data; skip the test when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/data not present: {path} (real outline files)")
    return path


def area_agrees(ours: float, theirs: float, rel: float = 0.01, rounding: float = 0.0005) -> bool:
    """Within 1 %, or within the rounding of an area column written to 0.001 km² (RGI 6)."""
    return abs(ours - theirs) <= max(rel * theirs, rounding + 1e-9)


# ------------------------------------------------------------------ synthetic GLIMS helpers

def square(lon: float, lat: float, km: float) -> Polygon:
    """A roughly km x km square (degrees scaled by latitude) with its SW corner at (lon, lat)."""
    dlat = km / 111.2
    dlon = km / (111.32 * np.cos(np.radians(lat + dlat / 2)))
    return box(lon, lat, lon + dlon, lat + dlat)


def glims_row(glac_id: str, anlys_id: int, src_date: str, geom, *, geog_area: str = "Swiss Alps",
              anlys_time: str = "2020-01-01T00:00:00", line_type: str = "glac_bound",
              db_area: float | None = None, name: str = "Test Glacier") -> dict:
    if db_area is None:
        db_area = float(gpd.GeoSeries([geom], crs=4326).to_crs("EPSG:6933").area.iloc[0] / 1e6) if geom is not None \
            and not geom.is_empty and geom.is_valid else 0.0
    return {"line_type": line_type, "anlys_id": float(anlys_id), "glac_id": glac_id, "anlys_time": anlys_time,
            "area": 0.0, "db_area": db_area, "src_date": src_date, "rec_status": "okay",
            "glac_name": name, "geog_area": geog_area, "geometry": geom}


def write_glims(rows: list[dict], path: Path, *, prj: bool = True) -> Path:
    gdf = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    gdf.to_file(path, engine="pyogrio")
    if not prj:
        path.with_suffix(".prj").unlink()
    return path


# ------------------------------------------------------------------ real files

def test_hochalmkees_one_glacier_rule_and_validation_outlines():
    path = shared("glims_hochalmkees_multitemporal")
    outlines = read_outlines(path)  # the folder: glims_polygons.shp is found in it
    assert len(outlines) == 16
    assert outlines.attrs["load"]["schema"] == "glims"
    assert (outlines["geometry_status"] == "repaired").sum() == 3  # three self-intersecting rings

    sel = select_glaciers(outlines, config=InventoryConfig())
    inv, val, rep = sel.inventory, sel.validation, sel.report
    assert list(inv.columns[: len(INVENTORY_COLUMNS)]) == list(INVENTORY_COLUMNS)
    assert len(inv) == 1, "16 records of one glacier must give one glacier"
    g = inv.iloc[0]
    assert g["glims_id"] == "G013332E47020N" and g["name"] == "Hochalm Kees"
    assert g["region"] == "Europe"  # chosen outline says 'Various (GlobGlacier)'; the others say Austrian/European Alps
    assert g["geog_area"] == "Various (GlobGlacier)" and "Austrian Alps" in g["region_matched_by"]
    # rule: latest src_date (2016-08-27, two analyses of the same image), tie -> latest anlys_time
    assert g["outline_date"] == pd.Timestamp("2016-08-27") and g["anlys_id"] == 710616
    assert "tie broken by latest anlys_time" in g["chosen_reason"]
    assert g["area_km2"] == pytest.approx(2.41, rel=0.01)
    assert g["n_outlines"] == 11 and g["n_validation_outlines"] == 10
    # records -> outlines: 16 rows, 3 analyses stored as several rows (parts) -> 11 outlines
    merge = next(s for s in rep.steps if s.name.startswith("records merged"))
    assert (merge.before, merge.after) == (16, 11)

    assert len(val) == 10 and set(val["glims_id"]) == {"G013332E47020N"}
    assert 710616 not in set(val["anlys_id"])
    val = val.sort_values("outline_date")
    areas = dict(zip(val["outline_date"].dt.year, val["area_km2"], strict=False))
    assert val["outline_date"].iloc[0] == pd.Timestamp("1850-01-01")
    assert val["area_km2"].iloc[0] == pytest.approx(4.69, abs=0.005)
    assert areas[2016] == pytest.approx(2.47, abs=0.005)  # the other 2016 analysis
    assert areas[1969] == pytest.approx(3.14, abs=0.005)
    assert val["area_km2"].iloc[0] > val["area_km2"].iloc[-1] and g["area_km2"] < 2.5
    # every outline's equal-area area matches its db_area within 1 %
    for ours, theirs in [(g["area_km2"], g["inventory_area_km2"]), *zip(val["area_km2"], val["inventory_area_km2"], strict=True)]:
        assert area_agrees(ours, theirs), (ours, theirs)
    assert not val["area_flag"].any()
    assert val["passes_date_filter"].sum() == 4  # 2011, 2012, 2013 and the other 2016 outline


def test_hochalmkees_date_field_anlys_time():
    outlines = read_outlines(shared("glims_hochalmkees_multitemporal", "glims_polygons.shp"))
    sel = select_glaciers(outlines, config=InventoryConfig(date_field="anlys_time"))
    g = sel.inventory.iloc[0]
    # three analyses dated 2022-10-15; the tie goes to the latest source date (2013-08-03)
    assert g["outline_date"] == pd.Timestamp("2022-10-15") and g["anlys_id"] == 1039082
    assert g["src_date"] == pd.Timestamp("2013-08-03")


@pytest.mark.parametrize("relpath, n, region", [
    (("geoutils_everest_landsat7_rgi6", "15_rgi60_glacier_outlines.gpkg"), 86, "Asia"),
    (("oggm_sample_data_hintereisferner_oetztal", "outlines", "Hintereisferner_RGI6.shp"), 1, "Europe"),
    (("oggm_sample_data_hintereisferner_oetztal", "outlines", "Hintereisferner_RGI5.shp"), 1, "Europe"),
    (("oggm_sample_data_hintereisferner_oetztal", "outlines", "rgi_oetztal.shp"), 20, "Europe"),
    (("oggm_sample_data_hintereisferner_oetztal", "outlines", "rgi7g_hef.shp"), 1, "Europe"),
    (("oggm_sample_data_hintereisferner_oetztal", "outlines", "rgi7c_hef.shp"), 1, "Europe"),
])
def test_rgi_files_load_and_areas_match(relpath, n, region):
    outlines = read_outlines(shared(*relpath))
    assert len(outlines) == n
    assert outlines["glims_id"].map(lambda s: bool(GLIMS_ID_PATTERN.match(s))).all()
    cfg = InventoryConfig(after="1990-01-01", min_area_km2=0.0, max_area_km2=1000.0)
    if outlines["src_date"].isna().all():  # the RGI 7 complex product has no dates: nothing passes
        sel = select_glaciers(outlines, config=cfg)
        assert sel.inventory.empty and "no glacier passed the filters" in sel.report.warnings
        assert next(s for s in sel.report.steps if s.name.startswith("date")).detail == {"no src_date": n}
        outlines = outlines.assign(src_date=pd.Timestamp("2003-08-01"))  # as a column map constant would
    sel = select_glaciers(outlines, config=cfg)
    inv = sel.inventory
    assert len(inv) == n, sel.report.format_text()
    assert set(inv["region"]) == {region}
    bad = [(r.glims_id, r.area_km2, r.inventory_area_km2) for r in inv.itertuples()
           if not area_agrees(r.area_km2, r.inventory_area_km2)]
    assert not bad, bad
    big = inv[inv["inventory_area_km2"] >= 0.1]
    assert ((big["area_km2"] / big["inventory_area_km2"] - 1).abs() <= 0.01).all()


def test_rgi6_everest_default_filters():
    outlines = read_outlines(shared("geoutils_everest_landsat7_rgi6", "15_rgi60_glacier_outlines.gpkg"))
    assert outlines["src_date"].min() >= pd.Timestamp("2000-01-01")  # BgnDate YYYYMMDD parsed
    sel = select_glaciers(outlines, config=InventoryConfig())
    date_step = next(s for s in sel.report.steps if s.name.startswith("date"))
    area_step = next(s for s in sel.report.steps if s.name.startswith("area"))
    assert date_step.before == 86 and date_step.removed > 0  # most outlines are from 2000-2002
    assert sel.report.n_glaciers == area_step.after
    assert (sel.inventory["area_km2"].between(1, 50)).all()
    assert (sel.inventory["outline_date"] >= pd.Timestamp("2005-01-01")).all()


def test_swiss_inventory_with_column_map_lv95():
    path = shared("sgi2010_trient_region", "SGI_2010_trient_region_lv95.shp")
    cmap = parse_column_map(["id=SGI", "area_m2=Shape_Area", "src_date==2010-09-01", "geog_area==Swiss Alps"])
    outlines = read_outlines(path, column_map=cmap)
    assert outlines.attrs["load"]["schema"] == "custom" and outlines.attrs["load"]["crs"] == "EPSG:2056"
    assert outlines.crs.to_epsg() == 4326 and outlines["id_derived"].all()
    sel = select_glaciers(outlines, config=InventoryConfig(min_area_km2=0.0))
    inv = sel.inventory
    assert len(inv) == outlines["source_id"].nunique() == 24  # multi-part SGI codes become one glacier
    assert set(inv["region"]) == {"Europe"}
    for r in inv.itertuples():
        assert area_agrees(r.area_km2, r.inventory_area_km2), (r.source_id, r.area_km2, r.inventory_area_km2)
    trient = inv[inv["source_id"] == "B90-02"].iloc[0]
    assert trient["area_km2"] == pytest.approx(5.825, rel=0.01)
    assert 7.01 < trient["centroid_lon"] < 7.05 and 45.98 < trient["centroid_lat"] < 46.02
    assert trient["utm_epsg"] == 32632 and trient["hemisphere"] == "N"
    b8506 = outlines[outlines["source_id"] == "B85-06"]
    assert len(b8506) == 2 and b8506["glims_id"].nunique() == 1


# ------------------------------------------------------------------ bad inputs

def test_bad_shapefile_reports_and_keeps_every_valid_glacier(tmp_path):
    bowtie = Polygon([(-150.0, 61.0), (-149.96, 61.02), (-149.96, 61.0), (-150.0, 61.02)])  # self-intersecting
    rows = [
        glims_row("G007500E46000N", 1, "2010-08-01T00:00:00", square(7.5, 46.0, 1.5), geog_area="Swiss Alps"),
        glims_row("G086900E27900N", 2, "2012-10-01T00:00:00", square(86.9, 27.9, 2.0), geog_area="Himalaya"),
        glims_row("G210000E61000N", 3, "2011-08-01T00:00:00", bowtie, geog_area="Alaska", db_area=2.4),
        glims_row("G010000E47000N", 4, "2011-08-01T00:00:00", Polygon(), geog_area="Austrian Alps"),
        glims_row("G020000E40000N", 5, "2013-08-01T00:00:00", square(20.0, 40.0, 1.2), geog_area="Atlantis Range"),
        glims_row("G007500E46000N", 6, "2010-08-01T00:00:00", square(7.5, 46.0, 0.3),
                  line_type="debris_cov", geog_area="Swiss Alps"),
    ]
    path = write_glims(rows, tmp_path / "glims_polygons.shp", prj=False)
    outlines = read_outlines(path)
    load = outlines.attrs["load"]
    assert load["crs_assumed"] and any("missing .prj" in n for n in load["notes"])
    assert dict(zip(outlines["anlys_id"], outlines["geometry_status"], strict=True)) == {
        1: "ok", 2: "ok", 3: "repaired", 4: "empty", 5: "ok", 6: "ok"}

    sel = select_glaciers(outlines, config=InventoryConfig(min_area_km2=0.5))
    rep = sel.report
    assert set(sel.inventory["glims_id"]) == {"G007500E46000N", "G086900E27900N", "G210000E61000N", "G020000E40000N"}
    regions = dict(zip(sel.inventory["glims_id"], sel.inventory["region"], strict=True))
    assert regions == {"G007500E46000N": "Europe", "G086900E27900N": "Asia", "G210000E61000N": "North America",
                       "G020000E40000N": UNKNOWN_REGION}
    # the bow-tie is repaired (two triangles), not dropped
    alaska = sel.inventory.set_index("glims_id").loc["G210000E61000N"]
    assert alaska["geometry"].is_valid and alaska["area_km2"] > 1
    assert [r["source_row"] for r in rep.repaired] == [2]
    # the empty geometry is reported one by one, with its id and row
    assert [(r["glims_id"], r["source_row"]) for r in rep.removed_records] == [("G010000E47000N", 3)]
    assert rep.removed_records[0]["reason"] in ("no geometry", "empty geometry")  # shapefile: a null shape
    assert [r["glims_id"] for r in rep.unknown_region] == ["G020000E40000N"]
    assert any("Atlantis Range" in w for w in rep.warnings)
    line = next(s for s in rep.steps if s.name.startswith("not a glacier-ice"))
    assert line.removed == 1 and line.detail == {"debris_cov": 1}
    text = rep.format_text()
    for needle in ("missing .prj", "no geometry", "Unknown", "Repaired geometries (kept): 1", "debris_cov"):
        assert needle in text


def test_missing_prj_with_projected_coordinates_is_an_error(tmp_path):
    gdf = gpd.GeoDataFrame({"name": ["a"]}, geometry=[box(2.6e6, 1.1e6, 2.601e6, 1.101e6)], crs="EPSG:2056")
    gdf.to_file(tmp_path / "lv95.shp", engine="pyogrio")
    (tmp_path / "lv95.prj").unlink()
    with pytest.raises(InputError, match="no CRS .*not lon/lat"):
        read_outlines(tmp_path / "lv95.shp")


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "outlines.shp"
    junk.write_text("not a shapefile\n")
    with pytest.raises(InputError) as exc:
        read_outlines(junk)
    assert "\n" not in str(exc.value) and "outlines.shp" in str(exc.value)
    with pytest.raises(DatasetNotFoundError):
        read_outlines(tmp_path / "nope.shp")
    lines = gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.LineString([(0, 0), (1, 1)])], crs=4326)
    lines.to_file(tmp_path / "lines.gpkg", engine="pyogrio")
    with pytest.raises(InputError, match="no polygons"):
        read_outlines(tmp_path / "lines.gpkg")


def _cli(argv: list[str]) -> int:
    """Run ``glacierwatch inventory ...`` through this stage's register() (the full parser imports
    every stage, torch included); errors propagate as the main CLI would print them."""
    parser = argparse.ArgumentParser(prog="glacierwatch")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_select_and_errors(tmp_path, capsys):
    rows = [glims_row("G007500E46000N", 1, "2010-08-01T00:00:00", square(7.5, 46.0, 1.5)),
            glims_row("G007500E46000N", 2, "2001-08-01T00:00:00", square(7.5, 46.0, 1.8))]
    path = write_glims(rows, tmp_path / "g.gpkg")
    out = tmp_path / "work" / "inventory.parquet"
    assert _cli(["inventory", "select", str(path), "--out", str(out), "--min-area", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "Filters, in order" in printed and "Selected: 1 glaciers" in printed
    assert out.exists() and (out.parent / "inventory_validation.parquet").exists()
    report = json.loads((out.parent / "inventory_report.json").read_text())
    assert report["n_glaciers"] == 1 and report["n_validation"] == 1
    with pytest.raises(DatasetNotFoundError):
        _cli(["inventory", "select", str(tmp_path / "missing.shp"), "--out", str(out)])
    with pytest.raises(InputError, match="no outline files"):
        _cli(["inventory", "select", "--out", str(out)])
    config = tmp_path / "run.toml"
    config.write_text(f'[inventory]\noutlines = ["{path.name}"]\nmin_area_km2 = 0.5\nafter = "2000-01-01"\n')
    assert _cli(["inventory", "select", "--config", str(config), "--out", str(out)]) == 0
    assert "validation outlines" in capsys.readouterr().out
    assert len(gpd.read_parquet(out)) == 1 and len(gpd.read_parquet(out.parent / "inventory_validation.parquet")) == 1
    assert _cli(["inventory", "regions"]) == 0
    assert capsys.readouterr().out.startswith("field,key,region,include,note")


# ------------------------------------------------------------------ rule, filters, outputs

def _world(tmp_path: Path) -> Path:
    """Five regions plus a polar one, 4 glaciers each of 1.2..6 km², some multi-temporal."""
    places = {"Swiss Alps": (7.5, 46.0), "Himalaya": (86.5, 28.0), "Caucasus": (43.0, 43.0),
              "Alaska": (-147.0, 61.0), "Patagonia": (-73.0, -49.0), "Svalbard": (16.0, 78.5)}
    rows, k = [], 0
    for area, (lon, lat) in places.items():
        for i in range(4):
            k += 1
            x, y = lon + 0.1 * i, lat
            gid = f"G{round((x % 360) * 1000):06d}E{round(abs(y) * 1000):05d}{'N' if y >= 0 else 'S'}"
            km = 1.1 + i * 0.9
            rows.append(glims_row(gid, 100 * k, "2012-08-01T00:00:00", square(x, y, km), geog_area=area))
            rows.append(glims_row(gid, 100 * k + 1, "1999-08-01T00:00:00", square(x, y, km * 1.1), geog_area=area))
    return write_glims(rows, tmp_path / "world.gpkg")


def test_region_table_defaults_and_polar_exclusion(tmp_path):
    table = load_region_table()
    expected = {"Swiss Alps": "Europe", "Austrian Alps": "Europe", "Norway": "Europe", "European Alps": "Europe",
                "Himalaya": "Asia", "Tien Shan": "Asia", "Caucasus": "Caucasus", "Alaska": "North America",
                "Coast Mountains": "North America", "Andes": "South America", "Patagonia": "South America",
                "Svalbard": "Arctic", "Canadian Arctic": "Arctic", "Antarctic Peninsula": "Antarctic",
                "Greenland": "Arctic", "Southern Alps, New Zealand": "Oceania"}
    for text, region in expected.items():
        rule = table.match_geog_area(text)
        assert rule is not None and rule.region == region, text
    assert table.match_geog_area("Various (GlobGlacier)") is None
    assert {"Arctic", "Antarctic"} <= set(table.excluded_regions)
    codes = {1: "North America", 2: "North America", 3: "Arctic", 7: "Arctic", 8: "Europe", 11: "Europe",
             12: "Caucasus", 13: "Asia", 14: "Asia", 15: "Asia", 16: "South America", 17: "South America",
             19: "Antarctic"}
    for code, region in codes.items():
        assert table.match_code(code).region == region, code
    assert table.match_code(10, 4).region == "Asia" and not table.match_code(10, 2).include

    sel = select_glaciers(read_outlines(_world(tmp_path)), config=InventoryConfig())
    assert sel.report.per_region == {"Asia": 4, "Caucasus": 4, "Europe": 4, "North America": 4, "South America": 4}
    step = next(s for s in sel.report.steps if s.name.startswith("region"))
    assert step.removed == 4 and step.detail == {"Arctic (region table)": 4}
    assert (sel.inventory.loc[sel.inventory["region"] == "South America", "hemisphere"] == "S").all()
    assert len(sel.validation) == 20 and not sel.validation["passes_date_filter"].any()


def test_region_table_override_and_errors(tmp_path):
    custom = tmp_path / "regions.csv"
    custom.write_text("field,key,region,include,note\ngeog_area,svalbard,Svalbard,yes,\n"
                      "geog_area,alps,Alps,yes,\no1region,11,Alps,yes,\n")
    sel = select_glaciers(read_outlines(_world(tmp_path)), config=InventoryConfig(exclude_regions=[UNKNOWN_REGION]),
                          regions=custom)
    assert sel.report.per_region == {"Alps": 4, "Svalbard": 4}
    step = next(s for s in sel.report.steps if s.name.startswith("region"))
    assert step.detail == {f"{UNKNOWN_REGION} (exclude_regions)": 16}
    bad = tmp_path / "bad.csv"
    bad.write_text("field,key,region,include\ncountry,ch,Europe,yes\n")
    with pytest.raises(InputError, match="line 2"):
        load_region_table(bad)
    bad.write_text("field,key,region,include\ngeog_area,(alps,Europe,yes\n")
    with pytest.raises(InputError, match="bad pattern"):
        load_region_table(bad)


def test_rule_ties_filters_and_internal_rock(tmp_path):
    g = "G007500E46000N"
    outer = square(7.5, 46.0, 2.0)
    hole = square(7.505, 46.005, 0.5)
    rows = [
        glims_row(g, 10, "2015-08-20T00:00:00", outer, anlys_time="2016-01-01T00:00:00"),
        glims_row(g, 11, "2015-08-20T00:00:00", square(7.5, 46.0, 1.9), anlys_time="2018-01-01T00:00:00"),
        glims_row(g, 12, "2019-08-20T00:00:00", square(7.5, 46.0, 0.5)),  # latest but too small: no fallback
        glims_row(g, 11, "2015-08-20T00:00:00", hole, line_type="intrnl_rock"),
        glims_row("G008000E46000N", 20, "2004-12-31T00:00:00", square(8.0, 46.0, 2.0)),  # before 2005
        glims_row("G008500E46000N", 30, "2010-01-01T00:00:00", square(8.5, 46.0, 8.0)),  # > 50 km²
        glims_row("G009000E46000N", 40, "2010-01-01T00:00:00", square(9.0, 46.0, 2.0), db_area=3.0),  # bad area
    ]
    outlines = read_outlines(write_glims(rows, tmp_path / "g.gpkg"))
    sel = select_glaciers(outlines, config=InventoryConfig())
    inv = sel.inventory.set_index("glims_id")
    assert list(inv.index) == ["G009000E46000N"]  # G0075: chosen outline (2019) < 1 km²; others filtered
    assert bool(inv.loc["G009000E46000N", "area_flag"]) and sel.report.area_flags
    steps = {s.name.split(" (")[0]: s for s in sel.report.steps}
    assert steps["not a glacier-ice outline"].detail == {"intrnl_rock": 1}
    assert steps["date"].removed == 1 and steps["area outside 1-50 km²"].detail == {"< 1 km²": 1, "> 50 km²": 1}

    # the same download given twice (overlapping GLIMS boxes): duplicates collapse, nothing doubles
    twice = select_glaciers([outlines, outlines], config=InventoryConfig())
    assert list(twice.inventory["glims_id"]) == ["G009000E46000N"] and len(twice.validation) == len(sel.validation)
    merge = next(s for s in twice.report.steps if s.name.startswith("records merged"))
    assert merge.detail["exact duplicates collapsed"] == 6
    assert twice.inventory["area_km2"].iloc[0] == pytest.approx(sel.inventory["area_km2"].iloc[0])

    sel2 = select_glaciers(outlines, config=InventoryConfig(min_area_km2=0.1, after="2005-01-01"))
    inv2 = sel2.inventory.set_index("glims_id")
    assert inv2.loc[g, "anlys_id"] == 12
    # a later cut-off date would make the 2015 pair the candidates: tie -> latest anlys_time (anlys 11)
    sel3 = select_glaciers(outlines, config=InventoryConfig(min_area_km2=0.1, after="2015-01-01"))
    val = sel3.validation.set_index("anlys_id")
    assert set(val.index) == {10, 11}
    # internal rock of analysis 11 is cut out of its outline
    a11 = val.loc[11, "area_km2"]
    assert a11 == pytest.approx(1.9 ** 2 - 0.5 ** 2, rel=0.03)


def test_per_region_sample_reproducible_and_area_biased(tmp_path):
    rows = []
    rng = np.random.default_rng(1)
    for i in range(60):
        km = float(rng.uniform(1.05, 6.5))
        x = 7.0 + 0.05 * i
        rows.append(glims_row(f"G{round(x * 1000):06d}E46000N", i + 1, "2010-08-01T00:00:00", square(x, 46.0, km)))
    outlines = read_outlines(write_glims(rows, tmp_path / "g.gpkg"))
    cfg = InventoryConfig(per_region=20, seed=3)
    a = select_glaciers(outlines, config=cfg).inventory
    b = select_glaciers(outlines, config=cfg).inventory
    c = select_glaciers(outlines, config=InventoryConfig(per_region=20, seed=4)).inventory
    assert len(a) == 20 and list(a["glims_id"]) == list(b["glims_id"])
    assert list(a["glims_id"]) != list(c["glims_id"])
    all_mean = select_glaciers(outlines, config=InventoryConfig()).inventory["area_km2"].mean()
    assert a["area_km2"].mean() > all_mean


def test_write_inventory_geoparquet_and_grid(tmp_path):
    # the seed's box rule (10 % only); the metre margin is tested in tests/test_territory.py
    sel = select_glaciers(read_outlines(_world(tmp_path)), config=InventoryConfig(box_margin_m=0.0))
    paths = write_inventory(sel, tmp_path / "out" / "inventory.parquet")
    assert paths["validation"].name == "inventory_validation.parquet" and paths["report"].name == "inventory_report.json"
    inv = gpd.read_parquet(paths["inventory"])
    val = gpd.read_parquet(paths["validation"])
    assert inv.crs.to_epsg() == 4326 and val.crs.to_epsg() == 4326 and len(inv) == 20
    assert {"chosen_anlys_id", "passes_date_filter"} <= set(val.columns)
    for r in inv.itertuples():
        grid = GlacierGrid.from_json(r.grid)
        assert grid.crs == f"EPSG:{r.utm_epsg}" and grid.resolution == 30.0
        # the box is the outline's bounds + 10 % each side
        lon0, lat0, lon1, lat1 = r.geometry.bounds
        assert r.box_lon_min == pytest.approx(lon0 - 0.1 * (lon1 - lon0))
        assert r.box_lat_max == pytest.approx(lat1 + 0.1 * (lat1 - lat0))
        # grid covers the outline with a margin: about 1.2 x the box in metres
        width_km = (lon1 - lon0) * 111.32 * np.cos(np.radians(r.centroid_lat))
        assert grid.width * 0.03 == pytest.approx(1.2 * width_km, rel=0.1, abs=0.1)
    report = json.loads(paths["report"].read_text())
    assert report["n_glaciers"] == 20 and report["steps"][0]["unit"] == "records"
    assert report["settings"]["after"] == "2005-01-01"


def test_config_errors_and_helpers(tmp_path):
    outlines = read_outlines(_world(tmp_path))
    with pytest.raises(ConfigError):
        select_glaciers(outlines, config=InventoryConfig(date_field="release_dt"))
    with pytest.raises(ConfigError):
        select_glaciers(outlines, config=InventoryConfig(after="last year"))
    with pytest.raises(InputError, match="unknown column map key"):
        parse_column_map(["colour=blue"])
    toml = tmp_path / "map.toml"
    toml.write_text('[columns]\nid = "SGI"\ndate = "=2010-09-01"\n')
    assert parse_column_map([str(toml)]) == {"source_id": "SGI", "src_date": "=2010-09-01"}
    assert parse_date("20030799") == pd.Timestamp("2003-07-15")
    assert parse_date("20039999") == pd.Timestamp("2003-07-01")
    assert pd.isna(parse_date("-9999999")) and pd.isna(parse_date(None))
    assert parse_date("2016-08-27T00:00:00") == pd.Timestamp("2016-08-27")
    assert parse_date(20001030) == pd.Timestamp("2000-10-30")
