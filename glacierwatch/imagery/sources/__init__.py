"""Imagery sources: Earth Engine, STAC, local folder (one interface, :class:`~.base.ImagerySource`)."""

from __future__ import annotations

from glacierwatch.config import ImageryConfig, SourceName, choices
from glacierwatch.errors import ConfigError
from glacierwatch.imagery.sources.base import (
    ImagerySource,
    SourceAuthError,
    SourceError,
    SourceUnavailableError,
    TransientSourceError,
    with_retries,
)

SOURCES = tuple(s for s in choices(SourceName) if s)  # "" (no source) is not one

__all__ = ["SOURCES", "ImagerySource", "SourceAuthError", "SourceError", "SourceUnavailableError",
           "TransientSourceError", "make_source", "with_retries"]


def make_source(name: str, config: ImageryConfig | None = None) -> ImagerySource:
    """Build the named source from its configuration section (imports its client library lazily)."""
    config = config or ImageryConfig()
    if name == "earthengine":
        from glacierwatch.imagery.sources.earthengine import EarthEngineSource

        return EarthEngineSource.from_config(config.earthengine)
    if name == "stac":
        from glacierwatch.imagery.sources.stac import StacSource

        return StacSource.from_config(config.stac)
    if name == "local":
        from glacierwatch.imagery.sources.local import LocalSource

        return LocalSource.from_config(config.local)
    raise ConfigError(f"unknown imagery source {name!r}; expected one of {', '.join(SOURCES)}")
