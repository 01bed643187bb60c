"""``glacierwatch validate``: matching and comparison on tiny generated references (GLIMS-style table,
SGI outlines in LV95, SGI area table, WGMS state + link table), bad reference files, and the real
check of the seed authors' 245-glacier series against SGI 2010/2016 and WGMS (shared data, slow)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from glacierwatch.cli import main
from glacierwatch.errors import InputError
from glacierwatch.validate import (
    SUMMARY_COLUMNS,
    VALIDATION_COLUMNS,
    compare,
    glims_id_location,
    name_key,
    read_our_areas,
    read_reference,
    write_validation,
)

TRIENT = "G007026E45991N"
OTHER = "G007297E45961N"  # Corbassière's id, used here as a second Swiss glacier


def annual_areas(ids=(TRIENT, OTHER), years=range(2000, 2021), area0=(6.0, 16.0), rate=-0.005) -> pd.DataFrame:
    rows = []
    for gid, a0 in zip(ids, area0, strict=False):
        for y in years:
            a = a0 * np.exp(rate * (y - 2000))
            rows.append({"glims_id": gid, "region": "Europe", "year": y, "date": pd.Timestamp(f"{y}-07-01"),
                         "area_km2": a, "area_km2_low": a * 0.95, "area_km2_high": a * 1.05,
                         "n_scenes": 3, "valid_fraction": 0.9})
    return pd.DataFrame(rows)


def square_around(glims_id: str, half_m: float, dx_m: float = 0.0) -> object:
    """A square in LV95 of half-width ``half_m`` centred ``dx_m`` east of the glacier's GLIMS point."""
    lon, lat = glims_id_location(glims_id)
    p = gpd.GeoSeries(gpd.points_from_xy([lon], [lat]), crs=4326).to_crs(2056).iloc[0]
    return box(p.x + dx_m - half_m, p.y - half_m, p.x + dx_m + half_m, p.y + half_m)


def test_glims_id_location_and_name_key() -> None:
    assert glims_id_location("G007026E45991N") == pytest.approx((7.026, 45.991))
    assert glims_id_location("G302570E63825S") == pytest.approx((-57.43, -63.825))
    assert np.isnan(glims_id_location("RGI60-11.01450")[0])
    assert name_key("Glacier du Trient") == name_key("TRIENT") == "trient"
    assert name_key("MORTERATSCH, VADRET DA") == name_key("Vadret da Morteratsch")
    assert name_key("Glacier de Corbassière") == name_key("CORBASSIERE")
    assert name_key("Tschingelfirn S (Silenen)") != name_key("Grosser Aletsch")


def test_dated_table_reference_ratio_difference_interval_and_summary(tmp_path) -> None:
    ours = annual_areas()
    ref = pd.DataFrame({"glims_id": [TRIENT, TRIENT, OTHER, "G000000E00000N"],
                        "date": ["2005-08-15", "2019-07-20", "2010-09-01", "2010-07-01"],
                        "area_km2": [6.0, 4.0, 15.2, 1.0]})
    ref_path = tmp_path / "ref.csv"
    ref.to_csv(ref_path, index=False)
    result = write_validation(ours, [ref_path], tmp_path / "out")
    v = result.validation
    assert list(v.columns) == list(VALIDATION_COLUMNS)
    assert len(v) == 3  # the unknown glacier is not matched
    row = v.loc[(v["glims_id"] == TRIENT) & (v["reference_date"] == pd.Timestamp("2005-08-15"))].iloc[0]
    ours_2005 = 6.0 * np.exp(-0.005 * 5)  # 2005-07-01 is 45 days away (window 60)
    assert row["our_n"] == 1 and row["our_area_km2"] == pytest.approx(ours_2005)
    assert row["ratio"] == pytest.approx(ours_2005 / 6.0)
    assert row["difference_km2"] == pytest.approx(ours_2005 - 6.0)
    assert bool(row["in_interval"]) == bool(ours_2005 * 0.95 <= 6.0 <= ours_2005 * 1.05)
    far = v.loc[v["reference_date"] == pd.Timestamp("2019-07-20")].iloc[0]
    assert not far["in_interval"] and far["ratio"] > 1.3
    s = result.summary.iloc[0]
    assert list(result.summary.columns) == list(SUMMARY_COLUMNS)
    assert s["n_reference_rows"] == 4 and s["n_matched"] == 3 and s["n_compared"] == 3
    assert s["median_ratio"] == pytest.approx(np.median(v["ratio"]))
    assert s["median_abs_error_km2"] == pytest.approx(np.median(np.abs(v["difference_km2"])))
    assert s["coverage"] == pytest.approx(v["in_interval"].astype(bool).mean())
    for name in ("validation.csv", "validation.parquet", "validation_summary.csv"):
        assert (tmp_path / "out" / name).is_file()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left
    csv = pd.read_csv(tmp_path / "out" / "validation.csv")
    assert csv["reference_date"].iloc[0] == "2005-08-15"


