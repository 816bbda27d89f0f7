#!/usr/bin/env python3
"""The README's and model card's pictures, made by the shipped styles through the runtime engine.

Sources whose licence allows shipping the results:
- scikit-image's `astronaut` (Eileen Collins, NASA photo, public domain; `pip install scikit-image`);
- a frame of the packaged sample clip (GRID corpus, CC BY 4.0; livefilter/samples/README.md).

Writes docs/before_after.jpg (photo | default style), docs/styles.jpg (photo and every fp32
style side by side) and, when the teachers are there (--teachers), docs/limitations.jpg (1:1
crops: input | teacher | student, for the model card). Every picture goes through
`livefilter.engine.Engine` at the default internal resolution, exactly as `livefilter image` does.

  python scripts/make_pictures.py                       # from the repository root
  python scripts/make_pictures.py --teachers ../shared/teachers
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from livefilter.engine import DEFAULT_RESOLUTION, DEFAULT_STYLE, Engine, resolve_model  # noqa: E402

STYLES = ("hayao", "shinkai", "cute")
TEACHERS = {"hayao": "animeganv2_hayao.onnx", "shinkai": "animeganv3_shinkai.onnx",
            "cute": "animeganv3_tiny_cute.onnx"}
SAMPLE_FRAME = 40  # mid-sentence, mouth open


def astronaut() -> np.ndarray:
    """scikit-image's astronaut photo as BGR (512x512)."""
    try:
        from skimage import data
    except ImportError:
        sys.exit("make_pictures: needs scikit-image for the astronaut photo: pip install scikit-image")
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def sample_frame(index: int = SAMPLE_FRAME) -> np.ndarray:
    """One frame of the packaged GRID sample clip, BGR."""
    import av

    from livefilter.demo import sample_clip

    with av.open(str(sample_clip())) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="bgr24")
    raise SystemExit(f"make_pictures: the sample has fewer than {index + 1} frames")


def label(image: np.ndarray, text: str) -> np.ndarray:
    """White text on a black box in the top-left corner (on a copy)."""
    out = image.copy()
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    (w, h), base = cv2.getTextSize(text, font, scale, 1)
    cv2.rectangle(out, (0, 0), (w + 10, h + base + 8), (0, 0, 0), -1)
    cv2.putText(out, text, (5, h + 4), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def fit_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (round(w * height / h), height), interpolation=cv2.INTER_AREA)


def row(cells: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Cells of equal height side by side with white gaps."""
    h = cells[0].shape[0]
    spacer = np.full((h, gap, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for cell in cells:
        parts += [cell, spacer]
    return np.concatenate(parts[:-1], axis=1)


def stack(rows: list[np.ndarray], gap: int = 4) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)[:-gap]


def write_jpeg(path: Path, image: np.ndarray, quality: int = 85) -> None:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality,
                                            cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    assert ok
    path.write_bytes(data.tobytes())
    print(f"wrote {path} ({len(data) // 1024} KB, {image.shape[1]}x{image.shape[0]})")


def crop(image: np.ndarray, box: tuple[int, int, int, int], zoom: int) -> np.ndarray:
    """``box`` = (x, y, w, h) cut out and enlarged ``zoom`` times with nearest pixels (pixels stay visible)."""
    x, y, w, h = box
    part = image[y:y + h, x:x + w]
    return cv2.resize(part, (w * zoom, h * zoom), interpolation=cv2.INTER_NEAREST)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the pictures (docs/)")
    parser.add_argument("--teachers", type=Path, default=None,
                        help="folder with the teacher .onnx files: also write docs/limitations.jpg")
    parser.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    photo = astronaut()
    engines = {s: Engine(resolve_model(s), resolution=args.resolution) for s in STYLES}
    styled = {s: engines[s](photo) for s in STYLES}

    height = 360
    write_jpeg(args.out / "before_after.jpg",
               row([label(fit_height(photo, height), "photo"),
                    label(fit_height(styled[DEFAULT_STYLE], height), f"livefilter ({DEFAULT_STYLE})")]))
    height = 300
    write_jpeg(args.out / "styles.jpg",
               row([label(fit_height(photo, height), "photo")]
                   + [label(fit_height(styled[s], height), s) for s in STYLES]))

    if args.teachers is None:
        return 0
    teacher = Engine(args.teachers / TEACHERS[DEFAULT_STYLE], resolution=args.resolution)
    frame = sample_frame()
    # (x, y, w, h) boxes in the source picture, shown 2x with nearest pixels.
    pictures = [("photo: face", photo, (160, 40, 140, 150), 2),
                ("photo: badge", photo, (120, 330, 140, 100), 2),
                ("sample clip: face", frame, (115, 125, 140, 150), 2)]
    rows = []
    for name, image, box, zoom in pictures:
        t, s = teacher(image), engines[DEFAULT_STYLE](image)
        cells = [crop(image, box, zoom), crop(t, box, zoom), crop(s, box, zoom)]
        titles = [f"input ({name})", "teacher (AnimeGANv2 Hayao)", f"student ({DEFAULT_STYLE}.onnx)"]
        rows.append(row([label(c, title) for c, title in zip(cells, titles)]))
    write_jpeg(args.out / "limitations.jpg", stack(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
