#!/usr/bin/env python3
"""Student vs teacher fidelity (PSNR, SSIM, line-map correlation, line strength), a contact
sheet (input | teacher | student), and optionally speed against other generators.

Pictures are resized so the short side is --resolution (as the runtime does), then each model
runs at that size (reflect-padded to its multiple). Needs numpy, OpenCV and onnxruntime only.

  python scripts/eval_fidelity.py --student weights/hayao.onnx \
      --teacher ../shared/teachers/animeganv2_hayao.onnx --photos ../shared/data/photos/faces \
      ../shared/data/photos/scenes --held-out --sheet sheet.png --speed ../shared/teachers/*.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livefilter.train import data as D  # noqa: E402
from livefilter.train.fidelity import score, summarise  # noqa: E402
from livefilter.train.teacher import OnnxGenerator  # noqa: E402


def contact_sheet(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], height: int = 256) -> np.ndarray:
    """One row per picture: input | teacher | student, labelled; returns BGR."""
    out = []
    for name, x, t, s in rows:
        cells = []
        for label, img in (("input " + name[:28], x), ("teacher", t), ("student", s)):
            h, w = img.shape[:2]
            cell = cv2.resize(img, (int(round(w * height / h)), height), interpolation=cv2.INTER_AREA)
            cell = cv2.cvtColor(cell, cv2.COLOR_RGB2BGR)
            cv2.putText(cell, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(cell, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            cells.append(cell)
        out.append(np.concatenate(cells, axis=1))
    width = max(r.shape[1] for r in out)
    out = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in out]
    return np.concatenate(out, axis=0)


def time_models(paths: list[Path], size: tuple[int, int], threads: int, repeats: int) -> dict[str, float]:
    """Median seconds per frame, models interleaved round by round so load hits all alike."""
    gens = {p.name: OnnxGenerator(p, threads=threads) for p in paths}
    x = np.random.default_rng(0).uniform(-1, 1, (size[0], size[1], 3)).astype(np.float32)
    for g in gens.values():
        g.run_float(x)
    times: dict[str, list[float]] = {k: [] for k in gens}
    for _ in range(repeats):
        for k, g in gens.items():
            t0 = time.perf_counter()
            g.run_float(x)
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", required=True, type=Path)
    p.add_argument("--teacher", required=True, type=Path)
    p.add_argument("--photos", nargs="+", required=True, help="photo folders or files")
    p.add_argument("--clips", nargs="*", default=[], help="clip folders: with --held-out, 4 frames of each held-out clip")
    p.add_argument("--held-out", action="store_true", help="only the pictures distill.py holds out of training")
    p.add_argument("--resolution", type=int, default=256, help="internal short side")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--sheet", type=Path, default=None, help="contact sheet PNG to write")
    p.add_argument("--sheet-rows", type=int, default=8)
    p.add_argument("--json", type=Path, default=None, help="write per-picture and mean scores here")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--speed", nargs="*", type=Path, default=None,
                   help="also time the student against these models at --speed-size")
    p.add_argument("--speed-size", default="256x448")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)

    for f in (args.student, args.teacher):
        if not f.is_file():
            print(f"eval_fidelity: error: no such model: {f}", file=sys.stderr)
            return 2
    if args.held_out:
        _, sources = D.split_photos(args.photos)
        if args.clips:
            _, held_clips = D.split_clips(args.clips)
            frames_dir = Path(args.json or args.sheet or "eval").resolve().parent / ".eval_frames"
            for clip in held_clips:
                sources.extend(D.extract_clip_frames(clip, frames_dir, 4))
    else:
        sources = [D.Source(f, "", "photo") for f in D.list_files(args.photos, D.IMAGE_EXTS)]
    if args.limit:
        sources = sources[: args.limit]
    if not sources:
        print("eval_fidelity: error: no pictures found", file=sys.stderr)
        return 2

    student = OnnxGenerator(args.student, threads=args.threads)
    teacher = OnnxGenerator(args.teacher, threads=args.threads)
    rows, per = [], []
    scores = []
    for src in sources:
        x = D.resize_short(D.read_rgb(src.path), args.resolution)
        t, s = teacher(x), student(x)
        sc = score(s, t)
        scores.append(sc)
        name = src.path.name if src.frame < 0 else f"{src.path.name}#{src.frame}"
        per.append({"name": name, "psnr": sc.psnr, "ssim": sc.ssim, "line_corr": sc.line_corr,
                    "line_ratio": sc.line_ratio})
        print(f"{name:50s} psnr {sc.psnr:6.2f} ssim {sc.ssim:.3f} line_corr {sc.line_corr:.3f} "
              f"line_ratio {sc.line_ratio:.3f}", flush=True)
        rows.append((name, x, t, s))
    mean = summarise(scores)
    print("mean " + json.dumps({k: round(v, 4) for k, v in mean.items()}))
    result: dict = {"student": str(args.student), "teacher": str(args.teacher), "resolution": args.resolution,
                    "mean": mean, "pictures": per}
    if args.sheet:
        step = max(1, len(rows) // args.sheet_rows)
        picked = rows[::step][: args.sheet_rows]
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), contact_sheet(picked))
        print(f"contact sheet: {args.sheet}")
    if args.speed is not None:
        h, w = (int(v) for v in args.speed_size.lower().split("x"))
        models = [args.student] + [m for m in args.speed if m.resolve() != args.student.resolve()]
        secs = time_models(models, (h, w), args.threads, args.repeats)
        base = secs[args.student.name]
        result["speed_ms"] = {k: round(v * 1000, 2) for k, v in secs.items()}
        for k, v in secs.items():
            print(f"speed {k:32s} {v * 1000:8.1f} ms  ({v / base:6.1f}x the student's time)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
