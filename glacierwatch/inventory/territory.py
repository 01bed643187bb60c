"""A glacier's territory: the part of its grid box nearer to its outline than to any other outline.

The territory of glacier *g* on its grid (a box in the grid's UTM CRS, m) is every point of the box
whose distance to *g*'s outline is at most its distance to every other outline the inventory read
(all glaciers of all files, each through its rule-chosen outline), minus the other outlines
themselves. The margin zone between two glaciers is thus shared at equal distance, and the time
series counts a glacier's pixels only in ``outline + buffer_m ∩ territory``
(:func:`glacierwatch.grid.counting_region`), so no neighbour's ice is counted for this glacier.

Method (vector, resolution-free): the boundaries of *g* and of the neighbours near its box are
densified to points ``spacing_m`` apart; their Voronoi diagram assigns each cell to the outline its
point belongs to (for a point outside every outline, the distance to an outline is the distance to
its boundary); *g*'s territory is the union of its cells, plus its own outline, clipped to the box,
minus the other outlines. The points get a deterministic sub-millimetre jitter (evenly spaced points
on straight edges are cocircular, where GEOS may misplace cells) and each cell is checked to hold its
point. Where outlines touch, points equally near to both go to the outline of lowest rank (its
position in the outline set), so all territories are disjoint. The bisector is exact for straight facing edges and off by at most about
``spacing_m² / (8 d)`` elsewhere (d: distance to the outlines), e.g. 1 m at 30 m spacing 100 m from
the outlines: well under a pixel at the default spacing of one pixel. Neighbours are found with an
STR-tree, so thousands of glaciers cost one small Voronoi diagram each. A vector territory is stored
once (WKB, metres) and burnt on the grid at pixel centres exactly like the outline (:func:`glacierwatch.grid.territory_on_grid`), so any stage
or resolution can use it; a raster distance transform would tie it to one grid and be off by up to
half a pixel at the outline edges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

from glacierwatch.grid import GlacierGrid


def _reach(own: BaseGeometry, box: BaseGeometry) -> float:
    """An upper bound of the distance from any point of ``box`` to ``own`` (m): the farthest box
    corner from a point of ``own``. Outline parts farther than this from the box can never be nearer
    to a box point than ``own`` is, so only outlines within reach enter the Voronoi diagram."""
    q = own.representative_point()
    corners = shapely.get_coordinates(shapely.boundary(box))
    return float(np.max(np.hypot(corners[:, 0] - q.x, corners[:, 1] - q.y)))


def _boundary_points(geometries: Sequence[BaseGeometry], spacing_m: float) -> list[np.ndarray]:
    """(n, 2) coordinates of each geometry's boundary, at most ``spacing_m`` apart."""
    out = []
    for geom in geometries:
        line = shapely.segmentize(shapely.boundary(geom), spacing_m)
        out.append(shapely.get_coordinates(line))
    return out


