"""An in-memory imagery source for testing the fetch driver (plans, manifests, ledger, resume).

Scenes are generated deterministically from their id, so a rerun or a retry produces the same
pixels. ``fail`` lists scene ids that raise; ``transient`` makes them raise a retryable error;
``delay_s`` slows each read (the kill-and-rerun test needs time to kill the process mid-fetch).
"""

from __future__ import annotations

import datetime as dt
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from glacierwatch.grid import GlacierGrid
from glacierwatch.imagery.records import GlacierRequest, SceneRecord
from glacierwatch.imagery.sources.base import SourceError, TransientSourceError
from glacierwatch.landsat import QA, SCENE_BANDS


def tiny_grid(x0: float = 350_010.0, y0: float = 5_100_000.0, *, width: int = 24, height: int = 18,
              crs: str = "EPSG:32632") -> GlacierGrid:
    return GlacierGrid(crs=crs, x0=x0, y0=y0, resolution=30.0, width=width, height=height)


def write_tiny_inventory(path: Path, grids: dict[str, GlacierGrid], outline_date: str = "2003-08-15") -> Path:
    """A minimal inventory table: the columns the imagery stage reads."""
    df = pd.DataFrame({"glims_id": list(grids), "grid": [g.to_json() for g in grids.values()],
                       "outline_date": pd.to_datetime([outline_date] * len(grids))})
    df.to_parquet(path, index=False)
    return path


def synthetic_bands(scene_id: str, grid: GlacierGrid) -> dict[str, np.ndarray]:
    """Deterministic uint16 DN per band for ``scene_id``; a no-data corner when the id ends in 'edge'."""
    rng = np.random.default_rng(zlib.crc32(scene_id.encode()))
    bands = {b: rng.integers(7_300, 40_000, size=grid.shape, dtype=np.uint16) for b in SCENE_BANDS}
    bands["qa_pixel"] = np.full(grid.shape, int(QA.CLEAR), dtype=np.uint16)
    if scene_id.endswith("edge"):
        for name in bands:
            bands[name][:, : grid.width // 3] = 0
        bands["qa_pixel"][:, : grid.width // 3] = int(QA.FILL)
    return bands


class FakeSource:
    """Records on a fixed list of dates for every glacier; pixels from :func:`synthetic_bands`."""

    name = "fake"

    def __init__(self, dates: Sequence[str], *, satellite: str = "L7", fail: Sequence[str] = (),
                 transient: bool = False, delay_s: float = 0.0, extra_ids: Sequence[str] = (),
                 with_dem: bool = True, dem_nan: bool = False) -> None:
        self.dates = [dt.date.fromisoformat(d) for d in dates]
        self.satellite = satellite
        self.fail = set(fail)
        self.transient = transient
        self.delay_s = delay_s
        self.extra_ids = list(extra_ids)  # "<date>:<suffix>": a second image of the same overpass
        self.with_dem = with_dem
        self.dem_nan = dem_nan  # a DEM with no data over the glacier (NASADEM north of 60 N)
        self.searches = 0
        self.reads: list[str] = []

    def search(self, request: GlacierRequest) -> list[SceneRecord]:
        self.searches += 1
        out = []
        for i, date in enumerate(self.dates):
            if not request.start <= date <= request.end:
                continue
            sid = f"{request.glims_id}-{date.isoformat()}"
            out.append(SceneRecord(source=self.name, scene_id=sid, glims_id=request.glims_id, date=date,
                                   satellite=self.satellite,
                                   properties={"CLOUD_COVER": 5.0 + i, "DATE_ACQUIRED": date.isoformat(),
                                               "SPACECRAFT_ID": "LANDSAT_7", "IMAGE_QUALITY": 9,
                                               "LANDSAT_PRODUCT_ID": sid},
                                   handle={"id": sid}))
        for extra in self.extra_ids:
            day, suffix = extra.split(":")
            date = dt.date.fromisoformat(day)
            sid = f"{request.glims_id}-{day}-{suffix}"
            out.append(SceneRecord(source=self.name, scene_id=sid, glims_id=request.glims_id, date=date,
                                   satellite=self.satellite,
                                   properties={"CLOUD_COVER": 50.0, "DATE_ACQUIRED": day,
                                               "SPACECRAFT_ID": "LANDSAT_7", "IMAGE_QUALITY": 9,
                                               "LANDSAT_PRODUCT_ID": sid},
                                   handle={"id": sid}))
        return out

    def read(self, record: SceneRecord, grid: GlacierGrid) -> dict[str, np.ndarray]:
        if self.delay_s:
            time.sleep(self.delay_s)
        self.reads.append(record.scene_id)
        if record.scene_id in self.fail:
            error = TransientSourceError if self.transient else SourceError
            raise error(f"{record.scene_id}: simulated failure")
        return synthetic_bands(record.scene_id, grid)

    def read_dem(self, request: GlacierRequest) -> np.ndarray | None:
        if not self.with_dem:
            return None
        if self.dem_nan:
            return np.full(request.grid.shape, np.nan, dtype=np.float32)
        rows, cols = np.mgrid[0 : request.grid.height, 0 : request.grid.width]
        return (2500.0 + 10.0 * rows + cols).astype(np.float32)
