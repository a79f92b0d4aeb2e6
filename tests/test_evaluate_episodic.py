"""End-to-end episodic evaluation on paper-layout replicas and the tiny world; reports, plots, bad input, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mocha.errors import ConfigError, DataError
from mocha.evaluate.config import EvalConfig, MethodSpec, parse_method
from mocha.evaluate.episodic import Evaluator, evaluate
from mocha.models.detector import Student
from tests.fixtures_data import PAPER_COARSE, make_paper_dataset

KEYS = {"map50_95", "map50", "strict_map50_95", "accuracy", "support_ms_per_image", "query_ms_per_image",
        "peak_memory_mb"}


@pytest.fixture(autouse=True)
def one_thread():
    """Extra torch threads wait on each other on a busy shared CPU (100x slower forwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class HistTeacher:
    """A real (if simple) image embedder: per-channel 16-bin colour histograms of the crop."""

    name, dim = "hist", 48

    def settings(self) -> dict:
        return {}

    def embed(self, crops: list[np.ndarray], labels: list[str]) -> torch.Tensor:
        assert len(crops) == len(labels)
        rows = [np.concatenate([np.histogram(c[..., k], 16, (0, 256))[0] for k in range(3)]) / c[..., 0].size
                for c in crops]
        return torch.tensor(np.array(rows), dtype=torch.float32).reshape(-1, self.dim)


@pytest.fixture(scope="module")
def paper_student(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("student") / "student.safetensors"
    Student.create("yolov8n.yaml", names=PAPER_COARSE).save(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from mocha.data.world import generate_world

    return generate_world(tmp_path_factory.mktemp("world") / "w", size="tiny", seed=0, progress=False)


def _methods() -> list[MethodSpec]:
    return [MethodSpec("student"), MethodSpec("teacher", teacher=HistTeacher()),
            MethodSpec("teacher-gt", teacher=HistTeacher())]


def _config(data, detector, tmp_path, name, **kw) -> EvalConfig:
    base = dict(data=data, methods=_methods(), shots=[1], episodes=3, detector=detector, imgsz=64, conf=0.001,
                max_det=20, time_images=2, project=tmp_path / "runs", name=name, progress=False, plots=False)
    base.update(kw)
    return EvalConfig(**base)


def _check_report(rep: dict, shots: list[int], methods: list[str]) -> None:
    assert set(rep["results"]) == {str(s) for s in shots}
    for s in shots:
        assert set(rep["results"][str(s)]) == set(methods)
        for row in rep["results"][str(s)].values():
            assert KEYS <= set(row)
            for k in ("map50_95", "map50", "strict_map50_95", "accuracy"):
                assert 0.0 <= row[k] <= 100.0 and row[f"{k}_std"] >= 0
            assert row["support_ms_per_image"] > 0 and row["query_ms_per_image"] > 0 and row["peak_memory_mb"] > 0


@pytest.mark.parametrize("layout,shots", [("perseg", [1, 2]), ("core50", [1]), ("icubworld", [1]), ("pod", [1, 2])])
def test_paper_layouts_end_to_end(layout, shots, tmp_path, paper_student):
    data = make_paper_dataset(tmp_path / layout, layout, n_inst=4, per_inst=3)
    rep = evaluate(_config(data, paper_student, tmp_path, layout, shots=shots, plots=layout == "perseg"))
    _check_report(rep, shots, ["student", "teacher", "teacher-gt"])
    run = Path(rep["run_dir"])
    saved = json.loads((run / "report.json").read_text())
    assert saved["results"] == rep["results"] and saved["episodes"] == 3 and saved["dataset"] == str(data)
    md = (run / "report.md").read_text()
    assert all(f"| {m} | {s} |" in md for m in ("student", "teacher", "teacher-gt") for s in shots)
    # every instance box is filled with its own colour: the histogram teacher on GT boxes is exact
    for s in shots:
        gt = rep["results"][str(s)]["teacher-gt"]
        assert gt["accuracy"] == 100.0 and gt["map50"] == pytest.approx(99.5) and gt["strict_map50_95"] == 100.0
    if layout == "perseg":
        assert {p.name for p in (run / "plots").iterdir()} >= {"metrics_vs_shots.png", "embeddings_pca.png",
                                                               "query_0.png"}


def test_detected_path_equals_gt_path_when_boxes_are_the_ground_truth(tmp_path, paper_student):
    """Relabelling of detector boxes (coarse mapping, ids, frames) agrees with the GT-box path on GT boxes."""
    data = make_paper_dataset(tmp_path / "p", "perseg", n_inst=4, per_inst=3)
    ev = Evaluator(_config(data, paper_student, tmp_path, "x", shots=[2]))
    ev.extract()
    for im in ev.images:
        im.det_boxes, im.det_conf, im.det_coarse = im.gt_boxes.clone(), torch.ones(len(im.gt_boxes)), im.gt_coarse
    teacher, oracle = ev.methods[1], ev.methods[2]
    teacher.query = list(teacher.support)
    for ep in ev.episodes[2]:
        a, _, _ = ev.run_episode(teacher, ep)
        b, _, _ = ev.run_episode(oracle, ep)
        assert a == b and a["accuracy"] == 1.0


def test_prior_learner_names_boxes_the_detector_put_in_another_class(tmp_path, paper_student):
    """`learner=prior`: a box whose detected coarse class is wrong keeps its identity (the conditional learner
    searches only the wrong class and cannot name it)."""
    data = make_paper_dataset(tmp_path / "p", "perseg", n_inst=4, per_inst=3)
    acc = {}
    for learner in ("conditional", "prior"):
        ev = Evaluator(_config(data, paper_student, tmp_path, learner, shots=[2], learner=learner, coarse_penalty=0.0))
        ev.extract()
        for im in ev.images:  # the ground-truth boxes, each detected in the next coarse class
            im.det_boxes, im.det_conf = im.gt_boxes.clone(), torch.ones(len(im.gt_boxes))
            im.det_coarse = (im.gt_coarse + 1) % len(PAPER_COARSE)
        teacher = ev.methods[1]
        teacher.query = list(teacher.support)
        acc[learner] = np.mean([ev.run_episode(teacher, ep)[0]["accuracy"] for ep in ev.episodes[2]])
    assert acc["conditional"] == 0.0 and acc["prior"] == 1.0


def test_world_with_bundle_student_and_plots(tmp_path, world):
    from mocha.models.bundle import save_bundle
    from mocha.models.translator import Translator

    torch.manual_seed(0)
    names = ["mug", "bottle", "ball", "book"]
    student = Student.create("yolov8n.yaml", names=names)
    student.save(tmp_path / "student.safetensors")
    bundle = save_bundle(tmp_path / "bundle", Student.create("yolov8n.yaml", names=names), Translator(448, 32),
                         None, {"imgsz": 128})
    methods = [MethodSpec("student"), MethodSpec("mocha", bundle=bundle),
               MethodSpec("teacher-gt", teacher=HistTeacher())]
    rep = evaluate(_config(world, tmp_path / "student.safetensors", tmp_path, "world", methods=methods, shots=[1, 2],
                           imgsz=128, plots=True, learner="conditional", fallback="all"))
    _check_report(rep, [1, 2], ["student", "mocha", "teacher-gt"])
    assert rep["episodes_run"] == {"1": 3, "2": 3}
    # on GT boxes even colour histograms beat chance (2 instances per coarse class → 50%)
    assert rep["results"]["1"]["teacher-gt"]["accuracy"] > 50
    plots = Path(rep["run_dir"]) / "plots"
    assert (plots / "embeddings_pca.png").stat().st_size > 1000 and (plots / "query_0.png").exists()


def test_bad_input_errors_name_the_culprit(tmp_path, world, paper_student):
    cfg = _config(world, paper_student, tmp_path, "bad")
    with pytest.raises(ConfigError, match=r"coarse vocabulary mismatch.*'mug'"):
        Evaluator(cfg)
    good = tmp_path / "good.safetensors"
    Student.create("yolov8n.yaml", names=["mug", "bottle", "ball", "book"]).save(good)
    with pytest.raises(DataError, match=r"instance \d+: 20-shot episodes need at least 20 images"):
        Evaluator(_config(world, good, tmp_path, "bad", shots=[20]))
    # an episode file naming an image that does not exist
    ep_file = world.parent / "personal" / "episodes_1shot.json"
    original = ep_file.read_text()
    doc = json.loads(original)
    try:
        doc["episodes"][0]["query"][0] = "nowhere.jpg"
        ep_file.write_text(json.dumps(doc))
        with pytest.raises(DataError, match=r"episode 0 names image 'nowhere.jpg'"):
            Evaluator(_config(world, good, tmp_path, "bad"))
        # an instance whose support image holds no box of it
        doc = json.loads(original)
        sup = doc["episodes"][1]["support"]
        sup["8"] = sup["9"]
        doc["episodes"][1]["query"] = [q for q in doc["episodes"][1]["query"] if q not in sup["9"]]
        ep_file.write_text(json.dumps(doc))
        with pytest.raises(DataError, match=r"episode 1: instance 8 has no support box"):
            Evaluator(_config(world, good, tmp_path, "bad"))
    finally:
        ep_file.write_text(original)
    with pytest.raises(ConfigError, match="unknown method"):
        parse_method("oracle", {})
    with pytest.raises(ConfigError, match="bundle=PATH"):
        parse_method("mocha", {})
    with pytest.raises(ConfigError, match="unknown learner"):
        Evaluator(_config(world, good, tmp_path, "bad", learner="knn"))
    assert math.isfinite(Evaluator(_config(world, good, tmp_path, "ok")).cmap.sum())


def test_cli_runs_and_reports_bad_input(tmp_path, world, paper_student, capsys):
    from mocha.cli import main

    det = tmp_path / "det.safetensors"
    Student.create("yolov8n.yaml", names=["mug", "bottle", "ball", "book"]).save(det)
    main(["evaluate", f"data={world}", "method=student", f"detector={det}", "shots=1,2", "episodes=2", "imgsz=64",
          "conf=0.001", "max_det=10", "time_images=1", f"project={tmp_path / 'runs'}", "name=cli", "--no-plots"])
    out = capsys.readouterr().out
    assert "| student | 1 |" in out and "| student | 2 |" in out
    rep = json.loads((tmp_path / "runs" / "cli" / "report.json").read_text())
    assert rep["episodes"] == 2 and set(rep["results"]) == {"1", "2"}
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", f"data={world}", "method=student", f"detector={paper_student}", "imgsz=64",
              f"project={tmp_path / 'runs'}", "name=bad"])
    assert exc.value.code == 2
    assert "coarse vocabulary mismatch" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "bad").exists()
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", f"data={world}", "shots=1,x"])
    assert exc.value.code == 2


