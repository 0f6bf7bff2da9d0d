"""The FastAPI app: the upload page, the JSON API and offline OpenAPI docs.

Error answers are JSON, always `{"error": {"code", "message", "status"}}` (per file inside a
classify answer). Status codes:

- 400: empty, no-files, too-many-files, unexpected-field, bad-multipart, bad-request,
  no-category, bad-host: the request itself is wrong.
- 403: save-disabled (start with --allow-save), cross-origin (a page of another site posted).
- 404: not-found.
- 413: file-too-large (one file over the per-file cap), request-too-large (the body over the
  request cap), too-large (an image over the catalog's byte cap), request-too-many-pixels (the
  images' headers add up to more pixels than one request may decode).
- 415: not-multipart (not a form upload), not-an-image (text or HTML), unsupported-format (not
  JPEG, PNG, WebP or GIF). Judged by the bytes, never by the name or Content-Type.
- 422: too-many-pixels (a decompression bomb, or over the server's pixels per image; judged
  from the header, nothing decoded), too-small, truncated, corrupt, unknown-category.
- 429: busy (other requests are decoding as many pixels as the server allows at once).
- 500: internal (a bug; the server log has the traceback).

`POST /api/classify` answers 200 when every file was classified, 207 when some were and some
were refused (each result says which), and the first refusal's status when none was.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from catalog.db import Catalog
from catalog.errors import ImageRejected, SlashcatError, UnknownCategory
from classifier.predict import Classifier
from cli.web.uploads import (
    PixelBudget,
    UploadError,
    UploadLimits,
    drain,
    header_pixels,
    read_form,
)

log = logging.getLogger("slashcat.web")

STATIC = Path(str(resources.files("cli.web") / "static"))
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
REASON_STATUS = {
    "empty": 400,
    "too-large": 413,
    "not-an-image": 415,
    "unsupported-format": 415,
    "too-many-pixels": 422,
    "too-small": 422,
    "truncated": 422,
    "corrupt": 422,
}
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class WebConfig:
    limits: UploadLimits = field(default_factory=UploadLimits)
    top_k: int = 3
    allow_save: bool = False
    store_name: str = "uploads"
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # ("*",) when bound to a public address
    warm_up: bool = True


# ---- response models (they document the API in /openapi.json) ----


class ErrorInfo(BaseModel):
    code: str = Field(description="A stable short code, e.g. not-an-image, file-too-large.")
    message: str = Field(description="One line for a person.")
    status: int = Field(description="The HTTP status this error answers with on its own.")


class ErrorBody(BaseModel):
    error: ErrorInfo


class Guess(BaseModel):
    category: str
    confidence: float = Field(description="Calibrated probability, 0..1.")


class FileResult(BaseModel):
    filename: str = Field(description="The name the client sent (display only; never trusted).")
    ok: bool
    bytes: int
    sha256: str | None = None
    top_k: list[Guess] = Field(default_factory=list)
    error: ErrorInfo | None = None


class ClassifyResult(BaseModel):
    model_version: str
    results: list[FileResult]
    error: ErrorInfo | None = Field(None, description="Set when no file could be classified.")


class ModelInfo(BaseModel):
    version: str
    image_size: int
    classes: list[str]


class LimitsInfo(BaseModel):
    max_file_bytes: int
    max_files: int
    max_request_bytes: int


class Batching(BaseModel):
    model_calls: int = Field(description="Batched model calls since start-up.")
    requests_served: int = Field(description="Classify requests those calls answered.")


class Health(BaseModel):
    status: str
    model: ModelInfo
    top_k: int
    limits: LimitsInfo
    allow_save: bool
    batching: Batching


class Saved(BaseModel):
    product_id: int
    image_sha256: str
    image_status: str = Field(description="new, or duplicate when the bytes were stored before.")
    category: str
    label_id: int
    store: str


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "status": status}}, status_code=status
    )


def rejected_info(exc: ImageRejected, filename: str) -> ErrorInfo:
    status = REASON_STATUS.get(exc.reason, 422)
    return ErrorInfo(code=exc.reason, message=f"{filename}: {exc}", status=status)


@dataclass
class _Job:
    images: Any  # np.ndarray (n, size, size, 3)
    titles: list[str | None] | None = None  # the products' titles, if the request gave one
    done: threading.Event = field(default_factory=threading.Event)
    probs: Any = None
    error: BaseException | None = None


class Predictor:
    """The warm model, shared by the request threads.

    Decoding and validation run in each request's thread, in parallel. The model runs one
    batch at a time: a thread that gets the model lock predicts every image waiting at that
    moment (its own and other requests'), so concurrent requests share one batched call.
    """

    MAX_BATCH = 64

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self._model_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._pending: list[_Job] = []
        self.batches = 0  # model calls
        self.jobs = 0  # requests they served

    def classify(self, blobs: Sequence[bytes], top_k: int,
                 title: str | None = None) -> list[Any]:
        """For each blob its top-k [(category, probability)] or the ImageRejected; `title`
        (the same for every blob) is read by a title-aware model, ignored by others."""
        import numpy as np

        clf = self.classifier
        prepared: list[Any] = clf.prepare_many(blobs)
        good = [p for p in prepared if not isinstance(p, ImageRejected)]
        if not good:
            return prepared
        titles = None if title is None else [title] * len(good)
        probs = self._probabilities(np.stack(good), titles)
        ranked = iter(clf.top_k(probs, top_k))
        return [p if isinstance(p, ImageRejected) else next(ranked) for p in prepared]

    def _probabilities(self, images: Any, titles: list[str | None] | None = None) -> Any:
        job = _Job(images, titles)
        with self._queue_lock:
            self._pending.append(job)
        while not job.done.is_set():
            with self._model_lock:
                if job.done.is_set():
                    break
                with self._queue_lock:
                    batch, size = [], 0
                    while self._pending and (not batch or size + len(self._pending[0].images)
                                             <= self.MAX_BATCH):
                        batch.append(self._pending.pop(0))
                        size += len(batch[-1].images)
                self._run(batch)
        if job.error is not None:
            raise job.error
        return job.probs

    def _run(self, batch: list[_Job]) -> None:
        import numpy as np

        try:
            titles = None
            if any(j.titles is not None for j in batch):  # None: this request's had no title
                titles = [t for j in batch for t in (j.titles or [None] * len(j.images))]
            probs = self.classifier.probabilities(np.concatenate([j.images for j in batch]),
                                                  titles)
            self.batches += 1
            self.jobs += len(batch)
            start = 0
            for j in batch:
                j.probs = probs[start:start + len(j.images)]
                start += len(j.images)
        except BaseException as exc:
            for j in batch:
                j.error = exc
        finally:
            for j in batch:
                j.done.set()

    def warm_up(self) -> None:
        """Classify one image, so no user request pays for tracing the model (the traced
        graph serves any batch size: classifier.backend.run_model)."""
        from PIL import Image

        buf = io.BytesIO()
        side = max(64, self.classifier.limits.min_side)
        Image.new("RGB", (side, side), (255, 255, 255)).save(buf, "JPEG")
        result = self.classify([buf.getvalue()], 1)[0]
        if isinstance(result, ImageRejected):
            log.warning("warm-up image refused: %s", result)


class SecurityHeaders:
    """Pure ASGI middleware: Starlette's TrustedHostMiddleware refuses unknown Host headers
    (DNS rebinding), in the API's JSON error shape; every answer gets nosniff."""

    def __init__(self, app: Any, allowed_hosts: Sequence[str] = LOOPBACK_HOSTS) -> None:
        self.app = app
        # Starlette compares an IPv6 host with its brackets: "[::1]".
        self.allowed_hosts = sorted({h.lower() if ":" not in h else f"[{h.strip('[]')}]"
                                     for h in allowed_hosts})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        async def allowed(scope: dict, receive: Any, _send: Any) -> None:
            await self.app(scope, receive, send_with_headers)

        async def refused(message: dict) -> None:  # only the host check's refusal comes here
            if message["type"] == "http.response.start":
                response = error_response(
                    400, "bad-host", "unknown Host header; open the page by the address the "
                    "server printed (start with --host to listen elsewhere)",
                )
                await response(scope, receive, send_with_headers)

        check = TrustedHostMiddleware(allowed, self.allowed_hosts, www_redirect=False)
        await check(scope, receive, refused)


def _swagger_assets() -> Path | None:
    """Swagger UI's files from the swagger-ui-py wheel (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "static"
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def create_app(catalog: Catalog, classifier: Classifier, config: WebConfig = WebConfig()) -> Any:
    """The web app for one loaded model. The caller owns the catalog and closes it."""
    predictor = Predictor(classifier)
    limits = config.limits
    budget = PixelBudget(limits)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if config.warm_up:
            await run_in_threadpool(predictor.warm_up)
        yield

    app = FastAPI(
        title="slashcat",
        summary="Classify product images with the catalog's model.",
        description=(__doc__ or "").split("\n", 2)[2],
        version=classifier.version,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.predictor = predictor
    app.state.config = config
    app.add_middleware(SecurityHeaders, allowed_hosts=config.allowed_hosts)

    @app.exception_handler(UploadError)
    async def _upload_error(_request: Request, exc: UploadError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, "bad-request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=exc)
        return error_response(500, "internal", "internal error; the server log has details")

    # ---- the page and its assets ----

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    swagger = _swagger_assets()
    if swagger is not None:
        app.mount("/docs-assets", StaticFiles(directory=swagger), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if swagger is None:
            return HTMLResponse(_plain_docs_page(), headers=PAGE_HEADERS)
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="slashcat API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/favicon.ico",
        )

    # ---- the API ----

    model_info = ModelInfo(
        version=classifier.version, image_size=classifier.image_size,
        classes=list(classifier.classes),
    )
    limits_info = LimitsInfo(
        max_file_bytes=limits.max_file_bytes, max_files=limits.max_files,
        max_request_bytes=limits.max_body_bytes,
    )

    @app.get("/api/health", response_model=Health, tags=["api"])
    async def health() -> Health:
        """The loaded model (version, image size, classes), the upload caps and whether saving
        to the catalog is on."""
        return Health(status="ok", model=model_info, top_k=config.top_k, limits=limits_info,
                      allow_save=config.allow_save,
                      batching=Batching(model_calls=predictor.batches,
                                        requests_served=predictor.jobs))

    errors_doc: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorBody, "description": d} for s, d in [
            (400, "Empty file, no files, too many files, malformed form."),
            (413, "A file or the whole request is over its cap."),
            (415, "Not a multipart form, or bytes that are not a supported image."),
            (422, "A decompression bomb, a tiny image, damaged bytes."),
        ]
    }
    upload_body = _form_body({"files": {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": f"One or more images (at most {limits.max_files}, "
                       f"each at most {limits.max_file_bytes} bytes).",
    }})

    @app.post(
        "/api/classify", response_model=ClassifyResult, tags=["api"], openapi_extra=upload_body,
        responses={207: {"model": ClassifyResult,
                         "description": "Some files classified, some refused."}, **errors_doc},
    )
    async def classify(
        request: Request,
        top_k: int | None = Query(None, ge=1, le=50, description="Categories per image."),
    ) -> JSONResponse:
        """Classify each uploaded image (field `files`, repeatable): its top-k categories with
        calibrated confidence. Bytes are checked by content; uploads stay in memory."""
        form = await read_form(
            request.headers.get("content-type", ""), request.headers.get("content-length"),
            request.stream(), limits, frozenset({"files"}), frozenset({"title"}),
        )
        title = form.fields.get("title") or None
        if not form.files:
            raise UploadError(400, "no-files", "no files: send images in the field 'files'")
        k = min(config.top_k, len(classifier.classes)) if top_k is None else top_k
        if k > len(classifier.classes):
            raise UploadError(400, "bad-top-k", f"top_k must be between 1 and "
                              f"{len(classifier.classes)} (the model's classes), not {k}")
        outcomes = await run_in_threadpool(
            classify_within_budget, predictor, budget, [f.data for f in form.files], k, title
        )
        results = []
        for upload, outcome in zip(form.files, outcomes, strict=True):
            refused = isinstance(outcome, ImageRejected)
            results.append(FileResult(
                filename=upload.filename, ok=not refused, bytes=len(upload.data),
                sha256=hashlib.sha256(upload.data).hexdigest() if upload.data else None,
                error=rejected_info(outcome, upload.filename or "upload") if refused else None,
                top_k=[] if refused else [Guess(category=c, confidence=round(p, 6))
                                          for c, p in outcome],
            ))
        failed = [r for r in results if not r.ok]
        body = ClassifyResult(model_version=classifier.version, results=results)
        status = 200
        if failed and len(failed) == len(results):
            body.error = failed[0].error
            status = failed[0].error.status if failed[0].error else 422
        elif failed:
            status = 207
        return JSONResponse(body.model_dump(), status_code=status,
                            headers={"Cache-Control": "no-store"})

    save_body = _form_body({
        "file": {"type": "string", "format": "binary"},
        "category": {"type": "string", "description": "One of the model's classes "
                     "or any category of the catalog."},
    })

    @app.post(
        "/api/save", response_model=Saved, status_code=201, tags=["api"],
        openapi_extra=save_body,
        responses={403: {"model": ErrorBody, "description": "Saving is off (--allow-save)."},
                   **errors_doc},
    )
    async def save(request: Request) -> JSONResponse:
        """Store one image in the catalog (content-addressed) under the store 'uploads' and
        record the chosen category as a `human` label. Off unless started with --allow-save."""
        if not config.allow_save:
            await drain(request.stream(), limits.max_body_bytes)
            raise UploadError(403, "save-disabled",
                              "saving to the catalog is off; start with 'slashcat serve "
                              "--allow-save'")
        if not _same_origin(request):
            await drain(request.stream(), limits.max_body_bytes)
            raise UploadError(403, "cross-origin", "refused: the request came from another site")
        form = await read_form(
            request.headers.get("content-type", ""), request.headers.get("content-length"),
            request.stream(), UploadLimits(limits.max_file_bytes, 1, limits.max_file_bytes
                                           + 64 * 1024, limits.max_field_bytes),
            frozenset({"file"}), frozenset({"category"}),
        )
        if not form.files:
            raise UploadError(400, "no-files", "no file: send the image in the field 'file'")
        category = form.fields.get("category", "").strip()
        if not category:
            raise UploadError(400, "no-category", "choose a category to save the image under")
        upload = form.files[0]
        saved = await run_in_threadpool(
            save_upload, catalog, classifier, config.store_name, upload.data, upload.filename,
            category,
        )
        return JSONResponse(saved.model_dump(), status_code=201)

    return app


def _form_body(fields: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI's description of a multipart form whose fields are all required."""
    schema = {"type": "object", "required": list(fields), "properties": fields}
    return {"requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": schema}}}}


