"""Contact sheet for eyeballing ghost trails: the fastest-moving frames of a clip, per temporal mode.

Usage: python scripts/temporal_contact.py CLIP OUT.jpg [--model PATH] [--seconds 4] [--rows 2]

Columns: input, per-frame output (off), then each temporal configuration; rows: the frames with
the largest input motion (mean DIS flow magnitude), where a ghost would show first. A zoomed
crop around the strongest motion is placed under each full frame.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livefilter.bench import load_clip  # noqa: E402
from livefilter.engine import Engine  # noqa: E402
from livefilter.temporal import DEFAULT_MODE, DEFAULT_STRENGTH, make_temporal  # noqa: E402

TILE_W = 320


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("out")
    parser.add_argument("--model", required=True)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rows", type=int, default=2)
    args = parser.parse_args(argv)

    frames, _ = load_clip(args.clip, seconds=args.seconds)
    engine = Engine(args.model, resolution=args.resolution)
    filtered = [engine(f) for f in frames]
    configs = [("ema", 0.8), ("motion", 0.8), (DEFAULT_MODE, DEFAULT_STRENGTH)]
    outputs = {}
    for mode, strength in configs:
        stage = make_temporal(mode, strength)
        outputs[f"{mode} {strength:g}"] = [stage(s, o) for s, o in zip(frames, filtered)]

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    motion = [0.0]
    centres = [(0, 0)]
    for a, b in zip(greys[:-1], greys[1:]):
        flow = dis.calc(a, b, None)
        mag = cv2.magnitude(flow[..., 0], flow[..., 1])
        motion.append(float(mag.mean()))
        # Flow in flat areas is noise; aim the zoom where textured content moves.
        texture = cv2.magnitude(cv2.Sobel(a, cv2.CV_32F, 1, 0), cv2.Sobel(a, cv2.CV_32F, 0, 1))
        focus = cv2.GaussianBlur(mag * np.minimum(texture / 40.0, 1.0), (0, 0), 15)
        y, x = np.unravel_index(int(np.argmax(focus)), focus.shape)
        centres.append((int(x), int(y)))
    skip = min(5, len(frames) - 1)  # history needs a few frames before ghosts can form
    order = sorted(range(skip, len(frames)), key=lambda i: -motion[i])
    picked: list[int] = []
    for i in order:
        if all(abs(i - j) > 5 for j in picked):
            picked.append(i)
        if len(picked) == args.rows:
            break

    h, w = frames[0].shape[:2]
    scale = TILE_W / w
    crop = max(64, min(h, w) // 3)
    rows = []
    for i in sorted(picked):
        cx, cy = centres[i]
        x0 = int(np.clip(cx - crop // 2, 0, w - crop))
        y0 = int(np.clip(cy - crop // 2, 0, h - crop))
        columns = [("input", frames[i]), ("per-frame (off)", filtered[i])]
        columns += [(name, seq[i]) for name, seq in outputs.items()]
        tiles = []
        for name, img in columns:
            full = cv2.resize(img, (TILE_W, round(h * scale)), interpolation=cv2.INTER_AREA)
            full = _label(full, f"{name}  frame {i}")
            cv2.rectangle(full, (int(x0 * scale), int(y0 * scale)),
                          (int((x0 + crop) * scale), int((y0 + crop) * scale)), (0, 255, 255), 1)
            zoom = cv2.resize(img[y0:y0 + crop, x0:x0 + crop], (TILE_W, TILE_W),
                              interpolation=cv2.INTER_NEAREST)
            tiles.append(np.vstack([full, zoom]))
        rows.append(np.hstack(tiles))
    sheet = np.vstack(rows)
    if not cv2.imwrite(args.out, sheet, [cv2.IMWRITE_JPEG_QUALITY, 88]):
        print(f"cannot write {args.out}", file=sys.stderr)
        return 1
    print(f"{args.out}: frames {sorted(picked)} (mean input motion "
          f"{', '.join(f'{motion[i]:.2f}' for i in sorted(picked))} px/frame)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
