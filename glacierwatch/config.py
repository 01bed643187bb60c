"""One typed configuration, loadable from TOML; every default is the seed paper's value unless the
field's documentation says otherwise.

``Config.from_toml(path)`` reads a file whose tables match the sections below (``[inventory]``,
``[catalog]`` ...); unknown keys are errors, not silently ignored. ``glacierwatch init`` writes
:func:`example_toml`, every option commented with its meaning and unit.

Every option is checked when a configuration loads: numeric options against :data:`RANGES`, options
with a fixed set of values against their ``Literal`` type below (the one list of those values: the
stages' tuples such as ``SMOOTHING_MODES`` are read from it). The sections are frozen (change one with
``dataclasses.replace``); :class:`Config` itself and :class:`SynthConfig` are not, as callers assign
whole sections and ``glacierwatch synth`` its overrides.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from glacierwatch.errors import ConfigError

#: The values of each enumerated option, in the order the documentation and error messages give them.
Smoothing = Literal["time", "masked", "seed", "none"]
SegmenterName = Literal["unet", "ndsi"]
NdsiResolution = Literal["grid", "chip"]
Season = Literal["end_of_ablation", "seed", "all"]
CpuInstructions = Literal["native", "avx2"]
AnnualStatistic = Literal["median", "min", "q25", "mean", "least_snow"]
EncoderName = Literal["resnet18", "resnet34", "resnet50"]
DecoderName = Literal["seed", "light"]
LrSchedule = Literal["constant", "cosine"]
MaskMode = Literal["dated", "outline"]
FitOn = Literal["annual", "scenes"]
SystematicError = Literal["bound_slopes", "independent"]
DateField = Literal["src_date", "anlys_time"]
FetchMode = Literal["training", "timeseries"]
#: ``""``: no source, the scene files are already there
SourceName = Literal["", "earthengine", "stac", "local"]
SigningMode = Literal["auto", "planetary-computer", "none"]
LocalValues = Literal["c2_dn", "physical"]
QaFormat = Literal["c2_qa_pixel", "c1_bqa", "none"]
ReflectanceKind = Literal["auto", "surface", "toa"]


def choices(literal: Any) -> tuple[str, ...]:
    """The values of one of the ``Literal`` option types above, e.g. ``choices(Smoothing)``."""
    return tuple(typing.get_args(literal))


def _opt(default: Any, doc: str) -> Any:
    """A dataclass field with a documentation string (used by the example config)."""
    if isinstance(default, (list, dict)):
        def copy() -> Any:  # a fresh copy per instance: a mutable default is never shared
            return type(default)(default)

        return field(default_factory=copy, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class SynthConfig:
    """The synthetic Landsat world (``glacierwatch synth``; the demo and tests run on it)."""

    n_training_glaciers: int = _opt(120, "glaciers with scenes in a 100-day window around their outline date")
    n_timeseries_glaciers: int = _opt(6, "glaciers with a 1984-2023 time series (one scene every few months)")
    seed: int = _opt(0, "random seed; the world is deterministic for a given seed")
    first_year: int = _opt(1984, "first year of the time series")
    last_year: int = _opt(2023, "last year of the time series")
    scenes_per_year: int = _opt(5, "time-series scenes per glacier and year (spread over the year)")
    training_extra_scenes: int = _opt(0, "clear scenes added to each training glacier in other years of "
                                         "first_year..last_year, alternately early summer (snowy) and late summer, "
                                         "each with its true mask (chips masks = 'dated'); 0 = the seed world")
    melt_season: bool = _opt(False, "seasonal snow line rising through the ablation season (snowy June-July "
                                    "scenes, minimum in September / March); false = the seed's summer snow line "
                                    "from May to October (the demo world)")
    lake_probability: float = _opt(0.35, "chance that a glacier has a pro-glacial lake (the seed world: 0.35)")


@dataclass(frozen=True)
class InventoryConfig:
    """Glacier outline selection (GLIMS / RGI / other polygon files)."""

    outlines: list[str] = _opt([], "outline files (GLIMS shapefile, RGI, GeoPackage, GeoParquet); relative to the config file")
    column_map: list[str] = _opt(
        [], "outline files that are neither GLIMS nor RGI (national inventories): KEY=COLUMN pairs, or "
            "KEY==constant, e.g. [\"glims_id=sgi-id\", \"name=name\", \"src_date=year\"], or one TOML/JSON "
            "map file; keys: glims_id, source_id, anlys_id, name, geog_area, o1region, o2region, src_date, "
            "anlys_time, inventory_area_km2 / inventory_area_m2 ([] = none)")
    date_field: DateField = _opt("src_date", "date the filter applies to: src_date (source image date) or anlys_time")
    after: str = _opt("2005-01-01", "keep outlines whose date is on or after this day (ISO date)")
    min_area_km2: float = _opt(1.0, "smallest glacier kept, km²")
    max_area_km2: float = _opt(50.0, "largest glacier kept, km²")
    exclude_regions: list[str] = _opt([], "regions left out (polar regions are excluded by the region table)")
    regions: str = _opt("", "region table CSV (geog_area / RGI region -> region); empty = the packaged table "
                            "(print it with: glacierwatch inventory regions)")
    per_region: int = _opt(0, "sample at most this many glaciers per region (0 = keep all)")
    box_margin: float = _opt(0.1, "box = outline bounding box enlarged on each side by the larger of this fraction "
                                   "of its size and box_margin_m")
    box_margin_m: float = _opt(1500.0, "smallest box margin on each side, m, so a glacier larger in the past still "
                                       "fits (Trient 1990 reached ~940 m below its 2010 outline; 0 = the seed's "
                                       "10 %-only box; see docs/inventory.md)")
    resolution_m: float = _opt(30.0, "pixel size of the glacier grid, m")
    seed: int = _opt(0, "random seed of the per-region sample")


@dataclass(frozen=True)
class EarthEngineConfig:
    """Earth Engine source (from a clone: pip install -e '.[earthengine]'; see docs/imagery_earthengine.md)."""

    project: str = _opt("", "Google Cloud project registered for Earth Engine ('' = the client's default)")
    service_account_key: str = _opt("", "service-account JSON key file ('' = your own credentials from 'earthengine authenticate')")
    max_concurrent_requests: int = _opt(8, "at most this many Earth Engine requests in flight (EE allows ~40 per user)")
    max_retries: int = _opt(5, "attempts per request on quota (429) and server (5xx) errors, exponential back-off")
    dem_collection: str = _opt("NASA/NASADEM_HGT/001", "DEM image (band 'elevation')")
    endpoint: str = _opt("", "API endpoint ('' = the default; https://earthengine-highvolume.googleapis.com for many parallel pixel requests)")
    request_timeout_s: float = _opt(300.0, "seconds before one Earth Engine request is abandoned (then retried)")


@dataclass(frozen=True)
class StacConfig:
    """STAC source (from a clone: pip install -e '.[stac]'; see docs/imagery_stac.md)."""

    api_url: str = _opt("https://planetarycomputer.microsoft.com/api/stac/v1",
                        "STAC API root (Planetary Computer; Earth Search: https://earth-search.aws.element84.com/v1)")
    collection: str = _opt("landsat-c2-l2", "Landsat Collection 2 Level-2 collection id")
    dem_collection: str = _opt("cop-dem-glo-30", "DEM collection (Copernicus GLO-30; '' = no DEM)")
    signing: SigningMode = _opt("auto", "asset signing: planetary-computer, none, or auto (planetary-computer for its API)")
    page_size: int = _opt(100, "items per search page")
    max_retries: int = _opt(4, "attempts per asset read on 5xx, timeouts and expired signatures")
    http_timeout_s: float = _opt(60.0, "seconds before a search page or an asset read is abandoned (then retried)")
    requester_pays: bool = _opt(True, "s3:// assets (Earth Search's usgs-landsat bucket) are read as requester pays (your AWS account)")


@dataclass(frozen=True)
class LocalConfig:
    """Local folder source: GeoTIFFs in any CRS or UTM zone, imported onto the glacier grids."""

    input_dir: str = _opt("", "folder searched recursively for GeoTIFFs")
    pattern: str = _opt("**/*.tif", "glob of the files under input_dir")
    band_map: list[str] | str = _opt(
        ["blue=blue", "green=green", "red=red", "nir08=nir08", "swir16=swir16", "swir22=swir22", "lwir=lwir",
         "qa_pixel=qa_pixel"],
        "COMMON=BAND pairs (BAND: a 1-based band number or a band description in the files, for every "
        "satellite), or \"earthengine\": Earth Engine band names chosen by each file's satellite "
        "(TM/ETM+ SR_B1 = blue ... ST_B6; OLI SR_B2 = blue ... ST_B10; QA_PIXEL)")
    values: LocalValues = _opt("c2_dn", "c2_dn (Collection 2 Level-2 uint16 DN) or physical (reflectance 0-1, kelvin for lwir)")
    qa_format: QaFormat = _opt("c2_qa_pixel", "c2_qa_pixel, c1_bqa (Collection 1 BQA bits, translated) or none")
    date_regex: str = _opt(r"(?P<year>\d{4})-?(?P<month>\d{2})-?(?P<day>\d{2})",
                           "regular expression on the file name with groups year and month, and day or doy")
    satellite: str = _opt("", "L5, L7, L8 or L9 when the file name does not say (LT05/LE07/LC08/LC09, Landsat5 ...)")
    dem_file: str = _opt("", "a DEM GeoTIFF (any CRS) warped onto each glacier grid ('' = none)")
    dem_dir: str = _opt("", "a folder of per-glacier DEM GeoTIFFs <GLIMS_ID>*.tif (any grid and CRS, e.g. Earth "
                            "Engine exports), each warped (bilinear) onto its glacier grid; dem_file fills "
                            "their gaps ('' = none)")
    reflectance: ReflectanceKind = _opt("auto", "values = physical: surface, toa, or auto (toa when qa_format = c1_bqa); recorded in the metadata")


@dataclass(frozen=True)
class ImageryConfig:
    """Where scene files and DEMs are (or are written to), and how they are fetched."""

    scenes_dir: str = _opt("scenes", "folder of scene files, scenes/<GLIMS_ID>/<GLIMS_ID>_<date>_<sat>_C02_T1_L2_SR.tif")
    dem_dir: str = _opt("dem", "folder of DEM GeoTIFFs on the glacier grid, dem/<GLIMS_ID>.tif (m)")
    source: SourceName = _opt("", "earthengine, stac or local: 'glacierwatch run' fetches with it ('' = scene files are already in scenes_dir)")
    modes: list[FetchMode] = _opt(["training", "timeseries"], "what 'glacierwatch run' fetches: training (outline date +- window) and/or timeseries (1984-today)")
    timeseries_max_cloud_cover: float | None = _opt(
        10.0, "timeseries mode: ask the provider only for scenes with cloud cover below this, % (none = all)")
    workers: int = _opt(4, "scenes of one glacier read at the same time (threads)")
    earthengine: EarthEngineConfig = field(default_factory=EarthEngineConfig)
    stac: StacConfig = field(default_factory=StacConfig)
    local: LocalConfig = field(default_factory=LocalConfig)


@dataclass(frozen=True)
class CatalogConfig:
    """The scene catalog and the paper's scene selections."""

    max_cloud_cover: float = _opt(10.0, "inference: scene cloud cover below this, %")
    image_quality: int | None = _opt(9, "inference: required IMAGE_QUALITY (IMAGE_QUALITY_OLI on L8/L9); none = not checked (STAC items and local files carry none)")
    min_pixels: int = _opt(50000, "inference: more than this many values (height x width x bands)")
    max_nodata_pixels: int = _opt(0, "inference: at most this many fill pixels")
    max_zero_pixel_pct: float = _opt(10.0, "inference: zero-pixel share below this, %")
    summer_months_north: list[int] = _opt([5, 6, 7, 8, 9, 10], "inference: months kept in the northern hemisphere")
    summer_months_south: list[int] = _opt([11, 12, 1, 2, 3, 4], "inference: months kept in the southern hemisphere")
    include_l7_slc_off: bool = _opt(True, "keep Landsat 7 scenes after the SLC failure (2003-05-31)")
    training_window_days: int = _opt(50, "training: scenes within this many days either side of the outline date")
    inference_glaciers_per_region: int = _opt(50, "inference set: this many glaciers per region (largest first)")
    min_inference_scenes: int = _opt(1, "inference set: glaciers need at least this many scenes passing the filter")
    workers: int = _opt(1, "processes reading scene files when building the catalog")


