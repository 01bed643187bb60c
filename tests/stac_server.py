"""A small STAC API on the loopback interface, for tests that must not touch the internet.

:class:`StacTestServer` (``http.server.ThreadingHTTPServer`` on 127.0.0.1, a free port, in a daemon
thread) answers what pystac-client and GDAL's ``/vsicurl/`` ask:

* ``/`` — a landing page (STAC API Catalog) with ``conformsTo`` (core, item-search and, as chosen, the
  query and filter extensions) and ``search`` links for GET and POST;
* ``/search`` — GET and POST item search over the items given per collection: ``collections``,
  ``bbox`` (intersecting the item's bbox), ``datetime`` (closed intervals, ``..`` open), the
  ``query`` extension (lt, lte, gt, gte, eq, neq, in), CQL2-JSON ``filter`` comparisons joined by
  ``and``, and ``limit`` (page size) with ``next`` links: a POST link with the full body and a
  ``token`` (``merge: false``, as Planetary Computer does) or a GET link with the token in the URL;
* ``/files/...`` — bytes registered with :meth:`StacTestServer.add_file`, with HEAD and byte-range
  GET (206) as GDAL uses; faults can be injected per path (a status for the next N requests, a
  status for every request, a status only for range requests that do not start at byte 0), and
  asset requests can be required to carry a ``token`` query parameter that is not expired (HTTP
  403 as Azure Blob Storage answers an expired SAS);
* ``/sas/<account>/<container>`` — a Planetary Computer SAS token endpoint stand-in
  (``{"msft:expiry": ..., "token": ...}``), so the real ``planetary_computer.sign`` code runs offline.

Every request is recorded (:attr:`StacTestServer.requests`) so tests can assert what was sent.
"""

from __future__ import annotations

import copy
import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

STAC_API = "https://api.stacspec.org/v1.0.0"
CONFORMANCE = {
    "core": f"{STAC_API}/core",
    "item-search": f"{STAC_API}/item-search",
    "query": f"{STAC_API}/item-search#query",
    "filter": f"{STAC_API}/item-search#filter",
    "features": f"{STAC_API}/ogcapi-features",
    "collections": f"{STAC_API}/collections",
}


@dataclass
class Logged:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any = None
    range: str | None = None


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: every request
    ranged_only: bool = False


