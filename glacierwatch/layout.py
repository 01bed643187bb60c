"""The work folder of a run: the one place that names its files and folders.

Every stage reads and writes through these names; no stage builds a work-folder path from a string of
its own. The table of every path is in docs/formats.md ("Work folder"), the stages' use of them in
docs/stages.md.

``WORKDIR`` layout (``config.workdir``; ``scenes_dir`` and ``dem_dir`` of ``[imagery]`` may point
elsewhere, an absolute path is used as it is):

=================================  ======================================================
``inventory.parquet``              selected glaciers (GeoParquet), ``inventory_validation.parquet`` and
                                   ``inventory_report.json`` beside it
``scenes/<ID>/<scene file>``       scene files on each glacier's grid (:func:`scene_file_name`); every
                                   per-glacier path is a :class:`GlacierPaths` (:meth:`WorkLayout.glacier`)
``dem/<ID>.tif``                   DEM on each glacier's grid (m)
``imagery/``                       fetch state: plans, done markers, manifests, failures ledger, settings
``catalog.parquet``                one row per scene file
``chips/``                         training chips and their statistics
``model/model.pt``                 U-Net checkpoint, with ``model/model_card.json``
``areas.parquet``                  area per glacier and scene, with ``areas.parts/``, ``areas.scenes.parquet``,
                                   ``areas.failures.jsonl`` and ``areas.annual.parquet`` beside it
``trends/``                        glacier and region trends, Table II, figures
``validation/``                    comparison with reference inventories
``report/index.html``              the self-contained report
``.stamps/<stage>.json``           what each stage last ran with (``glacierwatch run``)
=================================  ======================================================
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from glacierwatch.config import Config, FetchMode, ImageryConfig, choices
from glacierwatch.errors import InputError
from glacierwatch.ids import glacier_path, validate_glims_id
from glacierwatch.landsat import SENSORS

# ---------------------------------------------------------------- names under the work folder

INVENTORY = "inventory.parquet"
SCENES = "scenes"
DEM = "dem"
#: the imagery stage's fetch state
IMAGERY = "imagery"
CATALOG = "catalog.parquet"
CHIPS = "chips"
MODEL_DIR = "model"
# ---- in the model folder (``glacierwatch train --out``)
MODEL_FILE = "model.pt"
MODEL_CARD_FILE = "model_card.json"
#: the resume state: model, optimizer, epoch, step, history
MODEL_STATE_FILE = "last.pt"
#: one row per epoch
MODEL_METRICS_FILE = "metrics.csv"
MODEL = f"{MODEL_DIR}/{MODEL_FILE}"
MODEL_CARD = f"{MODEL_DIR}/{MODEL_CARD_FILE}"
AREAS = "areas.parquet"
#: an areas table written as CSV (older runs, hand-made tables): the report reads it too
AREAS_CSV = "areas.csv"
TRENDS = "trends"
VALIDATION_SUMMARY = "validation/validation_summary.csv"
VALIDATION_ROWS = "validation/validation.csv"
REPORT = "report/index.html"
STAMPS = ".stamps"
#: the folder of PNG overlays beside an areas table (``glacierwatch timeseries overlay``)
OVERLAYS = "overlays"

# ---------------------------------------------------------------- names in a synthetic world folder
# (``glacierwatch synth DIR``; the demo's world is ``WORKDIR/synthetic``)

SYNTH_OUTLINES = "outlines.gpkg"
SYNTH_SCENES = SCENES
SYNTH_DEM = DEM
#: one row per scene: glims_id, date, satellite, true area, mask level
SYNTH_TRUTH = "truth.csv"
#: ``<ID>.tif``: each glacier's potential; its true mask on a date is potential >= that date's mask level
SYNTH_TRUTH_DIR = "truth"
SYNTH_TRUTH_TRENDS = "truth_trends.csv"
#: written last: a world folder with it is finished
SYNTH_WORLD_JSON = "world.json"
#: the demo's synthetic world under its work folder
DEMO_WORLD = "synthetic"

#: a synthetic world's true trends, where ``glacierwatch synth`` or the demo put them (first found wins)
TRUTH_CANDIDATES = (f"{DEMO_WORLD}/{SYNTH_TRUTH_TRENDS}", SYNTH_TRUTH_TRENDS)
#: DEM folders the report looks in for its overlays (first found wins)
DEM_CANDIDATES = (DEM, f"{DEMO_WORLD}/{SYNTH_DEM}")


def synth_potential_path(world_dir: str | os.PathLike[str], glims_id: str) -> Path:
    """``<world>/truth/<ID>.tif``: a synthetic glacier's potential (the id validated first)."""
    return Path(world_dir) / SYNTH_TRUTH_DIR / f"{validate_glims_id(glims_id)}.tif"