@dataclass(frozen=True)
class ChipsConfig:
    """Training chips: composites, masks, channels, split."""

    size: int = _opt(128, "chip size, pixels (square)")
    channels: list[str] = _opt(["blue", "green", "red", "nir08", "swir16", "swir22", "lwir", "dem", "ndsi", "ndwi",
                                "lwir_anomaly"],
                               "channel names and order fed to the model (lwir_anomaly: surface temperature minus "
                               "that of snow-free ground at the same elevation, K; it finds debris-covered ice: "
                               "docs/model.md)")
    min_mask_variance: float = _opt(0.001, "drop chips whose mask variance is at or below this (empty masks)")
    val_fraction: float = _opt(0.1, "fraction of glaciers in the validation split (stratified by region)")
    test_fraction: float = _opt(0.1, "fraction of glaciers in the test split (stratified by region)")
    seed: int = _opt(0, "random seed of the split")
    exclude_inference_glaciers: bool = _opt(True, "leave the glaciers whose areas are measured (the catalog's "
                                                  "inference-glaciers selection) out of the training chips")
    masks: MaskMode = _opt("dated", "dated: one chip per dated mask - with truth_dir every training scene alone with the "
                               "true mask of its date, otherwise one composite per dated outline (the inventory "
                               "outline and each validation outline with scenes within the training window); "
                               "outline: the seed's one composite per glacier with its inventory outline")
    truth_dir: str = _opt("", "synthetic world folder (truth.csv, truth/<ID>.tif) whose true masks dated chips use; "
                              "'' = none (real data); relative paths as for the imagery folders")
    min_valid_fraction: float = _opt(0.6, "dated chips: drop a chip whose scenes saw less than this share of the "
                                          "grid clear (a single scene can be mostly cloud); outline mode keeps all")