def test_box_source_selection(tmp_path, world):
    from mocha.models.bundle import save_bundle
    from mocha.models.translator import Translator

    names = ["mug", "bottle", "ball", "book"]
    bundle = save_bundle(tmp_path / "bundle", Student.create("yolov8n.yaml", names=names), Translator(448, 32),
                         None, {})
    plain = tmp_path / "plain.safetensors"
    Student.create("yolov8n.yaml", names=names).save(plain)
    # no --detector: the first method with a detector proposes the boxes (here the bundle's student)
    ev = Evaluator(_config(world, None, tmp_path, "a", methods=[MethodSpec("mocha", bundle=bundle)]))
    assert ev.box_source is ev.methods[0].method.detector
    # --detector = the bundle: the mocha method shares it (one forward per query pass)
    ev = Evaluator(_config(world, bundle, tmp_path, "b", methods=[MethodSpec("student", detector=plain),
                                                                    MethodSpec("mocha", bundle=bundle)]))
    assert ev.box_source is ev.methods[1].method.detector
    assert ev.methods[0].method.detector is not ev.box_source
    # the `student` method without its own weights uses --detector; without --detector it is an error
    ev = Evaluator(_config(world, plain, tmp_path, "c", methods=[MethodSpec("student")]))
    assert ev.methods[0].method.detector is ev.box_source
    with pytest.raises(ConfigError, match="needs detector=PATH"):
        Evaluator(_config(world, None, tmp_path, "d", methods=[MethodSpec("mocha", bundle=bundle),
                                                                MethodSpec("student")]))
    with pytest.raises(ConfigError, match="no detector proposes the query boxes"):
        Evaluator(_config(world, None, tmp_path, "e", methods=[MethodSpec("teacher", teacher=HistTeacher())]))


