"""``glacierwatch demo``: a small synthetic world with known truth, the whole chain on it, and a
table of estimated against true relative area change per year for each time-series glacier, for the
U-Net and for the NDSI baseline (the classical NDSI > 0.4 rule on the same scenes, with the same
counting rules, in ``<work>/baseline_ndsi/``)."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from glacierwatch.config import (
    CatalogConfig,
    ChipsConfig,
    Config,
    DecoderName,
    ImageryConfig,
    InventoryConfig,
    SynthConfig,
    TimeseriesConfig,
    TrainConfig,
    example_toml,
)
from glacierwatch.layout import (
    AREAS,
    DEMO_WORLD,
    GLACIER_TABLE,
    SYNTH_DEM,
    SYNTH_OUTLINES,
    SYNTH_SCENES,
    SYNTH_TRUTH,
    SYNTH_TRUTH_TRENDS,
    SYNTH_WORLD_JSON,
    TRENDS,
    WorkLayout,
)
from glacierwatch.pipeline import WorkPaths, run_pipeline

log = logging.getLogger(__name__)


#: Epochs the demo trains for. No wall-clock limit decides the model, so every machine trains the same
#: network: 4 epochs of random 64 px windows of the chips under a cosine schedule, about 2.5 minutes on
#: a 2-core AVX2 CPU in fp32. 8 epochs (5 minutes) fit the scenes better but gave the largest trend
#: error 0.424 %/yr against 0.122 (docs/model.md, "The demo's training").
DEMO_EPOCHS = 4
#: Training window (px) of the demo's 128 px chips.
DEMO_CROP_PX = 64
#: The demo's U-Net decoder (the library default, for ResNet-50, is "light": docs/model.md, "Decoder").
DEMO_DECODER: DecoderName = "seed"
#: Folder of the work folder where the demo measures the NDSI baseline: its areas and trends.
BASELINE_DIR = "baseline_ndsi"


def demo_config(workdir: str | Path, *, synth: SynthConfig | None = None) -> Config:
    """The demo's configuration: the seed's values except where a laptop-sized run needs others
    (a ResNet-18 encoder trained at a higher learning rate for a fixed number of epochs), and the
    synthetic world's known truth used for the training masks (chips of several dates per training
    glacier, each with its true mask: the model must read the pixels, not learn the outline)."""
    workdir = Path(workdir).resolve()
    return Config(
        workdir=str(workdir),
        # the same fp32 arithmetic, so the same model and table, on every x86-64 CPU (glacierwatch.cpu)
        cpu_instructions="avx2",
        synth=synth or SynthConfig(n_training_glaciers=120, n_timeseries_glaciers=6, scenes_per_year=10,
                                   training_extra_scenes=3),
        inventory=InventoryConfig(outlines=[str(workdir / DEMO_WORLD / SYNTH_OUTLINES)]),
        imagery=ImageryConfig(scenes_dir=f"{DEMO_WORLD}/{SYNTH_SCENES}", dem_dir=f"{DEMO_WORLD}/{SYNTH_DEM}"),
        # only glaciers with a long series are inference glaciers; the others train the model.
        # The seed's "more than 50,000 values" (h x w x bands) drops glaciers under about 2 km²
        # (boxes under 79 x 79 px); the demo keeps its smallest time-series glacier (1.9 km²).
        catalog=CatalogConfig(min_inference_scenes=20, min_pixels=20_000, workers=2),
        chips=ChipsConfig(truth_dir=DEMO_WORLD),
        # fp32 throughout (bf16 only on some CPUs would make the model and areas depend on the machine);
        # training on random 64 px windows of the chips under a cosine schedule: see DEMO_EPOCHS
        # the seed's decoder: with ResNet-18 it gave narrower trend intervals that held, and a smaller
        # worst trend error, than the light one, for 1.45x the training time (docs/model.md, "Decoder")
        train=TrainConfig(encoder="resnet18", decoder=DEMO_DECODER, learning_rate=1e-3, batch_size=16,
                          epochs=DEMO_EPOCHS, patience=4, max_minutes=0.0, bf16=False, crop_px=DEMO_CROP_PX,
                          lr_schedule="cosine"),
        timeseries=TimeseriesConfig(bf16=False),
    )


@dataclass
class DemoResult:
    """The demo's run: ``comparison`` (the U-Net's trends against the truth, :func:`compare_with_truth`,
    with the NDSI baseline's error per glacier in ``ndsi_error_pct_per_year``) and ``baseline`` (the
    NDSI baseline's own comparison)."""

    workdir: Path
    comparison: pd.DataFrame
    stages: dict[str, str]
    seconds: float
    baseline: pd.DataFrame | None = None


