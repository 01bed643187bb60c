"""Outputs that interoperate: datetime64 dates in Parquet, scene and mask rasters as COGs with scale/offset."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio

from glacierwatch.grid import GlacierGrid
from glacierwatch.io import (
    MASK_NODATA,
    band_scale_offset,
    datetime64_dates,
    read_scene,
    read_table,
    write_mask_cog,
    write_scene_cog,
    write_table,
)
from glacierwatch.landsat import SCENE_BANDS, SR_OFFSET, SR_SCALE, ST_OFFSET, ST_SCALE, dn_to_kelvin, dn_to_reflectance

GRID = GlacierGrid("EPSG:32632", x0=345_600.0, y0=5_098_500.0, resolution=30.0, width=300, height=280)


# ------------------------------------------------------------------ dates

def test_date_objects_become_datetime64_in_parquet(tmp_path: Path) -> None:
    dates = pd.to_datetime(pd.Series(["2001-07-01", "2002-08-15", "2003-09-30"]))
    frame = pd.DataFrame({"glims_id": ["G1", "G1", "G2"], "date": dates.dt.date,  # as timeseries/areas.py builds it
                          "first_date": [dt.date(2001, 1, 1), None, dt.date(2003, 1, 1)],
                          "acquired": [dt.datetime(2001, 7, 1, 10, 30)] * 3, "label": ["a", "b", "c"]})
    assert frame["date"].dtype == object
    path = write_table(frame, tmp_path / "t.parquet")
    schema = pq.read_schema(path)
    for name in ("date", "first_date"):
        assert str(schema.field(name).type).startswith("timestamp"), schema
    back = read_table(path)
    assert pd.api.types.is_datetime64_any_dtype(back["date"]) and pd.api.types.is_datetime64_any_dtype(back["first_date"])
    assert list(back["date"]) == list(dates) and pd.isna(back["first_date"][1])
    assert back["acquired"][0] == pd.Timestamp("2001-07-01 10:30")  # datetimes keep their time of day
    assert back["label"].tolist() == ["a", "b", "c"]
    assert frame["date"].dtype == object  # the caller's frame is not changed
    # CSV keeps ISO dates
    csv = write_table(frame, tmp_path / "t.csv")
    assert pd.read_csv(csv)["date"].tolist() == ["2001-07-01", "2002-08-15", "2003-09-30"]


def test_arrow_date_columns_are_normalised_too() -> None:
    frame = pd.DataFrame({"d": pd.array([dt.date(2020, 1, 2)], dtype="date32[pyarrow]"), "n": [1]})
    out = datetime64_dates(frame)
    assert pd.api.types.is_datetime64_any_dtype(out["d"]) and out["n"].tolist() == [1]
    untouched = pd.DataFrame({"x": [1.0], "s": ["2020-01-01"]})
    assert datetime64_dates(untouched) is untouched  # strings are not guessed at


# ------------------------------------------------------------------ COGs

def _scene_dn(shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(1)
    data = rng.integers(7_000, 30_000, size=(len(SCENE_BANDS), *shape)).astype(np.uint16)
    data[:, :5, :7] = 0  # fill
    return data


def test_scene_cog_has_tiles_overviews_and_scale_offset(tmp_path: Path) -> None:
    data = _scene_dn(GRID.shape)
    path = tmp_path / "scene.tif"
    write_scene_cog(path, data, GRID, band_names=list(SCENE_BANDS), tags={"date": "2010-08-01"})
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.overviews(1), "a grid larger than one tile gets overviews"
        assert src.scales[:6] == (SR_SCALE,) * 6 and src.offsets[:6] == (SR_OFFSET,) * 6
        assert src.scales[6] == ST_SCALE and src.offsets[6] == ST_OFFSET
        assert src.scales[7] == 1.0 and src.offsets[7] == 0.0  # qa_pixel: a bit field
        assert src.units[0] == "reflectance" and src.units[6] == "K"
        assert src.nodata == 0 and src.tags()["date"] == "2010-08-01"
        raw = src.read()
        physical = raw[0] * src.scales[0] + src.offsets[0]
    np.testing.assert_array_equal(raw, data)
    scene = read_scene(path)  # the standard reader still gets the DN by band name
    np.testing.assert_array_equal(scene.bands["lwir"], data[6])
    observed = data[0] != 0
    np.testing.assert_allclose(physical[observed], dn_to_reflectance(data[0])[observed], rtol=0, atol=1e-6)  # float32
    assert band_scale_offset("lwir")[:2] == (ST_SCALE, ST_OFFSET)
    kelvin = data[6].astype(np.float64) * ST_SCALE + ST_OFFSET
    np.testing.assert_allclose(kelvin[observed], dn_to_kelvin(data[6])[observed], rtol=0, atol=1e-4)


def test_mask_cog_from_a_mask_and_from_a_probability(tmp_path: Path) -> None:
    small = GlacierGrid("EPSG:32632", x0=345_600.0, y0=5_098_500.0, resolution=30.0, width=40, height=30)
    mask = np.zeros(small.shape, dtype=bool)
    mask[10:20, 5:25] = True
    observed = np.ones(small.shape, dtype=bool)
    observed[0, :] = False
    write_mask_cog(tmp_path / "mask.tif", mask, small, observed=observed, tags={"date": "2010-08-01"})
    with rasterio.open(tmp_path / "mask.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and src.dtypes[0] == "uint8"
        got = src.read(1)
        assert src.nodata == MASK_NODATA and src.descriptions[0] == "glacier"
    assert (got[0] == MASK_NODATA).all() and got[1:].sum() == mask[1:].sum() and set(np.unique(got)) == {0, 1, MASK_NODATA}
    prob = np.linspace(0, 1, small.width * small.height, dtype=np.float32).reshape(small.shape)
    write_mask_cog(tmp_path / "prob.tif", prob, small, observed=observed)
    with rasterio.open(tmp_path / "prob.tif") as src:
        back = src.read(1)
        assert src.dtypes[0] == "float32" and src.descriptions[0] == "ice_probability"
    assert np.isnan(back[0]).all()
    np.testing.assert_array_equal(back[1:], prob[1:])


def test_cog_writer_checks_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not match grid"):
        write_scene_cog(tmp_path / "x.tif", np.zeros((8, 3, 3), np.uint16), GRID, band_names=list(SCENE_BANDS))
    assert not list(tmp_path.iterdir())  # nothing half-written
