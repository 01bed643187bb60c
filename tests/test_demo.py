"""``glacierwatch demo``: the same table on a rerun (no wall-clock limit, seeded, deterministic
training and fp32 everywhere), on a small version of the demo's world."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from glacierwatch.demo import baseline_trends_csv, demo_config, format_demo, run_demo

SMALL_DEMO = {"n_training": 4, "n_timeseries": 2, "scenes_per_year": 8, "first_year": 1998, "last_year": 2021,
              "epochs": 1, "progress": False}


def test_demo_configuration_is_machine_independent(tmp_path: Path) -> None:
    """No wall-clock cap decides the model and nothing runs in bf16 (which only some CPUs have)."""
    config = demo_config(tmp_path)
    assert config.train.max_minutes == 0 and not config.train.bf16 and not config.timeseries.bf16
    assert config.train.deterministic
    assert config.cpu_instructions == "avx2"  # the same fp32 kernels on every x86-64 CPU


def test_demo_rerun_gives_the_same_table(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "a", **SMALL_DEMO)
    second = run_demo(tmp_path / "b", **SMALL_DEMO)
    assert not first.comparison.empty, "the small demo must give at least one trend to compare"
    pd.testing.assert_frame_equal(first.comparison, second.comparison)
    areas = [pd.read_parquet(r.workdir / "areas.parquet")[["glims_id", "date", "area_km2"]] for r in (first, second)]
    pd.testing.assert_frame_equal(*areas)
    text = format_demo(first)
    assert "largest absolute error" in text and str(first.workdir / "areas.parquet") in text
    # the NDSI baseline on the same scenes, beside the U-Net's: its own trends and its error per glacier
    assert first.baseline is not None and set(first.baseline["glims_id"]) == set(first.comparison["glims_id"])
    assert first.comparison["ndsi_error_pct_per_year"].notna().all()
    assert "NDSI baseline" in text and str(baseline_trends_csv(first.workdir)) in text
    ndsi = pd.read_parquet(first.workdir / "baseline_ndsi" / "areas.parquet")
    assert set(ndsi["segmenter"]) == {"ndsi"} and set(ndsi["model_fingerprint"]) == {"ndsi>0.4-water@grid"}