# ---------------------------------------------------------------- names in the imagery state folder

FETCH_SETTINGS = "fetch.json"
FETCH_LEDGER = "failures.jsonl"
FETCH_COMPLETE = "complete.json"

# ---------------------------------------------------------------- names in the trends folder

GLACIER_TABLE = "glacier_trends"
REGION_TABLE = "region_trends"
ANNUAL_TABLE = "region_annual.csv"
TABLE2_CSV = "table2.csv"
TABLE2_MD = "table2.md"
SUMMARY = "trends_summary.json"
FIGURES = "figures"
FIGURES_MANIFEST = "figures.json"

# ---------------------------------------------------------------- scene files

#: A standard scene file name.
SCENE_NAME_PATTERN = re.compile(
    r"\A(?P<glims_id>G\d{6}E\d{5}[NS])_(?P<date>\d{4}-\d{2}-\d{2})_(?P<satellite>L[5789])"
    r"_C(?P<collection>\d{2})_(?P<tier>T1|T2|RT)_L2_SR\.tiff?\Z")


@dataclass(frozen=True)
class SceneName:
    """The parts of a standard scene file name."""

    glims_id: str
    date: dt.date
    satellite: str
    collection: str
    tier: str


def parse_scene_name(name: str) -> SceneName:
    """Split ``<GLIMS_ID>_<YYYY-MM-DD>_<L5|L7|L8|L9>_C02_T1_L2_SR.tif``; InputError if it does not match."""
    m = SCENE_NAME_PATTERN.match(name)
    if not m:
        raise InputError(f"not a scene file name <GLIMS_ID>_<YYYY-MM-DD>_<L5|L7|L8|L9>_C02_T1_L2_SR.tif: {name!r}")
    try:
        date = dt.date.fromisoformat(m["date"])
    except ValueError as exc:
        raise InputError(f"{name!r}: invalid date {m['date']}") from exc
    return SceneName(m["glims_id"], date, m["satellite"], m["collection"], m["tier"])


def scene_file_name(glims_id: str, date: dt.date, satellite: str, *, collection: str = "02",
                    tier: str = "T1") -> str:
    """The standard file name of a scene (the GLIMS id is validated first: it becomes a path component)."""
    validate_glims_id(glims_id)
    if satellite not in SENSORS:
        raise InputError(f"unknown satellite {satellite!r}; expected one of {sorted(SENSORS)}")
    return f"{glims_id}_{date.isoformat()}_{satellite}_C{collection}_{tier}_L2_SR.tif"


def glacier_scenes_dir(scenes_dir: str | os.PathLike[str], glims_id: str) -> Path:
    """``scenes_dir/<GLIMS_ID>``: the folder of one glacier's scene files (the id validated first)."""
    return glacier_path(scenes_dir, glims_id, folder=True)


def scene_path(scenes_dir: str | os.PathLike[str], glims_id: str, date: dt.date, satellite: str) -> Path:
    """``scenes_dir/<GLIMS_ID>/<file name>`` (the id is validated against the GLIMS pattern first)."""
    return glacier_scenes_dir(scenes_dir, glims_id) / scene_file_name(glims_id, date, satellite)


DEM_SUFFIX = ".tif"
PART_SUFFIX = ".parquet"


def dem_file_name(glims_id: str) -> str:
    """``<GLIMS_ID>.tif``: the name of a glacier's DEM on its grid (the id validated first)."""
    return validate_glims_id(glims_id) + DEM_SUFFIX


def dem_path(dem_dir: str | os.PathLike[str], glims_id: str) -> Path:
    """``dem_dir/<GLIMS_ID>.tif`` to write a glacier's DEM to: refused (InputError) if a link there would
    lead out of ``dem_dir``. Readers use ``Path(dem_dir) / dem_file_name(glims_id)``: a DEM folder of
    links to files elsewhere is read as it is."""
    return glacier_path(dem_dir, glims_id, DEM_SUFFIX)


def part_file_name(glims_id: str) -> str:
    """``<GLIMS_ID>.parquet``: one glacier's rows of a per-glacier stage (the id validated first)."""
    return validate_glims_id(glims_id) + PART_SUFFIX


# ---------------------------------------------------------------- outputs named after a table


def inventory_outputs(out_path: str | os.PathLike[str]) -> dict[str, Path]:
    """``inventory.parquet`` -> its validation outlines and report beside it
    (``inventory_validation.parquet``, ``inventory_report.json``)."""
    out = Path(out_path)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return {"inventory": out, "validation": out.with_name(f"{stem}_validation.parquet"),
            "report": out.with_name(f"{stem}_report.json")}


