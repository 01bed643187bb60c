"""Territories (nearest-outline sharing of the margin zone), the counting region, and the box margin.

Small generated outlines in a UTM zone, and the real SGI 2010 outlines around Trient (skipped when
../shared/data is absent).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from checks import nonempty
from pyproj import Transformer
from rasterio.warp import Resampling, reproject

from glacierwatch.config import InventoryConfig
from glacierwatch.errors import ConfigError
from glacierwatch.grid import (
    GlacierGrid,
    counting_region,
    inventory_grid,
    margin_size,
    outline_on_grid,
    territory_on_grid,
)
from glacierwatch.inventory import parse_column_map, read_outlines, select_glaciers, write_inventory
from glacierwatch.inventory.territory import territory

UTM = "EPSG:32632"
TO_WGS = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


def to_wgs(geom: shapely.Geometry) -> shapely.Geometry:
    return shapely.transform(geom, lambda x, y: TO_WGS.transform(x, y), interleaved=False)


def write_outlines(tmp_path: Path, geoms_utm: list[shapely.Geometry]) -> gpd.GeoDataFrame:
    """A custom-schema file of glaciers (ids G1...) dated 2010-09-01, read with the inventory reader."""
    frame = gpd.GeoDataFrame({"code": [f"G{i + 1}" for i in range(len(geoms_utm))]},
                             geometry=list(geoms_utm), crs=UTM)
    path = tmp_path / "outlines.gpkg"
    frame.to_file(path, driver="GPKG")
    return read_outlines(path, column_map=parse_column_map(["id=code", "src_date==2010-09-01",
                                                                 "geog_area==Swiss Alps"]))


# ------------------------------------------------------------------ the territory rule

def _nearest_is_own(points: np.ndarray, own: shapely.Geometry, others: list[shapely.Geometry],
                    tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(clearly own, clearly someone else's): by more than ``tol`` m of distance."""
    d_own = shapely.distance(points, own)
    d_other = np.min([shapely.distance(points, o) for o in others], axis=0)
    return d_own < d_other - tol, d_other < d_own - tol


def test_adjacent_glaciers_territories_disjoint_and_split_at_equal_distance():
    base_x, base_y = 350_000.0, 5_100_000.0
    a = shapely.box(base_x, base_y, base_x + 1000, base_y + 1500)
    b = shapely.box(base_x + 1400, base_y + 200, base_x + 2400, base_y + 1300)  # 400 m gap
    box = shapely.box(base_x - 1500, base_y - 1500, base_x + 3900, base_y + 3000)
    ta, tb = territory(a, [b], box), territory(b, [a], box)
    assert ta.geom_type in ("Polygon", "MultiPolygon") and tb.geom_type in ("Polygon", "MultiPolygon")
    assert shapely.intersection(ta, tb).area < 1e-6 * box.area  # disjoint (up to the shared bisector)
    assert shapely.intersection(ta, b).area == 0 and shapely.intersection(tb, a).area == 0
    assert shapely.covers(ta, a) and shapely.covers(tb, b)
    # together they fill the box outside the outlines
    assert shapely.union(ta, tb).area == pytest.approx(box.area, rel=1e-6)
    # the gap is split at its middle (x = 1200 m from A's left edge)
    mid = base_x + 1200
    for y in (base_y + 300, base_y + 700, base_y + 1200):
        assert ta.contains(shapely.Point(mid - 5, y)) and not ta.contains(shapely.Point(mid + 5, y))
        assert tb.contains(shapely.Point(mid + 5, y))
    # everywhere: a point is A's iff it is nearer to A (beyond a small tolerance for the densified
    # boundary: 30 m point spacing -> the bisector is within a few metres)
    rng = np.random.default_rng(0)
    left, bottom, right, top = box.bounds
    pts = shapely.points(rng.uniform(left, right, 4000), rng.uniform(bottom, top, 4000))
    own, other = _nearest_is_own(pts, a, [b], tol=5.0)
    inside_a = shapely.contains(ta, pts) | shapely.touches(ta, pts)
    assert inside_a[own].all() and not inside_a[other].any()


