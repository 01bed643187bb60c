"""Console logging for the command line: one handler on the root logger, written through tqdm so a
log line never breaks a progress bar, and each distinct message printed once per run.

The stage modules only call ``logging.getLogger(__name__)``; the CLI (``glacierwatch.cli``) wraps a
verb's handler in :func:`console_logging`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: Verbosity -> root level. By default only warnings are logged: what a verb did is printed once, on
#: stdout, by the verb itself, and the stages' INFO lines (the same summaries, per-glacier steps) need -v.
LEVELS = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


def level_for(verbosity: int) -> int:
    """Logging level of a verbosity (count of ``-v`` minus count of ``-q``), clipped to the table."""
    return LEVELS[max(min(LEVELS), min(max(LEVELS), verbosity))]


class OnceFilter(logging.Filter):
    """Let each (logger, level, message) through once: a warning repeated for every glacier or batch
    (e.g. "bf16 autocast requested but not supported on cpu") is printed on its first occurrence only.
    The count of repeats is kept so the run can say how many lines it held back."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        count = self.seen.get(key, 0)
        self.seen[key] = count + 1
        return count == 0

    @property
    def repeats(self) -> int:
        """Records held back because they had been printed already."""
        return sum(n - 1 for n in self.seen.values())


@contextmanager
def console_logging(verbosity: int = 0) -> Iterator[OnceFilter]:
    """Route log records (and Python warnings) of the block to stderr through ``tqdm.write``.

    Installs one stream handler on the root logger for the duration of the block and removes it
    afterwards, so calling the CLI's ``main`` several times in one process (tests) stacks nothing.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    root = logging.getLogger()
    level = level_for(verbosity)
    fmt = "%(levelname)s %(name)s: %(message)s" if level <= logging.DEBUG else "%(levelname)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    once = OnceFilter()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    before = set(root.handlers)
    try:
        with warnings.catch_warnings(), logging_redirect_tqdm(loggers=[root]):
            warnings.simplefilter("default")  # each Python warning once per location, as a log record
            # deprecation notices of the libraries underneath are for their developers, not our users
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
            # rasterio's NotGeoreferencedWarning, raised spuriously when warps run in threads (its
            # warning filter is not thread-safe); every raster glacierwatch writes is georeferenced
            warnings.filterwarnings("ignore", message="Dataset has no geotransform")
            # logging_redirect_tqdm swapped our handler for its own, which does not copy filters; other
            # handlers (a test's log capture) are left to see every record
            for h in root.handlers:
                if h not in before:
                    h.addFilter(once)
            yield once
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)
