"""The student generator: all work at 1/4 and 1/8 resolution, built for a 2-core CPU.

Pixel-unshuffle folds each 4x4 patch into channels, so the picture's fine detail (where line art
lives) reaches the network without any full-resolution convolution; depthwise-separable residual
blocks do the work cheaply; a small 1/8 branch widens the view for shading and palette; the
head predicts a whole 4x4 patch per position and pixel-shuffle unfolds it. Fully convolutional:
any H, W that is a multiple of 8 works.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MULTIPLE = 8
UNSHUFFLE_META = "livefilter.unshuffle"  # "dcr": weights after each space-to-depth are stored for ONNX's order


class _SpaceToDepthDCR(torch.autograd.Function):
    """Space-to-depth in ONNX's DCR channel order, exported as one SpaceToDepth node.

    torch's pixel_unshuffle exports as a 6-D Reshape/Transpose/Reshape, which onnxruntime runs
    about 10x slower than its SpaceToDepth kernel (2.5 vs 0.25 ms on a 256x448 picture here).
    The two orders differ only by a channel permutation, which the next convolution absorbs.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, r: int) -> torch.Tensor:  # noqa: ARG004
        n, c, h, w = x.shape
        y = x.reshape(n, c, h // r, r, w // r, r).permute(0, 3, 5, 1, 2, 4)
        return y.reshape(n, r * r * c, h // r, w // r)

    @staticmethod
    def symbolic(g, x, r: int):  # noqa: ANN001
        return g.op("SpaceToDepth", x, blocksize_i=r)


def dcr_permutation(channels: int, r: int) -> list[int]:
    """perm such that conv_weight[:, perm] reads DCR-ordered input as it read pixel_unshuffle's."""
    perm = [0] * (channels * r * r)
    for c in range(channels):
        for i in range(r):
            for j in range(r):
                perm[(i * r + j) * channels + c] = c * r * r + i * r + j
    return perm


def to_dcr(weights: dict[str, torch.Tensor], cfg: "StudentConfig", inverse: bool = False) -> dict[str, torch.Tensor]:
    """Reorder the input channels that come from a space-to-depth, in every convolution reading one."""
    out = dict(weights)
    # (weight, first input channel, channels before the space-to-depth, block size)
    folded = [("stem.weight", 0, 3, 4), ("down.weight", 0, cfg.c1, 2)]
    if cfg.detail:
        folded.append(("detail_in.weight", cfg.c1, 3, 4))  # reads cat(decoder features, raw patch)
    if cfg.refine:
        folded += [("refine_in.weight", 0, 3, 2), ("refine_in.weight", 12, 3, 2)]  # cat(input, output)
    for name, start, channels, r in folded:
        perm = torch.tensor(dcr_permutation(channels, r))
        if inverse:
            perm = torch.argsort(perm)
        w = out[name].clone()
        w[:, start:start + len(perm)] = w[:, start + perm]
        out[name] = w.contiguous()
    return out


@dataclass
class StudentConfig:
    c1: int = 48  # channels at 1/4 resolution
    c2: int = 96  # channels at 1/8 resolution
    n_enc: int = 2  # residual blocks at 1/4 before going down
    n_mid: int = 4  # residual blocks at 1/8
    n_dec: int = 2  # residual blocks at 1/4 after coming back
    stem3x3: bool = True  # dense 3x3 stem on the unshuffled patches (sharper line pickup)
    head3x3: bool = True  # dense 3x3 head (smooth seams between predicted 4x4 patches)
    detail: int = 0  # width of a per-patch MLP reading decoder features + the raw 4x4 input patch (0: none)
    detail_depth: int = 1  # hidden layers of that MLP; the ones after the first are residual
    refine: int = 0  # width of a 1/2-resolution 3x3 refinement of the output from the input (0: none)


class DSBlock(nn.Module):
    """x + pw(dw(relu(pw(dw(x))))): two depthwise-separable convs with a skip."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw1 = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.pw1 = nn.Conv2d(c, c, 1)
        self.dw2 = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.pw2 = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.pw2.weight)  # start as identity: deep residual stacks train calmly
        nn.init.zeros_(self.pw2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.pw1(self.dw1(x)))
        return x + self.pw2(self.dw2(y))


class Student(nn.Module):
    """RGB [-1, 1] NCHW -> RGB [-1, 1] NCHW, same size (H, W multiples of 8)."""

    def __init__(self, cfg: StudentConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or StudentConfig()
        self.cfg = cfg
        c1, c2 = cfg.c1, cfg.c2
        if cfg.stem3x3:
            self.stem = nn.Conv2d(48, c1, 3, padding=1)
        else:
            self.stem = nn.Conv2d(48, c1, 1)
        self.enc = nn.Sequential(*[DSBlock(c1) for _ in range(cfg.n_enc)])
        self.down = nn.Conv2d(4 * c1, c2, 1)  # after pixel-unshuffle(2)
        self.mid = nn.Sequential(*[DSBlock(c2) for _ in range(cfg.n_mid)])
        self.up = nn.Conv2d(c2, 4 * c1, 1)  # before pixel-shuffle(2)
        self.dec = nn.Sequential(*[DSBlock(c1) for _ in range(cfg.n_dec)])
        if cfg.head3x3:
            self.head = nn.Conv2d(c1, 48, 3, padding=1)
        else:
            self.head = nn.Conv2d(c1, 48, 1)
        if cfg.detail:  # nonlinear patch decoder with the input's own pixels: where fine lines come from
            self.detail_in = nn.Conv2d(c1 + 48, cfg.detail, 1)
            # h <- relu(h + W h): zero W is the identity on h >= 0 (and still gets gradient there),
            # so a trained student can grow deeper without changing its output
            self.detail_mid = nn.ModuleList(nn.Conv2d(cfg.detail, cfg.detail, 1) for _ in range(cfg.detail_depth - 1))
            for layer in self.detail_mid:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            self.detail_out = nn.Conv2d(cfg.detail, 48, 1)
            nn.init.zeros_(self.detail_out.weight)  # starts as a no-op, so a trained student can grow one
            nn.init.zeros_(self.detail_out.bias)
        if cfg.refine:  # sees 6x6-pixel neighbourhoods of input and output across patch seams
            self.refine_in = nn.Conv2d(24, cfg.refine, 3, padding=1)
            self.refine_out = nn.Conv2d(cfg.refine, 12, 1)
            nn.init.zeros_(self.refine_out.weight)
            nn.init.zeros_(self.refine_out.bias)

    dcr = False  # True only on the copy export_onnx makes: weights reordered for SpaceToDepth

    def _unshuffle(self, x: torch.Tensor, r: int) -> torch.Tensor:
        return _SpaceToDepthDCR.apply(x, r) if self.dcr else F.pixel_unshuffle(x, r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self._unshuffle(x, 4)
        e = self.enc(F.relu(self.stem(patches)))
        m = F.relu(self.down(self._unshuffle(e, 2)))
        m = self.mid(m)
        u = F.pixel_shuffle(self.up(m), 2)
        d = self.dec(e + u)  # no ReLU here: a negative-going branch must not silence the skip
        h = self.head(d)
        if self.cfg.detail:
            g = F.relu(self.detail_in(torch.cat([d, patches], 1)))
            for layer in self.detail_mid:
                g = F.relu(g + layer(g))
            h = h + self.detail_out(g)
        y = F.pixel_shuffle(h, 4)
        if self.cfg.refine:
            z = torch.cat([self._unshuffle(x, 2), self._unshuffle(y, 2)], 1)
            y = y + F.pixel_shuffle(self.refine_out(F.relu(self.refine_in(z))), 2)
        return torch.tanh(y)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def export_onnx(model: Student, path: Path, extra_meta: dict[str, str] | None = None) -> None:
    """ONNX opset 17, dynamic H and W, batch 1, with the facts the runtime engine reads."""
    import onnx

    model = model.eval()
    fast = Student(model.cfg).eval()
    fast.load_state_dict(to_dcr(model.state_dict(), model.cfg))
    fast.dcr = True
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    dummy = torch.zeros(1, 3, 64, 64)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exact here
        warnings.simplefilter("ignore")
        _export(fast, dummy, tmp)
    m = onnx.load(str(tmp))
    meta = dict(extra_meta or {})  # the exporter's own facts below always win
    meta |= {
        "livefilter.multiple": str(MULTIPLE),
        "livefilter.layout": "NCHW",
        "livefilter.range": "-1,1",
        "livefilter.color": "RGB",
        "livefilter.arch": json_config(model.cfg),
        UNSHUFFLE_META: "dcr",
    }
    save_with_meta(m, meta, tmp, path)


def save_with_meta(m, meta: dict[str, str], tmp: Path, path: Path) -> None:
    """Replace an exported model's metadata, check it, and move it into place atomically."""
    import onnx

    del m.metadata_props[:]
    for k, v in meta.items():
        entry = m.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, str(tmp))
    tmp.replace(path)


def ema_update(ema: nn.Module, model: nn.Module, step: int, cap: float) -> None:
    """Exponential moving average of the weights, warming up over the first steps."""
    decay = min(cap, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)


def json_config(cfg: StudentConfig) -> str:
    return json.dumps(asdict(cfg), sort_keys=True)


def _export(model: nn.Module, dummy: torch.Tensor, tmp: Path) -> None:
    torch.onnx.export(
        model,
        (dummy,),
        str(tmp),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {2: "height", 3: "width"}, "output": {2: "height", 3: "width"}},
        opset_version=17,
        do_constant_folding=True,
        dynamo=False,
    )


def load_onnx_student(path: Path) -> tuple[StudentConfig, dict[str, torch.Tensor]]:
    """Architecture and weights of a student this code exported, so a shipped file can be fine-tuned."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    meta = {p.key: p.value for p in m.metadata_props}
    if "livefilter.arch" not in meta:
        raise SystemExit(f"distill: error: {path} has no livefilter.arch metadata: not a student exported by livefilter")
    cfg = StudentConfig(**json.loads(meta["livefilter.arch"]))
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    if meta.get(UNSHUFFLE_META) == "dcr":
        weights = to_dcr(weights, cfg, inverse=True)
    return cfg, weights
