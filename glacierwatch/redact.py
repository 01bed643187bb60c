"""Keep signed-URL secrets out of logs: a logging filter that scrubs query-string credentials, and
the routing of rasterio/GDAL messages through Python logging (so they are scrubbed too).

Signed URLs carry their credentials in the query string: Azure SAS tokens (Planetary Computer:
``sig=``, ``se=``, ``st=``, ``sp=``, ``sv=``, ``skoid=`` ...), AWS SigV4 (``X-Amz-Signature=``,
``X-Amz-Credential=``, ``X-Amz-Security-Token=`` ...), Google (``X-Goog-Signature=``) and generic
``token=`` / ``access_token=`` / ``key=`` parameters. :func:`redact` replaces their values with
``REDACTED``; the URL's host and path stay, so a message still says which file failed.

:func:`install` scrubs every log record of the process (a record factory, so handlers added later
are covered) and routes rasterio/GDAL warnings (which carry the full URL) through logging;
the CLI calls it once at start. Failure ledgers scrub their messages with :func:`redact` too.
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: Query parameters whose values are credentials (case-insensitive).
SECRET_PARAMS = ("sig", "se", "st", "sp", "sv", "sr", "spr", "srt", "ss", "skoid", "sktid", "skt", "ske",
                 "sks", "skv", "sdd", "signature", "token", "access_token", "api_key", "apikey", "key",
                 "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-amz-date", "x-amz-expires",
                 "x-amz-signedheaders", "x-goog-signature", "x-goog-credential", "awsaccesskeyid",
                 "expires", "policy", "key-pair-id")

_SECRET_ALTERNATIVES = "|".join(re.escape(p) for p in SECRET_PARAMS)
_PARAM_RE = re.compile(r"(?P<lead>[?&;]|&amp;)(?P<name>(?:" + _SECRET_ALTERNATIVES + r"))=(?P<value>[^&\s'\"<>#]*)",
                       re.IGNORECASE)
# a bare SAS token outside a URL ("sv=2021-06-08&ss=b&...&sig=..."), e.g. in an environment dump
_BARE_SIG_RE = re.compile(r"\b(sig|X-Amz-Signature|X-Goog-Signature)=(?!REDACTED)[^&\s'\"<>#]+", re.IGNORECASE)

REDACTED = "REDACTED"


def redact(text: str) -> str:
    """``text`` with the values of credential query parameters replaced by ``REDACTED``."""
    if "=" not in text:
        return text
    text = _PARAM_RE.sub(lambda m: f"{m['lead']}{m['name']}={REDACTED}", text)
    return _BARE_SIG_RE.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, BaseException):
        return redact(str(value))
    return value


class RedactingFilter(logging.Filter):
    """Scrubs signed-URL credentials from a record's message, arguments and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        elif isinstance(record.msg, BaseException):
            record.msg = redact(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        if record.exc_info and record.exc_info[1] is not None:
            # format the traceback now, scrubbed; the handler then uses exc_text as is
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()
_installed = False

#: Loggers third-party libraries write signed URLs to (GDAL messages arrive at rasterio._env).
THIRD_PARTY_LOGGERS = ("rasterio", "rasterio._env", "rasterio._err", "rasterio._io", "rasterio.env",
                       "rasterio._base", "py.warnings", "pystac_client", "pystac", "planetary_computer",
                       "urllib3", "urllib3.connectionpool", "requests", "botocore", "fsspec", "aiohttp")


def route_gdal_messages() -> None:
    """Scrub what rasterio/GDAL (and the HTTP clients under them) log: rasterio's GDAL error
    handler sends GDAL warnings and errors to the ``rasterio._env`` logger; Python warnings go to
    ``py.warnings`` through :func:`logging.captureWarnings`. Each of those loggers gets the filter
    (it also applies to records that only propagate through, via the record factory of :func:`install`)."""
    logging.captureWarnings(True)
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def install(logger: logging.Logger | None = None) -> RedactingFilter:
    """Scrub every log record of this process, whichever logger or handler it goes to.

    Installs a log-record factory that scrubs each record as it is made (so handlers added later
    are covered too), adds the filter to ``logger``'s handlers (default: the root logger's) and
    routes rasterio/GDAL messages (:func:`route_gdal_messages`). Safe to call more than once."""
    global _installed
    if not _installed:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _FILTER.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    route_gdal_messages()
    return _FILTER
