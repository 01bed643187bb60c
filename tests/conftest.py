"""Shared pytest fixtures: a tiny synthetic world (built once per session) and the shared real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from glacierwatch.synth import WorldInfo, make_world

#: Real reference data shared between checkouts: ../shared/data next to the repository.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: Parameters of the tiny world: 6 training glaciers (one per region, incl. a growing one) and
#: 2 time-series glaciers (Swiss Alps, Andes) with 2 scenes a year 2001-2022 (Landsat 5, 7 with and
#: without SLC, 8 and 9). About 120 scenes, built in ~3 s.
TINY_WORLD = {"n_training": 6, "n_timeseries": 2, "seed": 0, "first_year": 2001, "last_year": 2022,
              "scenes_per_year": 2}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip, saying why, where torch sees no CUDA device (CI and the CPU machines)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> WorldInfo:
    """A small synthetic world in a session temp folder (see :data:`TINY_WORLD`); read-only for tests."""
    out = tmp_path_factory.mktemp("tiny_world")
    return make_world(out, progress=False, **TINY_WORLD)


@pytest.fixture
def shared_data() -> Path:
    """Path of ../shared/data (real reference data); skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not present: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_catalog(tiny_world: WorldInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inventory (default filters) and scene catalog of the tiny world, built once per session.

    Returns the paths ``inventory``, ``catalog`` and ``dem`` (the world's DEM folder); read-only for tests.
    """
    from glacierwatch.catalog import build_catalog
    from glacierwatch.config import InventoryConfig
    from glacierwatch.inventory import read_outlines, select_glaciers, write_inventory

    work = tmp_path_factory.mktemp("tiny_catalog")
    selection = select_glaciers([read_outlines(tiny_world.outlines)], config=InventoryConfig())
    write_inventory(selection, work / "inventory.parquet")
    build_catalog(tiny_world.scenes_dir, work / "catalog.parquet", inventory=work / "inventory.parquet",
                  progress=False)
    return {"inventory": work / "inventory.parquet", "catalog": work / "catalog.parquet",
            "dem": tiny_world.dem_dir}


@pytest.fixture()
def torch_two_threads():
    """Run a test with torch on 2 threads (as on CI), restoring the previous setting afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)
