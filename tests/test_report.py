"""Report stage: a self-contained HTML page built from a work folder, checked as text and, where
Debian's chromium is installed, rendered in headless Chromium."""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import os
import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from checks import nonempty

from glacierwatch.cli import main
from glacierwatch.report import build_report

CHROMIUM = Path("/usr/bin/chromium")
REGIONS = {"Europe": -0.0026, "Asia": -0.0016, "South America": -0.0026}
#: Rough position of each region's glaciers (lon, lat), for the inventory outlines of the map.
POSITIONS = {"Europe": (8.0, 46.0), "Asia": (86.0, 28.0), "South America": (-70.0, -33.0), "Alaska": (-140.0, 61.0)}
N_GLACIER_FIGURES = 2


def make_workdir(root: Path, *, seed: int = 0, truth: bool = True, model: bool = True,
                 catalog: bool = True, inventory: bool = False, intervals: bool = False,
                 validation: bool = False, single_glacier_region: bool = False) -> Path:
    """A work folder as the pipeline leaves it: areas.parquet (+ optional synthetic truth, model card,
    catalog, inventory outlines, validation tables). Glaciers shrink exponentially at known rates with
    lognormal noise; ``intervals`` adds ``area_km2_low/high``; every row has a ``valid_fraction``."""
    rng = np.random.default_rng(seed)
    observed_rng = np.random.default_rng(seed + 1)  # its own stream: the areas stay those of the seed
    rows, truth_rows, outlines = [], [], []
    regions = {**REGIONS, **({"Alaska": -0.004} if single_glacier_region else {})}
    k = 0
    for region, mean_rate in regions.items():
        for i in range(1 if region == "Alaska" else 5):
            k += 1
            gid = f"G{8000 + 53 * k:06d}E{46000 + 71 * k:05d}N"
            rate = mean_rate + rng.normal(0, 0.001)
            area0 = float(np.exp(rng.uniform(0, 3)))
            n = 30 if region == "Alaska" else int(rng.integers(8, 40))  # some glaciers fall below min_obs = 10
            for _ in range(n):
                date = dt.date(int(rng.integers(1985, 2024)), 1, 1) + dt.timedelta(days=int(rng.integers(150, 280)))
                t = date.year + (date.timetuple().tm_yday - 1) / (366 if date.year % 4 == 0 else 365)
                area = area0 * np.exp(rate * (t - 2000) + rng.normal(0, 0.015))
                rows.append({"glims_id": gid, "region": region, "date": date,
                             "satellite": "L5" if date.year < 1999 else "L8" if date.year > 2013 else "L7",
                             "area_km2": area, "valid_fraction": float(observed_rng.uniform(0.5, 1.0)),
                             **({"area_km2_low": area * 0.97, "area_km2_high": area * 1.03} if intervals else {})})
            truth_rows.append({"glims_id": gid, "region": region, "true_rel_change_per_year": rate})
            lon, lat = POSITIONS[region]
            size = 0.02 * np.sqrt(area0)
            outlines.append({"glims_id": gid, "lon": lon + 0.3 * i, "lat": lat + 0.2 * i, "size": size})
    work = root / "work"
    work.mkdir(parents=True)
    areas = pd.DataFrame(rows)
    areas.to_parquet(work / "areas.parquet", index=False)
    if truth:
        (work / "synthetic").mkdir()
        pd.DataFrame(truth_rows).to_csv(work / "synthetic" / "truth_trends.csv", index=False)
    if model:
        (work / "model").mkdir()
        (work / "model" / "model_card.json").write_text(json.dumps(
            {"encoder": "resnet50", "chip_size": 128, "channels": ["blue", "green", "red", "ndsi"],
             "metrics": {"test_dice": 0.9134, "val_dice": 0.9211}}))
    if catalog:
        cat = areas[["glims_id", "date", "satellite"]].assign(status="ok", path="/x.tif")
        cat.loc[cat.index[:7], "status"] = "unreadable"
        cat.to_parquet(work / "catalog.parquet", index=False)
    if inventory:
        import geopandas as gpd
        from shapely.geometry import box

        gpd.GeoDataFrame({"glims_id": [o["glims_id"] for o in outlines]},
                         geometry=[box(o["lon"], o["lat"], o["lon"] + o["size"], o["lat"] + o["size"])
                                   for o in outlines], crs="EPSG:4326").to_parquet(work / "inventory.parquet")
    if validation:
        (work / "validation").mkdir()
        pd.DataFrame({"region": ["Europe", "Asia"], "n_glaciers": [5, 5], "mean_error_km2": [0.012, -0.031],
                      "mean_abs_pct_error": [3.2, 4.1]}).to_csv(work / "validation" / "validation_summary.csv",
                                                                index=False)
        pd.DataFrame({"glims_id": [o["glims_id"] for o in outlines],
                      "reference_date": "2010-08-01", "reference_area_km2": 1.5, "estimated_area_km2": 1.52,
                      }).to_csv(work / "validation" / "validation.csv", index=False)
    return work


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    work = make_workdir(tmp_path_factory.mktemp("report"), inventory=True, intervals=True, validation=True)
    path = build_report(work, max_glacier_figures=N_GLACIER_FIGURES)
    return path, path.read_text(encoding="utf-8")


