"""Earth Engine-style export folders made from a synthetic world (what a user downloads from Drive).

For each glacier, each standard scene becomes ``<out>/<GLIMS_ID>/<system:index>.tif`` (e.g.
``LC08_195028_20200815.tif``) with the Earth Engine band names of its sensor as band descriptions
(TM/ETM+ ``SR_B1`` = blue ... ``ST_B6``; OLI ``SR_B1`` = coastal, ``SR_B2`` = blue ... ``ST_B10``), in
Earth Engine's band order, uint16 DN, on a larger box than the glacier grid (same UTM lattice, fill
around), with the scene's properties in a ``X.tif.json`` side-car. Each glacier's DEM becomes
``<out>/dem/<GLIMS_ID>_NASADEM.tif`` on its own, larger grid (float32 m, nodata -9999).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from glacierwatch.io import read_raster, read_scene
from glacierwatch.landsat import QA, QA_BAND, SENSORS
from glacierwatch.synth import WorldInfo

#: Earth Engine's band order of the Collection 2 Level-2 images (SR bands, then ST, then QA).
EE_ORDER = {"TM": ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7", "ST_B6", "QA_PIXEL"),
            "OLI": ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7", "ST_B10", "QA_PIXEL")}
_PRODUCT = {"L5": "LT05", "L7": "LE07", "L8": "LC08", "L9": "LC09"}
DEM_NODATA = -9999.0


@dataclass(frozen=True)
class EarthEngineExport:
    """What :func:`export_like_earth_engine` wrote: the folder, its DEM folder, and per original
    scene file the export that holds its pixels."""

    root: Path
    dem_dir: Path
    scenes: dict[Path, Path]  # original standard scene -> exported file


def _grown(transform: Affine, margin: int) -> Affine:
    return transform @ Affine.translation(-margin, -margin)


def _write(path: Path, data: np.ndarray, transform: Affine, crs: str, descriptions: list[str], nodata: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data)
        for i, desc in enumerate(descriptions, start=1):
            dst.set_band_description(i, desc)


def export_like_earth_engine(world: WorldInfo, out: Path, glims_ids: tuple[str, ...], *, margin: int = 4) -> EarthEngineExport:
    """Write the Earth Engine-style folder of ``glims_ids`` (see the module docstring) under ``out``.

    ``margin``: pixels added around the world's box on each side (fill), or, when negative, cut off
    (an export region smaller than the glacier's box).
    """
    scenes: dict[Path, Path] = {}
    for gid in glims_ids:
        for original in world.scene_files(gid):
            scene = read_scene(original, bands=_bands_of(original))
            props = json.loads(original.with_suffix(".json").read_text(encoding="utf-8"))
            if isinstance(props, list):  # the world's duplicate records: an export holds one image's properties
                props = props[0]
            sat = scene.tags["satellite"]
            sensor = SENSORS[sat]
            by_ee = {ee: common for common, ee in sensor.ee_bands.items()}
            order = EE_ORDER["OLI" if sat in ("L8", "L9") else "TM"]
            stack = np.stack([_pad(scene.bands[by_ee[ee]], margin, int(QA.FILL) if by_ee[ee] == QA_BAND else 0)
                              for ee in order])  # Earth Engine's masked border: DN 0, QA fill bit
            date = scene.tags["date"].replace("-", "")
            index = f"{_PRODUCT[sat]}_{int(props['WRS_PATH']):03d}{int(props['WRS_ROW']):03d}_{date}"
            target = out / gid / f"{index}.tif"
            _write(target, stack, _grown(scene.grid.transform, margin), scene.grid.crs, list(order), nodata=0)
            target.with_name(target.name + ".json").write_text(json.dumps(props), encoding="utf-8")
            scenes[original] = target
        elevation, grid, _ = read_raster(world.dem_path(gid))
        dem = _pad(np.nan_to_num(elevation, nan=DEM_NODATA).astype(np.float32), margin, DEM_NODATA)[np.newaxis]
        _write(out / "dem" / f"{gid}_NASADEM.tif", dem, _grown(grid.transform, margin), grid.crs, ["elevation"],
               nodata=DEM_NODATA)
    return EarthEngineExport(root=out, dem_dir=out / "dem", scenes=scenes)


def _pad(band: np.ndarray, margin: int, fill: float) -> np.ndarray:
    """``band`` with ``margin`` pixels of ``fill`` added on each side, or cut off when negative."""
    if margin < 0:
        return band[-margin:margin, -margin:margin].copy()
    return np.pad(band, margin, constant_values=fill)


def _bands_of(path: Path) -> tuple[str, ...]:
    with rasterio.open(path) as src:
        return tuple(d for d in src.descriptions if d)
