"""Build a synthetic Landsat world with known truth (``glacierwatch synth``).

Two sets of glaciers are generated:

* **training** glaciers: one GLIMS outline dated in the local summer of 2006-2020 and 4-8 scenes in
  a 100-day window centred on it (various sensors, weather and seasons), plus optionally
  ``training_extra_scenes`` clear scenes in other years (early and late summer);
* **time-series** glaciers: an outline dated 2005-2015 (plus an older one, for validation) and
  ``scenes_per_year`` scenes in every year from ``first_year`` to ``last_year`` at random dates in all
  months (one per equal part of the year).

Each glacier's true extent on any date is ``potential >= mask_level`` (``truth/<ID>.tif`` and
``truth.csv``) and its area follows ``A0 exp(r t)`` exactly up to one pixel, with ``r`` in
``truth_trends.csv``. Every glacier is generated from its own random generator seeded by
(seed, set, index), so the world does not depend on build order; the same seed gives the same bytes.
See ``docs/CONTRACTS.md`` for the file layout.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from glacierwatch import __version__
from glacierwatch.config import SynthConfig
from glacierwatch.errors import DatasetNotFoundError, InputError
from glacierwatch.ids import validate_glims_id
from glacierwatch.io import atomic_path, read_raster, read_table, write_json, write_raster, write_table
from glacierwatch.landsat import SENSORS, is_slc_off
from glacierwatch.layout import (
    SYNTH_DEM,
    SYNTH_OUTLINES,
    SYNTH_SCENES,
    SYNTH_TRUTH,
    SYNTH_TRUTH_DIR,
    SYNTH_TRUTH_TRENDS,
    SYNTH_WORLD_JSON,
    dem_file_name,
    synth_potential_path,
)
from glacierwatch.synth.metadata import scene_properties
from glacierwatch.synth.regions import slot_lonlat, timeseries_region, training_region
from glacierwatch.synth.scenes import build_static, draw_conditions, render_scene
from glacierwatch.synth.solar import MIN_SUN_ELEVATION_DEG, overpass_time, sun_position, wrs2_path_row
from glacierwatch.synth.terrain import (
    PIXEL_AREA_M2,
    CanvasTooSmall,
    GeometryRequest,
    build_geometry,
    mask_to_polygon,
    pixel_count,
    to_wgs84,
)

log = logging.getLogger(__name__)

TRAINING = "training"
TIMESERIES = "timeseries"
_KIND_CODE = {TRAINING: 1, TIMESERIES: 2}
#: Half-width of the training window around the outline date, days (the catalogue keeps +-50).
TRAINING_HALF_WINDOW_DAYS = 48
#: Earliest / latest year supported (Landsat 5 starts 1984-03-01).
FIRST_SUPPORTED_YEAR = 1984
LAST_SUPPORTED_YEAR = 2035
OUTLINE_LAYER = "glims_polygons"

TRUTH_COLUMNS = ["glims_id", "date", "satellite", "true_area_km2", "mask_level"]
TREND_COLUMNS = ["glims_id", "region", "true_rel_change_per_year"]


@dataclass(frozen=True)
class WorldInfo:
    """Where a synthetic world lies and which glaciers it holds (paths are absolute)."""

    out_dir: Path
    outlines: Path
    scenes_dir: Path
    dem_dir: Path
    truth_csv: Path
    truth_dir: Path
    truth_trends_csv: Path
    world_json: Path
    training_ids: tuple[str, ...]
    timeseries_ids: tuple[str, ...]
    n_scenes: int
    seed: int

    @property
    def glacier_ids(self) -> tuple[str, ...]:
        """Training then time-series glacier ids."""
        return self.training_ids + self.timeseries_ids

    def scene_files(self, glims_id: str) -> list[Path]:
        """Sorted scene GeoTIFFs of one glacier."""
        return sorted((self.scenes_dir / validate_glims_id(glims_id)).glob("*_C02_T1_L2_SR.tif"))

    def dem_path(self, glims_id: str) -> Path:
        return self.dem_dir / dem_file_name(glims_id)

    def potential_path(self, glims_id: str) -> Path:
        return synth_potential_path(self.out_dir, glims_id)

    @classmethod
    def for_dir(cls, out_dir: str | os.PathLike[str], *, training_ids: Sequence[str] = (),
                timeseries_ids: Sequence[str] = (), n_scenes: int = 0, seed: int = 0) -> WorldInfo:
        out = Path(out_dir).resolve()
        return cls(out_dir=out, outlines=out / SYNTH_OUTLINES, scenes_dir=out / SYNTH_SCENES, dem_dir=out / SYNTH_DEM,
                   truth_csv=out / SYNTH_TRUTH, truth_dir=out / SYNTH_TRUTH_DIR,
                   truth_trends_csv=out / SYNTH_TRUTH_TRENDS, world_json=out / SYNTH_WORLD_JSON,
                   training_ids=tuple(training_ids),
                   timeseries_ids=tuple(timeseries_ids), n_scenes=int(n_scenes), seed=int(seed))


def load_world(out_dir: str | os.PathLike[str]) -> WorldInfo:
    """Open a finished world (its ``world.json`` is written last)."""
    path = Path(out_dir) / SYNTH_WORLD_JSON
    if not path.exists():
        raise DatasetNotFoundError(f"no synthetic world in {out_dir} ({SYNTH_WORLD_JSON} missing)")
    data = json.loads(path.read_text(encoding="utf-8"))
    return WorldInfo.for_dir(out_dir, training_ids=data["training_ids"], timeseries_ids=data["timeseries_ids"],
                             n_scenes=data["n_scenes"], seed=data["parameters"]["seed"])


def true_mask(out_dir: str | os.PathLike[str], glims_id: str, date: str | dt.date) -> np.ndarray:
    """The true glacier mask of ``glims_id`` on a scene date listed in ``truth.csv`` (bool array)."""
    world = WorldInfo.for_dir(out_dir)
    truth = read_table(world.truth_csv, columns=TRUTH_COLUMNS)
    key = date.isoformat() if isinstance(date, dt.date) else str(date)
    rows = truth[(truth["glims_id"] == glims_id) & (truth["date"] == key)]
    if rows.empty:
        raise InputError(f"no truth for {glims_id} on {key} in {world.truth_csv}")
    potential, _, _ = read_raster(world.potential_path(glims_id))
    return potential >= np.float32(rows["mask_level"].iloc[0])


# ---------------------------------------------------------------- planning

@dataclass(frozen=True)
class GlacierJob:
    """One glacier to build: its set (``training``/``timeseries``), index within the set, and the
    world parameters it depends on."""

    kind: str
    index: int
    seed: int
    first_year: int
    last_year: int
    scenes_per_year: int
    training_extra_scenes: int = 0
    melt_season: bool = False
    lake_probability: float = 0.35


@dataclass
class _ScenePlan:
    date: dt.date
    satellite: str
    acquired: dt.datetime
    sun_elevation: float
    sun_azimuth: float
    good: bool


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _summer_date(rng: np.random.Generator, year: int, southern: bool) -> dt.date:
    """A late-summer date (outline dates): 20 Jul-15 Sep (north) or 20 Jan-15 Mar (south)."""
    start = dt.date(year, 1, 20) if southern else dt.date(year, 7, 20)
    return start + dt.timedelta(days=int(rng.integers(0, 58)))


def _decimal_years(a: dt.date, b: dt.date) -> float:
    """(b - a) in years of 365.25 days."""
    return (b - a).days / 365.25


def _sensor_for(rng: np.random.Generator, date: dt.date, prefer_complete: bool) -> str | None:
    active = [s for s in ("L5", "L7", "L8", "L9") if SENSORS[s].active_on(date)]
    if prefer_complete:
        complete = [s for s in active if not is_slc_off(s, date)]
        active = complete or active
    if not active:
        return None
    return str(active[int(rng.integers(len(active)))])


def _try_plan(rng: np.random.Generator, date: dt.date, lon: float, lat: float, good: bool) -> _ScenePlan | None:
    """Plan a scene on ``date`` if a sensor flies and the sun is high enough for L2 SR."""
    sat = _sensor_for(rng, date, prefer_complete=good)
    if sat is None:
        return None
    acquired = overpass_time(date, lon, lat, minutes_jitter=float(rng.normal(0.0, 3.0)))
    elevation, azimuth = sun_position(acquired, lon, lat)
    if elevation < MIN_SUN_ELEVATION_DEG:
        return None
    return _ScenePlan(date, sat, acquired, elevation, azimuth, good)


def _plan_training_scenes(rng: np.random.Generator, outline: dt.date, lon: float, lat: float) -> list[_ScenePlan]:
    n = int(rng.integers(4, 9))
    offsets = rng.permutation(np.arange(-TRAINING_HALF_WINDOW_DAYS, TRAINING_HALF_WINDOW_DAYS + 1))
    plans: list[_ScenePlan] = []
    for off in offsets:
        if len(plans) >= n:
            break
        plan = _try_plan(rng, outline + dt.timedelta(days=int(off)), lon, lat, good=len(plans) < 2)
        if plan is not None:
            plans.append(plan)
    return sorted(plans, key=lambda p: p.date)


def _early_summer_date(rng: np.random.Generator, year: int, southern: bool) -> dt.date:
    """An early-summer date (seasonal snow still low down): 1 Jun-15 Jul (north) or 1 Dec-15 Jan (south)."""
    start = dt.date(year - 1, 12, 1) if southern else dt.date(year, 6, 1)
    return start + dt.timedelta(days=int(rng.integers(0, 45)))


def _plan_extra_training_scenes(rng: np.random.Generator, n: int, outline: dt.date, first_year: int,
                                last_year: int, lon: float, lat: float, southern: bool) -> list[_ScenePlan]:
    """``n`` clear scenes in other years than the outline's, one in each equal part of
    ``first_year``..``last_year``, alternately in early summer (snowy) and late summer, so a training
    glacier is seen in several states (sizes and snow covers), each with its true mask in truth.csv."""
    years = [y for y in range(max(first_year, FIRST_SUPPORTED_YEAR + 1), last_year + 1) if y != outline.year]
    plans: list[_ScenePlan] = []
    if n <= 0 or not years:
        return plans
    parts = np.array_split(np.array(years), min(n, len(years)))
    for k, part in enumerate(parts):
        for _attempt in range(20):
            year = int(part[int(rng.integers(len(part)))])
            date = _early_summer_date(rng, year, southern) if k % 2 == 0 else _summer_date(rng, year, southern)
            plan = _try_plan(rng, date, lon, lat, good=True)
            if plan is not None:
                plans.append(plan)
                break
    return plans


def _plan_timeseries_scenes(rng: np.random.Generator, first_year: int, last_year: int, per_year: int,
                            lon: float, lat: float) -> list[_ScenePlan]:
    plans: list[_ScenePlan] = []
    taken: set[dt.date] = set()
    for year in range(first_year, last_year + 1):
        start = dt.date(year, 1, 1)
        days = (dt.date(year + 1, 1, 1) - start).days
        edges = np.linspace(0, days, per_year + 1)
        for k in range(per_year):
            plan = None
            for attempt in range(40):
                lo, hi = (int(edges[k]), int(edges[k + 1])) if attempt < 20 else (0, days)
                date = start + dt.timedelta(days=int(rng.integers(lo, max(hi, lo + 1))))
                if date in taken:
                    continue
                plan = _try_plan(rng, date, lon, lat, good=False)
                if plan is not None:
                    break
            if plan is not None:
                taken.add(plan.date)
                plans.append(plan)
    return sorted(plans, key=lambda p: p.date)


@dataclass
class _GlacierResult:
    """Records of one built glacier for the world-level tables."""

    glims_id: str
    kind: str
    outline_rows: list[dict[str, Any]]
    truth_rows: list[dict[str, Any]]
    trend_row: dict[str, Any]
    summary: dict[str, Any]
    patch_id: str | None


def _elevation_stats(dem: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    z = dem[mask]
    return float(np.round(z.min())), float(np.round(z.mean())), float(np.round(z.max()))


def build_glacier(job: GlacierJob, out_dir: Path) -> _GlacierResult:
    """Generate and write one glacier box (DEM, potential, scenes + metadata); return its records."""
    code = _KIND_CODE[job.kind]
    root = np.random.SeedSequence([int(job.seed), code, int(job.index)])
    ss_params, ss_dates, ss_geometry, ss_static, ss_scenes = root.spawn(5)
    ss_extra = root.spawn(1)[0]  # extra training dates: drawn apart, so the other scenes do not change
    other_outlines: list[dt.date] = []
    rng = np.random.default_rng(ss_params)  # glacier properties (independent of the scene count)
    date_rng = np.random.default_rng(ss_dates)

    if job.kind == TRAINING:
        spec = training_region(job.index)
        rank = job.index // 10
        lon, lat = slot_lonlat(spec, job.seed, rank)
        u = rng.random()
        area0 = (_log_uniform(rng, 1.2, 6.0) if u < 0.8 else
                 _log_uniform(rng, 6.0, 20.0) if u < 0.95 else _log_uniform(rng, 20.0, 45.0))
        rate = float(rng.uniform(0.0005, 0.005)) if job.index % 7 == 3 else float(rng.uniform(-0.025, -0.002))
        outline = _summer_date(rng, int(rng.integers(2006, 2021)), spec.southern)
        plans = _plan_training_scenes(date_rng, outline, lon, lat)
        if job.training_extra_scenes > 0:
            extra = _plan_extra_training_scenes(np.random.default_rng(ss_extra), job.training_extra_scenes,
                                                outline, job.first_year, job.last_year, lon, lat, spec.southern)
            taken = {p.date for p in plans}
            plans = sorted(plans + [p for p in extra if p.date not in taken], key=lambda p: p.date)
    else:
        spec = timeseries_region(job.index)
        rank = -(1 + job.index // 10)
        lon, lat = slot_lonlat(spec, job.seed, rank)
        area0 = _log_uniform(rng, 1.8, 5.5)
        bands = [(-0.022, -0.012), (-0.012, -0.004), (-0.018, -0.008), (0.001, 0.005), (-0.025, -0.015),
                 (-0.008, -0.002)]
        rate = float(rng.uniform(*bands[job.index % len(bands)]))
        lo_year, hi_year = max(job.first_year, 2005), min(job.last_year, 2015)
        if lo_year > hi_year:
            lo_year = hi_year = (job.first_year + job.last_year) // 2
        outline = _summer_date(rng, int(rng.integers(lo_year, hi_year + 1)), spec.southern)
        plans = _plan_timeseries_scenes(date_rng, job.first_year, job.last_year, job.scenes_per_year, lon, lat)
    debris_extent = float(rng.uniform(*spec.debris_extent)) if spec.debris_probability > rng.random() else 0.0
    if job.kind == TIMESERIES:
        debris_extent = min(debris_extent, 0.2)
    want_lake = rng.random() < job.lake_probability
    want_patch = rng.random() < (0.5 if job.kind == TIMESERIES else 0.35)
    want_nunatak = rng.random() < 0.3
    if job.kind == TIMESERIES:  # an older outline (1985-2000) for validation, inside the period
        early_hi = min(2000, outline.year - 6)
        if early_hi >= job.first_year + 1:
            year = int(rng.integers(job.first_year + 1, early_hi + 1))
            other_outlines = [_summer_date(rng, year, spec.southern)]

    years = tuple(_decimal_years(outline, p.date) for p in plans) + tuple(
        _decimal_years(outline, d) for d in other_outlines)
    request = GeometryRequest(region=spec, lon=lon, lat=lat, area0_km2=area0, rate_per_year=rate, years=years,
                              timeseries=job.kind == TIMESERIES, want_lake=want_lake, want_patch=want_patch,
                              want_nunatak=want_nunatak, debris_extent=debris_extent)
    try:
        geometry, facts = build_geometry(request, np.random.default_rng(ss_geometry))
    except CanvasTooSmall:  # rare: a glacier much larger than its first guess; same seed, larger canvas
        try:
            geometry, facts = build_geometry(request, np.random.default_rng(ss_geometry), canvas_scale=1.8)
        except CanvasTooSmall:  # extra training dates decades before the outline: larger still
            geometry, facts = build_geometry(request, np.random.default_rng(ss_geometry), canvas_scale=2.6)
    rate = geometry.rate_per_year
    glims_id = str(facts["glims_id"])
    grid = geometry.grid
    n0 = pixel_count(area0, rate, 0.0)
    level0 = geometry.level_for_pixels(n0)
    static = build_static(geometry, spec, level0, np.random.default_rng(ss_static))

    # ---- static rasters
    tags = {"glims_id": glims_id, "generator": f"glacierwatch.synth {__version__}"}
    write_raster(out_dir / SYNTH_DEM / dem_file_name(glims_id), geometry.dem, grid, band_names=["elevation"],
                 tags={**tags, "units": "m"})
    write_raster(synth_potential_path(out_dir, glims_id), geometry.potential, grid, band_names=["potential"],
                 tags={**tags, "meaning": "true glacier mask on a date = potential >= mask_level (truth.csv)"})

    # ---- scenes
    path, row = wrs2_path_row(lon, lat)
    scene_dir = out_dir / SYNTH_SCENES / glims_id
    truth_rows: list[dict[str, Any]] = []
    scene_seeds = ss_scenes.spawn(len(plans))
    for plan, seed_seq in zip(plans, scene_seeds, strict=True):
        srng = np.random.default_rng(seed_seq)
        n_pix = pixel_count(area0, rate, _decimal_years(outline, plan.date))
        level = geometry.level_for_pixels(n_pix)
        cond = draw_conditions(srng, date=plan.date, satellite=plan.satellite, acquired=plan.acquired,
                               sun_elevation=plan.sun_elevation, sun_azimuth=plan.sun_azimuth, static=static,
                               good=plan.good, melt_season=job.melt_season)
        scene = render_scene(static, geometry, cond, level, srng)
        stem = f"{glims_id}_{plan.date.isoformat()}_{plan.satellite}_C02_T1_L2_SR"
        write_raster(scene_dir / f"{stem}.tif", scene.data, grid, band_names=list(scene.band_names), nodata=0,
                     tags={**tags, "date": plan.date.isoformat(), "satellite": plan.satellite})
        props = scene_properties(glims_id=glims_id, satellite=plan.satellite, acquired=plan.acquired, path=path,
                                 row=row, sun_elevation=plan.sun_elevation, sun_azimuth=plan.sun_azimuth,
                                 cloud_cover=cond.cloud_cover, cloud_cover_land=cond.cloud_cover_land,
                                 image_quality=cond.image_quality, rng=srng)
        write_json(scene_dir / f"{stem}.json", props)
        truth_rows.append({
            "glims_id": glims_id, "date": plan.date.isoformat(), "satellite": plan.satellite,
            "true_area_km2": round(n_pix * PIXEL_AREA_M2 / 1e6, 4), "mask_level": float(level),
            "n_pixels": n_pix, "kind": job.kind, "scene": f"{stem}.tif",
            "cloud_fraction": round(scene.cloud_fraction, 4), "shadow_fraction": round(scene.shadow_fraction, 4),
            "fill_fraction": round(scene.fill_fraction, 4), "snow_fraction": round(scene.snow_fraction, 4),
            "snow_fraction_outside": round(scene.snow_fraction_outside, 4),
            "snowline_m": round(cond.snowline_m, 1), "cloud_cover": cond.cloud_cover,
            "image_quality": cond.image_quality, "duplicate_record": isinstance(props, list),
        })

    # ---- outlines
    def outline_row(date: dt.date, geom: Any, gid: str, n_pixels: int, serial: int, mask: np.ndarray,
                    name: str) -> dict[str, Any]:
        src_time = overpass_time(date, lon, lat)
        analysed = date + dt.timedelta(days=int(rng.integers(200, 1500)))
        zmin, zmean, zmax = _elevation_stats(geometry.dem, mask)
        area = round(n_pixels * PIXEL_AREA_M2 / 1e6, 4)
        return {"glac_id": gid, "glac_name": name, "anlys_id": 600000 + 20000 * code + 4 * job.index + serial,
                "anlys_time": f"{analysed.isoformat()}T00:00:00", "src_date": src_time.strftime("%Y-%m-%dT%H:%M:%S"),
                "db_area": area, "area": area, "geog_area": spec.geog_area, "line_type": "glac_bound",
                "rec_status": "okay", "glac_stat": "exists", "min_elev": zmin, "mean_elev": zmean,
                "max_elev": zmax, "geometry": geom}

    name = f"Synthetic {'T' if job.kind == TIMESERIES else 'G'}{job.index:03d}"
    outline_rows = [outline_row(outline, facts["outline_wgs84"], glims_id, n0, 0, geometry.mask(level0), name)]
    other_info = []
    for k, date in enumerate(other_outlines, start=1):
        n_pix = pixel_count(area0, rate, _decimal_years(outline, date))
        level = geometry.level_for_pixels(n_pix)
        mask = geometry.mask(level)
        geom = to_wgs84(mask_to_polygon(mask, grid.transform), grid.crs)
        outline_rows.append(outline_row(date, geom, glims_id, n_pix, k, mask, name))
        other_info.append({"src_date": date.isoformat(), "area_km2": round(n_pix * PIXEL_AREA_M2 / 1e6, 4),
                           "mask_level": float(level)})
    patch_id = facts["patch_id"]
    if patch_id is not None:
        patch_mask = geometry.patch >= 0.5
        n_patch = int(patch_mask.sum())
        outline_rows.append(outline_row(outline, facts["patch_wgs84"], str(patch_id), n_patch, 3, patch_mask, "None"))

    region_row = {"glims_id": glims_id, "region": spec.region, "true_rel_change_per_year": rate,
                  "geog_area": spec.geog_area, "kind": job.kind, "outline_date": outline.isoformat(),
                  "area_km2_outline": round(n0 * PIXEL_AREA_M2 / 1e6, 4), "n_scenes": len(plans)}
    summary = {
        "glims_id": glims_id, "kind": job.kind, "index": job.index, "region": spec.region,
        "geog_area": spec.geog_area, "hemisphere": spec.hemisphere, "centroid_lon": facts["centroid"][0],
        "centroid_lat": facts["centroid"][1], "grid": grid.to_dict(), "outline_date": outline.isoformat(),
        "area_km2_outline": round(n0 * PIXEL_AREA_M2 / 1e6, 4), "rel_change_per_year": rate,
        "requested_rel_change_per_year": request.rate_per_year, "n_scenes": len(plans),
        "wrs_path": path, "wrs_row": row, "debris_extent": round(debris_extent, 3), "lake": geometry.has_lake,
        "nunatak": geometry.has_nunatak, "neighbour_patch_id": patch_id,
        "neighbour_patch_area_km2": round(geometry.patch_area_km2, 4), "other_outlines": other_info,
        "flow_azimuth_deg": round(geometry.flow_azimuth_deg, 1), "z_ela_m": round(static.z_ela, 1),
        "shape": {k: round(v, 3) for k, v in geometry.info.items()},
    }
    return _GlacierResult(glims_id, job.kind, outline_rows, truth_rows, region_row, summary,
                          None if patch_id is None else str(patch_id))


# ---------------------------------------------------------------- the world

#: Parameters added after the first world format, with the values that give that world; they are
#: recorded in world.json only when they differ, so a seed-world's parameters read as before.
EXTENDED_DEFAULTS: dict[str, Any] = {"training_extra_scenes": 0, "melt_season": False, "lake_probability": 0.35}


def _parameters(n_training: int, n_timeseries: int, seed: int, first_year: int, last_year: int,
                scenes_per_year: int, **extended: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "n_training": int(n_training), "n_timeseries": int(n_timeseries), "seed": int(seed),
        "first_year": int(first_year), "last_year": int(last_year), "scenes_per_year": int(scenes_per_year)}
    for key, default in EXTENDED_DEFAULTS.items():
        value = type(default)(extended.get(key, default))
        if value != default:
            params[key] = value
    return params


def _validate(params: dict[str, int]) -> None:
    if params["n_training"] < 0 or params["n_timeseries"] < 0:
        raise InputError("glacier counts must be >= 0")
    if params["n_training"] + params["n_timeseries"] == 0:
        raise InputError("a world needs at least one glacier (training or time-series)")
    if not FIRST_SUPPORTED_YEAR <= params["first_year"] <= params["last_year"] <= LAST_SUPPORTED_YEAR:
        raise InputError(f"years must satisfy {FIRST_SUPPORTED_YEAR} <= first_year <= last_year <= "
                         f"{LAST_SUPPORTED_YEAR}; got {params['first_year']}..{params['last_year']}")
    if not 1 <= params["scenes_per_year"] <= 60:
        raise InputError(f"scenes_per_year must be 1..60, got {params['scenes_per_year']}")
    if not 0 <= params.get("training_extra_scenes", 0) <= 20:
        raise InputError(f"training_extra_scenes must be 0..20, got {params['training_extra_scenes']}")
    if not 0.0 <= params.get("lake_probability", 0.35) <= 1.0:
        raise InputError(f"lake_probability must be 0..1, got {params['lake_probability']}")


def _write_outlines(outlines: gpd.GeoDataFrame, path: Path) -> None:
    """Write the GLIMS-like GeoPackage atomically (GDAL wants a .gpkg name, so rename twice)."""
    pyogrio_log = logging.getLogger("pyogrio._io")
    level = pyogrio_log.level
    pyogrio_log.setLevel(max(level, logging.WARNING))  # it reports "Created N records" at INFO
    try:
        with atomic_path(path) as tmp:
            gpkg = tmp.with_suffix(".gpkg")
            try:
                outlines.to_file(gpkg, layer=OUTLINE_LAYER, driver="GPKG", engine="pyogrio")
                os.replace(gpkg, tmp)
            finally:
                gpkg.unlink(missing_ok=True)
    finally:
        pyogrio_log.setLevel(level)


def _remove_previous(world: WorldInfo, data: dict[str, Any]) -> None:
    """Delete the files of a previous world in ``world.out_dir`` (only the ones it lists)."""
    world.world_json.unlink(missing_ok=True)
    for gid in [*data.get("training_ids", []), *data.get("timeseries_ids", [])]:
        validate_glims_id(gid)
        shutil.rmtree(world.scenes_dir / gid, ignore_errors=True)
        (world.dem_dir / f"{gid}.tif").unlink(missing_ok=True)
        (world.truth_dir / f"{gid}.tif").unlink(missing_ok=True)
    for path in (world.outlines, world.truth_csv, world.truth_trends_csv):
        path.unlink(missing_ok=True)


def default_workers() -> int:
    """Processes that build glaciers at once: the CPUs this process may use (at most 8)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, 8))


