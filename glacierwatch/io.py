"""Raster and table I/O shared by all stages.

Every write goes to a temporary file beside the target and is renamed into place, so a killed
process never leaves a half-written file that looks complete.

Standard scene file: a GeoTIFF on the glacier grid whose bands carry their common names as band
descriptions (``blue`` ... ``lwir``, ``qa_pixel``, optionally ``coastal``), uint16 DN, nodata 0; the
fetch writes them as Cloud Optimized GeoTIFFs whose bands carry the Collection 2 scale/offset
(:func:`write_scene_cog`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from rasterio.errors import RasterioIOError

from glacierwatch.errors import DatasetNotFoundError, InputError, SceneReadError
from glacierwatch.grid import GlacierGrid
from glacierwatch.landsat import (
    FILL_DN,
    QA_BAND,
    REFLECTIVE_BANDS,
    SCENE_BANDS,
    SR_OFFSET,
    SR_SCALE,
    ST_OFFSET,
    ST_SCALE,
    THERMAL_BAND,
    band_names,
    common_band_name,
)


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create the folder ``path`` (and its parents); InputError with one line if a file is in the way."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise InputError(f"cannot create the folder {folder}: {blocker} is a file, not a folder") from exc
    except PermissionError as exc:
        raise InputError(f"cannot create the folder {folder}: permission denied") from exc
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"cannot write {target}: it is a folder")
    ensure_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the usual permissions (0666 less the umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically (UTF-8, indented, keys sorted)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def append_json_line(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON record as a line (ledgers, manifests) and flush it to disk.

    A line torn by a killed writer is never glued to the next record: if the file does not end in a
    newline, one is written first. Callers appending from several threads hold their own lock.
    """
    target = Path(path)
    ensure_dir(target.parent)
    line = json.dumps(dict(record), sort_keys=True, default=str).encode() + b"\n"
    with open(target, "ab") as fh:
        if fh.tell() > 0:
            with open(target, "rb") as check:
                check.seek(-1, os.SEEK_END)
                if check.read(1) != b"\n":
                    line = b"\n" + line
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_json_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (empty if it does not exist); a torn line is skipped."""
    target = Path(path)
    if not target.exists():
        return []
    rows = []
    for line in target.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


# ---------------------------------------------------------------- rasters

def write_raster(path: str | os.PathLike[str], data: np.ndarray, grid: GlacierGrid, *,
                 band_names: Sequence[str], nodata: float | int | None = None,
                 tags: Mapping[str, Any] | None = None) -> None:
    """Write a (bands, rows, cols) or (rows, cols) array as a tiled, compressed GeoTIFF on ``grid``."""
    array = data[np.newaxis] if data.ndim == 2 else data
    if array.shape[1:] != grid.shape:
        raise ValueError(f"array shape {array.shape[1:]} does not match grid {grid.shape}")
    if len(band_names) != array.shape[0]:
        raise ValueError("one band name per band is required")
    profile = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": array.shape[0],
        "dtype": array.dtype.name, "crs": grid.crs, "transform": grid.transform,
        "compress": "deflate", "nodata": nodata,
        # horizontal differencing before deflate: integer (2) or floating-point (3) predictor
        "predictor": 3 if np.issubdtype(array.dtype, np.floating) else 2,
    }
    if grid.width >= 256 and grid.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array)
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
            if tags:
                dst.update_tags(**{k: (v if isinstance(v, str) else json.dumps(v)) for k, v in tags.items()})


def band_scale_offset(name: str) -> tuple[float, float, str]:
    """(scale, offset, unit) turning a standard scene band's DN into physical values, as GDAL's band
    scale/offset (value = DN x scale + offset): the Collection 2 Level-2 factors of
    :mod:`glacierwatch.landsat` for reflective bands (reflectance) and ``lwir`` (kelvin); 1, 0 for
    bit fields (``qa_pixel``) and bands without a scale."""
    common = common_band_name(name)
    if common in REFLECTIVE_BANDS or common == "coastal":
        return SR_SCALE, SR_OFFSET, "reflectance"
    if common == THERMAL_BAND:
        return ST_SCALE, ST_OFFSET, "K"
    return 1.0, 0.0, ""


def write_cog(path: str | os.PathLike[str], data: np.ndarray, grid: GlacierGrid, *, band_names: Sequence[str],
              nodata: float | int | None = None, tags: Mapping[str, Any] | None = None,
              scales: Sequence[float] | None = None, offsets: Sequence[float] | None = None,
              units: Sequence[str] | None = None, blocksize: int = 256) -> None:
    """Write a (bands, rows, cols) or (rows, cols) array on ``grid`` as a Cloud Optimized GeoTIFF.

    GDAL's COG driver (tiled ``blocksize`` px, deflate with a predictor, overviews when the grid is
    larger than one tile), band descriptions, optional per-band scale/offset/unit (GIS tools and
    rioxarray then show physical values) and tags. Written atomically like :func:`write_raster`.
    """
    from rasterio.shutil import copy as gdal_copy

    array = data[np.newaxis] if data.ndim == 2 else data
    if array.shape[1:] != grid.shape:
        raise ValueError(f"array shape {array.shape[1:]} does not match grid {grid.shape}")
    if len(band_names) != array.shape[0]:
        raise ValueError("one band name per band is required")
    floating = np.issubdtype(array.dtype, np.floating)
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": array.shape[0],
               "dtype": array.dtype.name, "crs": grid.crs, "transform": grid.transform, "nodata": nodata}
    with atomic_path(path) as tmp:
        staging = tmp.with_name(tmp.name + ".tif")
        try:
            with rasterio.open(staging, "w", **profile) as dst:
                dst.write(array)
                for i, name in enumerate(band_names, start=1):
                    dst.set_band_description(i, name)
                if scales is not None:
                    dst.scales = tuple(float(v) for v in scales)
                if offsets is not None:
                    dst.offsets = tuple(float(v) for v in offsets)
                if units is not None:
                    dst.units = tuple(units)
                if tags:
                    dst.update_tags(**{k: (v if isinstance(v, str) else json.dumps(v)) for k, v in tags.items()})
            gdal_copy(staging, tmp, driver="COG", compress="DEFLATE", predictor="FLOATING_POINT" if floating else "YES",
                      blocksize=blocksize, overviews="AUTO", resampling="NEAREST")
        finally:
            staging.unlink(missing_ok=True)


def write_scene_cog(path: str | os.PathLike[str], data: np.ndarray, grid: GlacierGrid, *,
                    band_names: Sequence[str], tags: Mapping[str, Any] | None = None) -> None:
    """A standard scene (uint16 DN, nodata 0, bands by common name) as a COG whose bands carry their
    Collection 2 scale/offset and unit (:func:`band_scale_offset`)."""
    factors = [band_scale_offset(name) for name in band_names]
    write_cog(path, data, grid, band_names=band_names, nodata=FILL_DN, tags=tags, scales=[f[0] for f in factors],
              offsets=[f[1] for f in factors], units=[f[2] for f in factors])


#: Values of a mask COG (:func:`write_mask_cog`) written from a boolean mask.
MASK_NODATA = 255


def write_mask_cog(path: str | os.PathLike[str], mask_or_prob: np.ndarray, grid: GlacierGrid, *,
                   observed: np.ndarray | None = None, tags: Mapping[str, Any] | None = None) -> None:
    """One scene's glacier mask (or ice probability) on ``grid`` as a COG for GIS users.

    A boolean (or integer 0/1) mask is written as uint8 1 = glacier, 0 = not, :data:`MASK_NODATA`
    where not ``observed``; a floating-point probability (0-1) as float32 with NaN where not observed
    (or already NaN). ``observed``: True where the surface was seen (default: everywhere).
    """
    values = np.asarray(mask_or_prob)
    seen = np.ones(grid.shape, dtype=bool) if observed is None else np.asarray(observed, dtype=bool)
    if np.issubdtype(values.dtype, np.floating):
        out = np.where(seen, values, np.nan).astype(np.float32)
        write_cog(path, out, grid, band_names=["ice_probability"], nodata=float("nan"), tags=tags)
        return
    out = np.where(seen, (values != 0).astype(np.uint8), np.uint8(MASK_NODATA)).astype(np.uint8)
    write_cog(path, out, grid, band_names=["glacier"], nodata=MASK_NODATA, tags=tags)


@dataclass
class Scene:
    """A standard scene read into memory: uint16 DN per common band name, plus its grid and tags."""

    path: Path
    grid: GlacierGrid
    bands: dict[str, np.ndarray]
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def qa(self) -> np.ndarray:
        return self.bands[QA_BAND]


def read_scene(path: str | os.PathLike[str], *, bands: Sequence[str] = SCENE_BANDS,
               window: Any = None) -> Scene:
    """Read a standard scene GeoTIFF, picking bands by their descriptions (common names).

    Raises :class:`SceneReadError` if the file cannot be read, has no CRS, or lacks a band.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"scene file not found: {path}")
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise SceneReadError(f"{path}: no CRS")
            return read_open_scene(src, path, bands=bands, window=window)
    except SceneReadError:
        raise
    except (RasterioIOError, ValueError, OSError) as exc:
        raise SceneReadError(f"{path}: unreadable GeoTIFF ({exc})") from exc


