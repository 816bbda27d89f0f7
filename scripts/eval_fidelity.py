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
from livefilter.train import hdcache as H  # noqa: E402
from livefilter.train.fidelity import face_boxes, score, score_hd, summarise  # noqa: E402
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
    p.add_argument("--resolution", type=int, default=None,
                   help="internal short side (default 256; with --output-size the file's own, as the CLI runs it)")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--sheet", type=Path, default=None, help="contact sheet PNG to write")
    p.add_argument("--sheet-rows", type=int, default=8)
    p.add_argument("--json", type=Path, default=None, help="write per-picture and mean scores here")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--speed", nargs="*", type=Path, default=None,
                   help="also time the student against these models at --speed-size")
    p.add_argument("--speed-size", default="256x448")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--output-size", action="store_true",
                   help="judge the look at 720p: the engine as the CLI runs it by default, on the picture at "
                        "short side 720, against the teacher at 480 brought to 720 bicubic; --student may be a style name")
    p.add_argument("--cache", type=Path, default=None,
                   help="with --output-size: the HD teacher cache root (livefilter.train.hdcache) to reuse and fill")
    p.add_argument("--faces", type=Path, default=Path(__file__).resolve().parents[2] / "shared/models/face_detection_yunet_2026may.onnx",
                   help="YuNet face detector ONNX for the face-box figures")
    args = p.parse_args(argv)
    if args.output_size:
        return output_size(args)
    args.resolution = args.resolution or 256

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


def _held_out_sources(args) -> list[D.Source]:
    if not args.held_out:
        return [D.Source(f, D.file_digest(f), "photo") for f in D.list_files(args.photos, D.IMAGE_EXTS)]
    _, sources = D.split_photos(args.photos)
    if args.clips:
        _, held_clips = D.split_clips(args.clips)
        frames_dir = (args.cache / "frames") if args.cache else Path(args.json or args.sheet or "eval").resolve().parent / ".eval_frames"
        for clip in held_clips:
            sources.extend(D.extract_clip_frames(clip, frames_dir, 4))
    return sources


def _crop_sheet(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, tuple]], side: int = 360) -> np.ndarray:
    """Full-resolution crops (no scaling: blur hides in thumbnails): input | teacher@480 | ours."""
    out = []
    for name, x, t, s, box in rows:
        h, w = x.shape[:2]
        cx, cy = (box[0] + box[2] // 2, box[1] + box[3] // 2) if box else (w // 2, h // 2)
        x0, y0 = min(max(0, cx - side // 2), w - side), min(max(0, cy - side // 2), h - side)
        cells = []
        for label, img in ((name[:30], x), ("teacher@480", t), ("livefilter", s)):
            cell = cv2.cvtColor(np.ascontiguousarray(img[y0:y0 + side, x0:x0 + side]), cv2.COLOR_RGB2BGR)
            cv2.putText(cell, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(cell, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
            cells.append(np.pad(cell, ((0, 4), (0, 4), (0, 0)), constant_values=255))
        out.append(np.concatenate(cells, axis=1))
    return np.concatenate(out, axis=0)


def output_size(args) -> int:
    """The HD look: whole pictures and YuNet face boxes at 720p against the teacher at 480."""
    from livefilter.engine import Engine, model_resolution, resolve_model
    from livefilter.errors import LivefilterError

    try:
        model = resolve_model(str(args.student))
        engine = Engine(model, resolution=args.resolution or model_resolution(model), threads=args.threads)
    except LivefilterError as exc:
        print(f"eval_fidelity: error: {exc}", file=sys.stderr)
        return 2
    sources = _held_out_sources(args)[: args.limit or None]
    if not sources:
        print("eval_fidelity: error: no pictures found", file=sys.stderr)
        return 2
    teacher = OnnxGenerator(args.teacher, threads=args.threads)
    cdir = H.hd_cache_dir(args.cache, args.teacher) if args.cache else None
    per, face_scores, rows = [], [], []
    for src in sources:
        x = H.prepare(src, H.HDVariant(0))
        cached = cdir / f"{H.hd_key(src, H.HDVariant(0))}_t.png" if cdir else None
        if cached is not None and cached.exists():
            t480 = D.read_rgb(cached)
        else:
            t480 = teacher(H.to_teacher_scale(x))
            if cdir is not None:
                cdir.mkdir(parents=True, exist_ok=True)
                D.write_png(cdir / f"{H.hd_key(src, H.HDVariant(0))}_x.png", x)
                D.write_png(cached, t480)
        ref = cv2.resize(t480, (x.shape[1], x.shape[0]), interpolation=cv2.INTER_CUBIC)
        ours = engine(np.ascontiguousarray(x[..., ::-1]))[..., ::-1]
        whole = score_hd(ours, ref)
        boxes = face_boxes(args.faces, np.ascontiguousarray(x[..., ::-1]))
        faces = [score_hd(np.ascontiguousarray(ours[y:y + h, x0:x0 + w]), np.ascontiguousarray(ref[y:y + h, x0:x0 + w]))
                 for x0, y, w, h in boxes]
        face_scores.extend(faces)
        name = src.path.name if src.frame < 0 else f"{src.path.name}#{src.frame}"
        per.append({"name": name, **whole, "faces": faces})
        print(f"{name:46s} " + " ".join(f"{k} {v:.3f}" for k, v in whole.items()) + f" faces {len(faces)}", flush=True)
        rows.append((name, x, ref, ours, boxes[0] if boxes else None))
    keys = ("psnr", "ssim", "line_corr", "sharpness", "palette_de")
    mean = {k: float(np.mean([p[k] for p in per])) for k in keys}
    face_mean = {k: float(np.mean([f[k] for f in face_scores])) for k in keys} if face_scores else {}
    print("mean " + json.dumps({k: round(v, 4) for k, v in mean.items()}))
    print(f"faces ({len(face_scores)} boxes) " + json.dumps({k: round(v, 4) for k, v in face_mean.items()}))
    if args.sheet:
        step = max(1, len(rows) // args.sheet_rows)
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), _crop_sheet(rows[::step][: args.sheet_rows]))
        print(f"contact sheet: {args.sheet}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"student": str(args.student), "engine": engine.describe(),
                                         "teacher": str(args.teacher), "mode": "output-size 720 vs teacher@480",
                                         "mean": mean, "faces": face_mean, "face_boxes": len(face_scores),
                                         "pictures": per}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
