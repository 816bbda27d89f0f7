"""Distillation losses: pixels, gradients, SSIM and the teacher's line art.

Plain L1 learns the palette but blurs the outlines away; the gradient term keeps edges sharp and
the black-hat term (the same 5x5-ellipse dark-line map the fidelity check measures, made
differentiable with max-pooling) asks for the teacher's strokes explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def luma(x: torch.Tensor) -> torch.Tensor:
    """RGB (N,3,H,W) -> luminance (N,1,H,W), same range."""
    return (x * _LUMA.to(x)).sum(dim=1, keepdim=True)


def _dilate_ellipse5(x: torch.Tensor) -> torch.Tensor:
    # OpenCV's 5x5 ellipse is a 3x5 block plus the centre column's two extra pixels: the union
    # of a (3, 5) and a (5, 1) rectangle, and dilation by a union is the max of the dilations.
    # max_pool2d pads with -inf, matching OpenCV's "ignore the outside" morphology border.
    a = F.max_pool2d(x, (3, 5), stride=1, padding=(1, 2))
    b = F.max_pool2d(x, (5, 1), stride=1, padding=(2, 0))
    return torch.maximum(a, b)


def black_hat(y: torch.Tensor) -> torch.Tensor:
    """closing(y) - y with a 5x5 ellipse: dark-line strength (>= 0)."""
    closed = -_dilate_ellipse5(-_dilate_ellipse5(y))
    return closed - y


def gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def _gauss_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of tensors in [-1, 1] (per channel, Gaussian window, valid region)."""
    x = (x + 1) * 0.5
    y = (y + 1) * 0.5
    c = x.shape[1]
    w = window.to(x).expand(c, 1, -1, -1)
    blur = lambda z: F.conv2d(z, w, groups=c)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return m.mean()


def line_correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pearson correlation per picture of two line maps (N,1,H,W) -> (N,).

    L1 on the maps is dominated by the many line-free pixels; the correlation is what the
    fidelity check scores, and it asks for strokes in the right places whatever their contrast.
    """
    a = a.flatten(1)
    b = b.flatten(1)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


_RGB2XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
_WHITE = torch.tensor([0.950456, 1.0, 1.088754]).view(1, 3, 1, 1)


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """RGB in [-1, 1] (N,3,H,W) -> CIE Lab, as OpenCV's float RGB2LAB does (sRGB, D65)."""
    c = ((x + 1) * 0.5).clamp(0.0, 1.0)
    lin = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = torch.einsum("ij,njhw->nihw", _RGB2XYZ.to(x), lin) / _WHITE.to(x)
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-8) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    big = xyz[:, 1:2] > 0.008856
    light = torch.where(big, 116 * fy - 16, 903.3 * xyz[:, 1:2])
    return torch.cat([light, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def palette_de(s: torch.Tensor, t: torch.Tensor, factor: int = 16) -> torch.Tensor:
    """Mean CIE76 dE after averaging ``factor`` x ``factor`` cells: the palette score of the
    fidelity check. Pixel L1 is dominated by strokes and texture; this asks for the colours of
    the areas between them."""
    a, b = (rgb_to_lab(F.avg_pool2d(z, factor)) for z in (s, t))
    return ((a - b).pow(2).sum(1) + 1e-6).sqrt().mean()


@dataclass
class LossWeights:
    l1: float = 1.0
    grad: float = 1.0
    line: float = 3.0
    ssim: float = 0.5
    line_mean: float = 1.0
    line_corr: float = 0.0
    palette: float = 0.0  # per 100 dE


class DistillLoss(torch.nn.Module):
    """Weighted sum; returns (total, parts) so the log shows what moves."""

    def __init__(self, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.w = weights or LossWeights()
        self.register_buffer("window", _gauss_window(), persistent=False)

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        parts: dict[str, torch.Tensor] = {}
        parts["l1"] = (s - t).abs().mean()
        sx, sy = gradients(s)
        tx, ty = gradients(t)
        parts["grad"] = (sx - tx).abs().mean() + (sy - ty).abs().mean()
        bs, bt = black_hat(luma(s)), black_hat(luma(t))
        parts["line"] = (bs - bt).abs().mean()
        # mean line strength per picture: the teacher's overall ink density
        parts["line_mean"] = (bs.mean(dim=(1, 2, 3)) - bt.mean(dim=(1, 2, 3))).abs().mean()
        if self.w.ssim:  # the costliest part: skipped when it does not count
            parts["ssim"] = 1.0 - ssim(s, t, self.window)
        if self.w.line_corr:
            parts["line_corr"] = 1.0 - line_correlation(bs, bt).mean()
        if self.w.palette:
            parts["palette"] = palette_de(s, t) / 100.0
        total = sum(getattr(self.w, k) * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}
