"""The model's input channels (glacierwatch.features): which bands each needs and the thermal anomaly."""

from __future__ import annotations

import numpy as np
import pytest

from glacierwatch.features import (
    ANOMALY_MIN_BIN_PIXELS,
    bands_needed,
    compute_channels,
    lwir_anomaly,
    needs_dem,
    normalized_difference,
)


def _slope(shape: tuple[int, int] = (120, 90)) -> np.ndarray:
    """A DEM rising 2000 -> 3500 m down the rows (m)."""
    return np.linspace(2000.0, 3500.0, shape[0])[:, None] * np.ones((1, shape[1]))


def test_bands_needed_and_dem() -> None:
    assert bands_needed(["blue", "ndsi", "dem"]) == ["blue", "green", "swir16"]
    assert bands_needed(["lwir_anomaly", "ndwi"]) == ["lwir", "green", "swir16", "nir08"]
    assert needs_dem(["lwir_anomaly"]) and needs_dem(["dem"]) and not needs_dem(["lwir", "ndsi"])
    with pytest.raises(ValueError, match="unknown channel"):
        bands_needed(["ndvi"])


def test_anomaly_finds_cold_ground_at_any_elevation_and_season() -> None:
    """Rock cooling 6.5 K/km, in two seasons 8 K apart: the anomaly of rock is ~0 on both dates, a
    patch 5 K colder than the rock around it (debris over ice) reads -5, and snow (NDSI > 0.4),
    capped at 273 K, leaves the line alone."""
    rng = np.random.default_rng(0)
    dem = _slope()
    rock = np.stack([300.0 - 0.0065 * (dem - 2000.0), 292.0 - 0.0065 * (dem - 2000.0)])
    t = rock + rng.normal(0.0, 0.3, rock.shape)
    t[:, 20:40, 10:30] -= 5.0                       # debris-covered ice, low down
    t[:, 90:100, 50:60] -= 5.0                      # and high up
    ndsi = np.full(t.shape, -0.2)
    ndsi[:, 100:, :] = 0.9                           # snow above ~3250 m
    t[:, 100:, :] = 272.5
    anomaly = lwir_anomaly(t, dem, ndsi)
    assert anomaly.shape == t.shape and anomaly.dtype == np.float32
    ground = np.ones(dem.shape, dtype=bool)
    ground[20:40, 10:30] = ground[90:100, 50:60] = ground[100:, :] = False
    for k in range(2):
        assert abs(float(np.median(anomaly[k][ground]))) < 0.1
        assert float(np.median(anomaly[k][20:40, 10:30])) == pytest.approx(-5.0, abs=0.3)
        assert float(np.median(anomaly[k][90:100, 50:60])) == pytest.approx(-5.0, abs=0.3)
        assert float(np.median(anomaly[k][100:, :])) < -5.0    # snow is colder than rock would be there


def test_anomaly_edge_cases() -> None:
    dem = _slope((40, 40))
    t = 290.0 - 0.0065 * (dem - 2000.0)
    t[0, :5] = np.nan
    ndsi = np.full(t.shape, -0.3)
    out = lwir_anomaly(t, dem, ndsi)
    assert np.isnan(out[0, :5]).all() and np.isfinite(out[1:]).all()
    # all snow: no ground to fit, so no anomaly (NaN, filled downstream like any unseen pixel)
    assert np.isnan(lwir_anomaly(t, dem, np.full(t.shape, 0.9))).all()
    # a flat DEM: one bin, the anomaly is the departure from its median
    flat = np.full((10, 10), 2500.0)
    tf = np.full((10, 10), 280.0)
    tf[0, 0] = 275.0
    assert tf.size >= ANOMALY_MIN_BIN_PIXELS
    out = lwir_anomaly(tf, flat, np.zeros((10, 10)))
    assert out[0, 0] == pytest.approx(-5.0) and out[5, 5] == pytest.approx(0.0)


def test_compute_channels_builds_the_anomaly_from_the_named_bands() -> None:
    rng = np.random.default_rng(1)
    dem = _slope((32, 32)).astype(np.float32)
    bands = {b: rng.random((3, 32, 32), dtype=np.float32) * 0.3 for b in ("green", "swir16")}
    bands["lwir"] = (285.0 - 0.0065 * (dem - 2000.0))[None].repeat(3, axis=0).astype(np.float32)
    x = compute_channels(bands, ["lwir", "lwir_anomaly"], dem=dem)
    assert x.shape == (3, 2, 32, 32)
    ref = lwir_anomaly(bands["lwir"], dem, normalized_difference(bands["green"], bands["swir16"]))
    np.testing.assert_array_equal(x[:, 1], ref)
    with pytest.raises(ValueError, match="no DEM"):
        compute_channels(bands, ["lwir_anomaly"])
