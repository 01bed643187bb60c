"""Outlines -> one chosen outline per glacier, the filters of the seed, the per-glacier grid.

See :mod:`glacierwatch.inventory` for the rule and the output columns.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from glacierwatch.config import DateField, InventoryConfig, choices
from glacierwatch.errors import ConfigError, InputError
from glacierwatch.grid import inventory_grid, margin_size, utm_epsg
from glacierwatch.inventory.read import OUTLINE_COLUMNS, SCHEMA_NAMES, UNUSABLE_STATUSES, polygonal_part
from glacierwatch.inventory.regions import UNKNOWN_REGION, RegionTable, load_region_table
from glacierwatch.inventory.territory import territories_wkb
from glacierwatch.io import atomic_path, write_json
from glacierwatch.layout import inventory_outputs

log = logging.getLogger(__name__)

#: Equal-area CRS for areas (WGS 84 / NSIDC EASE-Grid 2.0 Global, cylindrical equal-area).
EQUAL_AREA_CRS = "EPSG:6933"
#: An outline is flagged when its area differs from the inventory's own area by more than this
#: fraction *and* by more than AREA_CHECK_ABSOLUTE_KM2 (RGI 6 rounds areas to 0.001 km²).
AREA_CHECK_RELATIVE = 0.05
AREA_CHECK_ABSOLUTE_KM2 = 0.001
#: Two selected glaciers overlapping by more than this fraction of the smaller one are reported.
OVERLAP_WARN_FRACTION = 0.5
DATE_FIELDS = choices(DateField)
_SCHEMA_RANK = {"glims": 0, "rgi7": 1, "rgi6": 2, "custom": 3}
_MAX_EXAMPLES = 20

#: Columns of ``inventory.parquet`` (validation outlines add ``chosen_anlys_id`` and
#: ``passes_date_filter``; both have ``geometry`` last, EPSG:4326).
INVENTORY_COLUMNS = (
    "glims_id", "name", "region", "geog_area", "outline_date", "area_km2", "inventory_area_km2",
    "area_ratio", "area_flag", "hemisphere", "centroid_lon", "centroid_lat", "utm_epsg", "grid",
    "territory_wkb",
    "box_lon_min", "box_lat_min", "box_lon_max", "box_lat_max", "source", "source_schema", "source_id",
    "id_derived", "anlys_id", "src_date", "anlys_time", "date_field", "region_matched_by",
    "n_outlines", "n_validation_outlines", "chosen_reason",
)


def selection_rule(config: InventoryConfig) -> str:
    """The outline-choice rule in words (written to the report and the docs)."""
    other = "anlys_time" if config.date_field == "src_date" else "src_date"
    return (f"per glacier (GLIMS id), the outline with the latest {config.date_field} on or after "
            f"{config.after}; ties: latest {other}, then highest anlys_id, then GLIMS before RGI 7, "
            f"RGI 5/6 and other files, then source id. Area and region filters apply to the glacier "
            f"through that outline; its other outlines (any date) are the validation outlines.")


# ------------------------------------------------------------------ report

@dataclass
class FilterStep:
    """One filter: what it removed, counted in ``unit`` (records, outlines or glaciers)."""

    name: str
    unit: str
    before: int
    removed: int
    after: int
    detail: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


@dataclass
class SelectionReport:
    """What the selection read, removed (per filter), repaired, assumed and flagged."""

    inputs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[FilterStep] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    rule: str = ""
    region_table: str = "default"
    repaired: list[dict[str, Any]] = field(default_factory=list)
    removed_records: list[dict[str, Any]] = field(default_factory=list)
    unknown_region: list[dict[str, Any]] = field(default_factory=list)
    area_flags: list[dict[str, Any]] = field(default_factory=list)
    overlaps: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_records: int = 0
    n_outlines: int = 0
    n_glaciers_in: int = 0
    n_glaciers: int = 0
    n_validation: int = 0
    per_region: dict[str, int] = field(default_factory=dict)

    def add_step(self, name: str, unit: str, before: int, after: int, detail: dict[str, int] | None = None,
                 examples: Sequence[str] = ()) -> FilterStep:
        step = FilterStep(name, unit, before, before - after, after,
                          {str(k): int(v) for k, v in (detail or {}).items() if v},
                          [str(e) for e in list(examples)[:_MAX_EXAMPLES]])
        self.steps.append(step)
        return step

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def format_text(self) -> str:
        """A human-readable summary (the CLI prints it)."""
        lines = [f"Inventory selection: {len(self.inputs)} file(s), {self.n_records} records, "
                 f"{self.n_outlines} outlines, {self.n_glaciers_in} glaciers"]
        for inp in self.inputs:
            crs = inp.get("crs", "?") + (" (assumed)" if inp.get("crs_assumed") else "")
            lines.append(f"  {inp.get('path')}: {inp.get('schema_name', inp.get('schema'))}, {crs}, "
                         f"{inp.get('records')} records")
            for note in inp.get("notes", []):
                lines.append(f"    - {note}")
        lines.append("Filters, in order (removed / left):")
        width = max([len(s.name) for s in self.steps] + [10])
        for s in self.steps:
            lines.append(f"  {s.name:<{width}}  {s.removed:>7} {s.unit:<8} -> {s.after:>7} left")
            if s.detail:
                lines.append("      " + "; ".join(f"{k}: {v}" for k, v in s.detail.items()))
            if s.examples and s.removed:
                shown = s.examples[:5]
                more = f" (+{s.removed - len(shown)} more)" if s.removed > len(shown) else ""
                lines.append("      e.g. " + ", ".join(shown) + more)
        regions = ", ".join(f"{k} {v}" for k, v in self.per_region.items()) or "none"
        lines.append(f"Selected: {self.n_glaciers} glaciers ({regions}); "
                     f"{self.n_validation} validation outlines")
        lines.append(f"Rule: {self.rule}")
        lines.append(f"Region table: {self.region_table}")
        if self.repaired:
            lines.append(f"Repaired geometries (kept): {len(self.repaired)}")
        if self.removed_records:
            lines.append(f"Records with unusable geometry (removed): {len(self.removed_records)}")
            for r in self.removed_records[:10]:
                lines.append(f"  - {r['source_id']} ({Path(r['source']).name} row {r['source_row']}): {r['reason']}")
        if self.unknown_region:
            lines.append(f"Glaciers of unknown region (kept as '{UNKNOWN_REGION}'; extend the region table): "
                         f"{len(self.unknown_region)}")
            for r in self.unknown_region[:10]:
                lines.append(f"  - {r['glims_id']}: geog_area {r['geog_area']!r}, o1region {r['o1region']}")
        if self.area_flags:
            lines.append(f"Area disagreements > {AREA_CHECK_RELATIVE:.0%} with the inventory's own area "
                         f"(flagged, kept): {len(self.area_flags)}")
            for r in self.area_flags[:10]:
                lines.append(f"  - {r['glims_id']}: {r['area_km2']:.4f} km² vs {r['inventory_area_km2']:.4f} km²")
        if self.overlaps:
            lines.append(f"Overlapping selected glaciers (same glacier from two inventories?): {len(self.overlaps)}")
            for r in self.overlaps[:10]:
                lines.append(f"  - {r['a']} / {r['b']}: {r['fraction']:.0%} of the smaller")
        for w in self.warnings:
            lines.append(f"Warning: {w}")
        return "\n".join(lines)


@dataclass
class Selection:
    """The result of :func:`select_glaciers`."""

    inventory: gpd.GeoDataFrame
    validation: gpd.GeoDataFrame
    report: SelectionReport


# ------------------------------------------------------------------ selection

def _check_config(config: InventoryConfig) -> pd.Timestamp:
    if config.date_field not in DATE_FIELDS:
        raise ConfigError(f"inventory.date_field must be one of {', '.join(DATE_FIELDS)}, got {config.date_field!r}")
    try:
        after = pd.Timestamp(config.after)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"inventory.after: not a date: {config.after!r}") from exc
    if pd.isna(after):
        raise ConfigError(f"inventory.after: not a date: {config.after!r}")
    if config.min_area_km2 < 0 or config.max_area_km2 < config.min_area_km2:
        raise ConfigError(f"inventory: need 0 <= min_area_km2 <= max_area_km2, got "
                          f"{config.min_area_km2} and {config.max_area_km2}")
    if config.per_region < 0:
        raise ConfigError(f"inventory.per_region must be >= 0, got {config.per_region}")
    if not 0 <= config.box_margin < 10 or config.resolution_m <= 0:
        raise ConfigError("inventory: box_margin must be in [0, 10) and resolution_m > 0")
    if not 0 <= config.box_margin_m <= 50_000:
        raise ConfigError(f"inventory.box_margin_m must be in [0, 50000] m, got {config.box_margin_m}")
    return after.normalize()


def select_glaciers(outlines: gpd.GeoDataFrame | Sequence[gpd.GeoDataFrame], *,
                    config: InventoryConfig | None = None,
                    regions: RegionTable | str | os.PathLike[str] | None = None) -> Selection:
    """Choose one outline per glacier and apply the seed's filters (see :mod:`glacierwatch.inventory`).

    ``outlines``: one or several results of :func:`~glacierwatch.inventory.read.read_outlines`.
    ``regions``: a region table or the path of one (default: the packaged ``regions.csv``).
    """
    config = config or InventoryConfig()
    after = _check_config(config)
    table = regions if isinstance(regions, RegionTable) else load_region_table(regions)
    frames = [outlines] if isinstance(outlines, gpd.GeoDataFrame) else list(outlines)
    if not frames:
        raise InputError("no outline files given")
    report = SelectionReport(settings=dataclasses.asdict(config), rule=selection_rule(config),
                             region_table=table.source)
    for f in frames:
        missing = [c for c in OUTLINE_COLUMNS if c not in f.columns]
        if missing:
            raise InputError(f"outline table lacks column(s) {missing}: read it with read_outlines()")
        info = dict(f.attrs.get("load", {}))
        info.setdefault("records", len(f))
        info["schema_name"] = SCHEMA_NAMES.get(info.get("schema", ""), info.get("schema", "?"))
        report.inputs.append(info)
    df = pd.concat([f[[*OUTLINE_COLUMNS, "geometry"]] for f in frames], ignore_index=True)
    df = gpd.GeoDataFrame(df, geometry="geometry", crs="EPSG:4326")
    df.attrs = {}  # pandas deep-copies attrs on every operation
    report.n_records = len(df)

    # 1. glacier-ice outlines only (GLIMS line_type)
    line_type = df["line_type"].fillna("glac_bound").astype(str).str.strip().str.lower()
    is_ice = line_type == "glac_bound"
    rock = df[(line_type == "intrnl_rock") & ~df["geometry_status"].isin(UNUSABLE_STATUSES)]
    report.add_step("not a glacier-ice outline (line_type)", "records", len(df), int(is_ice.sum()),
                    detail=line_type[~is_ice].value_counts().to_dict())
    df = df[is_ice]

    # 2. unusable geometry (reported one by one), repaired ones kept
    unusable = df["geometry_status"].isin(UNUSABLE_STATUSES) | df["glims_id"].isna()
    for _, row in df[unusable].iterrows():
        report.removed_records.append({
            "source_id": str(row["source_id"]), "glims_id": row["glims_id"], "source": row["source"],
            "source_row": int(row["source_row"]),
            "reason": row["geometry_note"] or row["geometry_status"]})
    for _, row in df[df["geometry_status"] == "repaired"].iterrows():
        report.repaired.append({"glims_id": row["glims_id"], "source_id": str(row["source_id"]),
                                "source": row["source"], "source_row": int(row["source_row"]),
                                "note": row["geometry_note"]})
    report.add_step("unusable geometry (empty, not a polygon, unrepairable)", "records", len(df),
                    int((~unusable).sum()), detail=df.loc[unusable, "geometry_status"].value_counts().to_dict(),
                    examples=[f"{r['source_id']} (row {r['source_row']})" for r in report.removed_records])
    df = df[~unusable].copy()

    # 3. records -> outlines (multi-part rows merged, exact duplicates collapsed, internal rock cut out)
    outlines_df, merged, dups, cut = _merge_outlines(df, rock)
    report.n_outlines = len(outlines_df)
    report.add_step("records merged into outlines (multi-part rows, duplicates)", "records", len(df),
                    len(outlines_df), detail={"parts merged": merged, "exact duplicates collapsed": dups,
                                              "outlines with internal rock cut out": cut})
    ea = outlines_df.geometry.to_crs(EQUAL_AREA_CRS).area.to_numpy() / 1e6
    outlines_df["area_km2"] = ea
    inv_area = outlines_df["inventory_area_km2"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        outlines_df["area_ratio"] = ea / inv_area
    diff = np.abs(ea - inv_area)
    outlines_df["area_flag"] = np.nan_to_num(diff > np.maximum(AREA_CHECK_RELATIVE * inv_area, AREA_CHECK_ABSOLUTE_KM2),
                                             nan=0).astype(bool) & np.isfinite(inv_area)

    # 4. choose per glacier: latest outline passing the date filter
    n_glaciers = int(outlines_df["glims_id"].nunique())
    report.n_glaciers_in = n_glaciers
    ordered = _order(outlines_df, config.date_field, after).reset_index(drop=True)
    gids = ordered["glims_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, gids[1:] != gids[:-1]]) if len(gids) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(gids)].astype(int)
    span = {gid: (int(a), int(b)) for gid, a, b in zip(gids[starts], starts, ends, strict=True)}
    first = ordered.iloc[starts]
    chosen = first[first["_eligible"]]
    no_date = first[~first["_eligible"] & first["_date"].isna()]
    too_old = first[~first["_eligible"] & first["_date"].notna()]
    report.add_step(f"date ({config.date_field} on or after {after.date()})", "glaciers", n_glaciers, len(chosen),
                    detail={f"all outlines before {after.date()}": len(too_old),
                            f"no {config.date_field}": len(no_date)},
                    examples=list(too_old["glims_id"]) + list(no_date["glims_id"]))
    records = ordered.to_dict("records")

    # 5. region
    regions_col, include_col, matched_col = [], [], []
    for gid in chosen["glims_id"]:
        a, b = span[gid]
        rows = records[a:b]
        match = table.assign([r["geog_area"] for r in rows],
                             [(None if pd.isna(r["o1region"]) else int(r["o1region"]),
                               None if pd.isna(r["o2region"]) else int(r["o2region"])) for r in rows])
        regions_col.append(match.region)
        include_col.append(match.include)
        matched_col.append(match.matched_by)
    chosen = chosen.copy()
    chosen["region"] = pd.Series(regions_col, index=chosen.index, dtype=object)
    chosen["_include"] = pd.Series(include_col, index=chosen.index, dtype=bool)
    chosen["region_matched_by"] = pd.Series(matched_col, index=chosen.index, dtype=object)
    excluded_table = chosen[~chosen["_include"]]
    excluded_user = chosen[chosen["_include"] & chosen["region"].isin(config.exclude_regions)]
    keep = chosen["_include"] & ~chosen["region"].isin(config.exclude_regions)
    detail = {f"{r} (region table)": n for r, n in excluded_table["region"].value_counts().items()}
    detail.update({f"{r} (exclude_regions)": n for r, n in excluded_user["region"].value_counts().items()})
    report.add_step("region excluded (polar / not selected)", "glaciers", len(chosen), int(keep.sum()),
                    detail=detail, examples=list(excluded_table["glims_id"]) + list(excluded_user["glims_id"]))
    chosen = chosen[keep]
    unknown = chosen[chosen["region"] == UNKNOWN_REGION]
    for _, row in unknown.iterrows():
        report.unknown_region.append({"glims_id": row["glims_id"], "source_id": str(row["source_id"]),
                                      "geog_area": row["geog_area"],
                                      "o1region": None if pd.isna(row["o1region"]) else int(row["o1region"]),
                                      "source": row["source"]})
    if len(unknown):
        values = sorted({str(v) for v in unknown["geog_area"]})
        report.warnings.append(f"{len(unknown)} glacier(s) matched no row of the region table and are kept as "
                               f"region '{UNKNOWN_REGION}' (geog_area values: {', '.join(values[:10])}); add rows "
                               f"to the table (--regions) or leave them out with --exclude-regions {UNKNOWN_REGION}")

    # 6. area
    small = chosen["area_km2"] < config.min_area_km2
    large = chosen["area_km2"] > config.max_area_km2
    report.add_step(f"area outside {config.min_area_km2:g}-{config.max_area_km2:g} km²", "glaciers", len(chosen),
                    int((~small & ~large).sum()),
                    detail={f"< {config.min_area_km2:g} km²": int(small.sum()), f"> {config.max_area_km2:g} km²": int(large.sum())})
    chosen = chosen[~small & ~large]

    # 7. per-region sample, biased towards larger glaciers
    chosen, sample_detail = _sample(chosen, config.per_region, config.seed)
    report.add_step(f"per-region sample (at most {config.per_region} per region, p ~ area, seed {config.seed})"
                    if config.per_region else "per-region sample (off: per_region = 0)",
                    "glaciers", len(chosen) + sum(sample_detail.values()), len(chosen), detail=sample_detail)

    # every glacier's rule-chosen outline (selected or not): the neighbours of the territories
    inventory, validation = _build_outputs(chosen, records, span, config, after,
                                           all_outlines=first[["glims_id", "geometry"]])
    report.n_glaciers = len(inventory)
    report.n_validation = len(validation)
    report.per_region = {str(k): int(v) for k, v in inventory["region"].value_counts().sort_index().items()}
    for _, row in inventory[inventory["area_flag"]].iterrows():
        report.area_flags.append({"glims_id": row["glims_id"], "area_km2": float(row["area_km2"]),
                                  "inventory_area_km2": float(row["inventory_area_km2"]),
                                  "source": row["source"]})
    report.overlaps = _overlaps(inventory)
    if report.overlaps:
        report.warnings.append(f"{len(report.overlaps)} pair(s) of selected glaciers overlap by more than "
                               f"{OVERLAP_WARN_FRACTION:.0%}: were two inventories of the same area given?")
    if not len(inventory):
        report.warnings.append("no glacier passed the filters")
    for w in report.warnings:
        log.warning("%s", w)
    return Selection(inventory=inventory, validation=validation, report=report)


def _merge_outlines(df: gpd.GeoDataFrame, rock: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, int, int, int]:
    """One row per outline: key (schema, glims id, source id, analysis id). Returns (outlines,
    parts merged, duplicates collapsed, outlines with internal rock removed)."""
    df = df.copy()
    df["_anlys"] = df["anlys_id"].fillna(-1).astype("int64")
    keys = ["source_schema", "glims_id", "source_id", "_anlys"]
    df["_key"] = df.groupby(keys, sort=False).ngroup()
    size = df.groupby("_key")["_key"].transform("size")
    single = df[size == 1]
    multi = df[size > 1].sort_values("_key", kind="mergesort")
    merged = dups = 0
    if len(multi):
        keys_arr = multi["_key"].to_numpy()
        starts = np.flatnonzero(np.r_[True, keys_arr[1:] != keys_arr[:-1]])
        ends = np.r_[starts[1:], len(keys_arr)]
        geoms = multi.geometry.to_numpy()
        wkbs = shapely.to_wkb(shapely.normalize(geoms))
        areas = multi["inventory_area_km2"].to_numpy(dtype=float)
        schema = multi["source_schema"].to_numpy()
        repaired = (multi["geometry_status"] == "repaired").to_numpy()
        new_geoms, new_areas, new_status = [], [], []
        for a, b in zip(starts, ends, strict=True):
            seen: set[bytes] = set()
            distinct = []
            for i in range(a, b):
                if wkbs[i] not in seen:
                    seen.add(wkbs[i])
                    distinct.append(i)
            dups += (b - a) - len(distinct)
            merged += len(distinct) - 1
            union = shapely.union_all(geoms[distinct]) if len(distinct) > 1 else geoms[distinct[0]]
            new_geoms.append(union if shapely.is_valid(union) else polygonal_part(shapely.make_valid(union)))
            if schema[a] in ("glims", "rgi7"):
                # the area column belongs to the whole analysis, repeated on each part
                vals = areas[a:b][np.isfinite(areas[a:b])]
                new_areas.append(float(vals[0]) if len(vals) else np.nan)
            else:
                vals = areas[distinct]
                new_areas.append(float(np.nansum(vals)) if np.isfinite(vals).any() else np.nan)
            new_status.append("repaired" if repaired[a:b].any() else multi["geometry_status"].iat[a])
        firsts = multi.iloc[starts].copy()
        firsts["geometry"] = gpd.GeoSeries(new_geoms, index=firsts.index, crs="EPSG:4326")
        firsts["inventory_area_km2"] = new_areas
        firsts["geometry_status"] = new_status
        out = pd.concat([single, firsts], ignore_index=True)
    else:
        out = single.reset_index(drop=True)
    out = gpd.GeoDataFrame(out, geometry="geometry", crs="EPSG:4326")
    cut = 0
    if len(rock):
        rock = rock.assign(_anlys=rock["anlys_id"].fillna(-1).astype("int64"))
        rock_geoms = rock.groupby(["glims_id", "_anlys"])["geometry"].agg(lambda s: shapely.union_all(list(s)))
        index = {key: i for i, (key, sch) in enumerate(zip(zip(out["glims_id"], out["_anlys"], strict=True),
                                                            out["source_schema"], strict=True)) if sch == "glims"}
        for key, rock_geom in rock_geoms.items():
            if key not in index:
                continue
            i = out.index[index[key]]
            before = out.at[i, "geometry"]
            after = before.difference(rock_geom)
            if not after.is_empty and after.area < before.area:
                out.at[i, "geometry"] = after
                cut += 1
    return out.drop(columns=["_key"]), merged, dups, cut


def _order(outlines: gpd.GeoDataFrame, date_field: str, after: pd.Timestamp) -> gpd.GeoDataFrame:
    """Outlines sorted per glacier by the rule: eligible first, then latest date, ties broken."""
    other = "anlys_time" if date_field == "src_date" else "src_date"
    o = outlines.copy()
    o["_date"] = o[date_field]
    o["_other"] = o[other]
    o["_eligible"] = (o["_date"].notna() & (o["_date"] >= after)).astype(bool)
    o["_rank"] = o["source_schema"].map(_SCHEMA_RANK).fillna(9)
    return o.sort_values(["glims_id", "_eligible", "_date", "_other", "_anlys", "_rank", "source_id"],
                         ascending=[True, False, False, False, False, True, True], na_position="last",
                         kind="mergesort")


def _sample(chosen: pd.DataFrame, per_region: int, seed: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """At most ``per_region`` glaciers per region, drawn without replacement with probability
    proportional to area; each region has its own generator (seed, CRC32 of the region name)."""
    if per_region <= 0:
        return chosen, {}
    keep, removed = [], {}
    for region, g in chosen.sort_values("glims_id").groupby("region", sort=True):
        if len(g) <= per_region:
            keep.append(g)
            continue
        rng = np.random.default_rng([int(seed), zlib.crc32(str(region).encode("utf-8"))])
        p = g["area_km2"].to_numpy(dtype=float)
        idx = rng.choice(len(g), size=per_region, replace=False, p=p / p.sum())
        keep.append(g.iloc[np.sort(idx)])
        removed[str(region)] = len(g) - per_region
    return (pd.concat(keep) if keep else chosen.iloc[:0]), removed


def _describe_choice(rows: list[dict[str, Any]], date_field: str, after: pd.Timestamp) -> str:
    """Why the first of a glacier's ordered outlines was chosen, in words."""
    first = rows[0]
    eligible = [r for r in rows if r["_eligible"]]
    text = (f"latest {date_field} on or after {after.date()}: {first['_date'].date()} "
            f"({len(eligible)} of {len(rows)} outline(s) pass the date filter)")
    ties = [r for r in eligible if r["_date"] == first["_date"]]
    if len(ties) > 1:
        other = "anlys_time" if date_field == "src_date" else "src_date"
        others = {r["_other"] for r in ties if not pd.isna(r["_other"])}
        if pd.notna(first["_other"]) and (len(others) > 1 or any(pd.isna(r["_other"]) for r in ties)):
            how = f"latest {other} ({first['_other'].date()})"
        elif len({r["_anlys"] for r in ties}) > 1:
            how = f"highest anlys_id ({first['_anlys']})"
        else:
            how = "source order (GLIMS, RGI 7, RGI 5/6, other; then source id)"
        text += f"; {len(ties)} outlines on that date, tie broken by {how}"
    return text