def expected_images(*, map_figure: bool = False) -> int:
    # inventory, regions + Total, glaciers, truth scatter (+ the map)
    return 1 + (len(REGIONS) + 1) + N_GLACIER_FIGURES + 1 + int(map_figure)


def test_report_is_written_with_every_section(built) -> None:
    path, page = built
    assert path == path.parent.parent / "report" / "index.html"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    for section in ("map", "table2", "regions", "figure18", "truth", "inventory", "model", "glaciers",
                    "glacier-figures", "validation", "methods"):
        assert f'<section id="{section}"' in page, section
    assert page.count("<table") >= 7
    assert "Estimated versus true rates" in page and "test_dice" in page and "0.9134" in page
    assert "Scenes per satellite and status" in page and "unreadable" in page
    assert 'class="flagged"' in page  # glaciers below min_obs are shown, shaded


def test_report_is_self_contained(built) -> None:
    _, page = built
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs), \
        [r[:40] for r in refs if not r.startswith(("data:", "#"))]
    assert "url(" not in page and "@import" not in page and "<link" not in page
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == expected_images(map_figure=True)
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_table2_matches_trends_outputs(built) -> None:
    path, page = built
    trends = path.parent.parent / "trends"
    regions = pd.read_csv(trends / "region_trends.csv")
    for _, r in nonempty(regions).iterrows():
        change = f"{r['rel_change_per_year'] * 100:+.3f}".replace("-", "\u2212")  # shown in %/yr
        assert f"<td>{r['region']}</td><td class=\"num\">{change}</td>" in page
    assert (trends / "figures" / "figures.json").exists()


def test_report_reuses_trends_says_when_stale_and_reruns_only_when_asked(tmp_path) -> None:
    work = make_workdir(tmp_path, truth=False, model=False, catalog=False)
    build_report(work, max_glacier_figures=0)  # no trends yet: the stage runs once
    summary = work / "trends" / "trends_summary.json"
    first = summary.stat().st_mtime_ns
    page = build_report(work, max_glacier_figures=0).read_text()
    assert summary.stat().st_mtime_ns == first  # current: reused
    assert "stale" not in page
    later = summary.stat().st_mtime + 10
    os.utime(work / "areas.parquet", (later, later))
    page = build_report(work, max_glacier_figures=0).read_text()
    assert summary.stat().st_mtime_ns == first  # areas newer: not re-run, but said in the page
    assert "are stale (areas.parquet is newer)" in page and "--rerun-trends" in page
    build_report(work, min_obs=3, rerun_trends=True, max_glacier_figures=0)  # asked: re-run
    assert json.loads(summary.read_text())["min_obs"] == 3
    earlier = summary.stat().st_mtime - 10
    os.utime(work / "areas.parquet", (earlier, earlier))
    page = build_report(work, min_obs=4, max_glacier_figures=0).read_text()
    assert json.loads(summary.read_text())["min_obs"] == 3 and "are stale (made with min_obs 3)" in page
    page = (work / "report" / "index.html").read_text()
    for absent in ('id="truth"', 'id="model"', "Scenes per satellite"):
        assert absent not in page