@dataclass(frozen=True)
class TrainConfig:
    """U-Net training."""

    encoder: EncoderName = _opt("resnet50", "ResNet encoder: resnet18, resnet34 or resnet50")
    decoder: DecoderName = _opt("light", "U-Net decoder: light (common U-Net decoder, 256/128/64/32/16 channels; chosen by "
                                 "measurement, docs/model.md) or seed (the authors': transposed convolutions, channels "
                                 "follow the encoder, 14.3 of ResNet-50's 17.2 GFLOP per image); stored in the model card")
    encoder_weights: str = _opt("", "optional torchvision-layout ResNet state dict file to start the encoder from")
    learning_rate: float = _opt(1e-5, "Adam learning rate (the first step's, with lr_schedule = cosine)")
    lr_schedule: LrSchedule = _opt("constant", "constant (the seed's) or cosine: the learning rate decays along half a "
                                        "cosine to 1 % of learning_rate over the planned epochs")
    crop_px: int = _opt(0, "train on a random crop_px x crop_px window of each chip (0 = the whole chip, the "
                           "seed's); validation and inference see whole chips")
    weight_decay: float = _opt(1e-5, "Adam weight decay")
    confounder_weight: float = _opt(1.0, "loss weight of the pixels where the NDSI > 0.4 rule and the mask disagree "
                                         "(debris-covered ice, seasonal snow, lakes): the confounders the model is "
                                         "there to resolve; 1 = plain cross-entropy (the seed's); needs the ndsi channel")
    batch_size: int = _opt(32, "chips per batch")
    epochs: int = _opt(100, "maximum epochs: training stops after this many, or earlier by patience")
    patience: int = _opt(10, "early stopping: epochs without a better validation loss")
    max_minutes: float = _opt(0.0, "stop training after this many minutes of wall-clock time (0 = no limit; a "
                                   "limit makes the model depend on the machine's speed)")
    p_flip: float = _opt(0.5, "probability of each of vertical and horizontal flip")
    p_blur: float = _opt(0.5, "probability of a 3x3 Gaussian blur of the image (not the mask)")
    blur_sigma: float = _opt(0.8, "sigma of that blur, pixels")
    device: str = _opt("auto", "auto, cpu or cuda")
    bf16: bool = _opt(True, "bf16 autocast on CPU / AMP on CUDA where supported")
    seed: int = _opt(0, "random seed (weights, shuffling, augmentation)")
    deterministic: bool = _opt(True, "deterministic algorithms (torch.use_deterministic_algorithms, cuDNN "
                                     "deterministic): the same run gives the same weights on the same machine "
                                     "and thread count")
    loader_workers: int = _opt(2, "CUDA only: CPU threads preparing (augmenting, pinning) the next batches "
                                  "while the GPU runs the current one (0 = in the training loop)")


