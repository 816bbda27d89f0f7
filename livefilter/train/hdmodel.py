"""The HD generator: the tiny student at low resolution plus two gain maps that guide its output
up to the frame's full size.

The student paints the look (palette, shading, strokes) at short side 256, where it is cheap. At
the output size the runtime then computes, with a handful of 8-bit OpenCV operations
(livefilter/upsample.py):

    out = up(y) + a * (I - up(x)) - k * blackhat(luma(I))

``I`` is the full-resolution frame, ``x`` the low-resolution input and ``y`` the student's output.
``I - up(x)`` is the detail the low resolution lost, so ``a`` decides how much of the photo's own
edges come back sharp (the affine, guided-filter part: Deep Guided Filter, Wu et al. 2018,
predicts such coefficients at low resolution and upsamples only them). An affine map cannot draw
a line the input does not have, so ``k`` gates a dark-line map of the frame itself (the 5x5
black-hat the fidelity check also uses) into the strokes the teacher draws. ``a`` and ``k`` come
from a small head at 1/4 of the low resolution; both start near zero, so an untrained head gives
the student's output bilinearly upsampled, as the plain engine does.

The ONNX file holds the low-resolution part only, with two outputs (``output``, the student's
picture, and ``gains``), so the same file also runs as a plain student; the full-resolution step
is fixed arithmetic in the runtime, measured 10-30x cheaper in OpenCV's 8-bit kernels than in
ONNX Runtime's float Resize and Slice here.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from livefilter.engine import HD_META
from livefilter.upsample import GAIN_STEPS

from .losses import black_hat, luma
from .model import MULTIPLE, Student, StudentConfig, save_with_meta, to_dcr

GAIN_MAX = 255 / GAIN_STEPS  # the runtime stores gains as uint8 in 1/64 steps
COLOUR_META = "livefilter.colour"


@dataclass
class HeadConfig:
    hidden: int = 32  # width of the gain network (runs at 1/4 of the low resolution)


class GainHead(nn.Module):
    """(x, y) at low resolution -> gains (a, k) at 1/4 of it, in [0, GAIN_MAX]."""

    def __init__(self, cfg: HeadConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or HeadConfig()
        c = self.cfg.hidden
        self.inp = nn.Conv2d(96, c, 1)
        self.mid = nn.Conv2d(c, c, 3, padding=1)
        self.out = nn.Conv2d(c, 2, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, 0.05)

    dcr = False

    def _unshuffle(self, z: torch.Tensor) -> torch.Tensor:
        from .model import _SpaceToDepthDCR

        return _SpaceToDepthDCR.apply(z, 4) if self.dcr else F.pixel_unshuffle(z, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = torch.cat([self._unshuffle(x), self._unshuffle(y)], 1)
        z = F.relu(self.mid(F.relu(self.inp(z))))
        return self.out(z).clamp(0.0, GAIN_MAX)


def guided_up(x: torch.Tensor, y: torch.Tensor, gains: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """The runtime's full-resolution step, differentiable (all tensors in [-1, 1] units)."""
    size = guide.shape[-2:]
    up = lambda z: F.interpolate(z, size=size, mode="bilinear", align_corners=False)  # noqa: E731
    g = up(gains)
    lines = black_hat(luma(guide))
    return (up(y) + g[:, :1] * (guide - up(x)) - g[:, 1:2] * lines).clamp(-1, 1)


@dataclass
class ColourConfig:
    width: int = 0  # channels of the colour head's first convolution (0: no colour head)


CONTEXT_SHRINK = 8  # the colour head reads the whole student input averaged over 8x8 blocks