def test_sgi_outlines_and_area_table_match_by_location(tmp_path) -> None:
    """Two parts of one SGI id around Trient's point (inside), one outline 300 m east of the other
    glacier's point (nearest), and an area table with 2016 areas dated by year_acq."""
    sgi_dir = tmp_path / "sgi"
    (sgi_dir / "outlines").mkdir(parents=True)
    parts = [square_around(TRIENT, 1000), square_around(TRIENT, 200, dx_m=3000)]
    outlines = gpd.GeoDataFrame({"SGI": ["B90-02", "B90-02", "B83-03"]},
                                geometry=[*parts, square_around(OTHER, 500, dx_m=800)], crs=2056)
    outlines.to_file(sgi_dir / "outlines" / "SGI_2010.shp")
    table = pd.DataFrame({"sgi_id": ["B90-02", "B83-03"], "area_2010_km2": [4.16, 1.0],
                          "area_2016_km2": [5.0, 0.9], "year_acq_2016": [2016.0, 2015.0],
                          "name_2016": ["Glacier du Trient", "Glacier de Corbassière"]})
    table.to_csv(sgi_dir / "sgi_area_by_inventory.csv", index=False)

    ours = annual_areas()
    refs = [read_reference(sgi_dir / "outlines" / "SGI_2010.shp"), read_reference(sgi_dir / "sgi_area_by_inventory.csv")]
    assert refs[1].sgi is not None and refs[1].sgi.outlines is not None  # found beside the table
    v, summary = compare(ours, refs)
    shp = v.loc[v["reference_file"].str.endswith("SGI_2010.shp")].set_index("glims_id")
    assert shp.loc[TRIENT, "reference_area_km2"] == pytest.approx(4.0 + 0.16, rel=1e-6)  # parts summed
    assert shp.loc[TRIENT, "match_method"] == "location: inside SGI outline"
    assert shp.loc[OTHER, "match_method"] == "location: nearest SGI outline"
    assert shp.loc[OTHER, "match_distance_m"] == pytest.approx(300, abs=2)
    sgi2016 = v.loc[v["source"] == "SGI 2016"].set_index("glims_id")
    assert sgi2016.loc[OTHER, "reference_date"] == pd.Timestamp("2015-07-01")
    assert sgi2016.loc[TRIENT, "our_area_km2"] == pytest.approx(6.0 * np.exp(-0.005 * 16))
    assert "debris-covered ice included" in sgi2016.loc[TRIENT, "conventions"]
    # SGI 2010: images 2008-2011, so our areas of 2008-2011 count
    assert shp.loc[TRIENT, "our_n"] == 4
    assert set(summary["source"]) == {"SGI 2010", "SGI 2016"}
    # too far: nothing matches with a 100 m limit
    v_far, _ = compare(ours, refs, max_match_distance_m=100)
    assert OTHER not in set(v_far["glims_id"])