def test_report_cli_and_out_option(tmp_path, capsys) -> None:
    work = make_workdir(tmp_path, truth=False, model=False, catalog=False)
    out = tmp_path / "elsewhere" / "page.html"
    assert main(["report", str(work), "--out", str(out), "--glacier-figures", "0"]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out


def test_report_errors_are_one_line_and_leave_nothing(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "work folder not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no areas.parquet" in err[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    pd.DataFrame({"glims_id": ["G1", "G1"], "region": ["Alps", "Alps"], "date": ["2001-07-01", "July 2002"],
                  "area_km2": [1.0, 1.1]}).to_parquet(bad / "areas.parquet")
    assert main(["report", str(bad)]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("glacierwatch")]
    assert len(err) == 1 and "row 2 (glims_id G1): unparseable date 'July 2002'" in err[0]
    assert sorted(p.name for p in bad.iterdir()) == ["areas.parquet"]


def test_report_survives_broken_optional_inputs(tmp_path) -> None:
    work = make_workdir(tmp_path, truth=False, model=False, catalog=False)
    (work / "model").mkdir()
    (work / "model" / "model_card.json").write_text("{not json")
    (work / "synthetic").mkdir()
    (work / "synthetic" / "truth_trends.csv").write_text("glims_id,rate\nG1,0.1\n")
    page = build_report(work, max_glacier_figures=0).read_text()
    assert "model card skipped" in page and "truth table skipped" in page
    assert 'id="model"' not in page


def test_report_validation_section_shows_summary_and_first_rows(built) -> None:
    path, page = built
    section = page[page.index('<section id="validation"'):]
    section = section[:section.index("</section>")]
    summary = pd.read_csv(path.parent.parent / "validation" / "validation_summary.csv")
    for column in nonempty(summary.columns):
        assert "<th" in section and column in section
    assert "mean_abs_pct_error" in section and "3.2" in section and "Comparisons" in section


def test_report_model_metrics_are_a_matrix(tmp_path) -> None:
    from glacierwatch.model.card import INTENDED_USE, LIMITATIONS, usage_fields
    from glacierwatch.report.builder import metrics_matrix

    metrics = {"n_chips": 40,
               "unet": {"overall": {"dice": 0.91, "iou": 0.84},
                        "per_region": {"Alps": {"dice": 0.93, "iou": 0.87}}},
               "ndsi": {"overall": {"dice": 0.71, "iou": 0.55}}}
    rows, columns, cells = metrics_matrix(metrics)
    assert rows == ["n_chips", "dice", "iou"]
    assert columns == ["all", "unet \u00b7 overall", "unet \u00b7 Alps", "ndsi \u00b7 overall"]
    assert cells[("dice", "unet \u00b7 Alps")] == 0.93 and ("dice", "all") not in cells
    work = make_workdir(tmp_path, truth=False, catalog=False)
    card = json.loads((work / "model" / "model_card.json").read_text())
    card.update(metrics=metrics, sensors=["L5", "L8"], regions=["Alps"])
    usage = usage_fields(card)
    assert usage["intended_use"] == INTENDED_USE and list(LIMITATIONS) == usage["limitations"][:len(LIMITATIONS)]
    assert "L5, L8 only" in usage["limitations"][-2] and "Alps" in usage["limitations"][-1]
    card.update(usage)
    (work / "model" / "model_card.json").write_text(json.dumps(card))
    page = build_report(work, max_glacier_figures=0).read_text()
    section = page[page.index('<section id="model"'):]
    header = section[section.index("<thead>"):section.index("</thead>")]
    assert [h for h in re.findall(r">([^<>]+)</th>", header)] == ["Metric", *columns]
    assert "<td>dice</td><td class=\"num\"></td><td class=\"num\">0.91</td>" in section
    assert "Intended use." in section and section.count("<li>") >= len(usage["limitations"])
    assert html.escape(usage["limitations"][0]) in section


def test_report_series_draw_the_interval_band_and_observed_fraction(tmp_path) -> None:
    from matplotlib.collections import PolyCollection

    from glacierwatch.report.builder import series_figure

    work = make_workdir(tmp_path, truth=False, model=False, catalog=False, intervals=True)
    areas = pd.read_parquet(work / "areas.parquet")
    rows = areas.loc[areas["glims_id"] == areas["glims_id"].iloc[0]]
    fig = series_figure(rows, None)
    top, bottom = fig.axes[:2]
    assert any(isinstance(c, PolyCollection) for c in top.collections)  # the interval band
    assert len(bottom.patches) == len(rows)  # one bar of observed fraction per scene
    fig = series_figure(rows.drop(columns=["area_km2_low", "area_km2_high"]), None)
    assert not any(isinstance(c, PolyCollection) for c in fig.axes[0].collections)
    assert fig.get_size_inches()[0] * 150 == 1200


def test_report_map_and_single_glacier_regions(tmp_path) -> None:
    work = make_workdir(tmp_path, truth=False, model=False, catalog=False, inventory=True,
                        single_glacier_region=True)
    page = build_report(work, max_glacier_figures=0).read_text()
    assert '<section id="map"' in page and "EPSG:4326" in page
    figure18 = page[page.index('<section id="figure18"'):]
    figure18 = figure18[:figure18.index("</section>")]
    assert figure18.count("<img") == len(REGIONS) + 1  # no histogram for Alaska's single glacier
    assert "one glacier each: Alaska" in figure18
    table2 = page[page.index('<section id="table2"'):]
    assert "(%/yr)" in table2[:table2.index("</section>")]


def test_report_of_a_timeseries_run_has_overlays(tiny_world, tiny_catalog, tmp_path) -> None:
    """A work folder as `timeseries run` leaves it (NDSI on the tiny world): the report redraws
    overlays on three dates of the first glacier drawn, with the run's own areas in their captions."""
    import shutil

    from glacierwatch.config import CatalogConfig, TimeseriesConfig
    from glacierwatch.timeseries import run_timeseries

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(tiny_catalog["inventory"], work / "inventory.parquet")
    (work / "dem").symlink_to(tiny_world.dem_dir, target_is_directory=True)
    result = run_timeseries(catalog=tiny_catalog["catalog"], inventory=work / "inventory.parquet",
                            out=work / "areas.parquet", dem_dir=work / "dem",
                            config=TimeseriesConfig(segmenter="ndsi", sigma=3.0),
                            catalog_config=CatalogConfig(min_inference_scenes=3, min_pixels=1000),
                            glaciers=list(tiny_world.timeseries_ids), progress=False)
    assert not result.report.failed
    page = build_report(work, max_glacier_figures=2, overlay_glaciers=1).read_text()
    section = page[page.index('<section id="glacier-figures"'):]
    section = section[:section.index("</section>")]
    assert "<h3>Overlays</h3>" in section
    overlays = re.findall(r'alt="overlay ([^"]+)"', section)
    assert len(overlays) == 3 and len({o.split()[1] for o in overlays}) == 3  # three different dates
    areas = pd.read_parquet(work / "areas.parquet")
    first = overlays[0].split()
    row = areas.loc[(areas["glims_id"] == first[0]) & (pd.to_datetime(areas["date"]).dt.date.astype(str) == first[1])]
    assert len(row) >= 1 and f"area {row['area_km2'].iloc[0]:.3f} km²" in overlays[0]
    assert '<section id="map"' in page and "overlays skipped" not in page


# ---------------------------------------------------------------- headless browser

def _png_size(path: Path) -> tuple[int, int]:
    with path.open("rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless check needs Debian's chromium at /usr/bin/chromium "
                                                  "(apt-get install chromium chromium-driver)")
def test_report_renders_in_headless_chromium(built, tmp_path) -> None:
    path, page = built
    url = path.resolve().as_uri()
    done = _chromium(["--dump-dom", url], tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    marker = re.search(r'<body[^>]*data-rendered="([^"]*)"', done.stdout)
    assert marker, "the page's script did not run: " + done.stdout[:300]
    counts = dict(item.split("=") for item in marker.group(1).split(";"))
    assert int(counts["tables"]) == page.count("<table")
    assert int(counts["rows"]) > 30
    assert int(counts["images"]) == expected_images(map_figure=True)
    assert int(counts["images_ok"]) == int(counts["images"])  # every embedded figure decoded
    assert "Rendered " in done.stdout
    shot = tmp_path / "report.png"
    done = _chromium(["--window-size=1280,2000", f"--screenshot={shot}", url], tmp_path / "profile")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    assert _png_size(shot) == (1280, 2000)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few kB