def _build_outputs(chosen: pd.DataFrame, records: list[dict[str, Any]], span: dict[str, tuple[int, int]],
                   config: InventoryConfig, after: pd.Timestamp, *,
                   all_outlines: pd.DataFrame) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    inv_rows: list[dict[str, Any]] = []
    val_rows: list[dict[str, Any]] = []
    chosen = chosen.sort_values(["region", "glims_id"])
    grids, epsgs = [], []
    for gid in chosen["glims_id"]:
        geom = records[span[gid][0]]["geometry"]
        c = geom.centroid
        epsgs.append(utm_epsg(c.x, c.y))
        grids.append(inventory_grid(geom, margin=config.box_margin, margin_m=config.box_margin_m,
                                    resolution=config.resolution_m, crs=f"EPSG:{epsgs[-1]}"))
    position = {gid: i for i, gid in enumerate(all_outlines["glims_id"])}
    territories = territories_wkb(all_outlines.geometry.to_numpy(), [position[g] for g in chosen["glims_id"]],
                                  grids)
    for gid, region, matched_by, grid, epsg, territory in zip(
            chosen["glims_id"], chosen["region"], chosen["region_matched_by"], grids, epsgs, territories,
            strict=True):
        a, b = span[gid]
        rows = records[a:b]
        row = rows[0]
        c = row["geometry"].centroid
        glacier = {"region": region, "hemisphere": "N" if c.y >= 0 else "S", "utm_epsg": epsg,
                   "grid": grid.to_json(), "territory_wkb": territory, "region_matched_by": matched_by,
                   "n_outlines": len(rows), "n_validation_outlines": len(rows) - 1}
        inv_rows.append({**_outline_fields(row, config), **glacier,
                         "chosen_reason": _describe_choice(rows, config.date_field, after)})
        chosen_anlys = None if row["_anlys"] < 0 else int(row["_anlys"])
        label = chosen_anlys if chosen_anlys is not None else row["source_id"]
        for other in rows[1:]:
            val_rows.append({**_outline_fields(other, config), **glacier,
                             "chosen_reason": f"validation outline (chosen: {label})",
                             "chosen_anlys_id": chosen_anlys, "passes_date_filter": bool(other["_eligible"])})
    inventory = _frame(inv_rows, list(INVENTORY_COLUMNS))
    validation = _frame(val_rows, [*INVENTORY_COLUMNS, "chosen_anlys_id", "passes_date_filter"])
    return inventory, validation