def test_feature_cache_resumes_and_is_keyed(tmp_path, paper_student, monkeypatch):
    import mocha.evaluate.episodic as episodic

    monkeypatch.setattr(episodic, "CHUNK", 4)  # 12 images → 3 chunks
    data = make_paper_dataset(tmp_path / "p", "perseg", n_inst=4, per_inst=3)
    cfg = _config(data, paper_student, tmp_path, "c", shots=[1])
    calls = {"n": 0}

    class Boom(RuntimeError):
        pass

    # interrupted in the second chunk: the first chunk's features are on disk
    ev = Evaluator(cfg)
    for mf in ev.methods:
        orig = mf.method.features

        def flaky(*a, _orig=orig, **k):
            calls["n"] += 1
            # 2 passes (student, teacher; teacher-gt reuses the teacher's GT features) x 4 images of chunk 1, then fail
            if calls["n"] > 2 * 4 + 1:
                raise Boom()
            return _orig(*a, **k)

        mf.method.features = flaky
    with pytest.raises(Boom):
        ev.extract()
    # resume: only chunks 2 and 3 are computed
    ev = Evaluator(cfg)
    calls["n"] = 0
    for mf in ev.methods:
        orig = mf.method.features
        mf.method.features = lambda *a, _orig=orig, **k: (calls.__setitem__("n", calls["n"] + 1), _orig(*a, **k))[1]
    ev.extract()
    assert calls["n"] == 2 * 8
    first = [ev.run_episode(mf, ev.episodes[1][0])[0] for mf in ev.methods]
    # a complete cache: no method runs at all, same features and metrics
    ev2 = Evaluator(cfg)
    for mf in ev2.methods:
        mf.method.features = lambda *a, **k: (_ for _ in ()).throw(AssertionError("cache miss"))
    ev2.extract()
    assert [ev2.run_episode(mf, ev2.episodes[1][0])[0] for mf in ev2.methods] == first
    for a, b in zip(ev.methods, ev2.methods, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a.query, b.query, strict=True))
    assert all(torch.equal(a.det_boxes, b.det_boxes) for a, b in zip(ev.images, ev2.images, strict=True))
    # other detector settings → other keys (recomputed); cache=False → nothing read
    assert Evaluator(_config(data, paper_student, tmp_path, "c", conf=0.2)).images_key != ev.images_key
    assert Evaluator(_config(data, paper_student, tmp_path, "c", cache=False)).cache.root is None