@dataclass(frozen=True)
class TimeseriesConfig:
    """Per-glacier area time series."""

    segmenter: SegmenterName = _opt("unet", "unet (the trained model) or ndsi (NDSI > 0.4 baseline)")
    smoothing: Smoothing = _opt("none", "none (default: annual areas from several end-of-season scenes fill gaps "
                                  "instead; see docs/timeseries.md), time (Gaussian over dates, sigma_days, "
                                  "cloud/shadow/fill excluded), masked (Gaussian over images, sigma), seed "
                                  "(the paper's plain smoothing over images)")
    sigma: float = _opt(20.0, "smoothing masked/seed: Gaussian sigma in images (the paper's 20)")
    sigma_days: float = _opt(30.0, "smoothing time: Gaussian sigma in days (scenes within 4 sigma contribute)")
    threshold: float = _opt(0.5, "glacier probability threshold")
    ndsi_resolution: NdsiResolution = _opt("grid", "segmenter ndsi: at the glacier grid's own resolution (grid, "
                                                   "default) or on the chip-size stack the U-Net sees (chip, 128 x "
                                                   "128 for any box; the resizing blurs the outline and snow patches)")
    buffer_m: float | None = _opt(500.0, "count glacier pixels within this distance of the outline, m, and only "
                                         "in the glacier's own territory (no neighbour's ice; 0 = the outline "
                                         "itself; none = the whole box, the seed's)")
    min_patch_km2: float = _opt(0.1, "glacier patches (8-connected, within the counting region) smaller than "
                                     "this many km² are not counted (snow patches beside the glacier, noise), at "
                                     "most a tenth of the outline's area; 0 = every pixel counts (the seed's)")
    season: Season = _opt("end_of_ablation", "scenes counted in the annual areas: end_of_ablation (northern "
                                          "months season_months_north, southern season_months_south, all "
                                          "months within tropics_lat of the equator), seed (May-Oct / "
                                          "Nov-Apr, the paper's window) or all")
    season_months_north: list[int] = _opt([8, 9, 10], "end_of_ablation season, northern hemisphere (months)")
    season_months_south: list[int] = _opt([2, 3, 4], "end_of_ablation season, southern hemisphere (months)")
    tropics_lat: float = _opt(23.5, "within this latitude (degrees) there is no single ablation season: all months")
    min_valid_fraction: float = _opt(0.9, "a scene counts in the annual areas only if at least this share of "
                                          "the outline was observed (no cloud, shadow, fill, SLC-off gap)")
    min_sun_elevation: float = _opt(20.0, "a scene counts in the annual areas only if the sun stood at least this "
                                          "many degrees above the horizon (the scene's SUN_ELEVATION; a scene "
                                          "without one counts): low sun casts long shadows and lights the glacier "
                                          "badly; 0 = no limit (the seed's)")
    annual_statistic: AnnualStatistic = _opt("median", "annual area from a year's counted scenes: median, min, q25 "
                                           "(25th percentile), mean or least_snow (the scene with the least "
                                           "snow off the glacier)")
    interval_spread: float = _opt(0.25, "per-scene interval: glacier areas at threshold -/+ this probability")
    interval_model_error: bool = _opt(True, "per-scene interval also widened by the model's relative area error "
                                            "on its held-out test chips (90th percentile, from the model card)")
    batch_size: int = _opt(32, "images per model call")
    bf16: bool = _opt(True, "U-Net inference in bf16 where the machine runs it fast (AVX512-BF16/AMX CPUs, GPUs); "
                            "false: fp32 on every machine, so areas do not depend on the CPU")
    unsmoothed: bool = _opt(False, "also compute area_km2_unsmoothed with smoothing on: a second model pass "
                                   "per scene (with smoothing none it is the same pass, always filled)")
    max_stack_mb: float = _opt(1024.0, "largest per-glacier scene stack (at chip size, ~0.5 MB a scene) held in "
                                       "memory, MB; a longer one goes to a temporary file beside the output. Scenes "
                                       "are smoothed, segmented and counted in blocks of max_stack_mb / 8 (same areas)")
    read_threads: int = _opt(2, "scene files of one glacier read at the same time (threads); more on a machine "
                                "with many cores feeding a GPU")
    read_ahead: bool = _opt(True, "scheduler local: read the next glacier's scenes while the current one is in the "
                                  "model (up to two glaciers' stacks in memory)")
    scheduler: str = _opt("local", "local, processes or tcp://HOST:PORT (Dask)")
    workers: int = _opt(2, "Dask worker processes for scheduler = processes")


