"""Figure 17 of the seed: a scene in true colour with the predicted glacier probability over it.

``glacierwatch timeseries overlay GLIMS_ID DATE... --areas areas.parquet --inventory inventory.parquet``
draws, for each requested date, the scene (red, green, blue reflectance, 2-98 % stretch per band; clouds
are left in and fill is black), the glacier probability as a semi-transparent colour layer with its
threshold contour, the inventory outline and the counting region (outline + ``buffer_m``), titled with
glacier id, date, satellite and area.

The probability is recomputed with the stage's own code (:func:`~glacierwatch.timeseries.areas.
smoothed_probabilities`) from the settings stored in the areas rows (segmenter, smoothing, sigma,
buffer) and the glacier's scenes listed in ``<areas stem>.scenes.parquet``: the smoothed
probability of a date depends on the scenes around it, so the series is read again (only the
requested dates are smoothed and segmented). The
area counted from the redrawn probability is compared with the table's; a difference (another
model, threshold or scene list than the run's) is logged and shown in the title.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import shapely
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from shapely.geometry.base import BaseGeometry

from glacierwatch.config import Smoothing, TimeseriesConfig
from glacierwatch.errors import DatasetNotFoundError, InputError
from glacierwatch.glacier import read_glaciers
from glacierwatch.grid import GlacierGrid, to_grid_crs
from glacierwatch.ids import validate_glims_id
from glacierwatch.io import atomic_path, read_scene, read_table
from glacierwatch.landsat import QA_BAND, qa_fill_mask, to_physical
from glacierwatch.layout import GlacierPaths, TimeseriesOutputs
from glacierwatch.timeseries.areas import (
    count_region,
    dem_at_chip_size,
    drop_small_patches,
    glacier_stack,
    patch_pixels,
    prepare_glacier,
    probabilities_on_grid,
    smoothed_probabilities,
    stack_size,
)
from glacierwatch.timeseries.run import find_dem
from glacierwatch.timeseries.segmenters import (
    Segmenter,
    SegmenterSpec,
    make_segmenter,
    segmenter_precision,
    works_on_grid,
)

log = logging.getLogger(__name__)

RGB_BANDS = ("red", "green", "blue")
#: Percentiles of the per-band contrast stretch.
STRETCH = (2.0, 98.0)
DPI = 100
#: Probabilities below this are not coloured (the scene shows through).
MIN_DRAWN_PROBABILITY = 0.05
PROBABILITY_CMAP = "plasma"
PROBABILITY_ALPHA = 0.45
#: Relative difference between the table's area and the redrawn one that counts as a mismatch.
AREA_MISMATCH_RTOL = 1e-6

_SETTING_COLUMNS = ("segmenter", "model_fingerprint", "smoothing", "sigma", "buffer_m")
_AREA_TABLE_COLUMNS = ("glims_id", "date", "satellite", "scene", "area_km2", "valid_fraction", *_SETTING_COLUMNS)


@dataclass
class OverlayScene:
    """Everything drawn for one glacier and scene (arrays on the glacier grid)."""

    glims_id: str
    date: dt.date
    satellite: str
    scene: str
    grid: GlacierGrid
    rgb: np.ndarray  # (rows, cols, 3) stretched true colour in [0, 1], fill black
    fill: np.ndarray  # (rows, cols) bool, no data
    probability: np.ndarray  # (rows, cols) float32, the smoothed probability resized to the grid
    outline: BaseGeometry  # inventory outline in the grid CRS
    region: BaseGeometry | None  # counting region (outline + buffer_m) in the grid CRS; None = whole box
    threshold: float
    area_km2: float  # from the areas table
    area_km2_redrawn: float  # counted again from ``probability``
    valid_fraction: float
    settings: dict[str, Any]

    @property
    def matches_table(self) -> bool:
        return math.isclose(self.area_km2, self.area_km2_redrawn, rel_tol=AREA_MISMATCH_RTOL, abs_tol=1e-9)


# ---------------------------------------------------------------- inputs

def _parse_date(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise InputError(f"not a date (expected YYYY-MM-DD): {value!r}") from None


def nearest_dates(available: Sequence[dt.date], target: dt.date, n: int = 3) -> list[dt.date]:
    """The ``n`` dates of ``available`` closest to ``target``, in date order."""
    unique = sorted(set(available))
    return sorted(sorted(unique, key=lambda d: (abs((d - target).days), d))[:n])


def _glacier_rows(areas_path: str | os.PathLike[str], glims_id: str) -> pd.DataFrame:
    table = read_table(areas_path, columns=_AREA_TABLE_COLUMNS)
    rows = table.loc[table["glims_id"] == glims_id].copy()
    if rows.empty:
        known = sorted(table["glims_id"].unique())
        shown = ", ".join(known[:5]) + (" ..." if len(known) > 5 else "")
        raise InputError(f"{glims_id}: no rows in {areas_path} ({len(known)} glaciers there: {shown or 'none'})")
    rows["date"] = pd.to_datetime(rows["date"]).dt.date
    return rows.sort_values(["date", "scene"]).reset_index(drop=True)


def _requested_rows(rows: pd.DataFrame, dates: Sequence[str | dt.date], glims_id: str,
                    areas_path: str | os.PathLike[str]) -> pd.DataFrame:
    wanted = list(dict.fromkeys(_parse_date(d) for d in dates))
    if not wanted:
        raise InputError("no date given")
    available = list(rows["date"])
    known = set(available)
    missing = [d for d in wanted if d not in known]
    if missing:
        first, last = min(available), max(available)
        parts = [f"{d} (nearest: {', '.join(str(x) for x in nearest_dates(available, d))})" for d in missing]
        raise InputError(f"{glims_id}: no area on {'; '.join(parts)} in {areas_path}; "
                         f"{len(set(available))} dates from {first} to {last}")
    return rows.loc[rows["date"].isin(wanted)].reset_index(drop=True)


def _run_settings(rows: pd.DataFrame, glims_id: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for column in _SETTING_COLUMNS:
        values = rows[column].drop_duplicates()
        if len(values) != 1:
            raise InputError(f"{glims_id}: the areas rows mix several values of {column!r} "
                             f"({list(values)}); rerun the stage")
        settings[column] = values.iloc[0]
    buffer_m = settings["buffer_m"]
    settings["buffer_m"] = None if buffer_m is None or not np.isfinite(buffer_m) else float(buffer_m)
    settings["sigma"] = float(settings["sigma"])
    # the model pass's precision (areas_version 4 on): the redraw uses the run's, not this config's
    precisions = rows["precision"].drop_duplicates() if "precision" in rows.columns else pd.Series([], dtype=object)
    if len(precisions) > 1:
        raise InputError(f"{glims_id}: the areas rows mix several values of 'precision' ({list(precisions)}); "
                         "rerun the stage")
    settings["precision"] = str(precisions.iloc[0]) if len(precisions) else None
    # the glacier's patch size limit (areas_version 5 on; before it, no limit was applied by default)
    patch = rows["min_patch_km2"].drop_duplicates() if "min_patch_km2" in rows.columns else pd.Series([0.0])
    if len(patch) > 1:
        raise InputError(f"{glims_id}: the areas rows mix several values of 'min_patch_km2' ({list(patch)}); "
                         "rerun the stage")
    settings["min_patch_km2"] = float(patch.iloc[0]) if np.isfinite(patch.iloc[0]) else 0.0
    return settings


def _glacier_scenes(areas_path: str | os.PathLike[str], rows: pd.DataFrame, glims_id: str) -> pd.DataFrame:
    """The glacier's scenes exactly as the run used them (from ``<areas stem>.scenes.parquet``)."""
    scenes_path = TimeseriesOutputs.for_path(areas_path).scenes
    scenes = read_table(scenes_path, columns=["glims_id", "path", "date", "satellite"])
    scenes = scenes.loc[scenes["glims_id"] == glims_id].reset_index(drop=True)
    used = set(rows["scene"])
    listed = {Path(str(p)).name for p in scenes["path"]}
    if listed != used:
        raise InputError(f"{glims_id}: the scenes in {scenes_path} ({len(listed)}) are not those of the areas "
                         f"table ({len(used)}); was the run repeated with another selection? Rerun the stage")
    return scenes