def baseline_trends_csv(workdir: Path) -> Path:
    """The NDSI baseline's glacier trends table in a demo work folder."""
    return Path(workdir) / BASELINE_DIR / TRENDS / f"{GLACIER_TABLE}.csv"


def run_ndsi_baseline(config: Config, *, progress: bool = True) -> Path:
    """The time series and trends of the NDSI baseline on the work folder's scenes, with the same
    ``[timeseries]`` and ``[trends]`` settings as the U-Net's but ``segmenter = "ndsi"``; returns
    :func:`baseline_trends_csv`. Its areas are resumable like the stage's (same run key, skipped)."""
    from glacierwatch.timeseries import run_timeseries
    from glacierwatch.trends import write_trends
    from glacierwatch.trends.core import TrendOptions

    paths = WorkLayout.from_config(config)
    out = paths.root / BASELINE_DIR
    result = run_timeseries(catalog=paths.catalog, inventory=paths.inventory, out=out / AREAS, dem_dir=paths.dem,
                            config=dataclasses.replace(config.timeseries, segmenter="ndsi"),
                            catalog_config=config.catalog, progress=progress)
    write_trends(result.outputs.areas, out / TRENDS, min_obs=config.trends.min_obs, by=config.trends.by,
                 figures=False, options=TrendOptions.from_config(config.trends), fit_on=config.trends.fit_on,
                 annual=result.outputs.annual if config.trends.fit_on == "annual" else None,
                 inventory=paths.inventory)
    return baseline_trends_csv(paths.root)


def compare_with_truth(workdir: Path, trends_csv: Path | None = None) -> pd.DataFrame:
    """Estimated vs true relative change per year (%/yr) for each glacier with a trend, with the
    estimate's 95 % interval and whether the truth lies inside it. ``trends_csv``: the glacier trends
    table to compare (default: the work folder's, the U-Net's)."""
    est = pd.read_csv(trends_csv if trends_csv is not None else WorkLayout.at(workdir).glacier_trends_csv)
    truth = pd.read_csv(workdir / DEMO_WORLD / SYNTH_TRUTH_TRENDS)
    if "flagged" in est.columns:
        est = est.loc[~est["flagged"].astype(bool)]
    for col in ("rel_change_ci95_low", "rel_change_ci95_high"):
        if col not in est.columns:
            est[col] = float("nan")
    table = truth.merge(est[["glims_id", "n_obs", "rel_change_per_year", "rel_change_se",
                             "rel_change_ci95_low", "rel_change_ci95_high"]], on="glims_id")
    table["true_pct_per_year"] = 100 * table["true_rel_change_per_year"]
    table["estimated_pct_per_year"] = 100 * table["rel_change_per_year"]
    table["ci95_low_pct"] = 100 * table["rel_change_ci95_low"]
    table["ci95_high_pct"] = 100 * table["rel_change_ci95_high"]
    table["error_pct_per_year"] = table["estimated_pct_per_year"] - table["true_pct_per_year"]
    table["truth_in_ci95"] = ((table["ci95_low_pct"] <= table["true_pct_per_year"])
                              & (table["true_pct_per_year"] <= table["ci95_high_pct"]))
    return table[["glims_id", "region", "n_obs", "true_pct_per_year", "estimated_pct_per_year",
                  "ci95_low_pct", "ci95_high_pct", "error_pct_per_year", "truth_in_ci95"]]