def test_box_source_forward_is_reused_with_identical_features(tmp_path, world):
    plain = tmp_path / "plain.safetensors"
    torch.manual_seed(0)
    Student.create("yolov8n.yaml", names=["mug", "bottle", "ball", "book"]).save(plain)
    ev = Evaluator(_config(world, plain, tmp_path, "r", methods=[MethodSpec("student")], cache=False))
    student = ev.methods[0].method
    forwards = {"n": 0}
    orig = student.detector.forward

    def counting(*a, **k):
        forwards["n"] += 1
        return orig(*a, **k)

    student.detector.forward = counting
    ev.extract()
    assert forwards["n"] == len(ev.images)  # one forward per image: detection and features share it
    from mocha.data.loader import DetectionDataset

    raw, item = DetectionDataset(ev.records, 64).load(1)
    im = ev.images[1]
    sup, qry = student.features(item["image"][None], raw, item["letterbox"], [im.gt_boxes, im.det_boxes],
                                [["mug"] * len(im.gt_boxes), ["mug"] * len(im.det_boxes)])
    assert len(qry) > 0
    torch.testing.assert_close(ev.methods[0].support[1], sup)
    torch.testing.assert_close(ev.methods[0].query[1], qry)


def test_teacher_gt_reuses_the_teachers_gt_features(tmp_path, world):
    """teacher-gt embeds exactly the GT crops the teacher embeds for its support: one teacher pass, same features."""
    plain = tmp_path / "plain.safetensors"
    torch.manual_seed(0)
    Student.create("yolov8n.yaml", names=["mug", "bottle", "ball", "book"]).save(plain)
    a, b = HistTeacher(), HistTeacher()
    calls = {"a": 0, "b": 0}
    for key, t in (("a", a), ("b", b)):
        orig = t.embed

        def counting(crops, labels, key=key, orig=orig):
            calls[key] += 1
            return orig(crops, labels)

        t.embed = counting
    ev = Evaluator(_config(world, plain, tmp_path, "twin", cache=False,
                           methods=[MethodSpec("teacher", teacher=a), MethodSpec("teacher-gt", teacher=b)]))
    assert ev._twins() == {1: 0}
    ev.extract()
    assert calls["a"] == len(ev.images) and calls["b"] == 0
    for i in range(len(ev.images)):
        assert torch.equal(ev.methods[1].support[i], ev.methods[0].support[i])
        assert torch.equal(ev.methods[1].query[i], ev.methods[0].support[i])
    # another teacher is no twin
    other = Evaluator(_config(world, plain, tmp_path, "other", cache=False,
                              methods=[MethodSpec("teacher", teacher=a), MethodSpec("teacher-gt", teacher="builtin")]))
    assert other._twins() == {}


