"""``open_scenes``: one glacier's scenes of all Landsat missions as one (time, band, y, x) DataArray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glacierwatch.errors import DatasetNotFoundError, InputError
from glacierwatch.io import read_scene
from glacierwatch.landsat import COMMON_BANDS, dn_to_kelvin, dn_to_reflectance, qa_invalid_mask
from glacierwatch.synth import WorldInfo

xr = pytest.importorskip("xarray", reason="the xarray extra is not installed")
pytest.importorskip("rioxarray", reason="the xarray extra is not installed")

from glacierwatch.scenes_xr import open_scenes  # noqa: E402


def test_all_missions_concatenate_with_physical_values_and_qa(tiny_world: WorldInfo) -> None:
    gid = tiny_world.timeseries_ids[0]
    files = tiny_world.scene_files(gid)
    da = open_scenes(tiny_world.scenes_dir, gid)
    assert da.dims == ("time", "band", "y", "x")
    assert list(da.band.values) == list(COMMON_BANDS) and da.sizes["time"] == len(files)
    assert {"L5", "L7", "L8"} <= set(da.satellite.values)  # 8- and 9-band files in one array
    assert np.issubdtype(da.time.dtype, np.datetime64) and bool((np.diff(da.time.values) >= np.timedelta64(0)).all())
    assert list(da.units.values) == ["reflectance"] * 6 + ["K"]
    # one L8 scene, compared with the file's DN through the package's scale factors
    i = next(k for k, sat in enumerate(da.satellite.values) if sat == "L8")
    scene = read_scene(files[i])
    np.testing.assert_array_equal(da.isel(time=i).sel(band="nir08").values, dn_to_reflectance(scene.bands["nir08"]))
    np.testing.assert_array_equal(da.isel(time=i).sel(band="lwir").values, dn_to_kelvin(scene.bands["lwir"]))
    np.testing.assert_array_equal(da.qa_pixel.isel(time=i).values, scene.qa)
    np.testing.assert_array_equal(da.clear.isel(time=i).values, ~qa_invalid_mask(scene.qa))
    # georeferencing: rioxarray's CRS and transform are the scene grid's
    assert da.rio.crs.to_string() == scene.grid.crs
    assert tuple(da.rio.transform())[:6] == tuple(scene.grid.transform)[:6]
    # the same through a work folder (WORKDIR/scenes/<GLIMS_ID>)
    assert open_scenes(tiny_world.out_dir, gid).sizes == da.sizes
    # clear-sky mean reflectance is physical (0-1)
    mean = da.sel(band="green").where(da.clear).mean("time").values
    assert np.nanmin(mean) > -0.2 and np.nanmax(mean) < 1.2


def test_missing_and_bad_requests(tiny_world: WorldInfo, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="no scene files"):
        open_scenes(tmp_path, tiny_world.timeseries_ids[0])
    with pytest.raises(InputError, match="bit field"):
        open_scenes(tiny_world.scenes_dir, tiny_world.timeseries_ids[0], bands=("blue", "qa_pixel"))
