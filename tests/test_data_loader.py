"""Image decoding, letterbox geometry (checked against pixels) and the torch dataset/collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mocha.data.dataset import load_dataset
from mocha.data.images import PAD_VALUE, image_size, letterbox, load_image, norm_cxcywh_to_xyxy, xyxy_to_norm_cxcywh
from mocha.data.loader import DetectionDataset, collate, yolo_targets
from mocha.data.records import read_split
from mocha.errors import ConfigError, DataError
from tests.fixtures_data import colour, make_yolo_dataset


def _bbox_of_colour(img: np.ndarray, rgb) -> np.ndarray:
    ys, xs = np.nonzero(np.abs(img.astype(int) - np.array(rgb)).sum(-1) <= 6)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("w, h, size", [(64, 48, 96), (48, 64, 96), (200, 50, 64), (64, 64, 64), (33, 17, 32)])
def test_letterbox_geometry_against_pixels(w, h, size):
    img = np.zeros((h, w, 3), np.uint8)
    box = np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]], np.float32).round()
    x1, y1, x2, y2 = box[0].astype(int)
    img[y1:y2, x1:x2] = (200, 30, 60)
    out, lb = letterbox(img, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    # padding is grey 114 and centred (the two margins differ by at most one pixel)
    nw, nh = round(w * lb.scale), round(h * lb.scale)
    assert abs(lb.pad_x - (size - nw - lb.pad_x)) <= 1 and abs(lb.pad_y - (size - nh - lb.pad_y)) <= 1
    if lb.pad_y >= 1:
        assert (out[0] == PAD_VALUE).all() and (out[-1] == PAD_VALUE).all()
    if lb.pad_x >= 1:
        assert (out[:, 0] == PAD_VALUE).all() and (out[:, -1] == PAD_VALUE).all()
    # the mapped box matches where the rectangle's pixels landed (to within resampling blur)
    mapped = lb.to_letterbox(box)
    seen = _bbox_of_colour(out, (200, 30, 60))
    assert np.abs(mapped[0] - seen).max() <= 1.0 + lb.scale
    # and the mapping back is its exact inverse
    np.testing.assert_allclose(lb.to_original(mapped), box, atol=1e-4)
    rng = np.random.default_rng(0)
    many = np.sort(rng.uniform(0, 1, (50, 2, 2)), axis=1).reshape(50, 4)[:, [0, 2, 1, 3]] * [w, h, w, h]
    np.testing.assert_allclose(lb.to_original(lb.to_letterbox(many)), many, atol=1e-3)


def test_to_original_clips_to_the_image():
    _, lb = letterbox(np.zeros((48, 64, 3), np.uint8), 96)
    out = lb.to_original(np.array([[-5.0, 0.0, 200.0, 96.0]]))
    np.testing.assert_allclose(out, [[0, 0, 64, 48]])
    assert lb.to_original(np.array([[-5.0, 0.0, 200.0, 96.0]]), clip=False)[0, 0] < 0


def test_box_format_conversions_round_trip():
    b = np.array([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.2, 0.2]], np.float32)
    xyxy = norm_cxcywh_to_xyxy(b, 64, 48)
    np.testing.assert_allclose(xyxy[0], [25.6, 14.4, 38.4, 33.6], atol=1e-4)
    np.testing.assert_allclose(xyxy_to_norm_cxcywh(xyxy, 64, 48), b, atol=1e-6)


def test_load_image_modes_and_errors(tmp_path):
    Image.fromarray(np.full((5, 7), 9, np.uint8), "L").save(tmp_path / "g.png")
    Image.fromarray(np.zeros((5, 7, 4), np.uint8), "RGBA").save(tmp_path / "a.png")
    assert load_image(tmp_path / "g.png").shape == (5, 7, 3) and load_image(tmp_path / "a.png").dtype == np.uint8
    with pytest.raises(DataError, match=r"missing\.png: image file not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    with pytest.raises(DataError, match=r"bad\.jpg: unreadable or corrupt image"):
        load_image(tmp_path / "bad.jpg")


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :8] = 255  # a white stripe on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    shown = load_image(tmp_path / "r.jpg")
    assert shown.shape == (64, 48, 3) and image_size(tmp_path / "r.jpg") == (48, 64)
    assert shown[:8].mean() > 200 and shown[-8:].mean() < 50  # the stripe is now on top


def test_dataset_items_and_collate(tmp_path):
    spec = load_dataset(make_yolo_dataset(tmp_path / "ds", size=(80, 48)))
    recs = read_split(spec, "personal")
    dset = DetectionDataset(recs, imgsz=96)
    item = dset[5]
    assert item["image"].shape == (3, 96, 96) and item["image"].dtype == torch.float32
    assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    assert item["coarse"].tolist() == [1, 1] and item["instance"].tolist() == [1, 4] and item["index"] == 5
    assert item["path"] == str(recs[5].image) and item["boxes_norm"].shape == (2, 4)
    # boxes are letterboxed pixels: the instance's coloured rectangle is where the box says
    lb_img = (item["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    seen = _bbox_of_colour(lb_img, colour(1))
    assert np.abs(item["boxes"][0].numpy() - seen).max() <= 2.0
    # and maps back to the normalized label of the original image
    back = item["letterbox"].to_original(item["boxes"].numpy())
    np.testing.assert_allclose(xyxy_to_norm_cxcywh(back, 80, 48), recs[5].boxes, atol=1e-5)

    batch = collate([dset[0], dset[1], dset[2]])
    assert batch["images"].shape == (3, 3, 96, 96)
    assert [len(b) for b in batch["boxes"]] == [2, 2, 2] and batch["index"] == [0, 1, 2]
    t = yolo_targets(batch)
    assert t["batch_idx"].tolist() == [0, 0, 1, 1, 2, 2] and t["cls"].shape == (6, 1)
    assert torch.all((t["bboxes"] > 0) & (t["bboxes"] <= 1))
    loader = torch.utils.data.DataLoader(dset, batch_size=4, collate_fn=collate)
    assert sum(b["images"].shape[0] for b in loader) == len(recs)


def test_dataset_raises_naming_a_corrupt_file(tmp_path):
    spec = load_dataset(make_yolo_dataset(tmp_path / "ds"))
    recs = read_split(spec, "base_train")
    recs[0].image.write_bytes(recs[0].image.read_bytes()[:200])
    with pytest.raises(DataError, match=r"b000\.png: unreadable or corrupt image"):
        DetectionDataset(recs, 64)[0]
    with pytest.raises(ConfigError, match="multiple of 32"):
        DetectionDataset(recs, 100)


def test_non_image_bytes_are_a_data_error_even_after_ultralytics_is_imported(tmp_path):
    import ultralytics  # noqa: F401 — it patches PIL.Image.open to try pi_heif on unknown bytes

    bad = tmp_path / "notes.jpg"
    bad.write_text("hello, not an image\n")
    with pytest.raises(DataError, match=r"notes\.jpg: unreadable or corrupt image"):
        load_image(bad)
