"""Mountain regions of the synthetic world: where glaciers sit and what their climate looks like.

Each :class:`RegionSpec` is one GLIMS ``geog_area`` (the values the inventory stage maps to the
paper's five regions). Positions are drawn from a lattice of slots ~8 km apart inside the region's
box, so glacier ids (derived from outline centroids) never collide; boxes stay >= 0.15 deg away from
UTM zone boundaries, so the UTM zone of a box centre and of its outline centroid agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Spacing of candidate glacier positions inside a region box, km.
SLOT_SPACING_KM = 8.0


@dataclass(frozen=True)
class RegionSpec:
    """Geography and climate of one GLIMS ``geog_area``.

    Elevations in m a.s.l., temperatures in K (near-surface air at the glacier terminus elevation,
    warmest and coldest month), vegetation density 0-1 below the tree/meadow line; a glacier has a
    debris-covered tongue with ``debris_probability``, covering ``debris_extent`` (range of the share
    of the glacier's area, the lowest part of the tongue).
    """

    geog_area: str
    region: str
    hemisphere: str  # "N" or "S"
    lon_range: tuple[float, float]
    lat_range: tuple[float, float]
    z_terminus: tuple[float, float]
    treeline_m: float
    vegetation: float
    debris_probability: float
    debris_extent: tuple[float, float]
    air_temp_summer_k: float
    air_temp_winter_k: float
    winter_snowline_drop_m: float

    @property
    def southern(self) -> bool:
        return self.hemisphere == "S"


REGIONS: tuple[RegionSpec, ...] = (
    RegionSpec("Swiss Alps", "Europe", "N", (6.9, 8.7), (45.85, 46.65), (2200.0, 2650.0), 2150.0, 0.8,
               0.35, (0.08, 0.2), 281.0, 262.0, 1500.0),
    RegionSpec("Austrian Alps", "Europe", "N", (10.3, 11.8), (46.75, 47.25), (2250.0, 2650.0), 2050.0, 0.8,
               0.3, (0.08, 0.2), 280.5, 261.0, 1500.0),
    RegionSpec("Norway", "Europe", "N", (6.2, 8.0), (61.3, 62.0), (850.0, 1400.0), 1000.0, 0.9,
               0.1, (0.05, 0.12), 283.0, 265.0, 1000.0),
    RegionSpec("Himalaya", "Asia", "N", (85.4, 87.8), (27.75, 28.45), (4800.0, 5200.0), 4300.0, 0.4,
               0.9, (0.25, 0.45), 275.0, 256.0, 1400.0),
    RegionSpec("Tien Shan", "Asia", "N", (78.3, 80.0), (41.85, 42.35), (3450.0, 3900.0), 3000.0, 0.55,
               0.5, (0.1, 0.25), 278.5, 255.0, 1300.0),
    RegionSpec("Caucasus", "Caucasus", "N", (42.3, 43.7), (42.95, 43.45), (2650.0, 3050.0), 2400.0, 0.8,
               0.6, (0.1, 0.25), 280.0, 260.0, 1500.0),
    RegionSpec("Alaska", "North America", "N", (-147.8, -144.3), (60.85, 61.55), (300.0, 850.0), 650.0, 0.9,
               0.5, (0.1, 0.25), 284.0, 262.0, 900.0),
    RegionSpec("Coast Mountains", "North America", "N", (-125.6, -123.0), (50.55, 51.45), (1250.0, 1750.0),
               1600.0, 0.9, 0.3, (0.08, 0.2), 283.0, 264.0, 1200.0),
    RegionSpec("Andes", "South America", "S", (-70.45, -69.6), (-33.9, -32.85), (3650.0, 4100.0), 3000.0,
               0.15, 0.5, (0.1, 0.25), 279.0, 265.0, 1300.0),
    RegionSpec("Patagonia", "South America", "S", (-73.75, -72.3), (-49.7, -48.45), (300.0, 900.0), 900.0,
               0.9, 0.2, (0.05, 0.15), 282.0, 271.0, 900.0),
)

#: geog_area -> spec.
REGION_BY_AREA: dict[str, RegionSpec] = {spec.geog_area: spec for spec in REGIONS}

#: Order in which time-series glaciers take regions: Europe, South America, Asia, North America,
#: Caucasus first, so any >= 3 time-series glaciers span >= 3 regions incl. a southern one.
TIMESERIES_ORDER: tuple[str, ...] = (
    "Swiss Alps", "Andes", "Himalaya", "Alaska", "Caucasus", "Patagonia", "Norway", "Tien Shan",
    "Coast Mountains", "Austrian Alps",
)


def training_region(index: int) -> RegionSpec:
    """Region of training glacier ``index`` (round robin over :data:`REGIONS`)."""
    return REGIONS[index % len(REGIONS)]


def timeseries_region(index: int) -> RegionSpec:
    """Region of time-series glacier ``index``."""
    return REGION_BY_AREA[TIMESERIES_ORDER[index % len(TIMESERIES_ORDER)]]


def _slots(spec: RegionSpec) -> list[tuple[float, float]]:
    """Lattice of candidate (lon, lat) positions inside the region box, ~SLOT_SPACING_KM apart."""
    lat_mid = 0.5 * (spec.lat_range[0] + spec.lat_range[1])
    dlat = SLOT_SPACING_KM / 111.2
    dlon = SLOT_SPACING_KM / (111.2 * math.cos(math.radians(lat_mid)))
    lats = np.arange(spec.lat_range[0] + dlat / 2, spec.lat_range[1], dlat)
    lons = np.arange(spec.lon_range[0] + dlon / 2, spec.lon_range[1], dlon)
    return [(float(lon), float(lat)) for lat in lats for lon in lons]


def slot_lonlat(spec: RegionSpec, seed: int, rank: int) -> tuple[float, float]:
    """Target outline centroid (lon, lat) of the ``rank``-th glacier placed in this region.

    Slots are taken in a per-region random order (seeded by ``seed`` and the region), from the
    front for training glaciers (rank >= 0) and from the back for time-series glaciers (rank < 0).
    Beyond the lattice size, positions repeat with a 0.004 deg offset per round, and time-series
    positions are offset by 0.002 deg from training ones, so glacier ids stay unique.
    """
    slots = _slots(spec)
    region_index = REGIONS.index(spec)
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 7919, region_index])).permutation(len(slots))
    n = len(slots)
    pos = rank % n
    rounds = rank // n if rank >= 0 else (-rank - 1) // n
    lon, lat = slots[int(perm[pos])]
    if rank >= 0:
        return lon + 0.004 * rounds, lat + 0.004 * rounds
    return lon - 0.002 - 0.004 * rounds, lat - 0.002 - 0.004 * rounds