@dataclass(frozen=True)
class TrendsConfig:
    """Per-glacier and regional relative change."""

    min_obs: int = _opt(10, "glaciers with fewer valid observations are flagged and left out of regional figures")
    by: str = _opt("region", "column the regional statistics group by")
    max_glacier_figures: int = _opt(50, "write at most this many per-glacier figures (Figure 16); 0 = none")
    fit_on: FitOn = _opt("annual", "fit the log-linear trend on the annual areas (annual, needs the annual table) "
                                 "or on every scene (scenes: the paper's method)")
    min_span_years: float = _opt(5.0, "flag glaciers whose record spans fewer years (the paper: 0 = off)")
    min_years: int = _opt(5, "flag glaciers with an area in fewer calendar years (the paper: 0 = off)")
    min_r2: float = _opt(0.0, "flag glaciers whose fit has a lower r² (0 = off, the paper; a stable glacier "
                              "has r² near 0, so this rule drops stable glaciers and biases regions)")
    max_poor_share: float = _opt(0.5, "flag glaciers with a larger share of observations whose valid_fraction "
                                      "is below min_valid_fraction (the paper: 1 = off)")
    min_valid_fraction: float = _opt(0.5, "an observation with less of the counting region observed (0-1) is poorly observed")
    hac_lag_years: float = _opt(2.0, "the Newey-West (HAC) lag of the trend SE covers this many years of "
                                     "observations; set it to at least the temporal smoothing's reach")
    model_error_in_slope: bool = _opt(False, "count the per-scene intervals' widening by the model's held-out "
                                             "error (model_error_fraction) in the slope's systematic SE too; "
                                             "false: a lasting relative bias cancels in the slope of ln(area) "
                                             "and a varying one is in the residuals (docs/trends.md)")
    systematic: SystematicError = _opt("bound_slopes", "the slope's systematic SE from the observations' intervals: "
                                       "bound_slopes (the slopes fitted to the intervals' lower and upper bounds "
                                       "read as a 95 % range of the slope; chosen by measurement, docs/trends.md) "
                                       "or independent (each interval an independent 95 % error, inflated by the "
                                       "residuals' autocorrelation)")


