"""One glacier's facts, read once from the inventory and handed to every per-glacier task.

In the spirit of OGGM's ``GlacierDirectory``: the stages do not work out a glacier's grid, outline or
territory again from files; they receive a frozen :class:`Glacier` built from its inventory row.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from glacierwatch.errors import InputError
from glacierwatch.grid import GlacierGrid
from glacierwatch.layout import GlacierPaths


@dataclass(frozen=True)
class Glacier:
    """A glacier of the inventory.

    ``outline``: the chosen outline (shapely, EPSG:4326); ``grid``: its glacier grid (UTM, 30 m, the
    inventory's box); ``latitude``: of the outline's centroid (degrees); ``territory_wkb``: WKB of the
    part of the box nearer this glacier than any other inventory glacier, other outlines removed, in
    the grid's CRS (None when the inventory has no territories: no neighbour exclusion); ``paths``:
    the glacier's files in the stage's folders (:class:`~glacierwatch.layout.GlacierPaths`), set by the
    stage that reads the records (None: not given; not part of equality, a record is its facts).
    """

    glims_id: str
    region: str
    hemisphere: str
    latitude: float
    grid: GlacierGrid
    outline: BaseGeometry
    territory_wkb: bytes | None = None
    paths: GlacierPaths | None = field(default=None, compare=False)

    @classmethod
    def from_inventory_row(cls, row: Any) -> Glacier:
        territory = row.get("territory_wkb") if hasattr(row, "get") else None
        if territory is not None and not isinstance(territory, (bytes, bytearray)):
            territory = None  # NaN / None: no territory recorded
        latitude = row.get("centroid_lat") if hasattr(row, "get") else None
        if latitude is None or not np.isfinite(latitude):
            latitude = float(row["geometry"].centroid.y)
        return cls(glims_id=str(row["glims_id"]), region=str(row["region"]),
                   hemisphere=str(row.get("hemisphere", "N" if float(latitude) >= 0 else "S")),
                   latitude=float(latitude), grid=GlacierGrid.from_json(str(row["grid"])),
                   outline=row["geometry"], territory_wkb=bytes(territory) if territory is not None else None)


def read_glaciers(inventory: str | os.PathLike[str], glims_ids: Iterable[str] | None = None, *,
                  paths: Callable[[str], GlacierPaths] | None = None) -> dict[str, Glacier]:
    """The :class:`Glacier` of each inventory row (those of ``glims_ids`` only, when given), read once,
    each carrying ``paths(glims_id)`` when given (e.g. ``TimeseriesOutputs.glacier``).
    InputError naming the first id the inventory lacks."""
    import geopandas as gpd

    inv = gpd.read_parquet(inventory)
    if glims_ids is not None:
        wanted = list(dict.fromkeys(glims_ids))
        missing = sorted(set(wanted) - set(inv["glims_id"]))
        if missing:
            raise InputError(f"{missing[0]}: not in the inventory {inventory}"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        inv = inv[inv["glims_id"].isin(wanted)]
    glaciers = {str(row["glims_id"]): Glacier.from_inventory_row(row) for _, row in inv.iterrows()}
    if paths is not None:
        glaciers = {gid: dataclasses.replace(g, paths=paths(gid)) for gid, g in glaciers.items()}
    return glaciers
