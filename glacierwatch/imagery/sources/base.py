"""The interface every imagery source implements, its typed errors, and one retry rule.

A source answers two questions for a glacier: which images exist (:meth:`ImagerySource.search`)
and what their pixels are on the glacier grid (:meth:`ImagerySource.read`), plus the DEM
(:meth:`ImagerySource.read_dem`). Everything else — grouping images of one overpass, mosaicking,
writing files, manifests, failure ledgers, resuming — is done once, in :mod:`glacierwatch.imagery.fetch`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from glacierwatch.errors import GlacierwatchError
from glacierwatch.grid import GlacierGrid
from glacierwatch.imagery.records import GlacierRequest, SceneRecord

log = logging.getLogger(__name__)
T = TypeVar("T")


class SourceError(GlacierwatchError):
    """A provider answered, but the image cannot be used (missing band, 404, malformed response).
    Retrying will not help; the scene goes to the failure ledger."""


class TransientSourceError(SourceError):
    """A failure that may pass: quota or rate limit (429), server error (5xx), timeout, dropped
    connection, an expired signature. Retried with exponential back-off, then ledgered."""


class SourceAuthError(SourceError):
    """The provider refused the credentials (401/403 that re-signing does not cure, no EE project).
    Not retried, and it ends the glacier's fetch at once: every other request would fail the same way."""


class SourceUnavailableError(GlacierwatchError):
    """The optional client library of a source is not installed (from a clone: ``pip install -e '.[stac]'``)."""


@runtime_checkable
class ImagerySource(Protocol):
    """What :func:`glacierwatch.imagery.fetch.fetch_imagery` needs from a source.

    ``name`` is ``earthengine``, ``stac`` or ``local``. Record ``handle`` values must be plain JSON
    (they are saved in the fetch plan, so a rerun does not search again).
    """

    name: str

    def search(self, request: GlacierRequest) -> list[SceneRecord]:
        """Images over ``request.bbox`` between ``request.start`` and ``request.end`` (inclusive),
        Landsat 5/7/8/9 C2 L2 Tier 1, de-duplicated by provider id, with their USGS properties."""
        ...

    def read(self, record: SceneRecord, grid: GlacierGrid) -> dict[str, np.ndarray]:
        """The image's pixels on ``grid``: uint16 DN per common band name (``blue`` ... ``lwir``,
        ``qa_pixel``; ``coastal`` too where the sensor has it), fill = 0 (QA fill bit for qa_pixel)."""
        ...

    def read_dem(self, request: GlacierRequest) -> np.ndarray | None:
        """Elevation (float32, m, NaN = no data) on ``request.grid``; None if the source has no DEM."""
        ...


def with_retries(func: Callable[[], T], *, what: str, attempts: int = 5, base_delay_s: float = 2.0,
                 max_delay_s: float = 120.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``func``; on :class:`TransientSourceError` wait ``base_delay_s`` x 2^k (plus up to 50 %
    random jitter, capped at ``max_delay_s``) and try again, at most ``attempts`` times in all.
    Other errors pass through at once."""
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except TransientSourceError as exc:
            if attempt == attempts:
                raise
            delay = min(max_delay_s, base_delay_s * 2 ** (attempt - 1)) * (1.0 + 0.5 * random.random())
            log.info("%s: %s; retry %d/%d in %.1f s", what, exc, attempt, attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