@dataclass
class StacTestServer:
    """Loopback STAC API + file server (see the module docstring). Use as a context manager."""

    conformance: tuple[str, ...] = ("core", "item-search", "query", "filter", "features", "collections")
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    require_token: bool = False
    expired_tokens: set[str] = field(default_factory=set)
    requests: list[Logged] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._files: dict[str, bytes] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._search_faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._sas_count = 0
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- set-up

    @property
    def url(self) -> str:
        """Root URL, ``http://127.0.0.1:<port>``."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def add_file(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``/files/<path>``; returns its URL."""
        key = "/files/" + path.lstrip("/")
        self._files[key] = data
        return self.url + key

    def add_items(self, collection: str, items: Iterable[Mapping[str, Any]]) -> None:
        """Append items (served in this order, duplicates included) to ``collection``."""
        self.items.setdefault(collection, []).extend(copy.deepcopy(dict(i)) for i in items)

    def fail(self, url_or_path: str, status: int, *, times: int | None = None, ranged_only: bool = False) -> None:
        """Answer ``status`` to the next ``times`` requests of a file (every request if None);
        ``ranged_only``: only to range requests that do not start at byte 0 (reads after the header)."""
        path = urlparse(url_or_path).path
        self._faults.setdefault(path, []).append(_Fault(status, times, ranged_only))

    def clear_faults(self) -> None:
        """Forget every injected fault."""
        with self._lock:
            self._faults.clear()
            self._search_faults.clear()

    def fail_search(self, status: int, *, times: int | None = None) -> None:
        """Answer ``status`` to the next ``times`` search requests (every one if None)."""
        self._search_faults.append(_Fault(status, times))

    def file_requests(self, url_or_path: str) -> list[Logged]:
        path = urlparse(url_or_path).path
        return [r for r in self.requests if r.path == path]

    def search_requests(self) -> list[Logged]:
        return [r for r in self.requests if r.path == "/search"]

    @property
    def sas_requests(self) -> int:
        return self._sas_count

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> StacTestServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_HEAD(self) -> None:
                server._handle(self, "HEAD")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="stac-test-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ---------------------------------------------------------------- answers

    def _handle(self, h: http.server.BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(h.path)
        body: Any = None
        if method == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            raw = h.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = raw.decode("utf-8", "replace")
        with self._lock:
            self.requests.append(Logged(method, parsed.path, parse_qs(parsed.query), body, h.headers.get("Range")))
        try:
            if parsed.path in ("", "/"):
                self._json(h, method, self._landing())
            elif parsed.path == "/conformance":
                self._json(h, method, {"conformsTo": self._conforms_to()})
            elif parsed.path == "/search":
                fault = self._take_fault(self._search_faults, ranged=False)
                if fault is not None:
                    self._status(h, method, fault, b'{"code":"ServerError","description":"injected"}')
                    return
                params = body if method == "POST" and isinstance(body, dict) else self._get_params(parse_qs(parsed.query))
                self._json(h, method, self._search(params, method), content_type="application/geo+json")
            elif parsed.path.startswith("/sas/"):
                with self._lock:
                    self._sas_count += 1
                    n = self._sas_count
                expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
                self._json(h, method, {"msft:expiry": expiry.isoformat().replace("+00:00", "Z"),
                                       "token": f"sv=2021-06-08&se=x&sp=rl&sig=token{n}"})
            elif parsed.path in self._files:
                self._file(h, method, parsed.path, parse_qs(parsed.query))
            else:
                self._status(h, method, 404, b'{"code":"NotFound"}')
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _conforms_to(self) -> list[str]:
        return [CONFORMANCE[c] for c in self.conformance] + [
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"]

    def _landing(self) -> dict[str, Any]:
        root = self.url
        return {
            "type": "Catalog", "stac_version": "1.0.0", "id": "glacierwatch-test-api",
            "title": "glacierwatch test STAC API", "description": "Loopback STAC API for tests",
            "conformsTo": self._conforms_to(),
            "links": [
                {"rel": "self", "type": "application/json", "href": root + "/"},
                {"rel": "root", "type": "application/json", "href": root + "/"},
                {"rel": "conformance", "type": "application/json", "href": root + "/conformance"},
                {"rel": "data", "type": "application/json", "href": root + "/collections"},
                {"rel": "search", "type": "application/geo+json", "href": root + "/search", "method": "GET"},
                {"rel": "search", "type": "application/geo+json", "href": root + "/search", "method": "POST"},
            ],
        }

    @staticmethod
    def _get_params(query: dict[str, list[str]]) -> dict[str, Any]:
        params: dict[str, Any] = {k: v[-1] for k, v in query.items()}
        if "collections" in params:
            params["collections"] = params["collections"].split(",")
        if "bbox" in params:
            params["bbox"] = [float(v) for v in params["bbox"].split(",")]
        for key in ("query", "filter"):
            if isinstance(params.get(key), str):
                try:
                    params[key] = json.loads(params[key])
                except json.JSONDecodeError:
                    pass  # cql2-text: kept as text (only recorded)
        return params

    def _search(self, params: Mapping[str, Any], method: str) -> dict[str, Any]:
        collections = params.get("collections") or list(self.items)
        matches = [item for c in collections for item in self.items.get(c, []) if _matches(item, params)]
        limit = int(params.get("limit") or 10)
        offset = int(str(params.get("token") or "page:0").split(":")[1])
        page = matches[offset:offset + limit]
        links: list[dict[str, Any]] = [{"rel": "root", "type": "application/json", "href": self.url + "/"}]
        if offset + limit < len(matches):
            token = f"page:{offset + limit}"
            if method == "POST":
                links.append({"rel": "next", "type": "application/geo+json", "href": self.url + "/search",
                              "method": "POST", "body": {**params, "token": token}, "merge": False})
            else:
                query = {k: (",".join(map(str, v)) if isinstance(v, list) else
                             json.dumps(v) if isinstance(v, dict) else v) for k, v in params.items()}
                links.append({"rel": "next", "type": "application/geo+json",
                              "href": self.url + "/search?" + urlencode({**query, "token": token}), "method": "GET"})
        return {"type": "FeatureCollection", "features": page, "links": links, "numberReturned": len(page),
                "numberMatched": len(matches)}

    def _take_fault(self, faults: list[_Fault], *, ranged: bool) -> _Fault | None:
        with self._lock:
            for fault in faults:
                if fault.ranged_only and not ranged:
                    continue
                if fault.remaining is None:
                    return fault
                if fault.remaining > 0:
                    fault.remaining -= 1
                    return fault
        return None

    def _file(self, h: http.server.BaseHTTPRequestHandler, method: str, path: str,
              query: dict[str, list[str]]) -> None:
        data = self._files[path]
        rng = h.headers.get("Range")
        start, end = 0, len(data) - 1
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start = int(a)
            end = min(int(b), len(data) - 1) if b else len(data) - 1
        fault = self._take_fault(self._faults.get(path, []), ranged=bool(rng) and start > 0)
        if fault is not None:
            self._status(h, method, fault.status, b"<Error><Code>InternalError</Code></Error>")
            return
        if self.require_token:
            token = (query.get("token") or [None])[-1]
            if token is None or token in self.expired_tokens:
                # what Azure Blob Storage answers for an expired or missing SAS
                self._status(h, method, 403, b"<Error><Code>AuthenticationFailed</Code><Message>Signed expiry "
                                             b"time must be after signed start time</Message></Error>")
                return
        if rng:
            chunk = data[start:end + 1]
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            chunk = data
            h.send_response(200)
        h.send_header("Content-Type", "image/tiff; application=geotiff; profile=cloud-optimized")
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(chunk)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(chunk)

    @staticmethod
    def _json(h: http.server.BaseHTTPRequestHandler, method: str, data: Any,
              content_type: str = "application/json") -> None:
        payload = json.dumps(data).encode()
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(payload)

    @staticmethod
    def _status(h: http.server.BaseHTTPRequestHandler, method: str, fault: _Fault | int, payload: bytes) -> None:
        status = fault.status if isinstance(fault, _Fault) else fault
        h.send_response(status)
        h.send_header("Content-Type", "application/xml" if payload.startswith(b"<") else "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(payload)


# -------------------------------------------------------------------- search predicates

def _item_bbox(item: Mapping[str, Any]) -> list[float]:
    if "bbox" in item:
        return [float(v) for v in item["bbox"]]
    coords: list[list[float]] = []

    def walk(value: Any) -> None:
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], (int, float)):
            coords.append([float(value[0]), float(value[1])])
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk((item.get("geometry") or {}).get("coordinates"))
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    return [min(xs), min(ys), max(xs), max(ys)]


def _parse_time(text: str) -> dt.datetime | None:
    if text in ("", ".."):
        return None
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _compare(op: str, value: Any, target: Any) -> bool:
    if value is None:
        return False
    ops = {"lt": lambda: value < target, "lte": lambda: value <= target, "gt": lambda: value > target,
           "gte": lambda: value >= target, "eq": lambda: value == target, "neq": lambda: value != target,
           "in": lambda: value in target, "<": lambda: value < target, "<=": lambda: value <= target,
           ">": lambda: value > target, ">=": lambda: value >= target, "=": lambda: value == target}
    if op not in ops:
        raise ValueError(f"unsupported operator {op!r}")
    return bool(ops[op]())


def _cql2(expr: Mapping[str, Any], props: Mapping[str, Any]) -> bool:
    op = expr["op"]
    if op == "and":
        return all(_cql2(a, props) for a in expr["args"])
    prop, target = expr["args"]
    return _compare(op, props.get(prop["property"]), target)


def _matches(item: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    props = item.get("properties", {})
    bbox = params.get("bbox")
    if bbox:
        ib = _item_bbox(item)
        if ib[2] < bbox[0] or ib[0] > bbox[2] or ib[3] < bbox[1] or ib[1] > bbox[3]:
            return False
    interval = params.get("datetime")
    if interval:
        first, _, last = str(interval).partition("/")
        when = _parse_time(props["datetime"])
        lo, hi = _parse_time(first), _parse_time(last or first)
        if (lo and when < lo) or (hi and when > hi):
            return False
    for prop, ops in (params.get("query") or {}).items():
        for op, target in ops.items():
            if not _compare(op, props.get(prop), target):
                return False
    flt = params.get("filter")
    if isinstance(flt, Mapping) and not _cql2(flt, props):
        return False
    return True
