"""Terrain and glacier geometry of one synthetic glacier box.

A glacier is a valley glacier: a wide accumulation basin under a headwall and a peak, narrowing into a
tongue that flows down a U-shaped valley. Its extent on any date is a level set of one smooth
*potential* field ``phi`` (float32, units ~ m): the true mask is ``phi >= level``, with the level
chosen so that the pixel count equals the prescribed area. ``phi`` falls slowly along the tongue
(the terminus retreats fastest) and steeply at the basin margins (held by ridges), plus smooth noise
for irregular margins and, on some glaciers, a nunatak.

Everything is first built on a square *canvas* (30 m pixels, aligned to the 30 m UTM lattice) and then
cropped to the glacier grid, so every layer lines up exactly with the scene files.

Grids (UTM zone of the outline centroid, 30 m): a training glacier's grid is exactly what an inventory
derives from its outline, :func:`glacierwatch.grid.inventory_grid` with the inventory's default
margins (:data:`BOX_MARGIN`, :data:`BOX_MARGIN_M`: the larger of 10 % and 1.5 km on each side). A
time-series glacier changes size, so its grid covers the largest extent of the period plus 10 % on
each side (at least 72 px a side and 8,100 px) and also that inventory grid, which is then a window
of it. The generation canvas is enlarged by the metre margin on each side to hold the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio import features
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, shape

from glacierwatch.config import InventoryConfig
from glacierwatch.grid import GlacierGrid, inventory_grid, utm_epsg
from glacierwatch.ids import glims_id_from_lonlat
from glacierwatch.synth.fields import fbm, smooth_noise, smoothstep, softmin, softplus, unique_float32
from glacierwatch.synth.regions import RegionSpec

RESOLUTION_M = 30.0
#: The inventory's default box margins (fraction, m): the synthetic outlines get the grids that
#: ``glacierwatch inventory select`` with a default configuration derives from them.
BOX_MARGIN: float = InventoryConfig.box_margin
BOX_MARGIN_M: float = InventoryConfig.box_margin_m
PIXEL_AREA_M2 = RESOLUTION_M * RESOLUTION_M
#: Time-series glaciers: the largest extent of the period stays this close to the outline-date
#: extent (m), so an outline buffer of 500 m holds the glacier on every date.
MAX_EXTENT_DISTANCE_M = 390.0
#: A neighbouring ice patch keeps at least this distance (m) from the outline-date glacier.
PATCH_MIN_DISTANCE_M = 700.0
#: Time-series grids get at least this many pixels (scene catalogue filters drop tiny boxes).
MIN_TIMESERIES_PIXELS = 8100
MIN_TIMESERIES_SIDE = 72


def pixel_count(area0_km2: float, rate_per_year: float, years: float) -> int:
    """Pixels of the true mask ``years`` after the outline date: round(A0 exp(r t) / 900 m²)."""
    return max(1, int(round(area0_km2 * 1e6 * math.exp(rate_per_year * years) / PIXEL_AREA_M2)))


@dataclass(frozen=True)
class GeometryRequest:
    """What a glacier box must hold.

    ``years`` are the offsets (years, may be negative) from the outline date of every date whose mask
    must fit in the grid (scene dates, other outline dates). ``timeseries`` enables the extent
    constraint (:data:`MAX_EXTENT_DISTANCE_M`) and the minimum grid size. ``debris_extent``: share
    (0-1) of the glacier's area under debris (the lowest part of the tongue), 0 for a clean glacier.
    """

    region: RegionSpec
    lon: float
    lat: float
    area0_km2: float
    rate_per_year: float
    years: tuple[float, ...]
    timeseries: bool
    want_lake: bool
    want_patch: bool
    want_nunatak: bool
    debris_extent: float


@dataclass
class GlacierGeometry:
    """All static layers of one glacier on its grid (float32 arrays of the grid's shape).

    ``potential``: the glacier potential (true mask = potential >= level); ``gradient``: its gradient
    magnitude per pixel; ``along``: 0 at the glacier head, 1 at the reference terminus; ``lake`` and
    ``patch``: sub-pixel fractions (0-1) of a proglacial lake and a separate small ice patch;
    ``dem``: elevation, m. ``rate_per_year`` may be smaller in magnitude than requested when the
    extent constraint of a time-series glacier required it.
    """

    grid: GlacierGrid
    dem: np.ndarray
    potential: np.ndarray
    gradient: np.ndarray
    along: np.ndarray
    lake: np.ndarray
    patch: np.ndarray
    sorted_potential: np.ndarray  # descending, for levels
    rate_per_year: float
    area0_km2: float
    flow_azimuth_deg: float
    patch_area_km2: float
    has_lake: bool
    has_nunatak: bool
    debris_extent: float
    z_terminus_m: float
    info: dict[str, float] = field(default_factory=dict)

    def level_for_pixels(self, n_pixels: int) -> float:
        """Potential level whose mask ``potential >= level`` has exactly ``n_pixels`` pixels."""
        if not 1 <= n_pixels <= self.sorted_potential.size:
            raise ValueError(f"pixel count {n_pixels} outside 1..{self.sorted_potential.size}")
        return float(self.sorted_potential[n_pixels - 1])

    def mask(self, level: float) -> np.ndarray:
        """The true glacier mask at ``level``."""
        return self.potential >= np.float32(level)


def _axis_coordinates(x: np.ndarray, y: np.ndarray, azimuth_deg: float, bend: float,
                      length_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Along-flow (s, downstream positive) and across-flow (u, bent valley axis) coordinates, m."""
    az = math.radians(azimuth_deg)
    ex, ey = math.sin(az), math.cos(az)
    s = x * ex + y * ey
    u = x * ey - y * ex
    u = u - bend * 0.3 * length_m * (s / length_m) ** 2
    return s, u


def _canvas_xy(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Local coordinates (m) of pixel centres of an n x n canvas centred on (0, 0); y north."""
    c = (np.arange(n, dtype=np.float64) + 0.5 - n / 2.0) * RESOLUTION_M
    return c[None, :].repeat(n, axis=0), (-c)[:, None].repeat(n, axis=1)


def _top_mask(values: np.ndarray, n_pixels: int) -> np.ndarray:
    """Boolean mask of the ``n_pixels`` largest values."""
    flat = values.ravel()
    n_pixels = min(max(n_pixels, 1), flat.size)
    idx = np.argpartition(flat, flat.size - n_pixels)[flat.size - n_pixels:]
    out = np.zeros(flat.size, dtype=bool)
    out[idx] = True
    return out.reshape(values.shape)


def mask_to_polygon(mask: np.ndarray, transform: Affine) -> MultiPolygon:
    """Polygonise a boolean mask (pixel edges, CRS of ``transform``) into one MultiPolygon."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return MultiPolygon()
    r0, r1 = max(rows.min() - 1, 0), min(rows.max() + 2, mask.shape[0])
    c0, c1 = max(cols.min() - 1, 0), min(cols.max() + 2, mask.shape[1])
    sub = mask[r0:r1, c0:c1]
    sub_transform = transform @ Affine.translation(c0, r0)
    polys = [shape(geom) for geom, value in features.shapes(sub.astype(np.uint8), mask=sub,
                                                            transform=sub_transform, connectivity=4)
             if value == 1]
    merged = shapely.union_all(polys)
    if isinstance(merged, Polygon):
        return MultiPolygon([merged])
    return MultiPolygon([g for g in getattr(merged, "geoms", []) if isinstance(g, Polygon)])


def to_wgs84(geom: MultiPolygon, crs: str) -> MultiPolygon:
    """Reproject a geometry (vertex-wise) from ``crs`` to EPSG:4326 (lon, lat)."""
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    def _xy(coords: np.ndarray) -> np.ndarray:
        lon, lat = tr.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([lon, lat])

    return shapely.transform(geom, _xy)


def _grow_bounds(bounds: tuple[float, float, float, float], min_side_px: int,
                 min_pixels: int) -> tuple[float, float, float, float]:
    """Enlarge (left, bottom, right, top) symmetrically to a minimum size in 30 m pixels."""
    left, bottom, right, top = bounds
    w = (right - left) / RESOLUTION_M
    h = (top - bottom) / RESOLUTION_M
    w_new, h_new = max(w, min_side_px), max(h, min_side_px)
    if w_new * h_new < min_pixels:
        k = math.sqrt(min_pixels / (w_new * h_new))
        w_new, h_new = w_new * k, h_new * k
    dx = (w_new - w) * RESOLUTION_M / 2 + RESOLUTION_M
    dy = (h_new - h) * RESOLUTION_M / 2 + RESOLUTION_M
    if w_new > w or h_new > h:
        return (left - dx, bottom - dy, right + dx, top + dy)
    return bounds


class CanvasTooSmall(RuntimeError):
    """The glacier grid does not fit the generation canvas (retry with a larger ``canvas_scale``)."""


def build_geometry(req: GeometryRequest, rng: np.random.Generator, *,
                   canvas_scale: float = 1.0) -> tuple[GlacierGeometry, dict[str, Any]]:
    """Build terrain and glacier potential for one box; return the geometry and outline facts.

    The second value holds ``glims_id``, ``outline_wgs84`` (MultiPolygon at the outline date),
    ``patch_wgs84`` (or None), ``patch_id``, ``centroid`` (lon, lat) and ``crs``. Raises
    :class:`CanvasTooSmall` when the grid would leave the generation canvas (its size is
    ``canvas_scale`` x (1.35 glacier lengths + 2 km) + twice :data:`BOX_MARGIN_M` a side).
    """
    spec = req.region
    area0 = req.area0_km2
    l_ref = math.sqrt(area0 * 1e6)
    c_len = rng.uniform(1.5, 2.0) if area0 < 2.0 else rng.uniform(1.7, 2.4)
    rho = rng.uniform(0.25, 0.45)
    mean_az = 165.0 if spec.southern else 15.0
    azimuth = float((mean_az + rng.normal(0.0, 55.0)) % 360.0)
    bend = float(rng.uniform(-1.0, 1.0))
    alpha = float(rng.uniform(0.35, 0.6))
    z_term = float(rng.uniform(*spec.z_terminus))
    # Shape in units of the glacier length (scaled to the wanted area below).
    basin_a = rng.uniform(0.26, 0.38)  # basin ellipse half-length / length
    basin_u = rng.uniform(-0.15, 0.15)  # basin centre offset across flow / basin half-width
    n_cirques = int(rng.choice([0, 1, 1, 2]))
    cirques = [(rng.uniform(0.15, 0.55), rng.choice([-1.0, 1.0]) * rng.uniform(0.7, 1.2),
                rng.uniform(0.3, 0.5), rng.uniform(1.0, 1.6)) for _ in range(n_cirques)]
    nunatak_at = (rng.uniform(0.12, 0.3), rng.uniform(-0.4, 0.4), rng.uniform(0.12, 0.22),
                  rng.uniform(250.0, 400.0), rng.uniform(60.0, 150.0))

    length0 = c_len * l_ref
    side_m = canvas_scale * (1.35 * length0 + 2000.0) + 2.0 * BOX_MARGIN_M
    n = int(math.ceil(side_m / RESOLUTION_M / 2.0)) * 2
    x, y = _canvas_xy(n)
    az = math.radians(azimuth)

    def rotate(s_: float, u_: float) -> tuple[float, float]:
        return s_ * math.sin(az) + u_ * math.cos(az), s_ * math.cos(az) - u_ * math.sin(az)

    w_basin0 = area0 * 1e6 / (2.0 * length0 * (0.525 + 0.475 * rho))

    def shape(k: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float, float]:
        """Analytic potential (m) of the glacier scaled by ``k``; also s, u, t, length and widths."""
        length = k * length0
        w_basin = k * w_basin0
        w_tongue = rho * w_basin
        s, u = _axis_coordinates(x, y, azimuth, bend, length)
        t = (s + length / 2.0) / length
        half_width = w_tongue + (w_basin - w_tongue) * (1.0 - smoothstep(0.3, 0.75, t))
        d_lat = half_width - np.abs(u)
        d_head = s + length / 2.0
        d_toe = length / 2.0 - s - 0.5 * w_tongue * (u / max(w_tongue, 1.0)) ** 2
        beta = 1.0 + 0.6 * (1.0 - smoothstep(0.35, 0.7, t))
        tongue = softmin([beta * d_lat, 1.5 * d_head, alpha * d_toe], 60.0)
        a_b, b_b = basin_a * length, w_basin
        s_b = -length / 2.0 + 0.85 * a_b
        r_b = np.sqrt(((s - s_b) / a_b) ** 2 + ((u - basin_u * w_basin) / b_b) ** 2)
        parts = [tongue, 1.6 * (1.0 - r_b) * b_b]
        for frac, side, size, elong in cirques:
            s_c = -length / 2.0 + frac * length
            w_c = float(w_tongue + (w_basin - w_tongue) * (1.0 - smoothstep(0.3, 0.75, frac)))
            rc = size * w_basin
            u_c = side * (w_c + 0.6 * rc)
            r_c = np.sqrt(((s - s_c) / (rc * elong)) ** 2 + ((u - u_c) / rc) ** 2)
            parts.append(1.6 * (1.0 - r_c) * rc)
        phi_shape = -softmin([-p for p in parts], 60.0)
        return phi_shape, s, u, t, length, w_basin, w_tongue

    # Margins follow the terrain a little (ice fills hollows) plus smooth irregularity.
    rough_large = smooth_noise(rng, (n, n), 30.0)
    phi_noise = -35.0 * rough_large + fbm(rng, (n, n), (22.0, 9.0, 4.0), (45.0, 18.0, 6.0))
    n0 = pixel_count(area0, req.rate_per_year, 0.0)
    scale = 1.0
    for _ in range(2):  # scale the shape so that the level-0 set has about the wanted area
        phi_shape, *_ = shape(scale)
        inside = int((phi_shape + phi_noise >= 0).sum())
        scale *= math.sqrt(n0 / max(inside, 1))
    phi_shape, s, u, t, length, w_basin, w_tongue = shape(scale)
    au = np.abs(u)

    # ---------------------------------------------------------------- terrain
    size = float(np.clip(math.sqrt(length / 4000.0), 0.55, 1.3))
    slope_glacier = 0.45 * (length / 1000.0) ** -0.4 * rng.uniform(0.85, 1.15)
    ds = s - length / 2.0
    z_axis = z_term - slope_glacier * ds + 0.5 * slope_glacier * softplus(ds, 300.0)
    head_dist = softplus(-(s + length / 2.0), 150.0)
    headwall = rng.uniform(250.0, 550.0) * size
    z_axis = z_axis + headwall * (1.0 - np.exp(-head_dist * 1.1 / headwall))
    ridge_dist = w_basin * rng.uniform(1.4, 1.8) + 250.0
    wall = rng.uniform(250.0, 600.0) * size * (0.6 + 0.4 * (1.0 - smoothstep(0.0, 1.0, t)))
    cross = wall * 0.5 * (1.0 - np.cos(math.pi * np.clip(au / ridge_dist, 0.0, 2.0)))
    px, py = rotate(-length / 2.0 - rng.uniform(250.0, 600.0), rng.uniform(-0.5, 0.5) * w_basin)
    peak = rng.uniform(150.0, 450.0) * size * np.exp(
        -((x - px) ** 2 + (y - py) ** 2) / (2 * (0.35 * length + 300.0) ** 2))
    rough = 90.0 * size * rough_large + fbm(rng, (n, n), (11.0, 3.5), (25.0, 5.0))
    dem = z_axis + cross + peak + rough

    # ---------------------------------------------------------------- glacier potential
    nunatak = np.zeros((n, n))
    if req.want_nunatak:
        frac, side, rad, depth, height = nunatak_at
        nx, ny = rotate(-length / 2.0 + frac * length, side * w_basin)
        radius = rad * w_basin + 60.0
        bump = np.exp(-((x - nx) ** 2 + (y - ny) ** 2) / (2 * radius ** 2))
        nunatak = depth * bump
        dem = dem + height * bump

    rate = req.rate_per_year
    attempt = 0
    tongue_slow = 1.0
    while True:
        # If the extent constraint needs it, steepen the potential along the tongue (slower retreat).
        phi = phi_shape + phi_noise - nunatak
        if tongue_slow != 1.0:
            tongue_w = smoothstep(0.55, 0.95, t)
            phi = phi * (1.0 - tongue_w) + phi * tongue_w * tongue_slow
        counts = [pixel_count(area0, rate, yr) for yr in (0.0, *req.years)]
        n_max = max(counts)
        m0 = _top_mask(phi, n0)
        m_max = _top_mask(phi, n_max)
        labels, n_lab = ndimage.label(m0)
        largest = np.bincount(labels.ravel())[1:].max() if n_lab else 0
        dist0 = ndimage.distance_transform_edt(~m0) * RESOLUTION_M
        spread = float(dist0[m_max].max()) if n_max > n0 else 0.0
        ok_blob = largest >= 0.9 * n0
        ok_extent = (not req.timeseries) or spread <= MAX_EXTENT_DISTANCE_M
        if (ok_blob and ok_extent) or attempt >= 16:
            break
        attempt += 1
        if not ok_blob:
            phi_noise *= 0.7
        elif tongue_slow < 2.5:
            tongue_slow *= 1.3
        else:
            rate *= 0.85
    dist_max = ndimage.distance_transform_edt(~m_max) * RESOLUTION_M

    # ---------------------------------------------------------------- proglacial lake
    lake_phi = np.full((n, n), -1e3)
    has_lake = False
    if req.want_lake and rate < 0:
        rows, cols = np.nonzero(m0)
        toe = int(np.argmax(s[rows, cols]))
        toe_s, toe_u = s[rows[toe], cols[toe]], u[rows[toe], cols[toe]]
        radius = rng.uniform(120.0, 320.0)
        elong = rng.uniform(1.0, 1.8)
        c_s = toe_s + radius * rng.uniform(0.3, 0.8)
        lake_d = np.sqrt(((s - c_s) / (radius * elong)) ** 2 + ((u - toe_u) / radius) ** 2) * radius
        lake_phi = radius - lake_d + smooth_noise(rng, (n, n), 5.0) * 15.0
        lake_bin = lake_phi >= 0
        if lake_bin.sum() >= 20:
            has_lake = True
            level_z = float(np.percentile(dem[lake_bin], 15))
            w_l = np.clip(0.5 + lake_phi / 60.0, 0.0, 1.0)
            dem = dem * (1 - w_l) + np.minimum(dem, level_z) * w_l
        else:
            lake_phi[:] = -1e3

    # ---------------------------------------------------------------- placement in UTM
    crs = f"EPSG:{utm_epsg(req.lon, req.lat)}"
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    tx, ty = to_utm.transform(req.lon, req.lat)
    rows, cols = np.nonzero(m0)
    cx_local = float(x[rows, cols].mean())
    cy_local = float(y[rows, cols].mean())
    # pixel edges on the Landsat UTM lattice (odd multiples of 15 m), like every glacier grid
    anchor = RESOLUTION_M / 2.0
    canvas_x0 = math.floor((tx - cx_local - n / 2.0 * RESOLUTION_M - anchor) / RESOLUTION_M + 0.5) * RESOLUTION_M + anchor
    canvas_y0 = math.floor((ty - cy_local + n / 2.0 * RESOLUTION_M - anchor) / RESOLUTION_M + 0.5) * RESOLUTION_M + anchor
    canvas = GlacierGrid(crs=crs, x0=canvas_x0, y0=canvas_y0, resolution=RESOLUTION_M, width=n, height=n)

    outline_utm = mask_to_polygon(m0, canvas.transform)
    outline_wgs = to_wgs84(outline_utm, crs)
    centroid = outline_wgs.centroid
    glims_id = glims_id_from_lonlat(centroid.x, centroid.y)

    # ---------------------------------------------------------------- grid
    def window_of(g: GlacierGrid) -> tuple[int, int]:
        c0 = (g.x0 - canvas.x0) / RESOLUTION_M
        r0 = (canvas.y0 - g.y0) / RESOLUTION_M
        if abs(c0 - round(c0)) > 1e-6 or abs(r0 - round(r0)) > 1e-6:
            raise RuntimeError("grid not aligned with the 30 m canvas lattice")
        return int(round(r0)), int(round(c0))

    def fits(g: GlacierGrid, mask: np.ndarray, border: int) -> bool:
        r0, c0 = window_of(g)
        if r0 < 0 or c0 < 0 or r0 + g.height > n or c0 + g.width > n:
            return False
        inner = np.zeros_like(mask)
        inner[r0 + border:r0 + g.height - border, c0 + border:c0 + g.width - border] = True
        return bool(np.all(inner[mask]))

    grid: GlacierGrid | None = None
    if not req.timeseries:
        grid = inventory_grid(outline_wgs, margin=BOX_MARGIN, margin_m=BOX_MARGIN_M, resolution=RESOLUTION_M,
                              crs=crs)
        if not fits(grid, m_max, 1):
            grid = None
    if grid is None:
        rows, cols = np.nonzero(m_max)
        left = canvas.x0 + cols.min() * RESOLUTION_M
        right = canvas.x0 + (cols.max() + 1) * RESOLUTION_M
        top = canvas.y0 - rows.min() * RESOLUTION_M
        bottom = canvas.y0 - (rows.max() + 1) * RESOLUTION_M
        bounds = (left, bottom, right, top)
        if req.timeseries:
            margin = 0.1
            dx, dy = (right - left) * margin, (top - bottom) * margin
            bounds = _grow_bounds((left - dx, bottom - dy, right + dx, top + dy),
                                  MIN_TIMESERIES_SIDE, MIN_TIMESERIES_PIXELS)
            # Also cover the grid an inventory derives from the outline, so that grid is a window
            # of this one (same 30 m lattice).
            inventory = inventory_grid(outline_wgs, margin=BOX_MARGIN, margin_m=BOX_MARGIN_M,
                                       resolution=RESOLUTION_M, crs=crs).bounds
            bounds = (min(bounds[0], inventory[0]), min(bounds[1], inventory[1]),
                      max(bounds[2], inventory[2]), max(bounds[3], inventory[3]))
            grid = GlacierGrid.from_projected_bounds(crs, *bounds, resolution=RESOLUTION_M, margin=0.0)
        else:
            grid = GlacierGrid.from_projected_bounds(crs, *bounds, resolution=RESOLUTION_M, margin=BOX_MARGIN,
                                                     margin_m=BOX_MARGIN_M)
    r0, c0 = window_of(grid)
    if r0 < 0 or c0 < 0 or r0 + grid.height > n or c0 + grid.width > n:
        raise CanvasTooSmall(f"{glims_id}: grid {grid} falls outside the generation canvas")
    win = (slice(r0, r0 + grid.height), slice(c0, c0 + grid.width))

    # ---------------------------------------------------------------- neighbouring ice patch
    patch_soft = np.zeros((n, n))
    patch_wgs: MultiPolygon | None = None
    patch_id: str | None = None
    patch_area = 0.0
    if req.want_patch:
        radius = rng.uniform(110.0, 260.0)
        border = int(math.ceil(radius / RESOLUTION_M)) + 2
        cand = np.zeros((n, n), dtype=bool)
        cand[r0 + border:r0 + grid.height - border, c0 + border:c0 + grid.width - border] = True
        cand &= dist0 > PATCH_MIN_DISTANCE_M + radius + 60.0
        cand &= dist_max > 200.0 + radius + 60.0
        cand &= lake_phi < -200.0
        if cand.any():
            hi = cand & (dem >= np.percentile(dem[cand], 60))
            rows, cols = np.nonzero(hi)
            pick = int(rng.integers(rows.size))
            pxc, pyc = x[rows[pick], cols[pick]], y[rows[pick], cols[pick]]
            pd_ = np.sqrt((x - pxc) ** 2 + ((y - pyc) / rng.uniform(0.6, 1.0)) ** 2)
            patch_phi = radius - pd_ + smooth_noise(rng, (n, n), 4.0) * 25.0
            patch_bin = (patch_phi >= 0) & (dist0 > PATCH_MIN_DISTANCE_M)
            labels, n_lab = ndimage.label(patch_bin)
            if n_lab:
                keep = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
                patch_bin = labels == keep
                pc = to_wgs84(mask_to_polygon(patch_bin, canvas.transform), crs)
                pid = glims_id_from_lonlat(pc.centroid.x, pc.centroid.y)
                if pid != glims_id:
                    patch_wgs, patch_id = pc, pid
                    patch_area = float(patch_bin.sum()) * PIXEL_AREA_M2 / 1e6
                    # Sub-pixel ice fraction: >= 0.5 exactly on the patch, a mixed rim around it.
                    rim = ndimage.binary_dilation(patch_bin) & (dist0 > PATCH_MIN_DISTANCE_M - 60.0)
                    patch_soft = np.where(rim, np.clip(0.5 + patch_phi / RESOLUTION_M, 0.0, 1.0), 0.0)
                    patch_soft[patch_bin] = np.maximum(patch_soft[patch_bin], 0.5)
                    patch_soft[rim & ~patch_bin] = np.minimum(patch_soft[rim & ~patch_bin], 0.45)

    # ---------------------------------------------------------------- crop
    phi_crop = phi[win]
    potential = unique_float32(phi_crop)
    gy, gx = np.gradient(phi_crop)
    gradient = np.hypot(gx, gy).astype(np.float32)
    geometry = GlacierGeometry(
        grid=grid,
        dem=dem[win].astype(np.float32),
        potential=potential,
        gradient=np.maximum(gradient, 1.0),
        along=t[win].astype(np.float32),
        lake=np.clip(0.5 + lake_phi[win] / RESOLUTION_M, 0.0, 1.0).astype(np.float32),
        patch=patch_soft[win].astype(np.float32),
        sorted_potential=np.sort(potential.ravel())[::-1].copy(),
        rate_per_year=float(rate),
        area0_km2=area0,
        flow_azimuth_deg=azimuth,
        patch_area_km2=patch_area,
        has_lake=has_lake,
        has_nunatak=req.want_nunatak,
        debris_extent=req.debris_extent,
        z_terminus_m=z_term,
        info={"length_m": length, "basin_half_width_m": w_basin, "tongue_half_width_m": w_tongue,
              "alpha": alpha, "tongue_slope_factor": tongue_slow, "max_extent_distance_m": spread,
              "attempts": float(attempt), "cirques": float(n_cirques), "shape_scale": scale,
              "canvas_scale": canvas_scale},
    )
    # The crop must hold the whole glacier on every date and the outline-date mask exactly.
    if not np.array_equal(geometry.mask(geometry.level_for_pixels(n0)), m0[win]) or not fits(grid, m_max, 0):
        raise RuntimeError(f"{glims_id}: glacier extent does not fit its grid")
    outline = {"glims_id": glims_id, "outline_wgs84": outline_wgs, "patch_wgs84": patch_wgs,
               "patch_id": patch_id, "centroid": (float(centroid.x), float(centroid.y)), "crs": crs}
    return geometry, outline
