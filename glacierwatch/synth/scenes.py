"""Rendering of one synthetic Landsat C2 L2 scene on a glacier grid.

Per glacier, :func:`build_static` prepares everything that does not change between scenes (terrain
derivatives, lithology, vegetation, texture, snow-patch noise). Per scene, :func:`draw_conditions`
draws the weather and acquisition (snow line, temperatures, clouds, haze, no-data, image quality)
and :func:`render_scene` composes surface fractions, mixes endmember spectra, applies terrain and
cloud shading, clouds, sensor noise, no-data and the QA_PIXEL band, and returns uint16 DN in the
sensor's file band order.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from glacierwatch.landsat import (
    QA,
    QA_CONFIDENCE_SHIFT,
    SENSORS,
    SR_OFFSET,
    SR_SCALE,
    is_slc_off,
    kelvin_to_dn,
    reflectance_to_dn,
)
from glacierwatch.synth.fields import fbm, smooth_noise, smoothstep
from glacierwatch.synth.regions import RegionSpec
from glacierwatch.synth.spectra import (
    CLOUD_SPECTRUM,
    DIFFUSE_FRACTION,
    ENDMEMBERS,
    HAZE_SPECTRUM,
    RENDER_BANDS,
    SENSOR_TRAITS,
    SPECTRA,
)
from glacierwatch.synth.terrain import RESOLUTION_M, GlacierGeometry

_E = {name: i for i, name in enumerate(ENDMEMBERS)}
#: QA_PIXEL cloud opacity thresholds: cloud (high confidence) and medium confidence.
CLOUD_OPACITY = 0.3
CLOUD_OPACITY_MEDIUM = 0.1
SHADOW_OPACITY = 0.3


# ---------------------------------------------------------------- seasons

def season_temperature(date: dt.date, southern: bool) -> float:
    """0 (coldest) .. 1 (warmest) seasonal phase of air temperature (peak ~19 July / ~18 January)."""
    peak = 18.0 if southern else 200.0
    doy = date.timetuple().tm_yday
    return 0.5 * (1.0 + math.cos(2.0 * math.pi * (doy - peak) / 365.25))


def season_snow(date: dt.date, southern: bool) -> float:
    """0 (snow down to the valleys) .. 1 (summer snow line): ~1 from May to October in the north
    (November to April in the south), falling to 0 in mid-winter."""
    peak = 32.0 if southern else 215.0
    doy = date.timetuple().tm_yday
    phase = math.cos(2.0 * math.pi * (doy - peak) / 365.25)
    return float(smoothstep(-0.85, 0.0, phase))


#: Ablation season of the melt-season model (day of year, northern hemisphere; the south is shifted
#: by half a year): seasonal snow starts to melt on 1 May and the snow line is highest on ~10 September.
MELT_START_DOY = 121
MELT_END_DOY = 253
#: Share of the ablation season after which the seasonal snow line has risen to the glacier terminus
#: (late May): below it the valley floor is still snow covered, above it the tongue melts out.
MELT_TERMINUS_PROGRESS = 0.15
#: Days after the season's end during which the snow line stays high, then falls back to its winter
#: level by ~120 days (autumn snowfalls).
AUTUMN_HOLD_DAYS = 20.0
AUTUMN_DAYS = 120.0
#: Off-glacier snow melts out later in the season than a linear rise would say (the land share is
#: progress ** this): with it, July scenes keep snow on the slopes around the glacier.
LAND_MELT_EXPONENT = 1.5
#: The off-glacier snow line's height above the glacier's grows as the land share to this power in
#: the melt-season model (the seed's model: squared).
LAND_OFFSET_POWER_MELT = 0.3


def melt_progress(date: dt.date, southern: bool) -> float:
    """Where ``date`` lies in the ablation season: 0 at its start (1 May / 1 November), 1 at its end
    (~10 September / ~10 March), negative before the start (days before it / season length), above 1
    after the end (days after it / season length). The year is cut half a year before the start."""
    doy = date.timetuple().tm_yday
    if southern:
        doy = (doy + 182) % 365 or 365  # 1 November -> ~doy 121
    length = MELT_END_DOY - MELT_START_DOY
    days = doy - MELT_START_DOY
    if days < -120:  # deep winter counts as after last season's end
        days += 365
    return days / length


def melt_season_snow(date: dt.date, southern: bool, terminus_share: float) -> tuple[float, float]:
    """The melt-season model: (snow-line share, land melt share), both 0..1.

    The snow line lies at ``winter + share x (summer - winter)``: 0 through the winter, rising through
    the ablation season, ``terminus_share`` (the share that puts it at the glacier terminus) after
    :data:`MELT_TERMINUS_PROGRESS` of it, 1 (the summer line) at its end, then back to 0 over
    :data:`AUTUMN_DAYS`. The land share says how far off-glacier snow has melted (drives the land
    snow-line offset and the niche-only patchiness): the season progress to the power
    :data:`LAND_MELT_EXPONENT`, then the snow-line share once the season is over.
    """
    p = melt_progress(date, southern)
    length = MELT_END_DOY - MELT_START_DOY
    if p < 0.0:
        return 0.0, 0.0
    if p <= MELT_TERMINUS_PROGRESS:
        return terminus_share * p / MELT_TERMINUS_PROGRESS, p ** LAND_MELT_EXPONENT
    if p <= 1.0:
        share = terminus_share + (1.0 - terminus_share) * (p - MELT_TERMINUS_PROGRESS) / (1.0 - MELT_TERMINUS_PROGRESS)
        return share, p ** LAND_MELT_EXPONENT
    after = (p - 1.0) * length
    share = 1.0 - float(smoothstep(AUTUMN_HOLD_DAYS, AUTUMN_DAYS, after))
    return share, share


# ---------------------------------------------------------------- static layers

@dataclass
class StaticLayers:
    """Per-glacier layers shared by all scenes (arrays of the grid's shape).

    ``dzdx``/``dzdy``: DEM slope east/north (m/m); ``inv_norm``: 1/|surface normal|;
    ``pole``: -1..1, how much a slope faces the pole (keeps snow longer); ``lith``: share of light
    rock; ``veg``: vegetation cover; ``dirt``: dirty share of bare ice; ``texture``: multiplicative
    surface texture; ``snow_noise_*``: snow-line irregularity, m; ``snow_niche``: 0-1, where late-summer snow patches
    survive off the glacier (pole-facing hollows); ``tongue``: 0-1 weight of the
    lower tongue (where lateral moraines lie); ``along``: 0 at the glacier head, 1 at its reference
    terminus; ``debris_noise``: irregularity of the debris cover's upper edge (units of ``along``);
    ``z_ela``: equilibrium-line altitude, m.
    """

    dem: np.ndarray
    dzdx: np.ndarray
    dzdy: np.ndarray
    inv_norm: np.ndarray
    slope_deg: np.ndarray
    pole: np.ndarray
    lith: np.ndarray
    veg: np.ndarray
    dirt: np.ndarray
    texture: np.ndarray
    tint: np.ndarray
    snow_noise_glacier: np.ndarray
    snow_noise_land: np.ndarray
    snow_niche: np.ndarray
    tongue: np.ndarray
    along: np.ndarray
    debris_noise: np.ndarray
    z_ela: float
    z_terminus: float
    southern: bool
    region: RegionSpec


def build_static(geometry: GlacierGeometry, region: RegionSpec, level0: float,
                 rng: np.random.Generator) -> StaticLayers:
    """Static layers of one glacier; ``level0`` is the potential level on the outline date."""
    dem = geometry.dem.astype(np.float64)
    shape = dem.shape
    gy, gx = (np.asarray(g) for g in np.gradient(dem, RESOLUTION_M))  # a 2-D DEM: two arrays
    dzdx, dzdy = gx, -gy  # rows run south, so north slope = -d/drow
    inv_norm = 1.0 / np.sqrt(1.0 + dzdx ** 2 + dzdy ** 2)
    slope_deg = np.degrees(np.arctan(np.hypot(dzdx, dzdy)))
    pole_sign = -1.0 if region.southern else 1.0
    pole = np.clip(-dzdy * pole_sign * inv_norm, -1.0, 1.0)  # sin(slope) x cos(aspect to the pole)
    lith = np.clip(0.5 + 0.45 * smooth_noise(rng, shape, 18.0) + 0.15 * smooth_noise(rng, shape, 4.0), 0.0, 1.0)
    below = smoothstep(region.treeline_m + 150.0, region.treeline_m - 350.0, dem)
    patchy = np.clip(0.75 + 0.35 * smooth_noise(rng, shape, 6.0), 0.0, 1.0)
    steep = 1.0 - smoothstep(35.0, 50.0, slope_deg)
    veg = region.vegetation * below * patchy * steep
    along = geometry.along.astype(np.float64)
    dirt = np.clip(0.15 + 0.6 * smoothstep(0.45, 1.0, along) + 0.2 * smooth_noise(rng, shape, 5.0), 0.0, 1.0)
    texture = 1.0 + 0.045 * smooth_noise(rng, shape, 7.0) + 0.025 * rng.standard_normal(shape)
    tint = 1.0 + rng.normal(0.0, 0.015, size=len(RENDER_BANDS))
    mask0 = geometry.mask(level0)
    z_ela = float(np.quantile(dem[mask0], 0.45)) if mask0.any() else float(np.median(dem))
    return StaticLayers(
        dem=dem, dzdx=dzdx, dzdy=dzdy, inv_norm=inv_norm, slope_deg=slope_deg, pole=pole, lith=lith,
        veg=veg, dirt=dirt, texture=texture, tint=tint,
        snow_noise_glacier=40.0 * smooth_noise(rng, shape, 8.0),
        snow_noise_land=110.0 * smooth_noise(rng, shape, 6.0) + 40.0 * smooth_noise(rng, shape, 2.5),
        snow_niche=smoothstep(0.55, 1.1, 0.9 * pole + 0.5 * smooth_noise(rng, shape, 3.0)),
        tongue=smoothstep(0.55, 0.8, along), along=along,
        debris_noise=0.03 * smooth_noise(rng, shape, 6.0) + 0.01 * smooth_noise(rng, shape, 2.0),
        z_ela=z_ela, z_terminus=geometry.z_terminus_m,
        southern=region.southern, region=region,
    )


# ---------------------------------------------------------------- per-scene conditions

@dataclass
class SceneConditions:
    """Acquisition and weather of one scene.

    Elevations in m, temperatures in K, angles in degrees; ``cloud_fraction`` is the wanted share of
    the box under cloud (0-1), ``cloud_cover`` the scene-wide percentage reported in the metadata.
    """

    date: dt.date
    satellite: str
    acquired: dt.datetime
    sun_elevation: float
    sun_azimuth: float
    season_temp: float
    season_snow: float
    snowline_m: float
    land_snow_offset_m: float
    air_temp_k: float
    cloud_fraction: float
    cloud_cover: float
    cloud_cover_land: float
    cloud_scale_px: float
    cloud_height_m: float
    cloud_brightness: float
    cloud_temp_k: float
    haze: float
    image_quality: int
    fill_edge: tuple[float, float, float] | None  # (angle deg, cut position 0-1, side) or None
    slc_off: tuple[float, float, float, float] | None  # (angle deg, period px, gap fraction, phase)
    gain: np.ndarray = field(default_factory=lambda: np.ones(len(RENDER_BANDS)))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(len(RENDER_BANDS)))


def draw_conditions(rng: np.random.Generator, *, date: dt.date, satellite: str, acquired: dt.datetime,
                    sun_elevation: float, sun_azimuth: float, static: StaticLayers,
                    good: bool = False, melt_season: bool = False) -> SceneConditions:
    """Draw weather, clouds, no-data and image quality of one scene.

    ``good`` forces a clear, complete scene of image quality 9 (used to guarantee a few usable
    training scenes per glacier). ``melt_season`` uses :func:`melt_season_snow` (the seasonal snow
    line rises through the ablation season) instead of :func:`season_snow` (summer line from May
    to October); the random draws are the same, so only the snow differs.
    """
    region = static.region
    southern = static.southern
    f_temp = season_temperature(date, southern)
    summer_line = static.z_ela + rng.uniform(-60.0, 160.0)
    winter_line = static.z_terminus - region.winter_snowline_drop_m
    if melt_season:
        terminus_share = (static.z_terminus - winter_line) / max(summer_line - winter_line, 1.0)
        f_snow, f_land = melt_season_snow(date, southern, min(max(terminus_share, 0.0), 1.0))
    else:
        f_snow = f_land = season_snow(date, southern)
    # Off-glacier snow sits this share of 400-800 m above the glacier's snow line (warm rock melts out
    # first). The melt-season model lifts it early in the season, when the glacier is still snowy.
    offset_share = f_land ** LAND_OFFSET_POWER_MELT if melt_season else f_land ** 2
    snowline = winter_line + (summer_line - winter_line) * f_snow
    if rng.random() < 0.06 + 0.14 * (1.0 - f_snow):  # fresh snowfall
        snowline -= rng.uniform(200.0, 700.0)
    air = region.air_temp_winter_k + (region.air_temp_summer_k - region.air_temp_winter_k) * f_temp
    air += rng.normal(0.0, 1.5)

    summer = f_temp > 0.5
    p_cloudy = 0.22 if summer else 0.45
    cloudy = (not good) and rng.random() < p_cloudy
    sneaky = (not good) and (not cloudy) and rng.random() < 0.05  # low CLOUD_COVER, cloud in box
    if cloudy:
        frac = float(np.clip(rng.beta(1.6, 2.0), 0.04, 1.0))
        cover = float(np.clip(100.0 * frac * rng.uniform(0.6, 1.4) + rng.exponential(4.0), 0.5, 100.0))
    elif sneaky:
        frac = float(rng.uniform(0.02, 0.1))
        cover = float(rng.uniform(0.0, 9.0))
    else:
        frac = 0.0
        cover = float(min(rng.exponential(2.5), 9.5)) if rng.random() < 0.8 else float(rng.uniform(10.0, 40.0))
        if good:
            cover = min(cover, 8.0)
    cover_land = float(np.clip(cover + rng.normal(0.0, 1.5), 0.0, 100.0))
    haze = float(rng.uniform(0.03, 0.12)) if (not good and rng.random() < 0.08) else 0.0

    quality = 9
    if not good:
        q = rng.random()
        quality = 5 if q < 0.02 else (7 if q < 0.07 else 9)
    fill_edge = None
    if not good and rng.random() < 0.06:
        fill_edge = (float(rng.uniform(-14.0, 14.0)), float(rng.uniform(0.05, 0.4)), float(rng.choice([0, 1, 2, 3])))
    slc = None
    if is_slc_off(satellite, date):
        # Gaps widen away from the scene centre: 0 near the centre line, ~14 of every ~32 pixels at
        # the scene edges (22 % of an SLC-off scene is lost on average).
        gap = float(rng.uniform(0.0, 0.45))
        if gap < 0.05 or good:
            gap = 0.0
        slc = (float(rng.uniform(8.0, 14.0)), float(rng.uniform(28.0, 34.0)), gap, float(rng.uniform(0.0, 1.0)))
    gain = rng.normal(1.0, 0.015) * (1.0 + rng.normal(0.0, 0.008, size=len(RENDER_BANDS)))
    offset = rng.normal(0.0, 0.004, size=len(RENDER_BANDS))
    return SceneConditions(
        date=date, satellite=satellite, acquired=acquired, sun_elevation=sun_elevation,
        sun_azimuth=sun_azimuth, season_temp=f_temp, season_snow=f_land, snowline_m=float(snowline),
        land_snow_offset_m=float(rng.uniform(400.0, 800.0) * offset_share), air_temp_k=float(air),
        cloud_fraction=frac, cloud_cover=round(cover, 2), cloud_cover_land=round(cover_land, 2),
        cloud_scale_px=float(rng.uniform(10.0, 35.0)), cloud_height_m=float(rng.uniform(800.0, 4000.0)),
        cloud_brightness=float(rng.uniform(0.8, 1.1)), cloud_temp_k=float(air - rng.uniform(15.0, 35.0)),
        haze=haze, image_quality=quality, fill_edge=fill_edge, slc_off=slc, gain=gain, offset=offset,
    )


# ---------------------------------------------------------------- rendering helpers

def cast_shadow(dem: np.ndarray, elevation_deg: float, azimuth_deg: float, max_steps: int = 60) -> np.ndarray:
    """True where the terrain hides the sun (ray marching towards the sun, nearest neighbour).

    Terrain beyond the grid is taken as the edge value, so shadows cast from outside are missed.
    The ray is sampled at every pixel near the start and more sparsely further out.
    """
    tan_el = math.tan(math.radians(max(elevation_deg, 1.0)))
    az = math.radians(azimuth_deg)
    dcol, drow = math.sin(az), -math.cos(az)
    norm = max(abs(dcol), abs(drow))
    dcol, drow = dcol / norm, drow / norm
    step_m = RESOLUTION_M * math.hypot(dcol, drow)
    relief = float(dem.max() - dem.min())
    steps = min(max_steps, int(math.ceil(relief / (tan_el * step_m))))
    shadow = np.zeros(dem.shape, dtype=bool)
    if steps < 1:
        return shadow
    ks = np.unique(np.concatenate([np.arange(1, min(steps, 8) + 1),
                                   np.round(np.geomspace(8, steps, 14)).astype(int)]))
    ks = ks[(ks >= 1) & (ks <= steps)]
    h, w = dem.shape
    pr = int(math.ceil(steps * abs(drow))) + 1
    pc = int(math.ceil(steps * abs(dcol))) + 1
    padded = np.pad(dem, ((pr, pr), (pc, pc)), mode="edge")
    for k in ks:
        r0 = pr + int(round(k * drow))
        c0 = pc + int(round(k * dcol))
        shadow |= (padded[r0:r0 + h, c0:c0 + w] - dem) > k * step_m * tan_el
    return shadow


def _fill_mask(shape: tuple[int, int], cond: SceneConditions) -> np.ndarray:
    """Scene-edge no-data and Landsat 7 SLC-off gaps."""
    h, w = shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    fill = np.zeros(shape, dtype=bool)
    if cond.fill_edge is not None:
        angle, cut, side = cond.fill_edge
        a = math.radians(angle)
        # Coordinate across the edge, 0..1 over the box, measured from the chosen side.
        if side in (0, 1):  # west / east edge, slanted
            coord = (cc + math.tan(a) * (rr - h / 2)) / w
            coord = coord if side == 0 else 1.0 - coord
        else:  # north / south edge
            coord = (rr + math.tan(a) * (cc - w / 2)) / h
            coord = coord if side == 2 else 1.0 - coord
        fill |= coord < cut
    if cond.slc_off is not None and cond.slc_off[2] > 0:
        angle, period, gap, phase = cond.slc_off
        a = math.radians(angle)
        along = rr * math.cos(a) + cc * math.sin(a)
        # The wedge: gaps widen slowly across the box (towards the scene edge).
        width = gap * period * (1.0 + 0.15 * (cc / max(w, 1) - 0.5))
        fill |= ((along / period + phase) % 1.0) * period < width
    return fill


@dataclass
class RenderedScene:
    """A rendered scene: ``data`` (bands, rows, cols) uint16 in ``band_names`` order, plus facts
    about what was drawn (fractions of the box, 0-1)."""

    data: np.ndarray
    band_names: tuple[str, ...]
    cloud_fraction: float
    shadow_fraction: float
    fill_fraction: float
    snow_fraction: float
    snow_fraction_outside: float


def render_scene(static: StaticLayers, geometry: GlacierGeometry, cond: SceneConditions, level: float,
                 rng: np.random.Generator) -> RenderedScene:
    """Render one scene: surface mixture -> illumination -> clouds -> noise -> no-data -> DN + QA."""
    shape = static.dem.shape
    dem = static.dem
    traits = SENSOR_TRAITS[cond.satellite]

    # ---- surface fractions
    phi = geometry.potential.astype(np.float64)
    rel = phi - level
    g = np.clip(0.5 + rel / geometry.gradient, 0.0, 1.0)
    if geometry.debris_extent > 0:
        # Debris covers the lowest part of the tongue: a fixed share of the current glacier area, so
        # it moves up-glacier as the terminus retreats; its upper edge is irregular.
        key = static.along + static.debris_noise
        inside = rel >= 0
        edge = float(np.quantile(key[inside], 1.0 - geometry.debris_extent)) if inside.any() else np.inf
        d = smoothstep(edge - 0.006, edge + 0.006, key)
    else:
        d = np.zeros(shape)
    patch = geometry.patch.astype(np.float64)
    lake = geometry.lake.astype(np.float64)
    ice_surface = g * (1.0 - d) + (1.0 - g) * patch
    debris = g * d
    nonice = (1.0 - g) * (1.0 - patch)
    water_body = nonice * lake
    land = nonice * (1.0 - lake)

    snow_ice = smoothstep(-40.0, 40.0, dem - cond.snowline_m + static.snow_noise_glacier)
    # Snow melts earlier off the glacier (warm rock): in late summer the snow line on land lies a few
    # hundred metres above the glacier's and, in summer, only in niches; steep slopes shed snow.
    land_line = cond.snowline_m + cond.land_snow_offset_m + static.snow_noise_land - 250.0 * static.pole
    patchy = 1.0 - cond.season_snow * (1.0 - static.snow_niche)
    snow_land = (smoothstep(-60.0, 60.0, dem - land_line) * (1.0 - smoothstep(35.0, 50.0, static.slope_deg))
                 * patchy)
    t_air = cond.air_temp_k - 0.0065 * (dem - static.z_terminus)
    frozen = t_air < 272.0
    snow_lake = np.where(frozen, np.maximum(snow_land, 0.9), 0.0)
    greenness = cond.season_temp ** 1.5

    w = np.empty((len(ENDMEMBERS), *shape))
    bare_ice = ice_surface * (1.0 - snow_ice)
    w[_E["snow"]] = ice_surface * snow_ice + (debris + land) * snow_land + water_body * snow_lake
    w[_E["ice"]] = bare_ice * (1.0 - static.dirt)
    w[_E["dirty_ice"]] = bare_ice * static.dirt
    w[_E["debris"]] = debris * (1.0 - snow_land)
    bare_land = land * (1.0 - snow_land)
    veg = bare_land * static.veg
    rock = bare_land - veg
    w[_E["rock_light"]] = rock * static.lith
    w[_E["rock_dark"]] = rock * (1.0 - static.lith)
    w[_E["veg_green"]] = veg * greenness
    w[_E["veg_dry"]] = veg * (1.0 - greenness)
    w[_E["water"]] = water_body * (1.0 - snow_lake)

    # ---- reflectance (no BLAS: einsum's own loops are faster on a busy machine)
    refl = np.einsum("ehw,eb->bhw", w, SPECTRA, optimize=False)
    refl *= (static.texture[None] * (static.tint * traits.gain)[:, None, None])

    # ---- temperature (K)
    f = cond.season_temp
    t_rock = t_air + 3.0 + 9.0 * f
    temps = np.stack([
        np.minimum(t_air - 1.5, 272.8),           # snow
        np.minimum(t_air - 0.5, 273.05),          # ice
        np.minimum(t_air - 0.3, 273.1),           # dirty ice
        273.0 + 0.55 * np.maximum(t_rock - 273.0, 0.0) - 2.0 * (1.0 - f),  # debris over ice
        t_rock, t_rock - 0.5,                     # rock
        t_air + 1.5 + 3.0 * f, t_air + 2.0 + 3.0 * f,  # vegetation
        np.maximum(t_air - 2.0, 275.0),           # lake water
    ])
    temp = np.einsum("ehw,ehw->hw", w, temps, optimize=False)

    # ---- illumination: direct sun on the slope (cast shadows), diffuse sky light
    el, az = math.radians(cond.sun_elevation), math.radians(cond.sun_azimuth)
    sx, sy, sz = math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)
    cos_i = (-static.dzdx * sx - static.dzdy * sy + sz) * static.inv_norm
    direct = np.clip(cos_i, 0.0, None) / max(sz, 0.2)
    direct = np.minimum(direct, 1.8)
    direct[cast_shadow(dem, cond.sun_elevation, cond.sun_azimuth)] = 0.0
    heated = w[_E["rock_light"]] + w[_E["rock_dark"]] + w[_E["debris"]] + w[_E["veg_green"]] + w[_E["veg_dry"]]
    temp += heated * 6.0 * f * (direct - 1.0)

    # ---- clouds and their shadows (drawn on a padded canvas so shadows can enter from outside)
    h, wd = shape
    tau = np.zeros(shape)
    tau_shadow = np.zeros(shape)
    if cond.cloud_fraction > 0:
        reach = cond.cloud_height_m / max(math.tan(el), 0.15) / RESOLUTION_M
        dcol = int(round(-math.sin(az) * reach))
        drow = int(round(math.cos(az) * reach))
        pad_r, pad_c = abs(drow) + 1, abs(dcol) + 1
        big = (h + 2 * pad_r, wd + 2 * pad_c)
        sc = cond.cloud_scale_px
        field_ = fbm(rng, big, (sc, sc / 2.5, sc / 6.0), (1.0, 0.45, 0.2))
        inner = field_[pad_r:pad_r + h, pad_c:pad_c + wd]
        thr = float(np.quantile(inner, 1.0 - cond.cloud_fraction))
        opac = np.clip((field_ - thr) / 0.9, 0.0, 1.0) ** 0.7 * rng.uniform(0.9, 1.0)
        tau = opac[pad_r:pad_r + h, pad_c:pad_c + wd]
        src = opac[pad_r - drow:pad_r - drow + h, pad_c - dcol:pad_c - dcol + wd]
        tau_shadow = np.clip(src * 0.9, 0.0, 1.0)
    lit = direct * (1.0 - tau_shadow)
    shade = DIFFUSE_FRACTION[:, None, None] + (1.0 - DIFFUSE_FRACTION)[:, None, None] * lit[None]
    refl *= shade
    temp -= 4.0 * f * tau_shadow * heated

    # ---- thermal resolution (TM 120 m, ETM+ 60 m, TIRS 100 m resampled to 30 m)
    temp = ndimage.gaussian_filter(temp, traits.thermal_blur_px, mode="nearest")

    # ---- haze / cirrus and clouds
    haze = np.zeros(shape)
    if cond.haze > 0:
        haze = cond.haze * np.clip(0.6 + 0.5 * smooth_noise(rng, shape, 25.0), 0.0, 1.5)
        refl += HAZE_SPECTRUM[:, None, None] * haze[None]
        temp -= 25.0 * haze
    if cond.cloud_fraction > 0:
        texture = 1.0 + 0.06 * smooth_noise(rng, shape, 3.0)
        cloud = (CLOUD_SPECTRUM * cond.cloud_brightness)[:, None, None] * texture[None]
        refl = refl * (1.0 - tau[None]) + cloud * tau[None]
        temp = temp * (1.0 - tau) + cond.cloud_temp_k * tau

    # ---- sensor and atmosphere
    refl = refl * cond.gain[:, None, None] + cond.offset[:, None, None]
    refl += traits.noise[:, None, None] * rng.standard_normal(refl.shape)
    # Very bright sunlit snow saturates softly towards ~1.1 (as SR over snow slopes facing the sun).
    bright = refl > 0.95
    refl[bright] = 0.95 + 0.15 * np.tanh((refl[bright] - 0.95) / 0.15)
    temp += traits.thermal_noise_k * rng.standard_normal(shape)
    if cond.image_quality < 9:
        strength = 0.012 if cond.image_quality == 7 else 0.03
        refl += strength * rng.standard_normal((refl.shape[0], h, 1))
        temp += 20.0 * strength * rng.standard_normal((h, 1))

    # ---- QA_PIXEL
    fill = _fill_mask(shape, cond)
    cloud_bit = tau >= CLOUD_OPACITY
    dilated = np.zeros(shape, dtype=bool)
    if cloud_bit.any():
        dilated = ndimage.binary_dilation(cloud_bit, iterations=3) & ~cloud_bit
    shadow_bit = (tau_shadow >= SHADOW_OPACITY) & ~cloud_bit
    cirrus_bit = haze >= 0.05 if cond.satellite in ("L8", "L9") else np.zeros(shape, bool)
    # Fmask-like snow and water tests on the reflectance as stored (after DN quantisation).
    dn = reflectance_to_dn(refl)
    quantised = dn.astype(np.float64) * SR_SCALE + SR_OFFSET
    green, red, nir, swir1 = quantised[2], quantised[3], quantised[4], quantised[5]
    with np.errstate(divide="ignore", invalid="ignore"):
        ndsi = (green - swir1) / (green + swir1)
        ndvi = (nir - red) / (nir + red)
    snow_bit = (ndsi > 0.15) & (nir > 0.11) & (green > 0.10) & ~cloud_bit
    water_bit = (((ndvi < 0.01) & (nir < 0.11)) | ((ndvi > 0) & (ndvi < 0.1) & (nir < 0.05))) & ~cloud_bit & ~snow_bit
    qa = np.zeros(shape, dtype=np.uint16)
    qa |= np.where(dilated, np.uint16(QA.DILATED_CLOUD), np.uint16(0))
    qa |= np.where(cirrus_bit, np.uint16(QA.CIRRUS), np.uint16(0))
    qa |= np.where(cloud_bit, np.uint16(QA.CLOUD), np.uint16(0))
    qa |= np.where(shadow_bit, np.uint16(QA.CLOUD_SHADOW), np.uint16(0))
    qa |= np.where(snow_bit, np.uint16(QA.SNOW), np.uint16(0))
    qa |= np.where(~cloud_bit & ~dilated, np.uint16(QA.CLEAR), np.uint16(0))
    qa |= np.where(water_bit, np.uint16(QA.WATER), np.uint16(0))
    cloud_conf = np.where(tau >= CLOUD_OPACITY, 3, np.where(tau >= CLOUD_OPACITY_MEDIUM, 2, 1)).astype(np.uint16)
    qa |= cloud_conf << QA_CONFIDENCE_SHIFT["cloud"]
    qa |= np.where(shadow_bit, 3, 1).astype(np.uint16) << QA_CONFIDENCE_SHIFT["cloud_shadow"]
    qa |= np.where(snow_bit, 3, 1).astype(np.uint16) << QA_CONFIDENCE_SHIFT["snow"]
    if cond.satellite in ("L8", "L9"):
        qa |= np.where(cirrus_bit, 3, 1).astype(np.uint16) << QA_CONFIDENCE_SHIFT["cirrus"]

    # ---- DN in file band order
    sensor = SENSORS[cond.satellite]
    arrays: dict[str, np.ndarray] = {}
    for i, name in enumerate(RENDER_BANDS):
        if name in sensor.file_bands:
            arrays[name] = dn[i]
    arrays["lwir"] = kelvin_to_dn(temp)
    arrays["qa_pixel"] = qa
    data = np.stack([arrays[name] for name in sensor.file_bands])
    if fill.any():
        data[:, fill] = 0
        data[sensor.file_bands.index("qa_pixel"), fill] = np.uint16(QA.FILL)
    valid = ~fill
    n_valid = max(int(valid.sum()), 1)
    outside = valid & (rel < 0) & (patch < 0.5)  # land and water: not this glacier, not a neighbour's
    return RenderedScene(
        data=data, band_names=sensor.file_bands,
        cloud_fraction=float((cloud_bit & valid).sum() / n_valid),
        shadow_fraction=float((shadow_bit & valid).sum() / n_valid),
        fill_fraction=float(fill.mean()),
        snow_fraction=float(((w[_E["snow"]] > 0.5) & valid).sum() / n_valid),
        snow_fraction_outside=float(((w[_E["snow"]] > 0.5) & outside).sum() / max(int(outside.sum()), 1)),
    )