#: Glaciers below which the default is to build in this process.
_MIN_JOBS_FOR_PROCESSES = 8


def _build_all(jobs: Sequence[GlacierJob], out_dir: Path, *, workers: int | None,
               progress: bool) -> list[_GlacierResult]:
    """Build every glacier, in ``workers`` processes (``None``: :func:`default_workers`, or this
    process for a world of fewer than 8 glaciers; 1: in this process). Each glacier draws from its own seeded generator and writes only its own files, so the
    world is the same bytes whatever the number of processes or the order they finish in; results
    come back in job order."""
    if workers is not None and int(workers) < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    # by default a small world stays in this process: starting an interpreter (~2 s) costs more
    # than building a few glaciers
    n = int(workers) if workers is not None else (default_workers() if len(jobs) >= _MIN_JOBS_FOR_PROCESSES else 1)
    n = min(n, len(jobs))
    with tqdm(total=len(jobs), desc="synth", unit="glacier", disable=not progress) as bar:
        if n <= 1:
            results = []
            for job in jobs:
                results.append(build_glacier(job, out_dir))
                bar.update(1)
            return results
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # "spawn": a fresh interpreter per worker, safe beside threads (tqdm's monitor, a loaded torch)
        with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(build_glacier, job, out_dir) for job in jobs]
            for future in as_completed(futures):
                future.result()  # a failed glacier stops the build with its own error
                bar.update(1)
            return [f.result() for f in futures]


