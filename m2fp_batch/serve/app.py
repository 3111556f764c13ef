"""The HTTP front end (a light Ray Serve ingress) and the application: routes, bounded body reads,
admission (a bounded queue: 503 + Retry-After beyond it), the ``/results`` cache and the web page."""

import json
import logging
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from m2fp_batch import __version__
from m2fp_batch.annotate.palette import CIHP_CLASSES, PALETTE
from m2fp_batch.labelstudio import project as lsp
from m2fp_batch.schema import ERROR_KINDS
from m2fp_batch.serve.answers import FORMATS, HTTP_STATUS, SERVICE_ERROR_KINDS, Reply, error_body, parse_options
from m2fp_batch.serve.ml_backend import BackendError, MLBackend
from m2fp_batch.serve.replica import ParseRequest, ParserReplica
from m2fp_batch.serve.results import ResultCache
from m2fp_batch.serve.settings import LS_PREFIX, ServeSettings

log = logging.getLogger(__name__)

STATIC = {  # path -> (file in m2fp_batch/serve/static, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
RAW_TYPES = ("image/", "application/octet-stream")

api = FastAPI(title="m2fp-batch", docs_url=None, redoc_url=None, openapi_url=None)


class ApiError(Exception):
    def __init__(self, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.headers = kind, message, headers


def _plain(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def json_response(body: dict, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    text = json.dumps(body, default=_plain, allow_nan=False)
    return Response(text, status_code=status, media_type="application/json", headers=headers)


def error_response(e: ApiError) -> Response:
    return json_response(error_body(e.kind, e.message), HTTP_STATUS[e.kind], e.headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (``body_too_large``) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError("body_too_large", f"the request body is {int(declared)} bytes, above the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError("body_too_large", f"the request body is larger than the limit of {limit} bytes")
    return bytes(body)


async def read_upload(request: Request, limit: int) -> tuple[bytes, str, str | None, str | None]:
    """(image bytes, file name, format, alpha) from multipart form-data (field ``image``) or a raw image body."""
    body = await read_body(request, limit)
    ctype = request.headers.get("content-type", "").lower()
    q = request.query_params
    if ctype.startswith(RAW_TYPES):
        return body, "upload", q.get("format"), q.get("alpha")
    if not ctype.startswith("multipart/form-data"):
        raise ApiError("invalid_request", "send multipart/form-data with the photo in the field 'image'")

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    except (MultiPartException, ValueError, KeyError) as e:
        raise ApiError("invalid_request", f"the multipart form cannot be read: {e}") from e
    image = form.get("image")
    if image is None:
        raise ApiError("missing", "no 'image' field in the form: send the photo as multipart field 'image'")
    if isinstance(image, UploadFile):
        data, name = await image.read(), image.filename or "upload"
    else:
        data, name = image.encode(), "upload"
    fmt, alpha = form.get("format", q.get("format")), form.get("alpha", q.get("alpha"))
    return data, name, fmt if isinstance(fmt, str) else None, alpha if isinstance(alpha, str) else None


def _static(path: str) -> Response:
    if path not in STATIC:
        return error_response(ApiError("not_found", f"no such page {path!r}"))
    name, ctype = STATIC[path]
    data = resources.files("m2fp_batch.serve").joinpath("static", name).read_bytes()
    return Response(data, media_type=ctype, headers={"Cache-Control": "no-cache"})


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Frontend:
    """Routes; holds the admission count and the results cache (one front-end replica).

    Serve pickles this class when it is decorated: everything it uses is defined above it."""

    def __init__(self, parser, settings: ServeSettings) -> None:
        self.parser = parser
        self.settings = settings
        self.cache = ResultCache(settings.cache_entries, settings.cache_bytes)
        self.admitted = 0
        self._info: dict | None = None
        self._model: dict | None = None
        self.ls = MLBackend(settings, self._send)

    def _overloaded(self) -> ApiError:
        return ApiError(
            "overloaded",
            f"the server is busy ({self.admitted} requests admitted, capacity {self.settings.capacity}); "
            f"retry in {self.settings.retry_after_s} s",
            {"Retry-After": str(self.settings.retry_after_s)},
        )

    @api.post("/api/parse")
    async def parse(self, request: Request) -> Response:
        if self.admitted >= self.settings.capacity:
            return error_response(self._overloaded())
        self.admitted += 1
        try:
            return await self._parse(request)
        except ApiError as e:
            return error_response(e)
        finally:
            self.admitted -= 1

    async def _send(self, req: ParseRequest) -> Reply:
        """A replica's answer; a full queue or a lost replica as the ApiError of a 503."""
        try:
            return await self.parser.remote(req)
        except BackPressureError as e:
            raise self._overloaded() from e
        except (RayActorError, DeploymentUnavailableError) as e:
            raise ApiError(
                "unavailable",
                f"the model replica is not available ({type(e).__name__}); retry in {self.settings.retry_after_s} s",
                {"Retry-After": str(self.settings.retry_after_s)},
            ) from e

    async def _parse(self, request: Request) -> Response:
        data, name, fmt, alpha = await read_upload(request, self.settings.max_body_bytes)
        try:
            fmt, a = parse_options(fmt, alpha)
        except ValueError as e:
            raise ApiError("invalid_request", str(e)) from e
        reply = await self._send(ParseRequest(data, fmt, a, name))
        headers = {} if reply.inference_time is None else {"X-Inference-Time": f"{reply.inference_time:.4f}"}
        if reply.png is not None:
            return Response(reply.png, media_type="image/png", headers=headers)
        body = reply.body or {}
        if reply.stash:
            rid = self.cache.new_id()
            for suffix, png in reply.stash.items():
                self.cache.put(rid + suffix, png)
            body["result_url"] = f"/results/{rid}.png"
            body["people_mask_url"] = f"/results/{rid}_people_mask.png"
        return json_response(body, reply.status, headers)

    @api.get("/results/{name}")
    async def result(self, name: str) -> Response:
        png = self.cache.get(name)
        if png is None:
            return error_response(ApiError("not_found", f"no result {name!r} (results are kept in a bounded cache)"))
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @api.get("/healthz")
    async def healthz(self) -> Response:
        return json_response({"status": "ok", "admitted": self.admitted, "capacity": self.settings.capacity})

    async def _model_info(self) -> dict:
        if self._model is None:
            self._model = await self.parser.info.remote()
        return self._model

    # -- the Label Studio ML backend (serve/ml_backend.py)
    async def _ls(self, request: Request, handler, admit: bool = False) -> Response:
        """Basic auth, the JSON body (bounded), admission for ``/predict``; errors as JSON, never a 500."""
        if not self.ls.authorized(request.headers.get("authorization")):
            body = error_body("unauthorized", "the ML backend needs basic auth (serve --ls-auth-env): wrong or missing")
            return json_response(body, 401, {"WWW-Authenticate": 'Basic realm="m2fp-batch"'})
        if admit and self.admitted >= self.settings.capacity:
            return error_response(self._overloaded())
        self.admitted += admit
        try:
            raw = await read_body(request, self.settings.max_body_bytes) if request.method == "POST" else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except ValueError as e:
                raise ApiError("invalid_request", f"the body is not JSON: {e}") from e
            if not isinstance(body, dict):
                raise ApiError("invalid_request", "the body is not a JSON object")
            return json_response(await handler(body))
        except BackendError as e:
            return error_response(ApiError(e.kind, e.message))
        except ApiError as e:
            return error_response(e)
        finally:
            self.admitted -= admit

    async def _ls_version(self) -> str:
        return lsp.model_version(await self._model_info())

    @api.get(LS_PREFIX + "/health")
    async def ls_health(self, request: Request) -> Response:
        async def handle(_body: dict) -> dict:
            return self.ls.health()

        return await self._ls(request, handle)

    @api.post(LS_PREFIX + "/setup")
    async def ls_setup(self, request: Request) -> Response:
        async def handle(body: dict) -> dict:
            return self.ls.setup(body, await self._ls_version())

        return await self._ls(request, handle)

    @api.post(LS_PREFIX + "/predict")
    async def ls_predict(self, request: Request) -> Response:
        async def handle(body: dict) -> dict:
            return await self.ls.predict(body, await self._ls_version())

        return await self._ls(request, handle, admit=True)

    @api.post(LS_PREFIX + "/webhook")
    async def ls_webhook(self, request: Request) -> Response:
        async def handle(body: dict) -> dict:
            return self.ls.webhook(body)

        return await self._ls(request, handle)

    @api.get("/api/info")
    async def info(self) -> Response:
        if self._info is None:
            model = await self._model_info()
            self._info = {
                "service": "m2fp-batch",
                "version": __version__,
                "model": model,
                "classes": model["classes"],
                "palette": {name: [int(v) for v in PALETTE[i]] for i, name in enumerate(CIHP_CLASSES)},
                "formats": list(FORMATS),
                "error_kinds": {
                    **{k: v for k, v in ERROR_KINDS.items() if k in HTTP_STATUS},
                    **SERVICE_ERROR_KINDS,
                },
                "limits": {
                    "max_body_bytes": self.settings.max_body_bytes,
                    "max_pixels": self.settings.engine.max_pixels,
                    "min_side": self.settings.engine.min_side,
                    "max_batch": self.settings.max_batch,
                    "replicas": self.settings.replicas,
                    "capacity": self.settings.capacity,
                },
            }
        return json_response(self._info)

    @api.get("/")
    async def index(self) -> Response:
        return _static("/")

    @api.get("/static/{name}")
    async def static(self, name: str) -> Response:
        return _static(f"/static/{name}")


def build_app(settings: ServeSettings):
    """The Serve application: ``Frontend`` (HTTP, one replica, no CPU) -> ``ParserReplica`` x ``replicas``."""
    parser = serve.deployment(ParserReplica).options(
        name="ParserReplica",
        num_replicas=settings.replicas,
        max_ongoing_requests=settings.replica_ongoing,
        max_queued_requests=settings.capacity,
        backpressure_config={"status_code": 503, "retry_after_s": settings.retry_after_s},
        ray_actor_options={"num_cpus": settings.replica_threads, "num_gpus": settings.replica_gpus},
        health_check_period_s=10,
    )
    front = Frontend.options(
        max_ongoing_requests=settings.capacity + 64,
        max_queued_requests=256,
        backpressure_config={"status_code": 503, "retry_after_s": settings.retry_after_s},
    )
    return front.bind(parser.bind(settings), settings)