def test_wgms_state_by_link_table_and_by_sgi_name(tmp_path) -> None:
    wgms = tmp_path / "wgms"
    wgms.mkdir()
    pd.DataFrame({"country": ["CH", "CH", "CH", "CH", "AT"], "glacier_name": ["TRIENT", "TRIENT", "CORBASSIERE", "TRIENT", "TRIENT"],
                  "glacier_id": [457, 457, 366, 457, 999], "date": ["2003-09-22", "2010-07-02", "2010-07-02", "1971-07-02", "2010-07-02"],
                  "date_unc": [0.0, 182.0, 182.0, 182.0, 182.0], "area": [5.9e6, 5.823e6, 15.2e6, np.nan, 1e6],
                  "area_unc": [np.nan] * 5}).to_csv(wgms / "state.csv", index=False)
    pd.DataFrame({"CenLon": [7.30], "CenLat": [45.96], "NAME": ["CORBASSIERE"], "WGMS_ID": [366],
                  "GLIMS_ID": [OTHER]}).to_csv(wgms / "rgi_wgms_links_from_oggm.csv", index=False)
    sgi = pd.DataFrame({"sgi_id": ["B90-02"], "area_2010_km2": [5.8], "name_2016": ["Glacier du Trient"]})
    sgi_path = tmp_path / "sgi_area_by_inventory.csv"
    sgi.to_csv(sgi_path, index=False)
    outlines = gpd.GeoDataFrame({"SGI": ["B90-02"]}, geometry=[square_around(TRIENT, 1000)], crs=2056)
    outlines.to_file(tmp_path / "SGI_2010.shp")

    ours = annual_areas()
    v, summary = compare(ours, [read_reference(wgms / "state.csv"), read_reference(sgi_path)])
    w = v.loc[v["source"] == "WGMS FoG"]
    trient = w.loc[w["glims_id"] == TRIENT].set_index("reference_date")
    assert set(trient.index) == {pd.Timestamp("2003-09-22"), pd.Timestamp("2010-07-02")}  # not the Austrian one
    assert trient["match_method"].str.startswith("name only (SGI name").all()
    assert trient.loc[pd.Timestamp("2003-09-22"), "reference_area_km2"] == pytest.approx(5.9)
    assert trient.loc[pd.Timestamp("2003-09-22"), "note"] == "annual area of the reference year"
    corb = w.loc[w["glims_id"] == OTHER].iloc[0]
    assert corb["match_method"] == "WGMS-GLIMS link table"
    row = summary.loc[summary["source"] == "WGMS FoG"].iloc[0]
    assert row["n_reference_rows"] == 4 and row["n_compared"] == 3


def test_wide_authors_layout_is_read(tmp_path) -> None:
    path = tmp_path / "wide.csv"
    with open(path, "w", newline="") as f:
        f.write(f"Dates,Dates,{TRIENT},{OTHER}\r\r\n")
        f.write("0,1984-01-01,,\r\r\n1,1984-07-01,6.5,16.0\r\r\n2,1985-07-01,6.4,\r\r\n")
    got = read_our_areas(path)
    assert len(got) == 3 and set(got["glims_id"]) == {TRIENT, OTHER}
    assert got.loc[got["glims_id"] == TRIENT, "area_km2"].tolist() == [6.5, 6.4]