def territory(own_utm: BaseGeometry, others_utm: Sequence[BaseGeometry], box: BaseGeometry,
              *, spacing_m: float = 30.0, own_rank: int = -1,
              other_ranks: Sequence[int] | None = None) -> BaseGeometry:
    """The territory of ``own_utm`` in ``box`` against ``others_utm`` (all in one projected CRS, m):
    a (Multi)Polygon, possibly empty. See the module docstring for the rule and the method.

    Ties of positive area occur only where outlines touch (a point whose nearest ice is a shared
    vertex is equally near to both); they go to the outline of lowest rank (``own_rank``,
    ``other_ranks``; default: own wins), so territories computed with the same ranks are disjoint."""
    ranks = list(other_ranks) if other_ranks is not None else [0] * len(others_utm)
    kept = [(o, r) for o, r in zip(others_utm, ranks, strict=True) if o is not None and not o.is_empty]
    if not kept:
        return box
    others = [o for o, _ in kept]
    ranks = [r for _, r in kept]
    left, bottom, right, top = box.bounds
    reach = _reach(own_utm, box)
    region = shapely.box(left - reach, bottom - reach, right + reach, top + reach)
    clipped = [(shapely.clip_by_rect(o, *region.bounds), r) for o, r in zip(others, ranks, strict=True)]
    clipped = [(o, r) for o, r in clipped if not o.is_empty]
    if not clipped:
        return box
    others = [o for o, _ in clipped]
    own_pts, *other_pts = _boundary_points([own_utm, *others], spacing_m)
    coords = np.concatenate([own_pts, *other_pts])
    point_rank = np.concatenate([np.full(len(own_pts), own_rank)]
                                + [np.full(len(p), r) for p, (_, r) in zip(other_pts, clipped, strict=True)])
    is_own = np.zeros(len(coords), dtype=bool)
    is_own[: len(own_pts)] = True
    # A point shared by two outlines (closed rings, shared divides) would merge Voronoi cells: keep
    # it once, for the outline of lowest rank.
    key = np.round(coords, 6)
    order = np.lexsort((point_rank, key[:, 1], key[:, 0]))
    first = order[np.r_[True, np.any(key[order][1:] != key[order][:-1], axis=1)]]
    coords, is_own = coords[first], is_own[first]
    # Evenly spaced points on straight edges are cocircular: degenerate Voronoi vertices, where GEOS
    # may misplace cells. A deterministic sub-millimetre jitter breaks the ties.
    coords = coords + np.random.default_rng(0).uniform(-1e-3, 1e-3, coords.shape)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(coords), extend_to=region,
                                                       ordered=True))
    odd = np.flatnonzero(shapely.get_type_id(cells) != 3)  # 3 = Polygon
    for i in odd:  # GEOS may return a clipped cell as a collection with a degenerate line
        parts = [p for p in shapely.get_parts(cells[i]) if p.geom_type == "Polygon"]
        cells[i] = max(parts, key=lambda p: p.area) if parts else shapely.Polygon()
    # each cell goes to the outline of the point it contains: the output order when every cell holds
    # its own point (checked), else found by containment
    if len(cells) == len(coords) and shapely.contains_xy(cells, coords[:, 0], coords[:, 1]).all():
        own_cells = cells[is_own]
    else:
        cell_idx, pt_idx = shapely.STRtree(np.asarray(shapely.points(coords))).query(cells, predicate="contains")
        own_cells = cells[np.unique(cell_idx[is_own[pt_idx]])]
    near = _union_cells(own_cells)
    result = shapely.union(shapely.make_valid(near), own_utm)
    result = shapely.intersection(result, box)
    result = shapely.difference(result, shapely.union_all(others))
    return _polygonal(result)


def _union_cells(cells: np.ndarray) -> BaseGeometry:
    """Union of Voronoi cells (polygons)."""
    if not len(cells):
        return shapely.Polygon()
    try:
        return shapely.coverage_union_all(cells)
    except shapely.errors.GEOSException:  # cells not an exact coverage (e.g. along shared divides)
        # a fixed-precision overlay (1 mm) is robust to the near-degenerate cells
        return shapely.union_all(shapely.make_valid(cells), grid_size=1e-3)


def _polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """The (Multi)Polygon part of ``geometry`` (slivers of lines and points from overlay dropped)."""
    geometry = shapely.make_valid(geometry)
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    if not parts:
        return shapely.MultiPolygon()
    if len(parts) == 1:
        return parts[0]
    return shapely.union_all(parts)


def territories_wkb(all_outlines_wgs84: Sequence[BaseGeometry], selected: Sequence[int],
                    grids: Sequence[GlacierGrid], *, spacing_m: float | None = None) -> list[bytes]:
    """WKB territories of the glaciers ``all_outlines_wgs84[selected[k]]`` on ``grids[k]``, each in
    its grid's CRS (m), against every other outline of ``all_outlines_wgs84`` (one per glacier,
    WGS 84 degrees). ``spacing_m``: boundary point spacing (default: the grid's pixel size, m)."""
    geoms = np.asarray(all_outlines_wgs84, dtype=object)
    tree = shapely.STRtree(geoms)
    out: list[bytes] = []
    for index, grid in zip(selected, grids, strict=True):
        left, bottom, right, top = grid.bounds
        reach = math.hypot(right - left, top - bottom)  # >= _reach(): a coarse first cut in degrees
        to_wgs = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
        search = shapely.box(*to_wgs.transform_bounds(left - reach, bottom - reach, right + reach, top + reach,
                                                      densify_pts=21))
        near = [int(j) for j in tree.query(search) if int(j) != int(index)]
        to_utm = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform

        # to_utm is bound as a default: the function is only called in this iteration (B023)
        def project(g: BaseGeometry, to_utm: Callable[..., Any] = to_utm) -> BaseGeometry:
            # types-shapely types only the interleaved=True form of the transformation
            return shapely.transform(g, lambda x, y: to_utm(x, y), interleaved=False)  # type: ignore[arg-type, misc]

        own = project(geoms[index])
        others = [project(geoms[j]) for j in near]
        # ranks = positions in the outline set, so ties where outlines touch go to the same glacier
        # in every territory: the territories of all glaciers are disjoint
        result = territory(own, others, shapely.box(*grid.bounds),
                           spacing_m=spacing_m if spacing_m is not None else grid.resolution,
                           own_rank=int(index), other_ranks=near)
        out.append(shapely.to_wkb(result))
    return out
