"""The time-series stage on the synthetic world: an oracle segmenter (the true mask) reproduces the
true areas, and the overlay figures (Figure 17) redraw exactly the probability behind each area."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from checks import nonempty
from PIL import Image

from glacierwatch.config import CatalogConfig, TimeseriesConfig
from glacierwatch.errors import InputError
from glacierwatch.features import resize_stack
from glacierwatch.synth import WorldInfo, true_mask
from glacierwatch.timeseries import OracleSegmenter, glacier_areas

CATALOG_CONFIG = CatalogConfig(min_inference_scenes=3, min_pixels=1000)
TS_CONFIG = TimeseriesConfig(segmenter="ndsi", smoothing="masked", sigma=3.0)


@pytest.fixture(scope="module")
def prepared(tiny_world: WorldInfo, tiny_catalog: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny world's inventory and catalog (conftest) and an NDSI stage run on them."""
    from glacierwatch.timeseries import run_timeseries

    work = tmp_path_factory.mktemp("ts_overlay")
    result = run_timeseries(catalog=tiny_catalog["catalog"], inventory=tiny_catalog["inventory"],
                            out=work / "areas.parquet", dem_dir=tiny_world.dem_dir, config=TS_CONFIG,
                            catalog_config=CATALOG_CONFIG, glaciers=list(tiny_world.timeseries_ids), progress=False)
    assert not result.report.failed
    return {"work": work, "inventory": tiny_catalog["inventory"], "areas": result.outputs.areas,
            "dem": tiny_world.dem_dir}


# ---------------------------------------------------------------- oracle

@pytest.mark.parametrize("buffer_m", [None, 500.0])
def test_oracle_true_mask_reproduces_the_true_area_within_1_percent(tiny_world: WorldInfo, prepared,
                                                                     buffer_m: float | None) -> None:
    """Smoothing off and a segmenter returning the true mask: shrinking the scene to chip size,
    resizing the probability back and counting pixels gives the true area within 1 % on every scene."""
    world = tiny_world.out_dir

    def oracle(glims_id: str, dates: list[dt.date], shape: tuple[int, int]) -> np.ndarray:
        masks = np.stack([true_mask(world, glims_id, d).astype(np.float32) for d in dates])
        return resize_stack(masks[:, None], shape).numpy()[:, 0]

    truth = pd.read_csv(tiny_world.truth_csv)
    inventory = gpd.read_parquet(prepared["inventory"])
    config = TimeseriesConfig(smoothing="none", buffer_m=buffer_m)
    for glims_id in nonempty(tiny_world.timeseries_ids):
        files = tiny_world.scene_files(glims_id)
        rows = truth.loc[truth["glims_id"] == glims_id].set_index("scene")
        assert {f.name for f in files} == set(rows.index)  # every scene of the glacier, none left out
        scenes = pd.DataFrame({"path": [str(f) for f in files],
                               "date": [dt.date.fromisoformat(rows.loc[f.name, "date"]) for f in files],
                               "satellite": [rows.loc[f.name, "satellite"] for f in files]})
        outline = inventory.loc[inventory["glims_id"] == glims_id]
        assert len(outline) == 1
        areas = glacier_areas(glims_id, scenes, geometry=outline.geometry.iloc[0], region_name="test", grid=None,
                              dem_path=None, segmenter=OracleSegmenter(oracle), config=config)
        assert len(areas) == len(files) > 20
        true = rows.loc[areas["scene"], "true_area_km2"].to_numpy()
        rel = np.abs(areas["area_km2"].to_numpy() / true - 1.0)
        bad = areas.loc[rel > 0.01, ["scene", "area_km2"]].assign(true_km2=true[rel > 0.01])
        assert bad.empty, f"{glims_id}: oracle area off by more than 1 %:\n{bad}"


# ---------------------------------------------------------------- overlay

def _glacier_dates(prepared, glims_id: str) -> list[dt.date]:
    areas = pd.read_parquet(prepared["areas"])
    return sorted(pd.to_datetime(areas.loc[areas["glims_id"] == glims_id, "date"]).dt.date)


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.load()
        width, height = image.size
    assert 500 <= width <= 1500 and 400 <= height <= 1500
    assert not list(path.parent.glob(".*.part"))  # atomic writes leave no temporary file