@pytest.mark.parametrize("content, problem", [
    ("glims_id,date,area_km2\nG007026E45991N,2005-07-01,5\nG007026E45991N,2005-07-01,5\nG007026E45991N,2005-13-45,5\n",
     "row 3: unparseable date '2005-13-45'"),
    ("glims_id,date,area_km2\nG007026E45991N,2005-07-01,five\n", "row 1: area_km2 'five' is not a number"),
    ("country,glacier_name,glacier_id,date,area\nCH,TRIENT,457,2003-09-22,-4\n", "row 1: area -4.0 is negative"),
    ("a,b\n1,2\n", "not a known reference table"),
])
def test_bad_reference_file_is_one_line_naming_file_and_row(tmp_path, capsys, content, problem) -> None:
    ours = tmp_path / "areas.parquet"
    annual_areas().to_parquet(ours)
    bad = tmp_path / "bad_ref.csv"
    bad.write_text(content)
    good = tmp_path / "good.csv"
    good.write_text("glims_id,date,area_km2\nG007026E45991N,2005-07-01,5\n")
    out = tmp_path / "out"
    assert main(["validate", str(ours), "--reference", str(good), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(bad) in err and problem in err
    assert not out.exists()  # nothing written, not even the good reference's comparison


def test_unreadable_files_are_input_errors(tmp_path) -> None:
    junk = tmp_path / "x.shp"
    junk.write_bytes(b"not a shapefile")
    with pytest.raises(InputError, match="x.shp: not a readable outline file"):
        read_reference(junk)
    sheet = tmp_path / "r.xlsx"
    sheet.write_bytes(b"PK")
    with pytest.raises(InputError, match="unknown reference format"):
        read_reference(sheet)


def test_validate_cli_prints_the_summary(tmp_path, capsys) -> None:
    ours = tmp_path / "areas.parquet"
    annual_areas().to_parquet(ours)
    ref = tmp_path / "ref.csv"
    ref.write_text("glims_id,date,area_km2,source\nG007026E45991N,2005-07-01,5.5,my survey\n")
    assert main(["validate", str(ours), "--reference", str(ref), "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "my survey" in text and "1 matched reference rows" in text
    summary = pd.read_csv(tmp_path / "o" / "validation_summary.csv")
    assert summary["source"].tolist() == ["my survey"]


@pytest.mark.slow
def test_authors_series_against_sgi_and_wgms(shared_data: Path, tmp_path) -> None:
    """The done-when check: the authors' 245 glaciers against the SGI 2010 outlines, the SGI area table
    and the WGMS state table; Trient's SGI 2010 (5.83 km²) row and WGMS 2003 and 2010 areas are found."""
    areas = shared_data / "glacierview_paper_areas" / "areas_binary_05_filtered_smooth_25.csv"
    sgi = shared_data / "sgi_multitemporal_switzerland"
    refs = [sgi / "sgi2010_outlines" / "SGI_2010.shp", sgi / "derived" / "sgi_area_by_inventory.csv",
            shared_data / "wgms_fog_state" / "state.csv"]
    for path in [areas, *refs]:
        if not path.exists():
            pytest.skip(f"shared data file absent: {path}")
    result = write_validation(areas, refs, tmp_path / "out")
    v = result.validation
    trient = v.loc[(v["glims_id"] == TRIENT) & (v["source"] == "SGI 2010")]
    assert len(trient) == 2  # outlines and table
    assert trient["reference_id"].eq("B90-02").all()
    assert trient["reference_area_km2"].round(2).eq(5.83).all()
    assert trient["match_method"].eq("location: inside SGI outline").all()
    wg = v.loc[(v["glims_id"] == TRIENT) & (v["source"] == "WGMS FoG") & (v["our_n"] > 0)]
    assert set(wg["reference_date"].dt.year) == {2003, 2010}
    s = result.summary.set_index(["source", result.summary["reference_file"].map(lambda p: Path(p).name)])
    for key in (("SGI 2010", "SGI_2010.shp"), ("SGI 2016", "sgi_area_by_inventory.csv")):
        assert s.loc[key, "n_compared"] >= 30
        assert 0.8 < s.loc[key, "median_ratio"] < 1.25


def test_inventory_validation_outlines_match_by_glims_id(tmp_path) -> None:
    """An inventory_validation.parquet-like GeoParquet: glims_id, outline_date, area_km2, anlys_id, name."""
    lon, lat = glims_id_location(TRIENT)
    geo = gpd.GeoDataFrame({"glims_id": [TRIENT, TRIENT, "G001000E45000N"],
                            "outline_date": pd.to_datetime(["2003-09-01", "2015-08-20", "2003-09-01"]),
                            "area_km2": [6.2, 5.5, 1.0], "anlys_id": [11, 12, 13], "name": ["Trient"] * 3},
                           geometry=[box(lon, lat, lon + 0.01, lat + 0.01)] * 3, crs=4326)
    path = tmp_path / "inventory_validation.parquet"
    geo.to_parquet(path)
    ref = read_reference(path)
    assert ref.kind == "glims"
    v, summary = compare(annual_areas(), [ref])
    assert v["glims_id"].tolist() == [TRIENT, TRIENT] and v["reference_id"].tolist() == ["11", "12"]
    assert v["match_method"].eq("glims_id").all()
    assert summary.iloc[0]["source"] == "GLIMS" and summary.iloc[0]["n_reference_rows"] == 3


def test_inventory_names_match_wgms_without_sgi(tmp_path) -> None:
    """With --inventory, our glacier's name (and centroid) come from the inventory."""
    inv = pd.DataFrame({"glims_id": [TRIENT], "name": ["Glacier du Trient"], "centroid_lon": [7.03], "centroid_lat": [45.99]})
    inv_path = tmp_path / "inventory.parquet"
    inv.to_parquet(inv_path)
    state = tmp_path / "state.csv"
    state.write_text("country,glacier_name,glacier_id,date,date_unc,area\nCH,TRIENT,457,2010-07-02,182,5823000\n")
    ours = tmp_path / "areas.parquet"
    annual_areas().to_parquet(ours)
    without = write_validation(ours, [state], tmp_path / "a")
    assert without.validation.empty  # no name known for our glacier
    result = write_validation(ours, [state], tmp_path / "b", inventory=inv_path)
    row = result.validation.iloc[0]
    assert row["glims_id"] == TRIENT and row["match_method"] == "name only (our name; no WGMS coordinates)"
    assert row["reference_area_km2"] == pytest.approx(5.823)