def classify_within_budget(predictor: Predictor, budget: PixelBudget, blobs: list[bytes],
                           k: int, title: str | None = None) -> list[Any]:
    """Classify, refusing from their headers the files over the per-file pixel cap and
    holding the request's pixels against the in-flight budget while the rest decode."""
    cap = budget.limits.max_file_pixels
    pixels = [header_pixels(b) for b in blobs]
    outcomes: list[Any] = [
        ImageRejected("too-many-pixels", f"{p / 1e6:,.0f} Mpx > {cap / 1e6:,.0f} Mpx per image")
        if p > cap else None
        for p in pixels
    ]
    todo = [i for i, o in enumerate(outcomes) if o is None]
    if todo:
        with budget.hold(sum(pixels[i] for i in todo)):
            for i, outcome in zip(todo, predictor.classify([blobs[i] for i in todo], k, title),
                                  strict=True):
                outcomes[i] = outcome
    return outcomes


def _same_origin(request: Request) -> bool:
    """False for a write posted by a page of another site (browsers always send Origin then)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc == request.headers.get("host", "")


def save_upload(
    catalog: Catalog, classifier: Classifier, store_name: str, data: bytes, filename: str,
    category: str,
) -> Saved:
    """Ingest the bytes, make (or find) the upload's product and add a human label."""
    from catalog.categories import get_category
    from catalog.images import inspect_image
    from catalog.ingest import get_or_create_store, ingest_item
    from catalog.labels import add_label

    try:
        facts = inspect_image(data, classifier.limits)
    except ImageRejected as exc:
        info = rejected_info(exc, filename or "upload")
        raise UploadError(info.status, info.code, info.message) from exc
    try:
        with catalog.session() as session:
            cat = get_category(session, category)
            store = get_or_create_store(session, store_name, "upload:")
            item = ingest_item(
                session, catalog.store, store.id, f"upload:{facts.sha256}", data,
                limits=classifier.limits, facts=facts, external_id=facts.sha256[:16],
                title=(filename or None),
            )
            label = add_label(session, item.product.id, cat.id, "human", author="web")
            return Saved(product_id=item.product.id, image_sha256=facts.sha256,
                         image_status=item.image.status, category=cat.name, label_id=label.id,
                         store=store_name)
    except UnknownCategory as exc:
        raise UploadError(422, "unknown-category", str(exc)) from exc
    except SlashcatError as exc:
        raise UploadError(500, "catalog-error", str(exc)) from exc


def _plain_docs_page() -> str:
    return (
        "<!doctype html><meta charset=utf-8><title>slashcat API</title>"
        "<h1>slashcat API</h1><p>The OpenAPI document is at "
        "<a href=/openapi.json>/openapi.json</a>. Install swagger-ui-py for the interactive "
        "page.</p>"
    )

