"""One glacier's scenes as an xarray DataArray (time, band, y, x) in physical units, via rioxarray.

Landsat 5/7 files hold 8 bands and Landsat 8/9 files 9 (OLI's ``coastal``), and their band numbers
differ; here every scene is relabelled by **common name** (``blue`` ... ``swir22``, ``lwir``) and
only the bands every sensor has are kept, so scenes of all missions concatenate along ``time``.
Values are surface reflectance (unitless, 0-1) and surface temperature (kelvin), converted with
:func:`glacierwatch.landsat.to_physical` (the only place scale factors live); fill is NaN. The QA
travels along: coordinate ``qa_pixel`` (time, y, x; the Collection 2 bit field) and ``clear``
(time, y, x; True where no fill, cloud, dilated cloud, cirrus or shadow bit is set).

    >>> from glacierwatch.scenes_xr import open_scenes
    >>> da = open_scenes("work", "G007026E45991N")            # doctest: +SKIP
    >>> da.sel(band="nir08").where(da.clear).mean("time")     # doctest: +SKIP

Needs ``pip install -e '.[xarray]'`` (xarray, rioxarray).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from glacierwatch.errors import DatasetNotFoundError, InputError
from glacierwatch.ids import validate_glims_id
from glacierwatch.io import band_scale_offset, read_scene
from glacierwatch.landsat import COMMON_BANDS, QA_BAND, qa_invalid_mask, to_physical
from glacierwatch.layout import SCENE_NAME_PATTERN, SCENES, parse_scene_name

if TYPE_CHECKING:
    import xarray as xr


def _xarray() -> tuple[object, object]:
    try:
        import rioxarray  # noqa: F401  (registers the .rio accessor)
        import xarray
    except ImportError as exc:
        raise InputError("open_scenes needs xarray and rioxarray: from a clone: pip install -e '.[xarray]'") from exc
    return xarray, rioxarray


def scene_files(workdir_or_scenes_dir: str | os.PathLike[str], glims_id: str) -> list[Path]:
    """The glacier's standard scene files, by date: ``WORKDIR/scenes/<GLIMS_ID>/`` or ``SCENES_DIR/<GLIMS_ID>/``."""
    root = Path(workdir_or_scenes_dir)
    glims_id = validate_glims_id(glims_id)
    for folder in (root / SCENES / glims_id, root / glims_id):
        if folder.is_dir():
            files = [p for p in folder.iterdir() if SCENE_NAME_PATTERN.match(p.name)]
            if files:
                return sorted(files, key=lambda p: (parse_scene_name(p.name).date, p.name))
    raise DatasetNotFoundError(f"no scene files of {glims_id} under {root} (looked in scenes/{glims_id}/ and {glims_id}/)")


def open_scenes(workdir_or_scenes_dir: str | os.PathLike[str], glims_id: str, *,
                bands: tuple[str, ...] = COMMON_BANDS) -> xr.DataArray:
    """All scenes of one glacier as a DataArray ``(time, band, y, x)``, float32 physical values.

    ``bands``: common names (default: the six reflective bands and ``lwir``, which every sensor
    has; ``coastal`` only if every scene is Landsat 8/9). Coordinates: ``time`` (datetime64),
    ``band``, ``x``/``y`` (grid CRS, pixel centres), ``satellite`` and ``scene`` per time, ``units``
    per band (``reflectance`` or ``K``), ``qa_pixel`` and ``clear`` per pixel; the CRS via
    ``.rio.crs``. InputError if the scenes are not on one grid or lack a band.
    """
    xarray, _ = _xarray()
    files = scene_files(workdir_or_scenes_dir, glims_id)
    if QA_BAND in bands:
        raise InputError(f"{QA_BAND} is a bit field, not a band of physical values: it is the qa_pixel coordinate")
    values, qa, times, satellites = [], [], [], []
    grid = None
    for path in files:
        scene = read_scene(path, bands=(*bands, QA_BAND))
        if grid is None:
            grid = scene.grid
        elif scene.grid != grid:
            raise InputError(f"{path}: scene grid {scene.grid} differs from the first scene's {grid}")
        values.append(np.stack([to_physical(b, scene.bands[b]) for b in bands]))
        qa.append(scene.bands[QA_BAND])
        name = parse_scene_name(path.name)
        times.append(pd.Timestamp(name.date))
        satellites.append(name.satellite)
    assert grid is not None
    xs = grid.x0 + grid.resolution * (np.arange(grid.width) + 0.5)
    ys = grid.y0 - grid.resolution * (np.arange(grid.height) + 0.5)
    qa_stack = np.stack(qa)
    da = xarray.DataArray(  # type: ignore[attr-defined]
        np.stack(values), dims=("time", "band", "y", "x"),
        coords={"time": pd.DatetimeIndex(times), "band": list(bands), "y": ys, "x": xs,
                "satellite": ("time", satellites), "scene": ("time", [p.name for p in files]),
                "units": ("band", [band_scale_offset(b)[2] for b in bands]),
                QA_BAND: (("time", "y", "x"), qa_stack),
                "clear": (("time", "y", "x"), ~qa_invalid_mask(qa_stack))},
        name="surface", attrs={"glims_id": glims_id, "long_name": "surface reflectance (reflective bands), "
                               "surface temperature in K (lwir); NaN = fill"})
    return da.rio.write_crs(grid.crs).rio.write_transform(grid.transform)


__all__ = ["open_scenes", "scene_files"]
