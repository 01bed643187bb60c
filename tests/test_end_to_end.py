"""The whole chain on the tiny synthetic world: inventory -> catalog -> chips -> training ->
time series -> trends -> report, then a second run that finds every stage up to date."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from glacierwatch.config import (
    CatalogConfig,
    ChipsConfig,
    Config,
    ImageryConfig,
    InventoryConfig,
    TimeseriesConfig,
    TrainConfig,
    TrendsConfig,
    example_toml,
)
from glacierwatch.pipeline import STAGES, run_pipeline
from glacierwatch.synth import WorldInfo


def test_whole_chain_on_a_tiny_world(tiny_world: WorldInfo, tmp_path: Path) -> None:
    config = Config(
        workdir=str(tmp_path / "work"),
        inventory=InventoryConfig(outlines=[str(tiny_world.outlines)]),
        imagery=ImageryConfig(scenes_dir=str(tiny_world.scenes_dir), dem_dir=str(tiny_world.dem_dir)),
        # the 1.5 km box sees more of a scene's partial no-data than the seed's 10 % box, and the paper's
        # "no fill pixel in the box" drops most tiny-world scenes; the time series judges the
        # outline's own observed share instead (min_valid_fraction)
        catalog=CatalogConfig(min_inference_scenes=5, min_pixels=20_000, max_nodata_pixels=10**9),
        chips=ChipsConfig(size=64, val_fraction=0.2, test_fraction=0.2),
        # 6 epochs: with 2, the model was degenerate (all glacier or, with 11 channels, none)
        train=TrainConfig(encoder="resnet18", learning_rate=1e-3, batch_size=4, epochs=6, patience=6),
        timeseries=TimeseriesConfig(sigma=2.0, batch_size=16),
        trends=TrendsConfig(min_obs=5, max_glacier_figures=2),
    )
    status = run_pipeline(config, progress=False)
    assert list(status) == list(STAGES) and all(v.startswith("ran") for v in status.values())
    work = Path(config.workdir)
    areas = pd.read_parquet(work / "areas.parquet")
    assert {"glims_id", "region", "date", "satellite", "scene", "area_km2", "valid_fraction"} <= set(areas.columns)
    assert set(areas["glims_id"]) <= set(tiny_world.timeseries_ids) and len(areas) > 10
    assert (areas["area_km2"] >= 0).all() and (areas["segmenter"] == "unet").all()
    # a model that segments: areas vary from scene to scene and none is the whole counting region or nothing
    per_glacier = areas.groupby("glims_id")["area_km2"]
    assert (per_glacier.min() > 0).all() and (per_glacier.std() > 0).all()
    trends = pd.read_csv(work / "trends" / "glacier_trends.csv")
    assert set(trends["glims_id"]) == set(areas["glims_id"])
    assert "Total" in set(pd.read_csv(work / "trends" / "region_trends.csv")["region"])
    assert (work / "model" / "model_card.json").exists() and (work / "report" / "index.html").exists()
    chips = (work / "chips")
    assert chips.is_dir()

    # nothing changed: every stage is skipped
    assert set(run_pipeline(config, progress=False).values()) == {"up to date"}
    # a changed option reruns its stage and the stages after it
    changed = dataclasses.replace(config, trends=dataclasses.replace(config.trends, min_obs=4))
    again = run_pipeline(changed, progress=False)
    assert again["timeseries"] == "up to date" and again["trends"].startswith("ran")
    assert again["report"].startswith("ran")

    # the written configuration of a run is loadable as it stands
    path = tmp_path / "run.toml"
    path.write_text(example_toml(config))
    assert Config.from_toml(path) == config
