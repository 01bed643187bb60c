"""Calibration of our error bars on a synthetic world, where the truth is known.

Given the world folder (``glacierwatch synth``: ``truth.csv`` with the true area of every scene,
``truth_trends.csv`` with every glacier's true rate) and an areas table measured on it, prints:

* per-scene intervals: the share of scenes whose true area lies in ``area_km2_low .. area_km2_high``
  (all scenes, late-season scenes ``season_ok``, and scenes counted in the annual areas ``use``, as
  far as the table has those columns), and the median relative interval width;
* per-glacier 95 % trend intervals (``rel_change_ci95_low .. high`` of the trends stage, fitted here
  with the ``[trends]`` defaults on the annual table when given, else on the scenes): the share of
  glaciers whose true rate lies inside, the same for the paper's +-1.96 x classical SE, the median
  interval half-width in %/yr and the median |error| / SE (z);

and with ``--json`` writes the same numbers. Nothing is timed; nothing is downloaded.

``--ar1`` instead runs a statistical check without a world: 150 glaciers with known rates whose
ln(area) carries AR(1) noise (annual, or 160 irregular scenes), intervals of +-1.96 sigma, and prints
the coverage of the 95 % interval and of each SE alone (paper, HAC, AR(1)).

Run (the lead's demo)::

    .venv/bin/python benchmarks/calibration.py --world work/synthetic --areas work/areas.parquet \\
        [--annual work/areas.annual.parquet] [--json calibration.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glacierwatch.config import TrendsConfig
from glacierwatch.io import read_table
from glacierwatch.trends.core import TrendOptions, compute_trends


def _share(mask: pd.Series) -> float | None:
    return float(mask.mean()) if len(mask) else None


def scene_coverage(areas: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """Coverage of the per-scene intervals against ``truth.csv`` (glims_id, date, true_area_km2)."""
    if not {"area_km2_low", "area_km2_high"} <= set(areas.columns):
        return {"note": "areas table has no area_km2_low/area_km2_high"}
    a = areas.drop(columns=["true_area_km2"], errors="ignore").assign(date=pd.to_datetime(areas["date"]).dt.normalize())
    t = truth.assign(date=pd.to_datetime(truth["date"]).dt.normalize())
    joined = a.merge(t[["glims_id", "date", "true_area_km2"]], on=["glims_id", "date"], how="inner")
    joined = joined.loc[np.isfinite(joined["area_km2_low"]) & np.isfinite(joined["area_km2_high"])]
    inside = (joined["area_km2_low"] <= joined["true_area_km2"]) & (joined["true_area_km2"] <= joined["area_km2_high"])
    width = (joined["area_km2_high"] - joined["area_km2_low"]) / joined["true_area_km2"]
    out: dict[str, Any] = {"n_scenes": int(len(joined)), "coverage_all": _share(inside),
                           "median_rel_width": float(width.median()) if len(width) else None}
    for column in ("season_ok", "use"):
        if column in joined.columns:
            sel = joined[column].fillna(False).astype(bool)
            out[f"n_{column}"] = int(sel.sum())
            out[f"coverage_{column}"] = _share(inside[sel])
            out[f"median_rel_width_{column}"] = float(width[sel].median()) if sel.any() else None
    return out


def trend_coverage(fit_table: pd.DataFrame, truth_trends: pd.DataFrame, fit_on: str) -> dict[str, Any]:
    """Coverage of the per-glacier 95 % intervals of the trends stage against the true rates."""
    result = compute_trends(fit_table, options=TrendOptions.from_config(TrendsConfig()), fit_on=fit_on,
                            min_obs=TrendsConfig().min_obs)
    g = result.glaciers.merge(truth_trends[["glims_id", "true_rel_change_per_year"]], on="glims_id")
    g = g.loc[np.isfinite(g["rel_change_ci95_low"])]
    true = g["true_rel_change_per_year"]
    inside = (g["rel_change_ci95_low"] <= true) & (true <= g["rel_change_ci95_high"])
    paper = (true - g["rel_change_per_year"]).abs() <= 1.96 * g["rel_change_se"]
    half = (g["rel_change_ci95_high"] - g["rel_change_ci95_low"]) / 2 * 100
    z = (true - g["rel_change_per_year"]).abs() / g["rel_change_se_total"]
    unflagged = ~g["flagged"]
    return {"fit_on": fit_on, "n_glaciers": int(len(g)), "n_flagged": int(g["flagged"].sum()),
            "coverage_95": _share(inside), "coverage_95_unflagged": _share(inside[unflagged]),
            "coverage_paper_1.96se": _share(paper),
            "median_half_width_pct_per_year": float(half.median()) if len(half) else None,
            "max_half_width_pct_per_year": float(half.max()) if len(half) else None,
            "median_z": float(z.median()) if len(z) else None,
            "median_abs_error_pct_per_year": float(((true - g["rel_change_per_year"]).abs() * 100).median())
            if len(g) else None}


def ar1_experiment(seed: int = 1) -> list[dict[str, Any]]:
    """Coverage on AR(1) noise with calibrated intervals (see the module docstring)."""
    import logging

    logging.disable(logging.WARNING)
    rng = np.random.default_rng(seed)
    out = []
    for rho, sigma, scenes in ((0.9, 0.02, False), (0.5, 0.02, False), (0.95, 0.01, True)):
        rows, truth = [], {}
        for k in range(150):
            gid = f"G{1000 + k:06d}E45000N"
            rate = rng.normal(-0.003, 0.002)
            truth[gid] = rate
            t = np.sort(1984 + rng.uniform(0, 40, 160)) if scenes else np.arange(1984, 2024) + 0.5
            e = np.zeros(t.size)
            e[0] = rng.normal(0, sigma)
            for i in range(1, t.size):
                e[i] = rho * e[i - 1] + rng.normal(0, sigma * np.sqrt(1 - rho ** 2))
            area = 5 * np.exp(rate * (t - 2000) + e)
            for ti, ai in zip(t, area, strict=False):
                date = pd.Timestamp(int(ti), 1, 1) + pd.Timedelta(days=int((ti % 1) * 365))
                rows.append({"glims_id": gid, "region": "X", "date": date, "area_km2": ai,
                             "area_km2_low": ai * np.exp(-1.96 * sigma), "area_km2_high": ai * np.exp(1.96 * sigma)})
        g = compute_trends(pd.DataFrame(rows), options=TrendOptions.from_config(TrendsConfig())).glaciers
        true = g["glims_id"].map(truth)
        err = (true - g["rel_change_per_year"]).abs()
        out.append({"rho": rho, "sigma": sigma, "layout": "scenes" if scenes else "annual",
                    "coverage_95": float(((g["rel_change_ci95_low"] <= true) & (true <= g["rel_change_ci95_high"])).mean()),
                    "coverage_paper_se": float((err <= 1.96 * g["rel_change_se"]).mean()),
                    "coverage_hac_only": float((err <= 1.96 * g["rel_change_se_hac"]).mean()),
                    "coverage_ar1_only": float((err <= 1.96 * g["rel_change_se_ar1"]).mean()),
                    "median_half_width_pct_per_year":
                        float(((g["rel_change_ci95_high"] - g["rel_change_ci95_low"]) / 2 * 100).median())})
    logging.disable(logging.NOTSET)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ar1", action="store_true", help="run the AR(1) check without a world")
    parser.add_argument("--world", type=Path, help="synthetic world folder (truth.csv, truth_trends.csv)")
    parser.add_argument("--areas", type=Path, help="per-scene areas table measured on the world")
    parser.add_argument("--annual", type=Path, help="annual areas table (default: fit on the scenes)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.ar1:
        rows = ar1_experiment()
        for row in rows:
            print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        if args.json is not None:
            args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        return 0
    if args.world is None or args.areas is None:
        parser.error("--world and --areas are required (or --ar1)")
    truth = read_table(args.world / "truth.csv")
    truth_trends = read_table(args.world / "truth_trends.csv")
    areas = read_table(args.areas)
    report = {"world": str(args.world), "areas": str(args.areas),
              "scenes": scene_coverage(areas, truth)}
    if args.annual is not None:
        report["trends"] = trend_coverage(read_table(args.annual), truth_trends, "annual")
    else:
        report["trends"] = trend_coverage(areas, truth_trends, "scenes")
    for section in ("scenes", "trends"):
        print(f"[{section}]")
        for key, value in report[section].items():
            print(f"  {key:34s} {value:.4f}" if isinstance(value, float) else f"  {key:34s} {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