def read_open_scene(src: Any, path: str | os.PathLike[str], *, bands: Sequence[str] = SCENE_BANDS,
                    window: Any = None, grid: GlacierGrid | None = None) -> Scene:
    """:func:`read_scene` from a scene file already open (``src``, a rasterio dataset with a CRS), so
    that a caller who opened it to look at its grid does not open it twice. ``grid``: the grid of what
    is read, when the caller knows it (saves building it again); rasterio's errors pass through."""
    names = band_names(src.descriptions)
    index = {name: i + 1 for i, name in enumerate(names) if name}
    missing = [b for b in bands if b not in index]
    if missing:
        raise SceneReadError(f"{path}: missing band(s) {missing}; has {names}")
    data = src.read([index[b] for b in bands], window=window)
    if grid is None:
        transform = src.window_transform(window) if window is not None else src.transform
        grid = GlacierGrid.from_rasterio(src.crs, transform, data.shape[2], data.shape[1])
    return Scene(path=Path(path), grid=grid, bands={b: data[i] for i, b in enumerate(bands)}, tags=dict(src.tags()))


def read_raster(path: str | os.PathLike[str], band: int = 1) -> tuple[np.ndarray, GlacierGrid, Any]:
    """Read one band: (array, grid, nodata)."""
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"raster not found: {path}")
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise SceneReadError(f"{path}: no CRS")
            return src.read(band), GlacierGrid.from_rasterio(src.crs, src.transform, src.width, src.height), src.nodata
    except SceneReadError:
        raise
    except (RasterioIOError, ValueError, OSError) as exc:
        raise SceneReadError(f"{path}: unreadable raster ({exc})") from exc