class ColourHead(nn.Module):
    """Whole picture -> one colour matrix and offset for the student's output.

    The teachers normalise every layer over the whole picture, so their palette moves with what
    the rest of the picture holds; a fully convolutional student only sees a neighbourhood. A
    ridge fit from the student's pooled features to each picture's best colour map took the
    held-out palette dE of the 720p look from 5.31 to 4.89, so this head learns that map end to
    end. It reads a thumbnail, so training crops can be given their whole picture's context.
    """

    def __init__(self, cfg: ColourConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.width
        self.c1 = nn.Conv2d(3, c, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.fc1 = nn.Linear(4 * c, 64)
        self.fc2 = nn.Linear(64, 12)
        nn.init.zeros_(self.fc2.weight)  # starts as the identity map: a trained student can grow one
        nn.init.zeros_(self.fc2.bias)

    def params(self, thumb: torch.Tensor) -> torch.Tensor:
        """(n, 3, h, w) thumbnail -> (n, 12): a 3x3 matrix (added to the identity) and an offset."""
        z = F.relu(self.c2(F.relu(self.c1(thumb))))
        mean = z.mean((2, 3))
        std = ((z - mean[..., None, None]) ** 2).mean((2, 3)).add(1e-5).sqrt()
        return self.fc2(F.relu(self.fc1(torch.cat([mean, std], 1))))

    def forward(self, y: torch.Tensor, x: torch.Tensor, context: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The student's picture ``y`` recoloured for its whole frame: ``context`` holds one
        thumbnail per picture (training crops); by default ``x`` averaged over 8x8 blocks."""
        thumbs = [F.avg_pool2d(x, CONTEXT_SHRINK)] if context is None else context
        p = torch.cat([self.params(t) for t in thumbs])
        return apply_colour(y, p).clamp(-1.0, 1.0)  # a picture, as the runtime reads it


def apply_colour(y: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(I + M) y + b per picture, as one grouped 1x1 convolution: a single cheap Conv in the file."""
    if torch.onnx.is_in_onnx_export():  # batch 1: the exporter needs the kernel's shape as numbers
        weight = (p[0, :9].reshape(3, 3) + torch.eye(3, dtype=y.dtype)).reshape(3, 3, 1, 1)
        return F.conv2d(y, weight, p[0, 9:])
    n, _, h, w = y.shape
    weight = (p[:, :9].reshape(n, 3, 3) + torch.eye(3, dtype=y.dtype)).reshape(n * 3, 3, 1, 1)
    out = F.conv2d(y.reshape(1, n * 3, h, w), weight, p[:, 9:].reshape(n * 3), groups=n)
    return out.reshape(n, 3, h, w)


class HDStudent(nn.Module):
    def __init__(self, student: Student, head: GainHead, colour: ColourHead | None = None) -> None:
        super().__init__()
        self.student = student
        self.head = head
        self.colour = colour

    def low(self, x: torch.Tensor, context: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``context``: one thumbnail per picture of the whole frame a crop came from (training);
        by default the input itself, averaged over 8x8 blocks, as the exported file does."""
        y = self.student(x)
        if self.colour is not None:
            y = self.colour(y, x, context)
        return y, self.head(x, y)

    def forward(self, x: torch.Tensor, guide: torch.Tensor, context: list[torch.Tensor] | None = None) -> torch.Tensor:
        y, gains = self.low(x, context)
        return guided_up(x, y, gains, guide)


class _LowGraph(nn.Module):
    def __init__(self, model: HDStudent) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.low(x)


def _head_to_dcr(sd: dict[str, torch.Tensor], inverse: bool = False) -> dict[str, torch.Tensor]:
    from .model import dcr_permutation

    out = dict(sd)
    w = out["inp.weight"].clone()
    for start in (0, 48):
        perm = torch.tensor(dcr_permutation(3, 4))
        if inverse:
            perm = torch.argsort(perm)
        w[:, start:start + 48] = w[:, start + perm]
    out["inp.weight"] = w.contiguous()
    return out


def export_hd_onnx(model: HDStudent, path: Path, extra_meta: dict[str, str] | None = None) -> None:
    """ONNX opset 17: input (1,3,h,w) RGB [-1, 1]; outputs `output` (1,3,h,w) and `gains` (1,2,h/4,w/4)."""
    import onnx

    model = model.eval()
    s = Student(model.student.cfg).eval()
    s.load_state_dict(to_dcr(model.student.state_dict(), model.student.cfg))
    s.dcr = True
    h = GainHead(model.head.cfg).eval()
    h.load_state_dict(_head_to_dcr(model.head.state_dict()))
    h.dcr = True
    colour = None
    if model.colour is not None:
        colour = ColourHead(model.colour.cfg).eval()
        colour.load_state_dict(model.colour.state_dict())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LowGraph(HDStudent(s, h, colour)), (torch.zeros(1, 3, 64, 96),), str(tmp),
            input_names=["input"], output_names=["output", "gains"],
            dynamic_axes={"input": {2: "h", 3: "w"}, "output": {2: "h", 3: "w"}, "gains": {2: "h4", 3: "w4"}},
            opset_version=17, do_constant_folding=True, dynamo=False,
        )
    m = onnx.load(str(tmp))
    meta = dict(extra_meta or {})
    meta |= {
        "livefilter.multiple": str(MULTIPLE),
        "livefilter.layout": "NCHW",
        "livefilter.range": "-1,1",
        "livefilter.color": "RGB",
        "livefilter.arch": json.dumps(asdict(model.student.cfg), sort_keys=True),
        "livefilter.head": json.dumps(asdict(model.head.cfg), sort_keys=True),
        "livefilter.unshuffle": "dcr",
        HD_META: "gains-v1",
    }
    if model.colour is not None:
        meta[COLOUR_META] = json.dumps(asdict(model.colour.cfg), sort_keys=True)
    save_with_meta(m, meta, tmp, path)


def load_hd_onnx(path: Path) -> HDStudent:
    """The torch model behind an HD file this code exported."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    meta = {p.key: p.value for p in m.metadata_props}
    scfg = StudentConfig(**json.loads(meta["livefilter.arch"]))
    hcfg = HeadConfig(**json.loads(meta["livefilter.head"]))
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    part = lambda prefix: {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}  # noqa: E731
    colour = ColourHead(ColourConfig(**json.loads(meta[COLOUR_META]))) if COLOUR_META in meta else None
    model = HDStudent(Student(scfg), GainHead(hcfg), colour)
    model.student.load_state_dict(to_dcr(part("model.student."), scfg, inverse=True))
    model.head.load_state_dict(_head_to_dcr(part("model.head."), inverse=True))
    if colour is not None:
        colour.load_state_dict(part("model.colour."))
    return model


def hd_from_student_onnx(path: Path, head: HeadConfig | None = None, keep_heads: bool = False,
                         colour: ColourConfig | None = None) -> HDStudent:
    """The student of a shipped file (plain or HD) with a fresh, near no-op gain head: the start
    of HD training, so re-running the recipe on its own output trains the same head again.
    ``keep_heads`` keeps an HD file's gain head (and colour head) to train on from there;
    ``colour`` grows a fresh identity colour head where the file has none."""
    import onnx

    from .model import load_onnx_student

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if HD_META in meta:
        loaded = load_hd_onnx(path)
        model = loaded if keep_heads else HDStudent(loaded.student, GainHead(head))
    else:
        cfg, weights = load_onnx_student(path)
        st = Student(cfg)
        st.load_state_dict(weights)
        model = HDStudent(st, GainHead(head))
    if colour is not None and colour.width and model.colour is None:
        model.colour = ColourHead(colour)
    return model