def _segmenter_for(settings: dict[str, Any], *, model: str | os.PathLike[str] | None, config: TimeseriesConfig,
                   device: str, glims_id: str) -> Segmenter:
    precision = settings.get("precision")
    bf16 = config.bf16 if precision is None else precision != "fp32"
    # an NDSI run on the grid's own pixels says so in its fingerprint (NDSISegmenter)
    resolution = "grid" if str(settings["model_fingerprint"]).endswith("@grid") else "chip"
    spec = SegmenterSpec(str(settings["segmenter"]), str(model) if model is not None else None,
                         config.batch_size, device, bf16=bf16, ndsi_resolution=resolution)
    segmenter = make_segmenter(spec)
    if precision is not None and segmenter_precision(segmenter) != precision:
        log.warning("%s: the areas were computed in %s, which %s cannot run; the redrawn areas may differ "
                    "slightly", glims_id, precision, device)
    if segmenter.fingerprint != settings["model_fingerprint"]:
        raise InputError(f"{glims_id}: the areas were computed with {settings['segmenter']} "
                         f"{settings['model_fingerprint']!r}, but {segmenter.name} here is "
                         f"{segmenter.fingerprint!r}" + (" (--model)" if model is not None else ""))
    return segmenter


def _true_colour(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols, 3) red/green/blue reflectance stretched to [0, 1] per band between its 2nd and
    98th percentiles over the non-fill pixels (clouds included); fill pixels are black."""
    scene = read_scene(path, bands=(*RGB_BANDS, QA_BAND))
    layers = [to_physical(b, scene.bands[b]) for b in RGB_BANDS]
    fill = qa_fill_mask(scene.bands[QA_BAND]) | np.any([np.isnan(x) for x in layers], axis=0)
    rgb = np.zeros((*fill.shape, 3), dtype=np.float32)
    for i, values in enumerate(layers):
        seen = values[~fill]
        if seen.size == 0:
            continue
        lo, hi = np.percentile(seen, STRETCH)
        stretched = (values - lo) / max(float(hi - lo), 1e-6)
        rgb[..., i] = np.clip(np.nan_to_num(stretched, nan=0.0), 0.0, 1.0)
    rgb[fill] = 0.0
    return rgb, fill


# ---------------------------------------------------------------- data and figures

def overlay_data(glims_id: str, dates: Sequence[str | dt.date], *, areas_path: str | os.PathLike[str],
                 inventory_path: str | os.PathLike[str], model: str | os.PathLike[str] | None = None,
                 dem_dir: str | os.PathLike[str] | None = None, config: TimeseriesConfig | None = None,
                 segmenter: Segmenter | None = None, device: str = "cpu", chip_size: int = 128,
                 threads: int = 2) -> list[OverlayScene]:
    """What :func:`overlay_figures` draws, one :class:`OverlayScene` per areas row on the requested dates.

    The segmenter is rebuilt from the rows' ``segmenter`` (``model`` is its checkpoint for ``unet``) and
    must have the rows' ``model_fingerprint``; ``segmenter`` passes an already built one instead (tests,
    oracles). Smoothing, sigma and buffer come from the rows; ``config`` gives the threshold and batch size.
    """
    config = config if config is not None else TimeseriesConfig()
    validate_glims_id(glims_id)
    rows = _glacier_rows(areas_path, glims_id)
    chosen = _requested_rows(rows, dates, glims_id, areas_path)
    settings = _run_settings(rows, glims_id)
    # the run's own value, written by the stage from a checked config (the stack refuses any other)
    smoothing = cast(Smoothing, str(settings["smoothing"]))
    sigma_key = "sigma_days" if smoothing == "time" else "sigma"
    run_config = dataclasses.replace(config, smoothing=smoothing, buffer_m=settings["buffer_m"],
                                     **({sigma_key: settings["sigma"]} if smoothing != "none" else {}))
    scenes = _glacier_scenes(areas_path, rows, glims_id)
    if not Path(inventory_path).exists():
        raise DatasetNotFoundError(f"inventory not found: {inventory_path}")
    if segmenter is None:
        segmenter = _segmenter_for(settings, model=model, config=config, device=device, glims_id=glims_id)
    glacier = read_glaciers(inventory_path, [glims_id])[glims_id]
    geometry = glacier.outline

    scenes, grid, outline = prepare_glacier(glims_id, scenes, geometry, glacier.grid)
    dem_path = find_dem(GlacierPaths(glims_id, dem_dir=Path(dem_dir) if dem_dir is not None else None), segmenter)
    size = stack_size(grid, chip_size, on_grid=works_on_grid(segmenter))
    dem_small = dem_at_chip_size(dem_path, grid, size) if dem_path is not None else None
    position = {Path(str(p)).name: i for i, p in enumerate(scenes["path"])}
    dates_all = list(pd.to_datetime(scenes["date"]).dt.date)
    with glacier_stack(scenes, grid, outline, config=run_config, chip_size=size, threads=threads,
                       glims_id=glims_id) as stack:
        wanted = [position[name] for name in chosen["scene"]]
        probs = smoothed_probabilities(glims_id, stack, wanted, dates=dates_all, dem_small=dem_small,
                                       segmenter=segmenter, config=run_config)
    region = count_region(geometry, grid, run_config.buffer_m, glacier.territory_wkb)
    outline_xy = to_grid_crs(geometry, grid)
    region_xy = None
    if run_config.buffer_m is not None:  # what count_region counts: outline + buffer within the territory
        region_xy = outline_xy.buffer(run_config.buffer_m) if run_config.buffer_m else outline_xy
        if run_config.buffer_m and glacier.territory_wkb is not None:
            region_xy = region_xy.intersection(shapely.from_wkb(glacier.territory_wkb))

    out = []
    for row in chosen.itertuples(index=False):
        i = position[row.scene]
        probability = probabilities_on_grid(probs[i][None], grid)[0]
        counted = drop_small_patches(((probability > run_config.threshold) & region)[None],
                                     patch_pixels(settings["min_patch_km2"], grid))[0]
        redrawn = float(counted.sum() * grid.pixel_area_m2 / 1e6)
        rgb, fill = _true_colour(scenes["path"].iloc[i])
        item = OverlayScene(glims_id=glims_id, date=row.date, satellite=str(row.satellite), scene=str(row.scene),
                            grid=grid, rgb=rgb, fill=fill, probability=probability, outline=outline_xy,
                            region=region_xy, threshold=run_config.threshold, area_km2=float(row.area_km2),
                            area_km2_redrawn=redrawn, valid_fraction=float(row.valid_fraction),
                            settings=settings)
        if not item.matches_table:
            log.warning("%s %s: area redrawn from the probability %.4f km² differs from the table's %.4f km² "
                        "(other threshold, model or scenes than the run's?)", glims_id, row.date, redrawn,
                        item.area_km2)
        out.append(item)
    return out


def _polygon_lines(geometry: BaseGeometry) -> list[np.ndarray]:
    """Exterior and interior rings of a (multi)polygon as (n, 2) coordinate arrays."""
    lines = []
    for part in getattr(geometry, "geoms", [geometry]):
        if part.is_empty or not hasattr(part, "exterior"):
            continue
        lines.append(np.asarray(part.exterior.coords))
        lines.extend(np.asarray(ring.coords) for ring in part.interiors)
    return lines


def overlay_figure(item: OverlayScene) -> Figure:
    """The figure of one :class:`OverlayScene` (map coordinates in km of the grid's CRS)."""
    grid = item.grid
    km = 1000.0
    extent = (grid.x0 / km, (grid.x0 + grid.width * grid.resolution) / km,
              (grid.y0 - grid.height * grid.resolution) / km, grid.y0 / km)
    aspect = grid.height / max(grid.width, 1)
    fig = Figure(figsize=(7.8, max(4.0, min(9.0, 6.2 * aspect + 1.4))), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(item.rgb, extent=extent, origin="upper", interpolation="nearest")
    norm = Normalize(0.0, 1.0)
    shown = np.ma.masked_less(item.probability, MIN_DRAWN_PROBABILITY)
    ax.imshow(shown, extent=extent, origin="upper", cmap=PROBABILITY_CMAP, norm=norm, alpha=PROBABILITY_ALPHA,
              interpolation="nearest")
    handles: list[Any] = []
    if np.nanmax(item.probability) > item.threshold > np.nanmin(item.probability):
        ax.contour(item.probability, levels=[item.threshold], extent=extent, origin="upper", colors="cyan",
                   linewidths=1.2)
        handles.append(Line2D([], [], color="cyan", lw=1.2, label=f"probability {item.threshold:g}"))
    for line in _polygon_lines(item.outline):
        ax.plot(line[:, 0] / km, line[:, 1] / km, color="red", lw=1.4)
    handles.append(Line2D([], [], color="red", lw=1.4, label="inventory outline"))
    if item.region is not None:
        for line in _polygon_lines(item.region):
            ax.plot(line[:, 0] / km, line[:, 1] / km, color="white", lw=0.9, ls=":")
        handles.append(Line2D([], [], color="white", lw=0.9, ls=":",
                              label=f"counted: outline + {item.settings['buffer_m']:g} m"))
    if item.fill.any():
        handles.append(Patch(facecolor="black", edgecolor="0.5", label="fill (no data)"))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_facecolor("black")
    ax.set_xlabel(f"easting (km, {grid.crs})")
    ax.set_ylabel("northing (km)")
    ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.75)
    fig.colorbar(ScalarMappable(norm=norm, cmap=PROBABILITY_CMAP), ax=ax, shrink=0.8,
                 label="glacier probability")
    s = item.settings
    smoothing = s["smoothing"] + (f", σ = {s['sigma']:g} images" if s["smoothing"] != "none" else "")
    title = f"{item.glims_id}   {item.date}   {item.satellite}   area {item.area_km2:.3f} km²"
    detail = f"{s['segmenter']} ({s['model_fingerprint']}), smoothing {smoothing}, observed {item.valid_fraction:.0%}"
    if not item.matches_table:
        detail += f"\nredrawn area {item.area_km2_redrawn:.3f} km²: settings differ from the run's"
    ax.set_title(f"{title}\n{detail}", fontsize=9)
    return fig


def overlay_path(out_dir: str | os.PathLike[str], item: OverlayScene) -> Path:
    """``<out_dir>/overlay_<scene file stem>.png`` (:meth:`GlacierPaths.overlay`)."""
    return GlacierPaths(item.glims_id, overlays=Path(out_dir)).overlay(item.scene)


def overlay_figures(glims_id: str, dates: Sequence[str | dt.date], *, areas_path: str | os.PathLike[str],
                    inventory_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    model: str | os.PathLike[str] | None = None, dem_dir: str | os.PathLike[str] | None = None,
                    config: TimeseriesConfig | None = None, segmenter: Segmenter | None = None,
                    device: str = "cpu", chip_size: int = 128) -> list[Path]:
    """Write one PNG per scene of ``glims_id`` on each of ``dates`` (see the module doc); return the paths.

    Dates are ``datetime.date`` or ISO strings; one not in the areas table is an :class:`InputError`
    naming the nearest dates that are.
    """
    items = overlay_data(glims_id, dates, areas_path=areas_path, inventory_path=inventory_path, model=model,
                         dem_dir=dem_dir, config=config, segmenter=segmenter, device=device, chip_size=chip_size)
    paths = []
    for item in items:
        fig = overlay_figure(item)
        target = overlay_path(out_dir, item)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
        paths.append(target)
        log.info("%s %s: %s", glims_id, item.date, target)
    return paths
