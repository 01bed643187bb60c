"""Imagery stage: Landsat C2 L2 scenes and a DEM per glacier, from Earth Engine, STAC or a local
folder, written as standard scene files on the glacier's grid (see docs/imagery.md)."""

from glacierwatch.imagery.fetch import GlacierFetch, fetch_glacier, fetch_imagery, read_manifest, retry_failed
from glacierwatch.imagery.records import GlacierRequest, SceneRecord, requests_from_inventory
from glacierwatch.imagery.standard import mosaic, warp_to_grid, write_dem, write_standard_scene
from glacierwatch.layout import FetchPaths

__all__ = ["FetchPaths", "GlacierFetch", "GlacierRequest", "SceneRecord", "fetch_glacier", "fetch_imagery",
           "mosaic", "read_manifest", "requests_from_inventory", "retry_failed", "warp_to_grid", "write_dem",
           "write_standard_scene"]