@dataclass(frozen=True)
class TimeseriesOutputs:
    """The time-series stage's files, named after its areas table ``<stem>.parquet``."""

    areas: Path    #: one row per glacier and scene
    parts: Path    #: ``<stem>.parts/<ID>.parquet``: one glacier's rows, written as it finishes
    scenes: Path   #: ``<stem>.scenes.parquet``: the scenes the run used (glims_id, path, date, satellite)
    ledger: Path   #: ``<stem>.failures.jsonl``: glaciers that failed
    annual: Path   #: ``<stem>.annual.parquet``: annual areas

    @classmethod
    def for_path(cls, out: str | os.PathLike[str]) -> TimeseriesOutputs:
        out = Path(out)
        stem = out.with_suffix("")
        return cls(out, Path(f"{stem}.parts"), Path(f"{stem}.scenes.parquet"), Path(f"{stem}.failures.jsonl"),
                   Path(f"{stem}.annual.parquet"))

    @property
    def overlays(self) -> Path:
        """``overlays/`` beside the areas table: the default folder of ``glacierwatch timeseries overlay``."""
        return self.areas.parent / OVERLAYS

    def part(self, glims_id: str) -> Path:
        """``<stem>.parts/<ID>.parquet`` (the id validated first)."""
        return self.glacier(glims_id).part

    def glacier(self, glims_id: str, *, dem_dir: str | os.PathLike[str] | None = None) -> GlacierPaths:
        """One glacier's paths of the time-series stage: its part, overlays and (given ``dem_dir``) DEM."""
        return GlacierPaths(glims_id, dem_dir=Path(dem_dir) if dem_dir is not None else None, parts=self.parts,
                            overlays=self.overlays)


@dataclass(frozen=True)
class FetchPaths:
    """Where a fetch writes, under the work folder ``out``."""

    out: Path
    scenes_dir: Path
    dem_dir: Path
    state: Path  # imagery/: plans, manifests, done markers, ledger, settings

    @classmethod
    def for_out(cls, out: str | os.PathLike[str], config: ImageryConfig | None = None) -> FetchPaths:
        """``config``'s ``scenes_dir`` and ``dem_dir`` (relative to ``out`` unless absolute; default:
        ``scenes`` and ``dem``)."""
        config = config or ImageryConfig()
        root = Path(out)
        return cls(out=root, scenes_dir=root / config.scenes_dir, dem_dir=root / config.dem_dir, state=root / IMAGERY)

    @property
    def ledger(self) -> Path:
        return self.state / FETCH_LEDGER

    @property
    def settings(self) -> Path:
        return self.state / FETCH_SETTINGS

    @property
    def complete(self) -> Path:
        """Written by ``glacierwatch run`` when every mode's fetch finished without a failure."""
        return self.state / FETCH_COMPLETE

    def glacier(self, glims_id: str) -> GlacierPaths:
        """One glacier's paths of the imagery stage: scenes, DEM, plans, done markers, manifest."""
        return GlacierPaths(glims_id, scenes_dir=self.scenes_dir, dem_dir=self.dem_dir, state=self.state)

    def plan(self, mode: str, glims_id: str) -> Path:
        return self.glacier(glims_id).plan(mode)

    def done(self, mode: str, glims_id: str) -> Path:
        return self.glacier(glims_id).done(mode)

    def manifest(self, glims_id: str) -> Path:
        return self.glacier(glims_id).manifest


