"""glacierwatch: mountain glacier area change from Landsat imagery.

The package is laid out by pipeline stage (``inventory``, ``imagery``, ``catalog``, ``chips``,
``model``, ``timeseries``, ``trends``, ``report``) plus small shared modules (``config``,
``landsat``, ``grid``, ``io``, ``tasks``, ``errors``, ``ids``).
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``glacierwatch.open_scenes`` without importing xarray until it is used."""
    if name == "open_scenes":
        from glacierwatch.scenes_xr import open_scenes

        return open_scenes
    raise AttributeError(f"module 'glacierwatch' has no attribute {name!r}")