def _outline_fields(row: dict[str, Any], config: InventoryConfig) -> dict[str, Any]:
    geom = row["geometry"]
    c = geom.centroid
    lon_min, lat_min, lon_max, lat_max = geom.bounds
    # the grid's margin rule in degrees (metres converted at the centroid's latitude)
    m_lat = config.box_margin_m / 111_320.0
    m_lon = m_lat / max(math.cos(math.radians(c.y)), 1e-6)
    dx = margin_size(lon_max - lon_min, config.box_margin, m_lon)
    dy = margin_size(lat_max - lat_min, config.box_margin, m_lat)
    return {
        "glims_id": row["glims_id"], "name": row["name"] if isinstance(row["name"], str) else "",
        "geog_area": row["geog_area"] if isinstance(row["geog_area"], str) else "",
        "outline_date": row["_date"], "area_km2": float(row["area_km2"]),
        "inventory_area_km2": float(row["inventory_area_km2"]), "area_ratio": float(row["area_ratio"]),
        "area_flag": bool(row["area_flag"]), "centroid_lon": c.x, "centroid_lat": c.y,
        "box_lon_min": lon_min - dx, "box_lat_min": max(-90.0, lat_min - dy),
        "box_lon_max": lon_max + dx, "box_lat_max": min(90.0, lat_max + dy),
        "source": row["source"], "source_schema": row["source_schema"], "source_id": str(row["source_id"]),
        "id_derived": bool(row["id_derived"]), "anlys_id": row["anlys_id"],
        "src_date": row["src_date"], "anlys_time": row["anlys_time"], "date_field": config.date_field,
        "geometry": geom,
    }


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> gpd.GeoDataFrame:
    df = pd.DataFrame(rows, columns=[*columns, "geometry"])
    for col in ("outline_date", "src_date", "anlys_time"):
        df[col] = pd.to_datetime(df[col]).astype("datetime64[us]")
    for col in ("anlys_id", "chosen_anlys_id"):
        if col in df:
            df[col] = pd.array(df[col], dtype="Int64")
    for col in ("utm_epsg", "n_outlines", "n_validation_outlines"):
        df[col] = df[col].astype("int64")
    for col in ("area_flag", "id_derived", "passes_date_filter"):
        if col in df:
            df[col] = df[col].astype(bool)
    for col in ("area_km2", "inventory_area_km2", "area_ratio", "centroid_lon", "centroid_lat",
                "box_lon_min", "box_lat_min", "box_lon_max", "box_lat_max"):
        df[col] = df[col].astype(float)
    return gpd.GeoDataFrame(df, geometry="geometry", crs="EPSG:4326")


