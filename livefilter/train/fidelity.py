"""How closely a student reproduces its teacher: PSNR, SSIM and the dark-line (line art) map.

Pure numpy/OpenCV so evaluation needs no torch. All functions take RGB uint8 pictures.
The line map is the morphological black-hat of luminance with a 5x5 ellipse: bright where a
thin dark stroke sits on a lighter surround, which is what AnimeGAN's outlines are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_ELLIPSE5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over RGB channels, Gaussian 11x11 window, sigma 1.5 (Wang et al. 2004)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for ch in range(a.shape[2]):
        x = a[..., ch].astype(np.float64)
        y = b[..., ch].astype(np.float64)
        blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
        mx, my = blur(x), blur(y)
        sxx = blur(x * x) - mx * mx
        syy = blur(y * y) - my * my
        sxy = blur(x * y) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        vals.append(m[5:-5, 5:-5].mean())
    return float(np.mean(vals))


def line_map(rgb: np.ndarray) -> np.ndarray:
    """Black-hat of luminance (float32, 0..255): the dark-line strength at each pixel."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, _ELLIPSE5).astype(np.float32)


def line_corr(a: np.ndarray, b: np.ndarray) -> float:
    la, lb = line_map(a).ravel(), line_map(b).ravel()
    la -= la.mean()
    lb -= lb.mean()
    den = float(np.sqrt((la * la).sum() * (lb * lb).sum()))
    return float((la * lb).sum() / den) if den > 0 else 0.0


@dataclass
class Scores:
    psnr: float
    ssim: float
    line_corr: float
    line_strength_student: float
    line_strength_teacher: float

    @property
    def line_ratio(self) -> float:
        return self.line_strength_student / max(self.line_strength_teacher, 1e-9)


def score(student: np.ndarray, teacher: np.ndarray) -> Scores:
    return Scores(
        psnr=psnr(student, teacher),
        ssim=ssim(student, teacher),
        line_corr=line_corr(student, teacher),
        line_strength_student=float(line_map(student).mean()),
        line_strength_teacher=float(line_map(teacher).mean()),
    )


def summarise(scores: list[Scores]) -> dict[str, float]:
    """Means over pictures; line ratio is the ratio of mean strengths (not a mean of ratios)."""
    if not scores:
        return {}
    ls = float(np.mean([s.line_strength_student for s in scores]))
    lt = float(np.mean([s.line_strength_teacher for s in scores]))
    return {
        "psnr": float(np.mean([s.psnr for s in scores])),
        "ssim": float(np.mean([s.ssim for s in scores])),
        "line_corr": float(np.mean([s.line_corr for s in scores])),
        "line_ratio": ls / max(lt, 1e-9),
        "n": float(len(scores)),
    }


def sharpness(rgb: np.ndarray) -> float:
    """Mean Sobel gradient magnitude of luminance: how crisp a picture is at its own size."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.sqrt(gx * gx + gy * gy).mean())


def palette_de(a: np.ndarray, b: np.ndarray, factor: int = 16) -> float:
    """Mean CIE76 colour difference after area-downscaling both by ``factor``: the palette, not
    the strokes."""
    h, w = a.shape[:2]
    size = (max(1, w // factor), max(1, h // factor))
    la, lb = (cv2.cvtColor(cv2.resize(z, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0,
                           cv2.COLOR_RGB2LAB) for z in (a, b))
    return float(np.sqrt(((la - lb) ** 2).sum(axis=2)).mean())


def score_hd(ours: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """The output-size metrics of the HD look (RGB uint8 of one size)."""
    return {"psnr": psnr(ours, ref), "ssim": ssim(ours, ref), "line_corr": line_corr(ours, ref),
            "sharpness": sharpness(ours) / max(sharpness(ref), 1e-9), "palette_de": palette_de(ours, ref)}


def face_boxes(detector_path: Path | None, bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
    """YuNet face boxes (x, y, w, h) grown 1.3x, clipped to the picture."""
    if detector_path is None or not detector_path.is_file():
        return []
    h, w = bgr.shape[:2]
    det = cv2.FaceDetectorYN.create(str(detector_path), "", (w, h), 0.7, 0.3, 50)
    _, faces = det.detect(bgr)
    out = []
    for f in faces if faces is not None else []:
        x, y, bw, bh = (float(v) for v in f[:4])
        cx, cy, s = x + bw / 2, y + bh / 2, 1.3
        x0, y0 = max(0, int(cx - bw * s / 2)), max(0, int(cy - bh * s / 2))
        x1, y1 = min(w, int(cx + bw * s / 2)), min(h, int(cy + bh * s / 2))
        if x1 - x0 >= 16 and y1 - y0 >= 16:
            out.append((x0, y0, x1 - x0, y1 - y0))
    return out