@pytest.mark.timeout(600)
def test_worker_processes_score_the_same_episodes_as_one_process(tmp_path, world):
    plain = tmp_path / "plain.safetensors"
    torch.manual_seed(0)
    Student.create("yolov8n.yaml", names=["mug", "bottle", "ball", "book"]).save(plain)
    runs = {}
    for workers in (1, 2):
        ev = Evaluator(_config(world, plain, tmp_path, f"w{workers}", episodes=5, shots=[1, 2], cache=False,
                               workers=workers))
        assert ev._workers() == workers
        runs[workers] = (ev.run()["results"], ev.examples)
    def metrics(results):  # timings and memory are measured per run; the metrics must be identical
        return {s: {m: {k: v for k, v in r.items() if not k.endswith(("_ms_per_image", "_mb"))}
                    for m, r in by.items()} for s, by in results.items()}

    assert metrics(runs[2][0]) == metrics(runs[1][0])  # every metric of every method and shot count, exactly
    assert runs[1][0]["1"]["teacher-gt"]["map50_95"] > 0
    for key, (ep, preds, truths) in runs[1][1].items():
        ep2, preds2, truths2 = runs[2][1][key]
        assert ep2 == ep and len(preds2) == len(preds) > 0 and len(truths2) == len(truths)
        assert all(np.array_equal(a.label, b.label) for a, b in zip(preds, preds2, strict=True))
    # auto: in-process for a handful of episodes
    assert Evaluator(_config(world, plain, tmp_path, "auto", episodes=3, cache=False))._workers() == 1


def test_shipped_names_are_stamped_by_their_files():
    """`bundle=coco` / `detector=nanodet-g`: the feature cache is keyed by the shipped files, not the bare name
    (which stamps nothing, so a new shipped bundle was served the previous bundle's cached features)."""
    from mocha.evaluate.cache import file_stamp, source_stamp
    from mocha.models.bundle import resolve_bundle
    from mocha.models.nanodet import shipped_path

    coco = source_stamp("coco")  # the bundle's files and the shipped NanoDet-g it refers to
    assert coco == file_stamp(resolve_bundle("coco")) + file_stamp(shipped_path())
    assert any(f[0].endswith("translator.safetensors") for f in coco)
    assert source_stamp("nanodet-g") == file_stamp(shipped_path()) != []
    assert file_stamp("coco") == [] and source_stamp(None) is None