def test_territory_with_several_neighbours_and_a_hole():
    rng = np.random.default_rng(1)
    x0, y0 = 400_000.0, 5_000_000.0
    own = shapely.Point(x0, y0).buffer(600).difference(shapely.Point(x0, y0).buffer(150))  # nunatak
    others = [shapely.Point(x0 + 1300, y0 + 200).buffer(300),
              shapely.Polygon([(x0 - 1500, y0 - 400), (x0 - 900, y0 - 1200), (x0 - 700, y0 - 200)]),
              shapely.box(x0 - 200, y0 + 900, x0 + 600, y0 + 1300),
              shapely.Point(x0 + 5000, y0).buffer(2000)]  # outside the box, but nearer to its edge
    box = shapely.box(x0 - 2000, y0 - 2000, x0 + 2000, y0 + 2000)
    t = territory(own, others, box)
    assert shapely.covers(t, own)  # its own nunatak too
    for o in nonempty(others):
        assert shapely.intersection(t, o).area < 1e-6
    pts = shapely.points(rng.uniform(x0 - 2000, x0 + 2000, 5000), rng.uniform(y0 - 2000, y0 + 2000, 5000))
    mine, theirs = _nearest_is_own(pts, own, others, tol=5.0)
    inside = shapely.contains(t, pts)
    assert inside[mine].all() and not inside[theirs].any()
    assert theirs.sum() > 100 and mine.sum() > 100  # the test has points of both kinds
    # no neighbours: the whole box
    assert territory(own, [], box).equals(box)


