"""The region table: GLIMS ``geog_area`` text and RGI / GTN-G region codes -> the seed's regions.

The default table is ``regions.csv`` in this package (print it with ``glacierwatch inventory
regions``; pass an edited copy with ``--regions FILE``). Columns:

``field``
    ``geog_area`` (GLIMS free-text area name), ``o2region`` (RGI/GTN-G second-order region,
    written ``10-04``) or ``o1region`` (first-order region, ``1`` ... ``20``).
``key``
    for ``geog_area``: a case-insensitive regular expression searched anywhere in the text
    (``alps|pyrenees``); for the region codes: the code.
``region``
    the region name written to the inventory.
``include``
    ``yes``/``no``: whether glaciers of this row are selected. Polar rows say ``no``; that is how the
    seed's exclusion of the Arctic and Antarctic is expressed.
``note``
    free text.

How a glacier gets its region (first success wins):

1. the ``geog_area`` of its chosen outline, against the ``geog_area`` rows in file order (so
   ``new zealand|southern alps`` must come before ``alps``);
2. the ``geog_area`` of its other outlines (GLIMS has many, e.g. ``Austrian Alps`` next to
   ``Various (GlobGlacier)``): the region most of them map to, ties to the latest outline;
3. the RGI / GTN-G second-order, then first-order region code of any of its outlines (GLIMS
   ``gtng_o1reg``/``gtng_o2reg``, RGI ``O1Region``/``O2Region``);
4. otherwise region ``Unknown`` (kept, included, and listed in the selection report so the table can
   be extended).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from glacierwatch.errors import DatasetNotFoundError, InputError

UNKNOWN_REGION = "Unknown"
FIELDS = ("geog_area", "o2region", "o1region")
_YES = {"yes", "y", "true", "1", "include"}
_NO = {"no", "n", "false", "0", "exclude"}


@dataclass(frozen=True)
class RegionRule:
    """One row of the region table."""

    field: str
    key: str
    region: str
    include: bool
    note: str = ""
    line: int = 0


@dataclass(frozen=True)
class RegionMatch:
    """The region of a glacier and how it was found (``matched_by``, e.g. ``geog_area 'Swiss Alps'``)."""

    region: str
    include: bool
    matched_by: str


@dataclass
class RegionTable:
    """Ordered region rules; see the module documentation for the matching order."""

    rules: list[RegionRule]
    source: str = "default"
    _patterns: list[tuple[re.Pattern[str], RegionRule]] = field(default_factory=list, repr=False)
    _codes: dict[tuple[str, str], RegionRule] = field(default_factory=dict, repr=False)
    _cache: dict[str, RegionRule | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for rule in self.rules:
            if rule.field == "geog_area":
                try:
                    self._patterns.append((re.compile(rule.key, re.IGNORECASE), rule))
                except re.error as exc:
                    raise InputError(f"region table {self.source}, line {rule.line}: bad pattern "
                                     f"{rule.key!r} ({exc})") from exc
            else:
                self._codes.setdefault((rule.field, rule.key), rule)

    @property
    def regions(self) -> list[str]:
        """Region names in table order (without duplicates)."""
        return list(dict.fromkeys(r.region for r in self.rules))

    @property
    def excluded_regions(self) -> list[str]:
        """Regions whose every row says ``include = no``."""
        out = []
        for region in self.regions:
            if not any(r.include for r in self.rules if r.region == region):
                out.append(region)
        return out

    def match_geog_area(self, text: str | None) -> RegionRule | None:
        """The first ``geog_area`` rule whose pattern occurs in ``text`` (None if none)."""
        if text is None or not isinstance(text, str) or not text.strip():
            return None
        if text not in self._cache:
            self._cache[text] = next((rule for pattern, rule in self._patterns if pattern.search(text)), None)
        return self._cache[text]

    def match_code(self, o1region: int | None, o2region: int | None = None) -> RegionRule | None:
        """The rule of the second-order code ``o1-o2`` if listed, else of the first-order code."""
        if o1region is None:
            return None
        if o2region is not None:
            rule = self._codes.get(("o2region", f"{int(o1region):02d}-{int(o2region):02d}"))
            if rule is not None:
                return rule
        return self._codes.get(("o1region", str(int(o1region))))

    def assign(self, geog_areas: Iterable[str | None], codes: Iterable[tuple[int | None, int | None]]) -> RegionMatch:
        """Region of one glacier: ``geog_areas`` = its outlines' area names, chosen outline first then
        the others latest first; ``codes`` = its outlines' (o1region, o2region)."""
        areas = list(geog_areas)
        if areas:
            rule = self.match_geog_area(areas[0])
            if rule is not None:
                return RegionMatch(rule.region, rule.include, f"geog_area {areas[0]!r}")
        votes: dict[str, list[tuple[int, RegionRule, str]]] = {}
        for order, text in enumerate(areas[1:]):
            rule = self.match_geog_area(text)
            if rule is not None:
                votes.setdefault(rule.region, []).append((order, rule, str(text)))
        if votes:
            region = max(votes, key=lambda r: (len(votes[r]), -votes[r][0][0]))
            _, rule, text = votes[region][0]
            return RegionMatch(rule.region, rule.include,
                               f"geog_area {text!r} of another outline ({len(votes[region])} outline(s))")
        for o1, o2 in codes:
            rule = self.match_code(o1, o2)
            if rule is not None and o1 is not None:  # match_code gives no rule without o1
                code = f"{int(o1):02d}-{int(o2):02d}" if o2 is not None and rule.field == "o2region" else f"{int(o1):02d}"
                return RegionMatch(rule.region, rule.include, f"{rule.field} {code}")
        return RegionMatch(UNKNOWN_REGION, True, "no rule matched")

    def to_csv(self) -> str:
        """The table as CSV text (the format :func:`load_region_table` reads)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["field", "key", "region", "include", "note"])
        for r in self.rules:
            writer.writerow([r.field, r.key, r.region, "yes" if r.include else "no", r.note])
        return buf.getvalue()


def default_region_table_text() -> str:
    """The CSV text of the packaged default table."""
    try:
        return resources.files("glacierwatch.inventory").joinpath("regions.csv").read_text(encoding="utf-8")
    except FileNotFoundError as exc:  # an install without package data
        raise InputError("the packaged region table glacierwatch/inventory/regions.csv is missing from this "
                         "installation; pass one with --regions FILE") from exc


def load_region_table(path: str | os.PathLike[str] | None = None) -> RegionTable:
    """Read a region table CSV (``None``: the packaged default). Raises InputError on a bad row."""
    if path is None:
        return parse_region_table(default_region_table_text(), source="default regions.csv")
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"region table not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable region table ({exc})") from exc
    return parse_region_table(text, source=str(path))


def parse_region_table(text: str, *, source: str = "region table") -> RegionTable:
    """Parse region-table CSV text (columns ``field,key,region,include[,note]``)."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in ("field", "key", "region", "include") if c not in header]
    if missing:
        raise InputError(f"{source}: region table lacks column(s) {missing}; "
                         "expected field,key,region,include,note")
    rules: list[RegionRule] = []
    for line, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()) or row.get("field", "").startswith("#"):
            continue
        fld, key, region, inc = row["field"].lower(), row["key"], row["region"], row["include"].lower()
        if fld not in FIELDS:
            raise InputError(f"{source}, line {line}: field must be one of {', '.join(FIELDS)}, got {fld!r}")
        if not key or not region:
            raise InputError(f"{source}, line {line}: key and region must not be empty")
        if inc not in _YES | _NO:
            raise InputError(f"{source}, line {line}: include must be yes or no, got {inc!r}")
        if fld == "o1region":
            key = _parse_code(key, source, line, second=False)
        elif fld == "o2region":
            key = _parse_code(key, source, line, second=True)
        rules.append(RegionRule(fld, key, region, inc in _YES, row.get("note", ""), line))
    if not rules:
        raise InputError(f"{source}: the region table has no rows")
    return RegionTable(rules, source=source)


def _parse_code(key: str, source: str, line: int, *, second: bool) -> str:
    try:
        if second:
            a, b = re.split(r"[-_.]", key, maxsplit=1)
            return f"{int(a):02d}-{int(b):02d}"
        return str(int(key))
    except ValueError as exc:
        form = "like 10-04" if second else "a number like 11"
        raise InputError(f"{source}, line {line}: region code must be {form}, got {key!r}") from exc