def run_demo(workdir: str | Path = "demo-work", *, n_training: int = 120, n_timeseries: int = 6,
             scenes_per_year: int = 10, first_year: int = 1984, last_year: int = 2023, seed: int = 0,
             melt_season: bool = False, lake_probability: float = 0.35, epochs: int = DEMO_EPOCHS,
             progress: bool = True) -> DemoResult:
    """Build the synthetic world (unless already there) and run every stage on it.

    ``melt_season``/``lake_probability``: the synthetic world's seasonal snow and lakes (a harder
    second world: ``melt_season=True, lake_probability=0.6`` with another ``seed``)."""
    from glacierwatch.synth import make_world_from_config

    t0 = time.perf_counter()
    synth = SynthConfig(n_training_glaciers=n_training, n_timeseries_glaciers=n_timeseries, seed=seed,
                        first_year=first_year, last_year=last_year, scenes_per_year=scenes_per_year,
                        training_extra_scenes=3, melt_season=melt_season, lake_probability=lake_probability)
    config = demo_config(workdir, synth=synth)
    config.train = dataclasses.replace(config.train, epochs=epochs)
    root = Path(config.workdir)
    world_dir = root / DEMO_WORLD
    if not (world_dir / SYNTH_WORLD_JSON).exists():
        log.info("building the synthetic world in %s", world_dir)
        make_world_from_config(world_dir, config.synth, progress=progress)
    else:
        log.info("synthetic world already in %s, reused", world_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "glacierwatch.toml").write_text(example_toml(config), encoding="utf-8")
    stages = run_pipeline(config, progress=progress)
    baseline = compare_with_truth(root, run_ndsi_baseline(config, progress=progress))
    comparison = compare_with_truth(root).merge(
        baseline[["glims_id", "error_pct_per_year"]].rename(columns={"error_pct_per_year": "ndsi_error_pct_per_year"}),
        on="glims_id", how="left")
    return DemoResult(root, comparison, stages, time.perf_counter() - t0, baseline)


def format_demo(result: DemoResult) -> str:
    """The demo's closing printout: per-glacier table and output paths."""
    paths = WorkPaths(result.workdir, result.workdir / DEMO_WORLD / SYNTH_SCENES, result.workdir / DEMO_WORLD / SYNTH_DEM)
    table = result.comparison.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    worst = result.comparison["error_pct_per_year"].abs().max() if len(result.comparison) else float("nan")
    lines = [
        "", "Relative area change per year, estimated vs true (%/yr):", table,
        f"largest absolute error: {worst:.3f} %/yr over {len(result.comparison)} glaciers",
        *([f"NDSI baseline (ndsi_error: NDSI > 0.4 on the same scenes, the same rules): largest absolute error "
           f"{result.baseline['error_pct_per_year'].abs().max():.3f} %/yr, {int(result.baseline['truth_in_ci95'].sum())} "
           f"of {len(result.baseline)} true rates in its 95 % intervals"]
          if result.baseline is not None and len(result.baseline) else []), "",
        "Stages: " + ", ".join(f"{k} {v}" for k, v in result.stages.items()), "",
        "Outputs:",
        f"  truth            {result.workdir / DEMO_WORLD / SYNTH_TRUTH}",
        f"  inventory        {paths.inventory}",
        f"  catalog          {paths.catalog}",
        f"  model            {paths.model} (card: {paths.model_dir / 'model_card.json'})",
        f"  areas            {paths.areas}",
        f"  glacier trends   {paths.glacier_trends_csv}",
        f"  NDSI baseline    {baseline_trends_csv(result.workdir)}",
        f"  region trends    {paths.trends / 'region_trends.csv'}",
        f"  figures          {paths.trends / 'figures'}",
        f"  report           {paths.report}",
        f"  configuration    {result.workdir / 'glacierwatch.toml'} (rerun: glacierwatch run it)",
        f"total time: {result.seconds:.0f} s",
    ]
    return "\n".join(lines)