def test_touching_glaciers_partition_the_box():
    """Shared divides and a shared corner: the points equally near to two outlines (the wedge beyond
    a shared vertex) go to one of them, so the territories are disjoint and fill the box."""
    x0, y0 = 360_000.0, 5_000_000.0
    outlines = [shapely.box(x0, y0, x0 + 1000, y0 + 1000),
                shapely.box(x0 + 1000, y0, x0 + 2000, y0 + 1000),             # shares A's east edge
                shapely.Polygon([(x0, y0 + 1000), (x0 + 1000, y0 + 1000), (x0 + 500, y0 + 1600)])]
    box = shapely.box(x0 - 1500, y0 - 1500, x0 + 2500, y0 + 2500)
    ts = [territory(g, [o for j, o in enumerate(outlines) if j != i], box, own_rank=i,
                    other_ranks=[j for j in range(3) if j != i]) for i, g in enumerate(outlines)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert shapely.intersection(ts[i], ts[j]).area < 1e-6 * box.area
        assert shapely.difference(outlines[i], ts[i]).area < 1e-3  # m²: the own outline is kept
    assert sum(t.area for t in ts) == pytest.approx(box.area, rel=1e-6)
    rng = np.random.default_rng(2)
    pts = shapely.points(rng.uniform(x0 - 1500, x0 + 2500, (3000, 2)))
    for i, t in enumerate(ts):
        mine, theirs = _nearest_is_own(pts, outlines[i], [o for j, o in enumerate(outlines) if j != i], tol=5.0)
        inside = shapely.contains(t, pts)
        assert inside[mine].all() and not inside[theirs].any()


# ------------------------------------------------------------------ the inventory column and the grid

def test_inventory_territory_column_counting_region(tmp_path):
    x0, y0 = 350_000.0, 5_100_000.0
    a = shapely.box(x0, y0, x0 + 1200, y0 + 1000)                  # 1.2 km², selected
    b = shapely.box(x0 + 1500, y0, x0 + 2700, y0 + 1000)           # 1.2 km², selected, 300 m gap
    small = shapely.box(x0 + 200, y0 + 1200, x0 + 700, y0 + 1500)  # 0.15 km²: filtered out, still a neighbour
    outlines = write_outlines(tmp_path, [a, b, small])
    sel = select_glaciers(outlines, config=InventoryConfig(min_area_km2=1.0))
    paths = write_inventory(sel, tmp_path / "inv" / "inventory.parquet")
    inv = gpd.read_parquet(paths["inventory"])
    assert sorted(inv["source_id"]) == ["G1", "G2"]
    assert isinstance(inv["territory_wkb"].iloc[0], bytes)
    geoms = {r.source_id: r for r in inv.itertuples()}
    ra, rb = geoms["G1"], geoms["G2"]
    grid = GlacierGrid.from_json(ra.grid)
    assert grid.crs == f"EPSG:{ra.utm_epsg}" == UTM
    t_a = shapely.from_wkb(ra.territory_wkb)
    assert shapely.covers(shapely.box(*grid.bounds), t_a)
    t_a_mask = territory_on_grid(ra.territory_wkb, grid)
    for neighbour in (b, small):
        assert not (t_a_mask & outline_on_grid(to_wgs(neighbour), grid)).any()
    # the gap is split at its middle: pixel columns left of x0 + 1350 are A's, right of it B's
    rows = slice(int((grid.y0 - (y0 + 900)) // 30), int((grid.y0 - (y0 + 100)) // 30))
    xc = grid.x0 + (np.arange(grid.width) + 0.5) * grid.resolution
    gap = (xc > x0 + 1200) & (xc < x0 + 1500)
    assert t_a_mask[rows][:, gap & (xc < x0 + 1350)].all()
    assert not t_a_mask[rows][:, gap & (xc > x0 + 1350)].any()
    # territories of the two selected glaciers share no pixel on A's grid
    t_b_mask = territory_on_grid(rb.territory_wkb, grid)
    assert not (t_a_mask & t_b_mask).any()
    # counting region: 0 -> the outline; None -> the box; > 0 -> buffered outline ∩ territory
    outline = outline_on_grid(ra.geometry, grid)
    assert np.array_equal(counting_region(ra.geometry, ra.territory_wkb, grid, 0.0), outline)
    assert counting_region(ra.geometry, ra.territory_wkb, grid, None).all()
    buffered = outline_on_grid(ra.geometry, grid, buffer_m=500.0)
    region = counting_region(ra.geometry, ra.territory_wkb, grid, 500.0)
    assert np.array_equal(counting_region(ra.geometry, None, grid, 500.0), buffered)
    assert np.array_equal(region, buffered & t_a_mask)
    assert (region & outline).sum() == outline.sum()  # the glacier itself always counts
    assert (buffered & outline_on_grid(to_wgs(b), grid)).any()  # without the territory B would count
    assert not (region & outline_on_grid(to_wgs(b), grid)).any()
    with pytest.raises(ValueError):
        counting_region(ra.geometry, ra.territory_wkb, grid, -1.0)
    # validation rows and empty territories
    assert territory_on_grid(None, grid).all()
    assert not territory_on_grid(shapely.to_wkb(shapely.Polygon()), grid).any()


def test_box_margin_rule(tmp_path):
    x0, y0 = 350_000.0, 5_100_000.0
    small = shapely.box(x0, y0, x0 + 1000, y0 + 1200)       # 10 % = 100-120 m < 1.5 km
    large = shapely.box(x0 + 30_000, y0, x0 + 50_000, y0 + 4000)  # 10 % of 20 km = 2 km > 1.5 km across
    outlines = write_outlines(tmp_path, [small, large])
    cfg = InventoryConfig(min_area_km2=0.5, max_area_km2=100.0)
    assert cfg.box_margin == 0.1 and cfg.box_margin_m == 1500.0
    for margin_m in (0.0, cfg.box_margin_m, 700.0):
        cfg = dataclasses.replace(cfg, box_margin_m=margin_m)  # sections are frozen
        inv = select_glaciers(outlines, config=cfg).inventory
        for r in nonempty(inv).itertuples():
            grid = GlacierGrid.from_json(r.grid)
            assert grid == inventory_grid(r.geometry, margin=0.1, margin_m=margin_m)
            left, bottom, right, top = grid.bounds
            # on the Landsat C2 lattice: pixel edges at odd multiples of 15 m
            assert (left - 15.0) % 30.0 == pytest.approx(0.0, abs=1e-6)
            assert (top - 15.0) % 30.0 == pytest.approx(0.0, abs=1e-6)
            # the outline's WGS 84 bounding box in the grid's CRS (what the margin is added to)
            ol, ob, orr, ot = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform_bounds(
                *r.geometry.bounds, densify_pts=21)
            for lo, hi, size in ((ol - left, right - orr, orr - ol), (ob - bottom, top - ot, ot - ob)):
                want = margin_size(size, 0.1, margin_m)
                assert want - 1.0 <= lo <= want + 31.0 and want - 1.0 <= hi <= want + 31.0
            # the degree box holds the same margin (converted at the centroid)
            lon0, lat0, lon1, lat1 = r.geometry.bounds
            m_lat = max(0.1 * (lat1 - lat0), margin_m / 111_320.0)
            assert r.box_lat_min == pytest.approx(lat0 - m_lat) and r.box_lat_max == pytest.approx(lat1 + m_lat)
    with pytest.raises(ConfigError):
        select_glaciers(outlines, config=InventoryConfig(box_margin_m=-1.0))


# ------------------------------------------------------------------ real data: Trient, SGI 2010

def _trient_termini(shared: Path, trient_wgs: shapely.Geometry, grid: GlacierGrid) -> tuple[np.ndarray, np.ndarray]:
    """The 2010 terminus (lowest NASADEM pixel of the outline) and the 1990 one: the Leclercq length
    change 1990-2010 further along the tongue's direction (centroid of the outline within 1 km of the
    terminus -> terminus). Grid CRS, m."""
    lengths = pd.read_csv(shared / "oggm_sample_data_hintereisferner_oetztal" / "lengths"
                          / "leclercq_length_changes_selected.csv")
    series = lengths[lengths["glacier_name"] == "Trient"].set_index("year")["dL_m"]
    longer_m = float(series.loc[1990] - series.loc[2010])
    assert 500 < longer_m < 1500  # the record says the 1990 glacier was markedly longer
    dem = np.full(grid.shape, np.nan, dtype=np.float32)
    with rasterio.open(shared / "glacierview_trient_l5_toa_timeseries" / "nasadem" / "G000000000000N_DEM.tif") as src:
        reproject(rasterio.band(src, 1), dem, dst_transform=grid.transform, dst_crs=grid.crs,
                  dst_nodata=np.nan, resampling=Resampling.bilinear)
    rows, cols = np.nonzero(outline_on_grid(trient_wgs, grid) & np.isfinite(dem))
    xy = np.c_[grid.x0 + (cols + 0.5) * 30.0, grid.y0 - (rows + 0.5) * 30.0]
    t2010 = xy[np.argmin(dem[rows, cols])]
    near = np.hypot(*(xy - t2010).T) < 1000.0
    direction = t2010 - xy[near].mean(axis=0)
    return t2010, t2010 + longer_m * direction / np.hypot(*direction)


def test_trient_territory_excludes_sgi_neighbours_and_grid_holds_1990_tongue(shared_data):
    sgi = shared_data / "sgi2010_trient_region" / "SGI_2010_trient_region_lv95.shp"
    if not sgi.exists():
        pytest.skip(f"{sgi} not present")
    outlines = read_outlines(sgi, column_map=parse_column_map(
        ["id=SGI", "area_m2=Shape_Area", "src_date==2010-09-01", "geog_area==Swiss Alps"]))
    inv = select_glaciers(outlines, config=InventoryConfig(min_area_km2=0.0)).inventory
    trient = inv[inv["source_id"] == "B90-02"].iloc[0]
    grid = GlacierGrid.from_json(trient["grid"])
    others = inv[inv["glims_id"] != trient["glims_id"]].geometry
    neighbour_ice = np.zeros(grid.shape, dtype=bool)
    for geom in others:
        neighbour_ice |= outline_on_grid(geom, grid)
    plain = counting_region(trient.geometry, None, grid, 500.0)
    own = counting_region(trient.geometry, trient["territory_wkb"], grid, 500.0)
    assert (plain & neighbour_ice).sum() * 900 / 1e6 > 0.3  # outline + 500 m alone takes in neighbours' ice
    assert not (own & neighbour_ice).any()
    outline = outline_on_grid(trient.geometry, grid)
    assert (own & outline).sum() == outline.sum()
    # the 1990 terminus lies inside the grid (with room), and outside the seed's 10 % grid
    t2010, t1990 = _trient_termini(shared_data, trient.geometry, grid)
    left, bottom, right, top = grid.bounds
    assert left + 300 < t1990[0] < right - 300 and bottom + 300 < t1990[1] < top - 300
    seed = inventory_grid(trient.geometry, margin=0.1, margin_m=0.0)
    sl, sb, sr, st = seed.bounds
    assert not (sl < t1990[0] < sr and sb < t1990[1] < st)
    assert sl < t2010[0] < sr and sb < t2010[1] < st
    assert math.isclose(grid.resolution, 30.0)


def test_neighbours_enter_through_their_chosen_outline(tmp_path):
    """A neighbour with an old, larger outline and a recent one: the territory is shared against the
    recent (rule-chosen) one, so ground the neighbour covered only in 1990 can be this glacier's."""
    x0, y0 = 350_000.0, 5_100_000.0
    a = shapely.box(x0, y0, x0 + 1200, y0 + 1000)
    b_2010 = shapely.box(x0 + 2000, y0, x0 + 3200, y0 + 1000)
    b_1990 = shapely.box(x0 + 1300, y0, x0 + 3200, y0 + 1000)  # reached to 100 m from A
    frame = gpd.GeoDataFrame({"code": ["A", "B", "B"], "date": ["2010-09-01", "2010-09-01", "1990-09-01"],
                              "analysis": [1, 2, 3]},
                             geometry=[a, b_2010, b_1990], crs=UTM)
    path = tmp_path / "multi.gpkg"
    frame.to_file(path, driver="GPKG")
    outlines = read_outlines(path, column_map=parse_column_map(["id=code", "date=date", "anlys_id=analysis",
                                                                  "geog_area==Swiss Alps"]))
    sel = select_glaciers(outlines, config=InventoryConfig(min_area_km2=1.0))
    assert len(sel.validation) == 1  # B's 1990 outline: a validation outline, not the neighbour
    row = sel.inventory[sel.inventory["source_id"] == "A"].iloc[0]
    t = shapely.from_wkb(row["territory_wkb"])
    # 1500 m from A's left edge: inside B's 1990 outline, nearer to A than to B's 2010 outline
    probe = shapely.Point(x0 + 1500, y0 + 500)
    assert b_1990.contains(probe) and not b_2010.contains(probe)
    assert t.contains(probe)
    assert not t.contains(shapely.Point(x0 + 1700, y0 + 500))  # nearer to B's 2010 outline