def test_overlay_figures_redraw_the_probability_behind_each_area(tiny_world: WorldInfo, prepared,
                                                                 tmp_path: Path) -> None:
    from glacierwatch.timeseries.overlay import overlay_data, overlay_figures

    glims_id = tiny_world.timeseries_ids[0]
    dates = _glacier_dates(prepared, glims_id)
    chosen = [dates[0], dates[len(dates) // 2]]
    kwargs = {"areas_path": prepared["areas"], "inventory_path": prepared["inventory"], "dem_dir": prepared["dem"]}

    items = overlay_data(glims_id, chosen, **kwargs)
    assert [i.date for i in items] == chosen
    for item in nonempty(items):
        # the redrawn smoothed probability, thresholded in the counting region, is the table's area
        assert item.area_km2_redrawn == pytest.approx(item.area_km2, rel=1e-9) and item.matches_table
        assert item.probability.shape == item.grid.shape == item.rgb.shape[:2]
        assert 0.0 <= item.probability.min() and item.probability.max() <= 1.0
        assert 0.0 <= item.rgb.min() and item.rgb.max() <= 1.0 and item.rgb.std() > 0.05

    paths = overlay_figures(glims_id, [str(d) for d in chosen], out_dir=tmp_path / "fig", **kwargs)
    assert len(paths) == 2 and len(set(paths)) == 2
    for path, date in zip(paths, chosen, strict=True):
        assert glims_id in path.name and str(date) in path.name
        _assert_png(path)


def test_overlay_cli_writes_a_png(tiny_world: WorldInfo, prepared, tmp_path: Path, capsys) -> None:
    from glacierwatch.cli import main

    glims_id = tiny_world.timeseries_ids[-1]
    date = _glacier_dates(prepared, glims_id)[-1]
    rc = main(["timeseries", "overlay", glims_id, str(date), "--areas", str(prepared["areas"]),
               "--inventory", str(prepared["inventory"]), "--dem-dir", str(prepared["dem"]),
               "--out", str(tmp_path / "cli")])
    assert rc == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(printed) == 1
    _assert_png(Path(printed[0]))
    assert Path(printed[0]).parent == tmp_path / "cli"


def test_date_not_in_the_table_names_the_nearest_dates(tiny_world: WorldInfo, prepared, tmp_path: Path) -> None:
    from glacierwatch.timeseries.overlay import overlay_figures

    glims_id = tiny_world.timeseries_ids[0]
    dates = _glacier_dates(prepared, glims_id)
    missing = dates[1] + dt.timedelta(days=1)
    assert missing not in dates
    kwargs = {"areas_path": prepared["areas"], "inventory_path": prepared["inventory"], "out_dir": tmp_path}
    with pytest.raises(InputError, match="nearest") as info:
        overlay_figures(glims_id, [dates[0], missing], **kwargs)
    message = str(info.value)
    assert str(missing) in message and str(dates[1]) in message and str(dates[0]) in message
    assert not list(tmp_path.glob("*.png"))  # checked before anything is drawn
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        overlay_figures(glims_id, ["2010-13-01"], **kwargs)
    with pytest.raises(InputError, match="no rows"):
        overlay_figures("G000001E00001N", [dates[0]], **kwargs)


def test_cli_error_prints_one_line_and_exits_2(tiny_world: WorldInfo, prepared, tmp_path: Path, capsys) -> None:
    from glacierwatch.cli import main

    glims_id = tiny_world.timeseries_ids[0]
    dates = _glacier_dates(prepared, glims_id)
    rc = main(["timeseries", "overlay", glims_id, "1900-01-01", "--areas", str(prepared["areas"]),
               "--inventory", str(prepared["inventory"]), "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("glacierwatch: error:")
    assert str(dates[0]) in err[0] and "Traceback" not in err[0]


def test_overlay_redraws_in_the_runs_precision_not_the_configs(monkeypatch: pytest.MonkeyPatch, prepared) -> None:
    """The report redraws with a default TimeseriesConfig (bf16 = true); an fp32 run's overlays must
    still be redrawn in fp32, else a bf16 CPU warns that every redrawn area differs from the table's."""
    from glacierwatch.timeseries import overlay
    from glacierwatch.timeseries.segmenters import NDSISegmenter

    rows = pd.read_parquet(prepared["areas"])
    assert set(rows["precision"]) == {"fp32"}
    asked = []

    def fake_make(spec):
        asked.append(spec.bf16)
        return NDSISegmenter()

    monkeypatch.setattr(overlay, "make_segmenter", fake_make)
    settings = {"segmenter": "ndsi", "model_fingerprint": NDSISegmenter().fingerprint}
    for precision, expected in (("fp32", False), ("bf16", True), (None, True)):
        overlay._segmenter_for({**settings, "precision": precision}, model=None,
                               config=TimeseriesConfig(bf16=True), device="cpu", glims_id="G1")
        assert asked[-1] is expected, precision


def test_precision_is_part_of_the_run_key() -> None:
    from glacierwatch.timeseries.areas import run_key
    from glacierwatch.timeseries.segmenters import NDSISegmenter

    fp32, bf16 = NDSISegmenter(), NDSISegmenter()
    bf16.precision = "bf16"
    cfg = TimeseriesConfig(segmenter="ndsi")
    assert run_key(fp32, cfg) != run_key(bf16, cfg)
