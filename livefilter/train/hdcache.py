"""The teacher's "HD look": its answer at short side 480 for pictures brought to short side 720.

A video call shows 1280x720, and what people expect there is the teacher run at 480 and brought up
bicubic. Each cache entry holds the input at the output scale (short side 720, cropped to a
multiple of 45 so it maps exactly onto the 256 grid of the student and the 480 grid of the
teacher) and the teacher's answer at 480. The teacher takes seconds per picture, so entries are
built once, in priority order, by a background job, and reused by every run.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import data as D

OUT_SHORT = 720  # the output scale the look is judged at
TEACHER_SHORT = 480  # the teacher's "HD" run
GRID = 45  # 720/45 = 16 student pixels at 256 and 30 teacher pixels at 480


@dataclass(frozen=True)
class HDVariant:
    jitter: int = 0  # 0 = untouched, else seed offset for a webcam-like colour change


def hd_key(src: D.Source, v: HDVariant) -> str:
    return f"{src.digest}_f{src.frame}_hd{OUT_SHORT}_j{v.jitter}"


def to_out_scale(rgb: np.ndarray) -> np.ndarray:
    """Short side 720 (area down, cubic up), centre-cropped to multiples of GRID."""
    big = D.resize_short(rgb, OUT_SHORT)
    return D.crop_multiple(big, GRID)


def to_teacher_scale(x720: np.ndarray) -> np.ndarray:
    h, w = x720.shape[:2]
    return cv2.resize(x720, (w * TEACHER_SHORT // OUT_SHORT, h * TEACHER_SHORT // OUT_SHORT),
                      interpolation=cv2.INTER_AREA)


def prepare(src: D.Source, v: HDVariant) -> np.ndarray:
    x = to_out_scale(D.read_rgb(src.path))
    if v.jitter:
        seed = int(hashlib.sha1(hd_key(src, v).encode()).hexdigest()[:8], 16)
        x = D.colour_jitter(x, seed)
    return x


def build(teacher_path: Path, jobs: list[tuple[D.Source, HDVariant]], cache_dir: Path,
          threads: int = 2, log=print) -> int:
    """Run the teacher at 480 on every job not yet cached; returns how many were computed."""
    from .teacher import OnnxGenerator

    cache_dir.mkdir(parents=True, exist_ok=True)
    teacher = OnnxGenerator(teacher_path, threads=threads)
    done = 0
    for i, (src, v) in enumerate(jobs):
        key = hd_key(src, v)
        out = cache_dir / f"{key}_t.png"
        if out.exists():
            continue
        x = prepare(src, v)
        t = teacher(to_teacher_scale(x))
        D.write_png(cache_dir / f"{key}_x.png", x)
        D.write_png(out, t)
        done += 1
        if done % 10 == 0:
            log(f"hd cache {teacher_path.stem}: {i + 1}/{len(jobs)} ({done} new)")
    return done


def jobs_for(train: list[D.Source], held_photos: list[D.Source], held_frames: list[D.Source],
             clip_frames_per_clip: int = 8, jitter: bool = True) -> list[tuple[D.Source, HDVariant]]:
    """Priority order: held-out photos (the evaluation needs them first), training photos,
    held-out clip frames, a few frames of each training clip, then colour-jittered photos."""
    photos = [s for s in train if s.origin == "photo"]
    by_clip: dict[str, list[D.Source]] = {}
    for s in train:
        if s.origin == "clip":
            by_clip.setdefault(s.digest, []).append(s)
    frames = []
    for lst in by_clip.values() if clip_frames_per_clip else []:
        step = max(1, len(lst) // clip_frames_per_clip)
        frames.extend(lst[::step][:clip_frames_per_clip])
    v0, v1 = HDVariant(0), HDVariant(1)
    return ([(s, v0) for s in held_photos] + [(s, v0) for s in photos] + [(s, v0) for s in held_frames]
            + [(s, v0) for s in frames] + ([(s, v1) for s in photos] if jitter else []))


def cached_pairs(cache_dir: Path) -> list[tuple[str, Path, Path]]:
    out = []
    for t in sorted(cache_dir.glob("*_t.png")):
        key = t.name[: -len("_t.png")]
        x = t.with_name(key + "_x.png")
        if x.exists():
            out.append((key, x, t))
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="hdcache", description="fill the teacher@480 cache")
    p.add_argument("--teacher", required=True, type=Path)
    p.add_argument("--photos", nargs="*", default=[])
    p.add_argument("--clips", nargs="*", default=[])
    p.add_argument("--cache", required=True, type=Path, help="cache root (runs/cache)")
    p.add_argument("--frames-per-clip", type=int, default=16)
    p.add_argument("--clip-frames", type=int, default=8, help="frames per training clip in the HD cache")
    p.add_argument("--no-jitter", action="store_true",
                   help="leave out the colour-jittered photos (a slow teacher's cache in half the time)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.clip_frames < 0:
        print("hdcache: error: --clip-frames must be 0 or more", file=sys.stderr)
        return 2
    train, held_p, held_c = D.iter_sources(args.photos, args.clips, args.cache / "frames", args.frames_per_clip)
    held_f: list[D.Source] = []
    for clip in held_c:
        held_f.extend(D.extract_clip_frames(clip, args.cache / "frames", 4))
    jobs = jobs_for(train, held_p, held_f, args.clip_frames, jitter=not args.no_jitter)
    cdir = hd_cache_dir(args.cache, args.teacher)
    print(json.dumps({"jobs": len(jobs), "dir": str(cdir)}), flush=True)
    n = build(args.teacher, jobs, cdir, threads=args.threads, log=lambda m: print(m, flush=True))
    print(f"hd cache complete: {n} new", flush=True)
    return 0


def hd_cache_dir(root: Path, teacher: Path) -> Path:
    return root / f"{teacher.stem}_{D.file_digest(teacher)[:8]}_hd{TEACHER_SHORT}"


if __name__ == "__main__":
    raise SystemExit(main())
