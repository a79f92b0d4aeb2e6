"""Concurrent requests through a real uvicorn server on loopback: detections keep answering while other requests
enrol, no enrolment is lost, and two requests racing for one name give exactly one 201 and one 409."""

from __future__ import annotations

import threading

import httpx

from mocha.personalize.gallery import Gallery
from mocha.serve.app import create_app
from tests.fixtures_serve import live_server, make_bundle, open_personalizer, write_photos


def test_detect_while_enrolling_loses_nothing(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    photos = [p.read_bytes() for p in write_photos(tmp_path / "photos")]
    gpath = tmp_path / "me.gallery"
    p = open_personalizer(bundle, gpath, max_det=10)
    names = [f"thing {k}" for k in range(6)]
    detect_status: list[int] = []
    seen: set[str] = set()
    enrol_status: dict[str, int] = {}
    race: list[int] = []
    done = threading.Event()
    lock = threading.Lock()

    def detector(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while not done.is_set() or len(detect_status) < 8:
                r = c.post("/detect", files={"image": ("q.png", photos[k % 3], "image/png")})
                with lock:
                    detect_status.append(r.status_code)
                    if r.status_code == 200:
                        seen.update(d["instance"] for d in r.json()["detections"] if d["instance"])

    def enroller() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            for k, name in enumerate(names):
                r = c.post("/instances", data={"name": name, "coarse": str(k % 3), "boxes": "[[10, 10, 90, 90]]"},
                           files=[("images", (f"e{k}.png", photos[k % 3], "image/png"))])
                enrol_status[name] = r.status_code
        done.set()

    def racer() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/instances", data={"name": "twin", "coarse": "mug"},
                       files=[("images", ("t.png", photos[0], "image/png"))])
            with lock:
                race.append(r.status_code)

    with live_server(create_app(p)) as url:
        threads = [threading.Thread(target=detector, args=(k,)) for k in range(3)]
        threads += [threading.Thread(target=enroller), threading.Thread(target=racer), threading.Thread(target=racer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads)
        listed = httpx.get(f"{url}/instances").json()["instances"]
    p.close()

    assert enrol_status == {n: 201 for n in names}
    assert sorted(race) == [201, 409]
    assert len(detect_status) >= 8 and set(detect_status) == {200}
    assert seen <= {*names, "twin"}
    assert sorted(i["name"] for i in listed) == sorted([*names, "twin"])
    with Gallery(gpath) as g:  # what is on disk, read by another connection
        assert sorted(g.names()) == sorted([*names, "twin"]) and all(r.shots == 1 for r in g.instances())
