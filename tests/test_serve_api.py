"""The REST API through FastAPI's TestClient on a tiny real bundle: every route, every bad input (one clear HTTP
error each, the gallery untouched, the server still serving), a crash mid-enrol, nothing written but the gallery."""

from __future__ import annotations

import base64
import io
import tempfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mocha.serve.app import create_app
from tests.fixtures_serve import encoded, make_bundle, open_personalizer, scene, write_photos

LIMIT = 2_000_000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture
def served(bundle, tmp_path):
    p = open_personalizer(bundle, tmp_path / "g" / "me.gallery")
    client = TestClient(create_app(p, max_upload_bytes=LIMIT), raise_server_exceptions=False)
    yield p, client
    p.close()


def png(path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/png")


def gallery_state(p) -> list:
    return [(r.summary(), [(s.sha256, s.box) for s in r.supports]) for r in p.gallery.instances(supports=True)]


def test_every_route(served, photos):
    p, c = served
    h = c.get("/health").json()
    assert h["status"] == "ok" and h["backend"] == "torch" and h["instances"] == 0
    assert h["bundle_digest"] == p.engine.digest and h["gallery"] == str(p.gallery.path)
    assert h["classes"] == ["mug", "ball", "can"]

    r = c.post("/instances", data={"name": "  my   mug ", "boxes": "[[20, 30, 120, 150]]", "coarse": "mug"},
               files=[("images", png(photos[0]))])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["instance"]["name"] == "my mug" and body["instance"]["shots"] == 1  # blanks normalised
    assert body["shots"][0]["box"] == [20.0, 30.0, 120.0, 150.0] and body["shots"][0]["box_source"] == "user"
    assert body["shots"][0]["source"] == "photo0.png"
    # append with the detector's best box (no boxes field), two more photos in one request
    r = c.post("/instances", data={"name": "my mug", "append": "true"},
               files=[("images", png(photos[1])), ("images", png(photos[2]))])
    assert r.status_code == 201, r.text
    assert [s["box_source"] for s in r.json()["shots"]] == ["detector", "detector"]
    assert r.json()["instance"]["shots"] == 3 and p.gallery.get("my mug").shots == 3

    listed = c.get("/instances").json()["instances"]
    assert [(i["name"], i["coarse"], i["shots"]) for i in listed] == [("my mug", "mug", 3)]
    thumb = Image.open(io.BytesIO(base64.b64decode(listed[0]["thumbnail"].split(",", 1)[1])))
    assert thumb.format == "JPEG" and thumb.size == (80, 96)  # the 100×120 user box, fitted in 96×96

    # detect: the same JSON as calling the Personalizer directly on the same pixels
    r = c.post("/detect", files={"image": png(photos[2])})
    assert r.status_code == 200, r.text
    direct = p.detect(np.asarray(Image.open(photos[2]).convert("RGB"))).to_json()
    got = r.json()
    assert got["source"] == "photo2.png" and (got["width"], got["height"]) == (240, 180)
    assert got["detections"] == direct["detections"] and len(got["detections"]) > 0
    assert any(d["instance"] == "my mug" for d in got["detections"])
    assert set(got["speed"]) == {"preprocess", "inference", "embed", "postprocess"}
    # query options reach the Personalizer: a threshold above every similarity names nothing
    r = c.post("/detect?min_similarity=1&conf=0.5", files={"image": png(photos[2])})
    assert r.status_code == 200 and all(d["instance"] is None for d in r.json()["detections"])
    assert all(d["det_score"] >= 0.5 for d in r.json()["detections"])
    # annotated image
    r = c.post("/detect?annotated=1", files={"image": png(photos[2])})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    drawn = np.asarray(Image.open(io.BytesIO(r.content)))
    assert drawn.shape == (180, 240, 3) and np.abs(drawn.astype(int) - scene(2).astype(int)).mean() > 2

    r = c.delete("/instances/my mug")
    assert r.status_code == 200 and r.json() == {"removed": "my mug", "instances": 0}
    assert c.get("/instances").json() == {"instances": []} and c.get("/health").json()["instances"] == 0

    # the page, its assets, the API reference and the OpenAPI document are served locally
    page = c.get("/")
    assert page.status_code == 200 and 'id="enroll-canvas"' in page.text and "http" not in page.text.split("<body>")[1]
    assert c.get("/static/app.js").status_code == 200 and c.get("/static/style.css").status_code == 200
    assert c.get("/docs").status_code == 200 and c.get("/static/docs.js").status_code == 200
    spec = c.get("/openapi.json").json()
    assert {"/health", "/instances", "/instances/{name}", "/detect"} <= set(spec["paths"])
    assert set(spec["paths"]["/instances"]) == {"get", "post"}


def test_bad_inputs_one_clear_error_each(served, photos):
    p, c = served
    assert c.post("/instances", data={"name": "kept"}, files=[("images", png(photos[0]))]).status_code == 201
    before = gallery_state(p)
    good = png(photos[1])
    truncated = (photos[1].name, photos[1].read_bytes()[:400], "image/png")
    cases = [  # (method, url, form data, files, status, words the message must hold)
        ("post", "/instances", {"name": "x"}, [("images", ("a.txt", b"plain text", "text/plain"))], 415,
         "images[0] (a.txt): content type 'text/plain' is not an image"),
        ("post", "/instances", {"name": "x"}, [("images", ("a.png", b"plain text", "image/png"))], 400,
         "images[0] (a.png): not an image file"),
        ("post", "/instances", {"name": "x"}, [("images", good), ("images", truncated)], 400,
         "images[1] (photo1.png): cannot decode the image"),
        ("post", "/instances", {"name": "x"}, [("images", ("e.png", b"", "image/png"))], 400, "empty"),
        ("post", "/instances", {"name": "   "}, [("images", good)], 400, "name: the instance name is empty"),
        ("post", "/instances", {"name": "../etc/passwd"}, [("images", good)], 400,
         "name: '../etc/passwd' holds a slash"),
        ("post", "/instances", {"name": "x" * 65}, [("images", good)], 400, "name: 65 characters"),
        ("post", "/instances", {"name": "unknown mug"}, [("images", good)], 400, "reserved"),
        ("post", "/instances", {"name": "kept"}, [("images", good)], 409, "'kept' is already enrolled; send append"),
        ("post", "/instances", {"name": "x", "boxes": "[[10, 10, 300, 100]]"}, [("images", good)], 400,
         "boxes[0]: box [10.0, 10.0, 300.0, 100.0] lies outside the 240×180 image"),
        ("post", "/instances", {"name": "x", "boxes": "[[10, 10, 50"}, [("images", good)], 400,
         "boxes: malformed JSON"),
        ("post", "/instances", {"name": "x", "boxes": "[[1,2,3,4], null]"}, [("images", good)], 400,
         "one entry per image (1)"),
        ("post", "/instances", {"name": "x", "boxes": '[["a", 1, 2, 3]]'}, [("images", good)], 400, "boxes[0]:"),
        ("post", "/instances", {"name": "x", "coarse": "giraffe"}, [("images", good)], 400,
         "unknown coarse class 'giraffe'"),
        ("post", "/instances", {"name": "x"}, [("photo", good)], 400, "images: Field required"),
        ("post", "/instances", {"name": "x"}, None, 415, "'application/x-www-form-urlencoded'; send multipart"),
        ("post", "/instances", {}, [("images", good)], 400, "name: Field required"),
        ("post", "/detect", None, {"image": ("q.txt", b"hello", "text/plain")}, 415, "image (q.txt): content type"),
        ("post", "/detect", None, {"image": truncated}, 400, "image (photo1.png): cannot decode"),
        ("post", "/detect?conf=2", None, {"image": good}, 400, "conf: Input should be less than or equal to 1"),
        ("post", "/detect?min_similarity=abc", None, {"image": good}, 400, "min_similarity:"),
        ("post", "/detect", None, {"image": ("big.png", b"\x89PNG" + b"0" * LIMIT, "image/png")}, 413,
         f"the limit is {LIMIT} bytes"),
        ("delete", "/instances/nobody", None, None, 404, "name: no instance 'nobody'; enrolled: kept"),
    ]
    for method, url, data, files, status, words in cases:
        kw = {k: v for k, v in (("data", data), ("files", files)) if v is not None}
        r = getattr(c, method)(url, **kw)
        assert r.status_code == status, (url, data, r.status_code, r.text)
        assert words in r.json()["detail"], (url, data, r.json())
        assert gallery_state(p) == before, (url, data)
    # a JSON body (malformed or not) where a form is expected: 415 naming the body
    for raw in (b'{"name": "x"}', b'{"name": '):
        r = c.post("/instances", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    assert gallery_state(p) == before
    assert c.post("/detect", files={"image": good}).status_code == 200  # still serving


def test_crash_mid_enrol_leaves_the_gallery_as_it_was(served, photos, monkeypatch):
    from mocha.personalize.gallery import Gallery

    p, c = served
    assert c.post("/instances", data={"name": "kept"}, files=[("images", png(photos[0]))]).status_code == 201
    before = gallery_state(p)
    real, calls = Gallery._insert_support, []

    def crash_on_second(self, con, name, s):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        real(self, con, name, s)

    monkeypatch.setattr(Gallery, "_insert_support", crash_on_second)
    r = c.post("/instances", data={"name": "half"}, files=[("images", png(photos[1])), ("images", png(photos[2]))])
    assert r.status_code == 500 and "disk on fire" in r.json()["detail"]
    assert len(calls) == 2 and gallery_state(p) == before  # the first support was rolled back
    monkeypatch.setattr(Gallery, "_insert_support", real)
    assert [i["name"] for i in c.get("/instances").json()["instances"]] == ["kept"]
    r = c.post("/instances", data={"name": "half"}, files=[("images", png(photos[1])), ("images", png(photos[2]))])
    assert r.status_code == 201 and r.json()["instance"]["shots"] == 2  # the name was not left half-taken


def test_nothing_written_but_the_gallery(served, photos, tmp_path, monkeypatch):
    """Upload names never become paths, and uploads (even over the 1 MiB spool size) stay in memory."""
    p, c = served
    to_disk = []  # SpooledTemporaryFile rolls over through tempfile.TemporaryFile (unnamed: not seen in a listing)
    real_tmp = tempfile.TemporaryFile
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda *a, **k: to_disk.append(1) or real_tmp(*a, **k))
    rng = np.random.default_rng(0)
    big = encoded(rng.integers(0, 255, (700, 700, 3), dtype=np.uint8))  # noise: ~1.5 MB as PNG
    assert 1024 * 1024 < len(big) < LIMIT
    r = c.post("/instances", data={"name": "noise"}, files=[("images", ("../../../escape.png", big, "image/png"))])
    assert r.status_code == 201 and r.json()["shots"][0]["source"] == "escape.png"
    assert c.post("/detect", files={"image": ("..\\..\\q.png", big, "image/png")}).json()["source"] == "q.png"
    assert to_disk == []
    gdir = p.gallery.path.parent
    assert {f.name for f in gdir.iterdir()} <= {"me.gallery", "me.gallery-wal", "me.gallery-shm"}
    assert not list(tmp_path.rglob("escape.png")) and not list(tmp_path.parent.rglob("escape.png"))