@dataclass(frozen=True)
class GlacierPaths:
    """Every per-glacier path of one glacier: the one place a stage gets a file of one glacier from.

    Built for one GLIMS id (validated first: it becomes a path component) from the folders of a work
    folder (:meth:`WorkLayout.glacier`) or of one stage (:meth:`FetchPaths.glacier`,
    :meth:`TimeseriesOutputs.glacier`); a path whose folder the stage was not given is an error
    (ValueError) rather than a guess. The file names are those of the functions above.
    """

    glims_id: str
    scenes_dir: Path | None = None  #: the folder of all glaciers' scene folders (``scenes/``)
    dem_dir: Path | None = None     #: the DEM folder (``dem/``)
    state: Path | None = None       #: the imagery stage's state folder (``imagery/``)
    parts: Path | None = None       #: the time-series parts folder (``areas.parts/``)
    overlays: Path | None = None    #: the overlay PNG folder (``overlays/``)

    def __post_init__(self) -> None:
        validate_glims_id(self.glims_id)

    def _folder(self, name: str) -> Path:
        folder: Path | None = getattr(self, name)
        if folder is None:
            raise ValueError(f"{self.glims_id}: no {name} folder given for these paths")
        return folder

    @property
    def scenes(self) -> Path:
        """``scenes/<ID>/``: the glacier's scene files."""
        return glacier_scenes_dir(self._folder("scenes_dir"), self.glims_id)

    def scene(self, date: dt.date, satellite: str) -> Path:
        """``scenes/<ID>/<ID>_<date>_<satellite>_C02_T1_L2_SR.tif``."""
        return scene_path(self._folder("scenes_dir"), self.glims_id, date, satellite)

    @property
    def dem(self) -> Path:
        """``dem/<ID>.tif`` to write (or read only inside the folder): refuses (InputError) a link
        leading out of the DEM folder (:func:`dem_path`)."""
        return dem_path(self._folder("dem_dir"), self.glims_id)

    @property
    def dem_file(self) -> Path:
        """``dem/<ID>.tif`` to read as it is: a link to a file elsewhere is followed."""
        return self._folder("dem_dir") / dem_file_name(self.glims_id)

    def plan(self, mode: str) -> Path:
        """``imagery/plans/<mode>/<ID>.json``: the glacier's search result."""
        return glacier_path(self._folder("state") / "plans" / _mode(mode), self.glims_id, ".json")

    def done(self, mode: str) -> Path:
        """``imagery/done/<mode>/<ID>.json``: the glacier was fetched (with its request key)."""
        return glacier_path(self._folder("state") / "done" / _mode(mode), self.glims_id, ".json")

    @property
    def manifest(self) -> Path:
        """``imagery/manifests/<ID>.jsonl``: one line per scene written or skipped."""
        return glacier_path(self._folder("state") / "manifests", self.glims_id, ".jsonl")

    @property
    def part(self) -> Path:
        """``areas.parts/<ID>.parquet``: the glacier's rows of the time-series stage."""
        return self._folder("parts") / part_file_name(self.glims_id)

    def overlay(self, scene: str | os.PathLike[str]) -> Path:
        """``overlays/overlay_<scene file stem>.png``: the overlay of one of the glacier's scenes."""
        return self._folder("overlays") / f"overlay_{Path(scene).stem}.png"


def _mode(mode: str) -> str:
    modes = choices(FetchMode)
    if mode not in modes:
        raise InputError(f"unknown mode {mode!r}; expected one of {modes}")
    return mode


# ---------------------------------------------------------------- the whole work folder


@dataclass(frozen=True)
class WorkLayout:
    """Where each stage of a run reads and writes (all under ``root`` except absolute ``scenes``/``dem``)."""

    root: Path
    scenes: Path
    dem: Path

    @classmethod
    def from_config(cls, config: Config) -> WorkLayout:
        root = config.workpath
        fetch = FetchPaths.for_out(root, config.imagery)
        return cls(root, fetch.scenes_dir, fetch.dem_dir)

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> WorkLayout:
        """The default layout under ``root`` (``scenes/``, ``dem/``)."""
        root = Path(root)
        return cls(root, root / SCENES, root / DEM)

    inventory = property(lambda self: self.root / INVENTORY)
    inventory_validation = property(lambda self: inventory_outputs(self.root / INVENTORY)["validation"])
    catalog = property(lambda self: self.root / CATALOG)
    chips = property(lambda self: self.root / CHIPS)
    model_dir = property(lambda self: self.root / MODEL_DIR)
    model = property(lambda self: self.root / MODEL)
    model_card = property(lambda self: self.root / MODEL_CARD)
    areas = property(lambda self: self.root / AREAS)
    annual = property(lambda self: self.timeseries.annual)
    trends = property(lambda self: self.root / TRENDS)
    glacier_trends_csv = property(lambda self: self.root / TRENDS / f"{GLACIER_TABLE}.csv")
    validation_summary = property(lambda self: self.root / VALIDATION_SUMMARY)
    validation_rows = property(lambda self: self.root / VALIDATION_ROWS)
    report = property(lambda self: self.root / REPORT)
    stamps = property(lambda self: self.root / STAMPS)

    @property
    def fetch(self) -> FetchPaths:
        """The imagery stage's folders (scene files, DEMs and its state in ``imagery/``)."""
        return FetchPaths(out=self.root, scenes_dir=self.scenes, dem_dir=self.dem, state=self.root / IMAGERY)

    @property
    def timeseries(self) -> TimeseriesOutputs:
        return TimeseriesOutputs.for_path(self.areas)

    def stamp(self, stage: str) -> Path:
        return self.stamps / f"{stage}.json"

    def glacier(self, glims_id: str) -> GlacierPaths:
        """Every per-glacier path of ``glims_id`` in this work folder."""
        ts = self.timeseries
        return GlacierPaths(glims_id, scenes_dir=self.scenes, dem_dir=self.dem, state=self.root / IMAGERY,
                            parts=ts.parts, overlays=ts.overlays)
