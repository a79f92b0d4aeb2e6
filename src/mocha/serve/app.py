"""The FastAPI app over one Personalizer: the page, the REST routes, and one clear HTTP error per bad input.

Routes run in the server's thread pool. Decoding uploads and encoding answers happen in parallel; calls into
the Personalizer (model + gallery + its in-memory prototypes) take one lock, so an enrolment is never half seen
by a detection and no enrolment is lost (the model uses every core anyway). Nothing is written but the gallery,
in its own transactions: a failure anywhere in an enrolment leaves it as it was.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from mocha.errors import MochaError
from mocha.serve.limits import DEFAULT_MAX_UPLOAD_BYTES, BodyLimit
from mocha.serve.thumbnails import from_supports, thumbnail
from mocha.serve.uploads import InputError, clean_name, decode_image, normal_name, parse_boxes, upload_label

STATIC = Path(__file__).resolve().parent / "static"


class Service:
    """The Personalizer behind the routes, its lock, and the thumbnails made this session."""

    def __init__(self, personalizer: Any) -> None:
        self.p = personalizer
        self.lock = threading.Lock()
        self.thumbs: dict[str, str | None] = {}

    def instances(self) -> list[dict[str, Any]]:
        with self.lock:
            records = self.p.gallery.instances(supports=True)
            out = []
            for rec in records:
                if rec.name not in self.thumbs:
                    self.thumbs[rec.name] = from_supports(rec.supports)
                out.append({**rec.summary(), "thumbnail": self.thumbs[rec.name]})
            return out

    def health(self) -> dict[str, Any]:
        from mocha import __version__

        e = self.p.engine
        with self.lock:
            count = len(self.p.gallery)
        return {"status": "ok", "version": __version__, "backend": getattr(e, "backend", "torch"),
                "bundle_digest": e.digest, "bundle_path": getattr(e, "bundle_path", None),
                "gallery": str(self.p.gallery.path), "instances": count, "classes": list(self.p.names),
                "imgsz": int(e.imgsz), "min_similarity": self.p.min_similarity, "conf": self.p.conf}


def create_app(personalizer: Any, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> FastAPI:
    """The web app for `personalizer` (mocha.personalize.Personalizer); requests over `max_upload_bytes` get 413."""
    from starlette.formparsers import MultiPartParser

    # the body is already bounded and in memory (BodyLimit): keep uploads there instead of spooling to temp files
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, int(max_upload_bytes))
    svc = Service(personalizer)
    app = FastAPI(title="MOCHA personalized detection", version=_version(), docs_url=None, redoc_url=None,
                  description="Enrol personal instances from a few photos, then detect and name them. "
                              "Errors are JSON `{\"detail\": \"<field>: what is wrong\"}`.")
    app.state.service = svc
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    _error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:  # FastAPI's own /docs loads Swagger UI from a CDN; this page is served here
        return FileResponse(STATIC / "docs.html")

    @app.get("/health", summary="Server, bundle and gallery facts")
    def health() -> dict[str, Any]:
        """Bundle digest and path, gallery path, instance count, backend (torch | onnx), the detector's classes."""
        return svc.health()

    @app.get("/instances", summary="The enrolled instances")
    def list_instances() -> dict[str, Any]:
        """Per instance: id, name, coarse class (name and id), shots, dates and a thumbnail (data: URL or null)."""
        return {"instances": svc.instances()}

    @app.post("/instances", status_code=201, summary="Enrol an instance (or add shots with append)")
    def enroll(
        name: Annotated[str, Form(description="instance name, e.g. 'my mug'")],
        images: Annotated[list[UploadFile], File(description="one or more photos of the instance")],
        boxes: Annotated[str | None, Form(description="JSON: one [x1,y1,x2,y2] (original pixels) or null per image; "
                                                      "null or absent = the detector's best box")] = None,
        coarse: Annotated[str | None, Form(description="coarse class name or id; absent = from the detector")] = None,
        append: Annotated[bool, Form(description="add shots to an enrolled instance")] = False,
    ) -> dict[str, Any]:
        """Enrol `name` from the uploaded photos in one gallery transaction. 409 when the name is taken and
        append is false; 400 for an empty name, a box outside its image, malformed `boxes` JSON or an
        undecodable image; 415 for a non-image upload."""
        from mocha.personalize.boxes import check_box

        clean = clean_name(name)
        pixels = [decode_image(f.file.read(), f.content_type, f"images[{i}] ({upload_label(f.filename)})")
                  for i, f in enumerate(images)]
        per_image = parse_boxes(boxes, len(pixels))
        if per_image is not None:
            for i, (img, box) in enumerate(zip(pixels, per_image, strict=True)):
                if box is not None:
                    _as_input(check_box, box, img.shape[1], img.shape[0], f"boxes[{i}]")
        coarse_arg: int | str | None = coarse.strip() if coarse and coarse.strip() else None
        with svc.lock:
            if clean in svc.p.gallery and not append:
                raise InputError(409, f"name: instance {clean!r} is already enrolled; send append=true to add "
                                      "shots, or DELETE /instances/{name} first")
            report = _as_input(svc.p.enroll, clean, pixels, boxes=per_image, coarse=coarse_arg, append=append)
            summary = next(r.summary() for r in svc.p.gallery.instances() if r.name == clean)
            if not append or svc.thumbs.get(clean) is None:  # appended shots keep the first thumbnail
                svc.thumbs[clean] = thumbnail(pixels[0], report.shots[0]["box"])
        shots = [{**s, "source": upload_label(images[i].filename)} for i, s in enumerate(report.shots)]
        return {"instance": summary, "shots": shots}

    @app.delete("/instances/{name}", summary="Remove an instance")
    def remove(name: str) -> dict[str, Any]:
        """Forget the instance (nothing is retrained). 404 when no instance has that name."""
        clean = normal_name(name)
        with svc.lock:
            if clean not in svc.p.gallery:
                raise InputError(404, f"name: no instance {clean!r}; enrolled: "
                                      f"{', '.join(svc.p.gallery.names()) or '(none)'}")
            svc.p.remove(clean)
            svc.thumbs.pop(clean, None)
            left = len(svc.p.gallery)
        return {"removed": clean, "instances": left}

    @app.post("/detect", summary="Detect and name the enrolled instances in one photo",
              responses={200: {"content": {"image/jpeg": {}}, "description": "Results.to_json(), or with "
                                                                          "annotated=true the annotated JPEG"}})
    def detect(
        image: Annotated[UploadFile, File(description="the photo")],
        conf: Annotated[float | None, Query(ge=0, le=1, description="detector confidence threshold")] = None,
        min_similarity: Annotated[float | None, Query(ge=-1, le=1, description="below it a box is "
                                                                               "'unknown <coarse>'")] = None,
        annotated: Annotated[bool, Query(description="answer with the annotated image (JPEG)")] = False,
    ) -> Any:
        """The same JSON as `Results.to_json()` (`mocha detect`): source, width, height, detections with box,
        name, instance, instance_id, coarse, scores — or the annotated image with `annotated=true`."""
        label = upload_label(image.filename)
        pixels = decode_image(image.file.read(), image.content_type, f"image ({label})")
        with svc.lock:
            r = _as_input(svc.p.detect, pixels, conf=conf, min_similarity=min_similarity)
        r = dataclasses.replace(r, path=label)
        if annotated:
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(r.plot()).save(buf, format="JPEG", quality=90)
            return Response(buf.getvalue(), media_type="image/jpeg")
        return {**r.to_json(), "speed": {k: round(v, 2) for k, v in r.speed.items()}}

    return app


def _as_input(fn: Any, *args: Any, **kw: Any) -> Any:
    """Call `fn`; a MochaError (bad box, unknown coarse class, no detection to enrol...) becomes a 400."""
    try:
        return fn(*args, **kw)
    except MochaError as exc:
        raise InputError(400, str(exc)) from None


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        if request.method == "POST" and not ctype.startswith("multipart/form-data"):
            return JSONResponse({"detail": f"body: content type {ctype or '(none)'!r}; send multipart/form-data "
                                           "(see /docs)"}, status_code=415)
        parts = []
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
            parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=400)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:  # the server keeps serving
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def _version() -> str:
    from mocha import __version__

    return str(__version__)