# ---------------------------------------------------------------- tables

def read_table(path: str | os.PathLike[str], *, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a Parquet (file or dataset folder) or CSV table; raise :class:`InputError` with the reason."""
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"table not found: {path}")
    try:
        if path.is_dir() or path.suffix.lower() in {".parquet", ".pq"}:
            df = pd.read_parquet(path)
        elif path.suffix.lower() in {".csv", ".txt"}:
            df = pd.read_csv(path)
        else:
            raise InputError(f"{path}: unknown table format (use .parquet or .csv)")
    except InputError:
        raise
    except Exception as exc:  # pyarrow/pandas raise many types for a non-table file
        raise InputError(f"{path}: not a readable table ({type(exc).__name__}: {exc})") from exc
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    return df


def _holds_dates(column: pd.Series) -> bool:
    """True for a column of ``datetime.date`` values (Python objects or Arrow date32/date64), NaN/None allowed."""
    if isinstance(column.dtype, pd.ArrowDtype):
        import pyarrow as pa

        return pa.types.is_date(column.dtype.pyarrow_dtype)
    if column.dtype != object:
        return False
    values = column.dropna()
    # datetime.datetime is a subclass of datetime.date: those (and Timestamps) are left to pandas
    return len(values) > 0 and all(isinstance(v, dt.date) and not isinstance(v, dt.datetime) for v in values)


def datetime64_dates(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every column of ``datetime.date`` values as ``datetime64[ns]`` (midnight; None -> NaT).

    The one place dates are normalised before a Parquet write: a Python ``date`` column would be
    stored as Arrow ``date32`` and read back by pandas as objects, which do not concatenate, compare
    or plot like datetime64 (xarray, GIS and DuckDB users get timestamps). ``df`` is not modified.
    """
    converted = {name: pd.to_datetime(df[name]) for name in df.columns if _holds_dates(df[name])}
    return df.assign(**converted) if converted else df


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a table atomically as Parquet or CSV (by suffix); Parquet date columns as datetime64
    (:func:`datetime64_dates`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            datetime64_dates(df).to_parquet(tmp, index=False)
    return path