def _overlaps(inventory: gpd.GeoDataFrame) -> list[dict[str, Any]]:
    if len(inventory) < 2:
        return []
    geoms = inventory.geometry.to_numpy()
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    out = []
    for i, j in zip(left, right, strict=True):
        if i >= j:
            continue
        inter = geoms[i].intersection(geoms[j]).area
        smaller = min(geoms[i].area, geoms[j].area)
        if smaller > 0 and inter / smaller > OVERLAP_WARN_FRACTION:
            out.append({"a": inventory["glims_id"].iat[i], "b": inventory["glims_id"].iat[j],
                        "fraction": float(inter / smaller)})
    return out


# ------------------------------------------------------------------ writing

#: ``inventory.parquet`` -> the files beside it (named by the layout)
output_paths = inventory_outputs


def write_inventory(selection: Selection, out_path: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the inventory (GeoParquet), the validation outlines (GeoParquet) and the report (JSON),
    each atomically. Returns their paths."""
    paths = output_paths(out_path)
    if paths["inventory"].suffix.lower() not in {".parquet", ".geoparquet"}:
        raise InputError(f"{paths['inventory']}: the inventory is written as GeoParquet; use a .parquet name")
    for key in ("inventory", "validation"):
        frame = selection.inventory if key == "inventory" else selection.validation
        with atomic_path(paths[key]) as tmp:
            frame.to_parquet(tmp, index=False)
    write_json(paths["report"], _json_safe(selection.report.to_dict()))
    return paths


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value
