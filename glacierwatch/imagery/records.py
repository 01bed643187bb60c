"""What a fetch asks for and what a source answers: small frozen records shared by every source.

* :class:`GlacierRequest` — one glacier's grid, its WGS 84 search box and the date window.
* :class:`SceneRecord` — one provider image found for a glacier (an Earth Engine image, a STAC item,
  a local file): its date, satellite, provider id, the USGS metadata properties the catalog reads,
  and an opaque ``handle`` the source needs to read its pixels.

Several records with the same glacier, date and satellite (overlapping WRS-2 rows of one overpass)
make one standard scene file: their pixels are mosaicked on the glacier grid and the side-car JSON
holds every record's properties (the catalog's duplicate rule then applies).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from pyproj import Transformer

from glacierwatch.config import FetchMode, choices
from glacierwatch.errors import InputError
from glacierwatch.grid import GlacierGrid
from glacierwatch.ids import is_glims_id, validate_glims_id
from glacierwatch.io import read_table

#: Fetch modes: the training window around the outline date, or the whole archive.
MODES = choices(FetchMode)
#: First and last possible Landsat 5 - 9 Collection 2 acquisition dates for the time-series mode.
ARCHIVE_START = dt.date(1984, 3, 1)


@dataclass(frozen=True)
class GlacierRequest:
    """One glacier's fetch: its grid (every pixel written lands on it), the WGS 84 box of that grid
    (lon_min, lat_min, lon_max, lat_max in degrees, for server-side search) and the inclusive date
    window. ``max_cloud_cover`` (%, scene-level) is pushed down to the provider when set."""

    glims_id: str
    grid: GlacierGrid
    bbox: tuple[float, float, float, float]
    start: dt.date
    end: dt.date
    max_cloud_cover: float | None = None
    satellites: tuple[str, ...] = ("L5", "L7", "L8", "L9")


@dataclass(frozen=True)
class SceneRecord:
    """One provider image over a glacier.

    ``scene_id`` is the provider's id (EE ``system:index``, STAC item id, or a local file name);
    ``properties`` are USGS metadata keys as Earth Engine names them (``CLOUD_COVER``,
    ``IMAGE_QUALITY``, ``SPACECRAFT_ID``, ``DATE_ACQUIRED``, ...) — written to the side-car JSON the
    catalog reads; ``handle`` is what the source needs to read the pixels (not written to the scene).
    """

    source: str
    scene_id: str
    glims_id: str
    date: dt.date
    satellite: str
    properties: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    handle: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def group_key(self) -> tuple[str, str, str]:
        """(glims_id, date, satellite): records sharing it are one standard scene file."""
        return (self.glims_id, self.date.isoformat(), self.satellite)

    def cloud_cover(self) -> float:
        """Scene cloud cover, % (infinite when unknown, so it sorts last)."""
        value = self.properties.get("CLOUD_COVER")
        try:
            return float(value) if value is not None else float("inf")
        except (TypeError, ValueError):
            return float("inf")


def grid_lonlat_bounds(grid: GlacierGrid) -> tuple[float, float, float, float]:
    """The WGS 84 box (degrees) enclosing ``grid`` (edges densified, so it covers the whole grid)."""
    tr = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    left, bottom, right, top = grid.bounds
    return tuple(float(v) for v in tr.transform_bounds(left, bottom, right, top, densify_pts=21))  # type: ignore[return-value]


def _as_date(value: Any, where: str = "") -> dt.date | None:
    """A date from a table cell; None when empty; InputError naming ``where`` (the row) when the
    cell holds something that is not a real date (``2016-13-45`` is refused, not guessed)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    import pandas as pd

    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, str) and not value.strip():
        return None
    try:
        return pd.Timestamp(value).date()
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{where}outline_date {value!r} is not a date (YYYY-MM-DD)") from exc


def requests_from_inventory(inventory: str | os.PathLike[str], *, mode: str, start: dt.date | None = None,
                            end: dt.date | None = None, window_days: int = 50,
                            glaciers: list[str] | None = None, max_cloud_cover: float | None = None,
                            today: dt.date | None = None) -> list[GlacierRequest]:
    """One :class:`GlacierRequest` per inventory glacier (``inventory.parquet`` of the inventory stage).

    ``mode="training"``: the outline date +- ``window_days`` days (the seed's 100-day window);
    ``mode="timeseries"``: 1984-03-01 (Landsat 5) to today. ``start``/``end`` override either.
    """
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; expected one of {MODES}")
    df = read_table(inventory, columns=["glims_id", "grid", "outline_date"])
    # ids become paths (plans, manifests, scene folders): every one is checked before any is used
    bad = [g for g in df["glims_id"] if not is_glims_id(g)]
    if bad:
        raise InputError(f"{inventory}: {len(bad)} value(s) of glims_id are not GLIMS ids "
                         f"(expected e.g. G007026E45991N), e.g. {bad[0]!r}")
    if glaciers:
        for gid in glaciers:
            validate_glims_id(gid)
        unknown = sorted(set(glaciers) - set(df["glims_id"]))
        if unknown:
            raise InputError(f"{inventory}: glacier(s) not in the inventory: {', '.join(unknown)}")
        df = df[df["glims_id"].isin(glaciers)]
    today = today or dt.date.today()
    out: list[GlacierRequest] = []
    for row in df.itertuples(index=False):
        gid = str(row.glims_id)
        try:
            grid = GlacierGrid.from_dict(json.loads(row.grid))
        except (TypeError, ValueError, KeyError) as exc:
            raise InputError(f"{inventory}: glacier {gid} has no valid grid ({exc})") from exc
        if mode == "training":
            outline = _as_date(row.outline_date, f"{inventory}: glacier {gid}: ")
            if outline is None and (start is None or end is None):
                raise InputError(f"{inventory}: glacier {gid} has no outline date; give --start and --end")
            # outline is None only when both start and end are given (checked above)
            g_start = start if start is not None else cast(dt.date, outline) - dt.timedelta(days=window_days)
            g_end = end if end is not None else cast(dt.date, outline) + dt.timedelta(days=window_days)
        else:
            g_start, g_end = start or ARCHIVE_START, end or today
        if g_end < g_start:
            raise InputError(f"empty date window {g_start} .. {g_end}")
        out.append(GlacierRequest(glims_id=gid, grid=grid, bbox=grid_lonlat_bounds(grid), start=g_start,
                                  end=g_end, max_cloud_cover=max_cloud_cover))
    return out