@dataclass
class Config:
    """The whole configuration of a run. Paths are relative to ``workdir``."""

    workdir: str = _opt("work", "work folder holding every stage's outputs")
    lock_wait_s: float = _opt(0.0, "a stage whose work folder or output another process is using waits this many "
                                   "seconds for it (0 = stop at once, naming the other process)")
    cpu_instructions: CpuInstructions = _opt("native", "x86 CPUs: native (the fastest kernels the CPU has) or avx2 "
                                                        "(oneDNN, MKL and PyTorch capped at AVX2: the same fp32 "
                                                        "arithmetic, so the same model and areas, on every x86-64 "
                                                        "CPU with AVX2 or AVX-512; slower on AVX-512 CPUs)")
    synth: SynthConfig = field(default_factory=SynthConfig)
    inventory: InventoryConfig = field(default_factory=InventoryConfig)
    imagery: ImageryConfig = field(default_factory=ImageryConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    chips: ChipsConfig = field(default_factory=ChipsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    timeseries: TimeseriesConfig = field(default_factory=TimeseriesConfig)
    trends: TrendsConfig = field(default_factory=TrendsConfig)

    @property
    def workpath(self) -> Path:
        return Path(self.workdir)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base_dir: Path | None = None) -> Config:
        """Build from a nested dict (as parsed from TOML); unknown keys or wrong types raise ConfigError."""
        cfg: Config = _build(cls, data, "")
        _check_relations(cfg)
        if base_dir is not None:
            def absolute(value: str) -> str:
                return str((base_dir / value).resolve()) if not Path(value).is_absolute() else value

            cfg.workdir = absolute(cfg.workdir)
            inv = cfg.inventory
            cmap = inv.column_map
            if len(cmap) == 1 and "=" not in cmap[0]:  # a map file
                cmap = [absolute(cmap[0])]
            cfg.inventory = dataclasses.replace(inv, outlines=[absolute(p) for p in inv.outlines], column_map=cmap,
                                                regions=absolute(inv.regions) if inv.regions else inv.regions)
            local = cfg.imagery.local
            local = dataclasses.replace(local, input_dir=absolute(local.input_dir) if local.input_dir else "",
                                        dem_file=absolute(local.dem_file) if local.dem_file else "",
                                        dem_dir=absolute(local.dem_dir) if local.dem_dir else "")
            ee = cfg.imagery.earthengine
            if ee.service_account_key:
                ee = dataclasses.replace(ee, service_account_key=absolute(ee.service_account_key))
            cfg.imagery = dataclasses.replace(cfg.imagery, local=local, earthengine=ee)
        return cfg

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"configuration file not found: {path}")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        return cls.from_dict(data, base_dir=path.parent.resolve())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{prefix.rstrip('.')}] must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown configuration key(s) {', '.join(prefix + u for u in unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_range(prefix + name, _coerce(value, hint, prefix + name))
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return _check_choice(key, value, hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not a {hint}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], key) for v in value]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