def make_world(out_dir: str | os.PathLike[str], *, n_training: int = 120, n_timeseries: int = 6, seed: int = 0,
               first_year: int = 1984, last_year: int = 2023, scenes_per_year: int = 5,
               training_extra_scenes: int = 0, melt_season: bool = False, lake_probability: float = 0.35,
               progress: bool = True, overwrite: bool = False, workers: int | None = None) -> WorldInfo:
    """Generate the synthetic world into ``out_dir`` and return where everything is.

    ``n_training`` glaciers get 4-8 scenes within +-48 days of their outline date (local summer,
    2006-2020); ``n_timeseries`` glaciers get ``scenes_per_year`` scenes in every year
    ``first_year``..``last_year`` (one at a random date in each equal part of the year; dates without
    an active sensor or with the sun below 14 deg are redrawn). ``seed`` fixes everything: each
    glacier uses its own generator seeded by (seed, set, index). ``progress`` shows a tqdm bar.

    ``training_extra_scenes`` adds that many clear scenes to each training glacier in other years of
    ``first_year``..``last_year`` (alternately early summer, with snow low down, and late summer),
    with their true masks, so chips can show a glacier in several states. ``melt_season`` makes the
    seasonal snow line rise through the ablation season (June-July scenes snowy, the minimum at its
    end) instead of sitting at the summer line from May to October; ``lake_probability`` is the
    chance that a glacier has a pro-glacial lake. The defaults (0, False, 0.35) give the seed world.

    A finished world with the same parameters is reused as is; one with different parameters is an
    error unless ``overwrite`` (then its files are replaced). ``world.json`` is written last, so a
    folder without it holds an unfinished build, which is simply rebuilt. ``workers``: processes
    building glaciers at once (default: the usable CPUs, at most 8); the world does not depend on it.
    Raises :class:`~glacierwatch.errors.InputError` for invalid parameters.
    """
    params = _parameters(n_training, n_timeseries, seed, first_year, last_year, scenes_per_year,
                         training_extra_scenes=training_extra_scenes, melt_season=melt_season,
                         lake_probability=lake_probability)
    _validate(params)
    extended = {key: params.get(key, default) for key, default in EXTENDED_DEFAULTS.items()}
    world = WorldInfo.for_dir(out_dir, seed=seed)
    if world.world_json.exists():
        previous = json.loads(world.world_json.read_text(encoding="utf-8"))
        if previous.get("parameters") == params and previous.get("version") == __version__:
            log.info("synthetic world in %s is already built with these parameters", world.out_dir)
            return load_world(world.out_dir)
        if not overwrite:
            raise InputError(f"{world.out_dir} holds a synthetic world built with other parameters "
                             f"({previous.get('parameters')}); use another --out or --overwrite")
        _remove_previous(world, previous)
    world.out_dir.mkdir(parents=True, exist_ok=True)

    jobs = [GlacierJob(TRAINING, i, seed, first_year, last_year, scenes_per_year, **extended)
            for i in range(n_training)]
    jobs += [GlacierJob(TIMESERIES, i, seed, first_year, last_year, scenes_per_year, **extended)
             for i in range(n_timeseries)]
    results = _build_all(jobs, world.out_dir, workers=workers, progress=progress)

    ids = [r.glims_id for r in results] + [r.patch_id for r in results if r.patch_id]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise RuntimeError(f"glacier ids collide: {dupes}")

    outlines = gpd.GeoDataFrame([row for r in results for row in r.outline_rows], geometry="geometry",
                                crs="EPSG:4326")
    _write_outlines(outlines, world.outlines)
    truth = pd.DataFrame([row for r in results for row in r.truth_rows])
    write_table(truth, world.truth_csv)
    trends = pd.DataFrame([r.trend_row for r in results])
    write_table(trends, world.truth_trends_csv)

    training_ids = [r.glims_id for r in results if r.kind == TRAINING]
    timeseries_ids = [r.glims_id for r in results if r.kind == TIMESERIES]
    write_json(world.world_json, {
        "generator": "glacierwatch.synth", "version": __version__, "parameters": params,
        "training_ids": training_ids, "timeseries_ids": timeseries_ids,
        "neighbour_patch_ids": [r.patch_id for r in results if r.patch_id],
        "n_scenes": int(len(truth)), "pixel_area_m2": PIXEL_AREA_M2,
        "files": {"outlines": SYNTH_OUTLINES, "outline_layer": OUTLINE_LAYER, "scenes": SYNTH_SCENES,
                  "dem": SYNTH_DEM, "truth": SYNTH_TRUTH, "potential": SYNTH_TRUTH_DIR, "trends": SYNTH_TRUTH_TRENDS},
        "glaciers": [r.summary for r in results],
    })
    log.info("synthetic world: %d training + %d time-series glaciers, %d scenes in %s",
             len(training_ids), len(timeseries_ids), len(truth), world.out_dir)
    return WorldInfo.for_dir(world.out_dir, training_ids=training_ids, timeseries_ids=timeseries_ids,
                             n_scenes=len(truth), seed=seed)


def make_world_from_config(out_dir: str | os.PathLike[str], config: SynthConfig, *, progress: bool = True,
                           overwrite: bool = False, workers: int | None = None) -> WorldInfo:
    """:func:`make_world` with the parameters of a :class:`~glacierwatch.config.SynthConfig`."""
    return make_world(out_dir, n_training=config.n_training_glaciers, n_timeseries=config.n_timeseries_glaciers,
                      seed=config.seed, first_year=config.first_year, last_year=config.last_year,
                      scenes_per_year=config.scenes_per_year, training_extra_scenes=config.training_extra_scenes,
                      melt_season=config.melt_season, lake_probability=config.lake_probability,
                      progress=progress, overwrite=overwrite, workers=workers)


__all__ = ["WorldInfo", "GlacierJob", "make_world", "make_world_from_config", "load_world", "true_mask",
           "build_glacier", "TRUTH_COLUMNS", "TREND_COLUMNS"]