#: Allowed values of every numeric option, "section.key" -> (low, high, bounds): bounds "[]" includes
#: both ends, "()" neither, "[)" / "(]" one. One table, checked when a configuration loads; a list
#: option's range applies to each item; ``none`` (where a field allows it) is always allowed. NaN
#: is never allowed. Every int/float field must be listed (tests/test_hostile_inputs.py checks).
INF = float("inf")
RANGES: dict[str, tuple[float, float, str]] = {
    "lock_wait_s": (0, INF, "[)"),
    "synth.n_training_glaciers": (0, INF, "[)"),
    "synth.n_timeseries_glaciers": (0, INF, "[)"),
    "synth.training_extra_scenes": (0, 40, "[]"),
    "synth.lake_probability": (0, 1, "[]"),
    "synth.seed": (0, 2**32 - 1, "[]"),
    "synth.first_year": (1972, 2100, "[]"),
    "synth.last_year": (1972, 2100, "[]"),
    "synth.scenes_per_year": (1, 366, "[]"),
    "inventory.min_area_km2": (0, INF, "[)"),
    "inventory.max_area_km2": (0, INF, "(]"),
    "inventory.per_region": (0, INF, "[)"),
    "inventory.box_margin": (0, 10, "[]"),
    "inventory.box_margin_m": (0, 50_000, "[]"),
    "inventory.resolution_m": (0, INF, "()"),
    "inventory.seed": (0, 2**32 - 1, "[]"),
    "imagery.timeseries_max_cloud_cover": (0, 100, "[]"),
    "imagery.workers": (1, INF, "[)"),
    "imagery.earthengine.max_concurrent_requests": (1, INF, "[)"),
    "imagery.earthengine.max_retries": (1, INF, "[)"),
    "imagery.earthengine.request_timeout_s": (0, INF, "()"),
    "imagery.stac.page_size": (1, INF, "[)"),
    "imagery.stac.max_retries": (1, INF, "[)"),
    "imagery.stac.http_timeout_s": (0, INF, "()"),
    # "cloud cover below this": a value above 100 keeps every scene (benchmarks/trient_import.py uses 100.1)
    "catalog.max_cloud_cover": (0, INF, "[)"),
    "catalog.image_quality": (0, 9, "[]"),
    "catalog.min_pixels": (0, INF, "[)"),
    "catalog.max_nodata_pixels": (0, INF, "[)"),
    "catalog.max_zero_pixel_pct": (0, 100, "[]"),
    "catalog.summer_months_north": (1, 12, "[]"),
    "catalog.summer_months_south": (1, 12, "[]"),
    "catalog.training_window_days": (0, INF, "[)"),
    "catalog.inference_glaciers_per_region": (0, INF, "[)"),
    "catalog.min_inference_scenes": (0, INF, "[)"),
    "catalog.workers": (1, INF, "[)"),
    "chips.size": (1, INF, "[)"),
    "chips.min_mask_variance": (0, INF, "[)"),
    "chips.val_fraction": (0, 1, "[)"),
    "chips.test_fraction": (0, 1, "[)"),
    "chips.seed": (0, 2**32 - 1, "[]"),
    "chips.min_valid_fraction": (0, 1, "[]"),
    "train.learning_rate": (0, INF, "()"),
    "train.weight_decay": (0, INF, "[)"),
    "train.batch_size": (1, INF, "[)"),
    "train.crop_px": (0, INF, "[)"),
    "train.epochs": (1, INF, "[)"),
    "train.patience": (0, INF, "[)"),
    "train.max_minutes": (0, INF, "[)"),
    "train.p_flip": (0, 1, "[]"),
    "train.p_blur": (0, 1, "[]"),
    "train.blur_sigma": (0, INF, "()"),
    "train.seed": (0, 2**32 - 1, "[]"),
    "train.loader_workers": (0, 64, "[]"),
    "train.confounder_weight": (1, 100, "[]"),
    "timeseries.sigma": (0, INF, "[)"),
    "timeseries.sigma_days": (0, INF, "[)"),
    "timeseries.season_months_north": (1, 12, "[]"),
    "timeseries.season_months_south": (1, 12, "[]"),
    "timeseries.tropics_lat": (0, 90, "[]"),
    "timeseries.min_valid_fraction": (0, 1, "[]"),
    "timeseries.min_sun_elevation": (0, 90, "[]"),
    "timeseries.interval_spread": (0, 0.5, "[)"),
    "timeseries.threshold": (0, 1, "()"),
    "timeseries.buffer_m": (0, INF, "[)"),
    "timeseries.min_patch_km2": (0, INF, "[)"),
    "timeseries.batch_size": (1, INF, "[)"),
    "timeseries.max_stack_mb": (0, INF, "()"),
    "timeseries.workers": (1, INF, "[)"),
    "timeseries.read_threads": (1, 256, "[]"),
    "trends.min_obs": (0, INF, "[)"),
    "trends.max_glacier_figures": (0, INF, "[)"),
    "trends.min_span_years": (0, INF, "[)"),
    "trends.min_years": (0, INF, "[)"),
    "trends.min_r2": (0, 1, "[]"),
    "trends.max_poor_share": (0, 1, "[]"),
    "trends.min_valid_fraction": (0, 1, "[]"),
    "trends.hac_lag_years": (0, INF, "[)"),
}


def range_text(key: str) -> str:
    """The allowed range of ``key`` as text, e.g. ``(0, 1)`` or ``>= 1``."""
    low, high, bounds = RANGES[key]
    if high == INF:
        return f"{'>=' if bounds[0] == '[' else '>'} {low:g}"
    return f"{bounds[0]}{low:g}, {high:g}{bounds[1]}"


def in_range(key: str, value: float) -> bool:
    """True if ``value`` is allowed for the numeric option ``key`` (see :data:`RANGES`)."""
    low, high, bounds = RANGES[key]
    if value != value:  # NaN
        return False
    above = value >= low if bounds[0] == "[" else value > low
    below = value <= high if bounds[1] == "]" else value < high
    return above and below


def _check_range(key: str, value: Any) -> Any:
    """``value`` unchanged if it lies in the key's range (each item of a list), else ConfigError."""
    if key not in RANGES or value is None:
        return value
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, (int, float)) and not isinstance(item, bool) and not in_range(key, item):
            raise ConfigError(f"{key} = {item!r} is out of range; allowed: {range_text(key)}")
    return value


def _check_choice(key: str, value: Any, literal: Any) -> Any:
    """``value`` unchanged if it is one of the values of the ``Literal`` type ``literal`` (each item
    of a list), else ConfigError naming the key and the allowed values."""
    allowed = choices(literal)
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, str) or item not in allowed:
            raise ConfigError(f"{key} = {item!r} is not allowed; choose one of: {', '.join(repr(a) for a in allowed)}")
    return value


def validate(config: Config) -> Config:
    """Check every numeric option of an already built ``config`` against :data:`RANGES`, every
    enumerated one against its ``Literal`` type (and the relations between options); ConfigError
    naming the first bad key. For configurations made in code."""
    def walk(obj: Any, prefix: str) -> None:
        hints = typing.get_type_hints(type(obj))
        for f in fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
                continue
            hint = hints[f.name]
            if typing.get_origin(hint) is list:
                hint = typing.get_args(hint)[0]
            if typing.get_origin(hint) is Literal:
                _check_choice(prefix + f.name, value, hint)
            _check_range(prefix + f.name, value)
    walk(config, "")
    _check_relations(config)
    return config


def _check_relations(cfg: Config) -> None:
    """Ranges that involve two options."""
    if cfg.inventory.min_area_km2 > cfg.inventory.max_area_km2:
        raise ConfigError(f"inventory.min_area_km2 = {cfg.inventory.min_area_km2!r} is above "
                          f"inventory.max_area_km2 = {cfg.inventory.max_area_km2!r}")
    if cfg.synth.first_year > cfg.synth.last_year:
        raise ConfigError(f"synth.first_year = {cfg.synth.first_year} is after synth.last_year = {cfg.synth.last_year}")
    if cfg.chips.val_fraction + cfg.chips.test_fraction >= 1:
        raise ConfigError(f"chips.val_fraction + chips.test_fraction = "
                          f"{cfg.chips.val_fraction + cfg.chips.test_fraction:g} leaves no training glaciers; allowed: < 1")


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def example_toml(config: Config | None = None) -> str:
    """A complete, commented TOML configuration (the values of ``config``, default: the defaults)."""
    config = config or Config()
    lines = ["# glacierwatch configuration. Every option is shown with its default (the seed paper's value",
             "# unless noted). Paths are relative to this file. Run: glacierwatch run THIS_FILE", ""]
    top = [f for f in fields(config) if not dataclasses.is_dataclass(getattr(config, f.name))]
    for f in top:
        lines.append(f"# {f.metadata.get('doc', '')}")
        lines.append(f"{f.name} = {_toml_value(getattr(config, f.name))}")
    def add_section(name: str, section: Any) -> None:
        lines.extend(["", f"[{name}]", f"# {(type(section).__doc__ or '').strip().splitlines()[0]}"])
        nested = []
        for sf in fields(section):
            value = getattr(section, sf.name)
            if dataclasses.is_dataclass(value):
                nested.append((f"{name}.{sf.name}", value))
                continue
            lines.append(f"# {sf.metadata.get('doc', '')}")
            lines.append(f"{sf.name} = {_toml_value(value)}")
        for sub_name, sub in nested:  # TOML: a table's own keys come before its sub-tables
            add_section(sub_name, sub)

    for f in fields(config):
        section = getattr(config, f.name)
        if dataclasses.is_dataclass(section):
            add_section(f.name, section)
    return "\n".join(lines) + "\n"
