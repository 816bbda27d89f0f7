"""Training pictures, the held-out split, and the on-disk teacher cache.

The teacher is slow (about a second per frame), so each (picture, size, colour variant) is run
through it once and the input/target pair is stored as two PNGs whose name is a hash of the source
file's content, the frame index, the size and the variant. Training then takes random crops of
the cached pairs; the cache is reused across runs and resumptions.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_EXTS = {".mp4", ".avi", ".mpg", ".mpeg", ".mov", ".mkv", ".webm"}


@dataclass(frozen=True)
class Source:
    """One training picture: a photo file, or frame ``frame`` of a clip (extracted to ``path``)."""

    path: Path
    digest: str  # content hash of the original file (dedupes copies, keys the cache)
    origin: str  # "photo" or "clip"
    frame: int = -1


def file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def is_held_out(digest: str, every: int) -> bool:
    """Deterministic split on content hash, so duplicate files land on the same side."""
    return int(hashlib.sha1(("holdout:" + digest).encode()).hexdigest(), 16) % every == 0


def list_files(dirs: Iterable[str | Path], exts: set[str]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_file():
            out.append(d)
            continue
        out.extend(sorted(p for p in d.rglob("*") if p.suffix.lower() in exts))
    return out


def split_photos(dirs: Iterable[str | Path], every: int = 8) -> tuple[list[Source], list[Source]]:
    """(train, held_out) photos, duplicates removed by content."""
    seen: set[str] = set()
    train: list[Source] = []
    held: list[Source] = []
    for p in list_files(dirs, IMAGE_EXTS):
        dg = file_digest(p)
        if dg in seen:
            continue
        seen.add(dg)
        (held if is_held_out(dg, every) else train).append(Source(p, dg, "photo"))
    return train, held


def split_clips(dirs: Iterable[str | Path], every: int = 6) -> tuple[list[Path], list[Path]]:
    train: list[Path] = []
    held: list[Path] = []
    for p in list_files(dirs, VIDEO_EXTS):
        (held if is_held_out(file_digest(p), every) else train).append(p)
    return train, held


def extract_clip_frames(clip: Path, out_dir: Path, count: int) -> list[Source]:
    """Evenly spaced frames of a clip, saved as PNG once (decoding is slow for long clips)."""
    import av  # PyAV; only needed when clips are used

    digest = file_digest(clip)
    out_dir.mkdir(parents=True, exist_ok=True)
    index_file = out_dir / f"{digest}_n{count}.json"
    if index_file.exists():
        idx = json.loads(index_file.read_text())
        return [Source(out_dir / name, digest, "clip", i) for i, name in idx]
    frames: list[np.ndarray] = []
    with av.open(str(clip)) as container:
        for fr in container.decode(video=0):
            frames.append(fr.to_ndarray(format="bgr24"))
    if not frames:
        return []
    picks = sorted({int(round(x)) for x in np.linspace(0, len(frames) - 1, count)})
    idx = []
    for i in picks:
        name = f"{digest}_{i:05d}.png"
        cv2.imwrite(str(out_dir / name), frames[i])
        idx.append((i, name))
    index_file.write_text(json.dumps(idx))
    return [Source(out_dir / name, digest, "clip", i) for i, name in idx]


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize_short(rgb: np.ndarray, short: int) -> np.ndarray:
    """Resize keeping aspect so the short side is ``short`` (area filter when shrinking)."""
    h, w = rgb.shape[:2]
    s = short / min(h, w)
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb, size, interpolation=interp)


def crop_multiple(rgb: np.ndarray, m: int) -> np.ndarray:
    """Centre crop to multiples of ``m`` (cache entries must suit every teacher)."""
    h, w = rgb.shape[:2]
    nh, nw = h - h % m, w - w % m
    y, x = (h - nh) // 2, (w - nw) // 2
    return rgb[y : y + nh, x : x + nw]


def colour_jitter(rgb: np.ndarray, seed: int) -> np.ndarray:
    """Brightness, contrast, saturation, gamma and white-balance change, as webcams vary.

    Applied before the teacher runs (the teacher's answer depends on it), so it is a cache variant.
    """
    rng = np.random.default_rng(seed)
    x = rgb.astype(np.float32) / 255.0
    x = x ** rng.uniform(0.75, 1.35)
    x = x * rng.uniform(0.65, 1.25)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.75, 1.25) + mean
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.6, 1.3)
    x = x * np.array([rng.uniform(0.9, 1.1), 1.0, rng.uniform(0.9, 1.1)], np.float32)
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Variant:
    short: int
    jitter: int  # 0 = untouched, else seed offset


def cache_key(src: Source, v: Variant) -> str:
    return f"{src.digest}_f{src.frame}_s{v.short}_j{v.jitter}"


def prepare_input(src: Source, v: Variant) -> np.ndarray:
    rgb = crop_multiple(resize_short(read_rgb(src.path), v.short), 16)
    if v.jitter:
        seed = int(hashlib.sha1(cache_key(src, v).encode()).hexdigest()[:8], 16)
        rgb = colour_jitter(rgb, seed)
    return rgb


def write_png(path: Path, rgb: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.png")
    cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    tmp.replace(path)  # atomic: a reader never sees half a file


def build_cache(
    teacher_path: Path,
    jobs: list[tuple[Source, Variant]],
    cache_dir: Path,
    threads: int = 2,
    log=print,
) -> int:
    """Run the teacher on every job not yet cached; returns how many were computed."""
    from .teacher import OnnxGenerator

    cache_dir.mkdir(parents=True, exist_ok=True)
    teacher = OnnxGenerator(teacher_path, threads=threads)
    done = 0
    for i, (src, v) in enumerate(jobs):
        key = cache_key(src, v)
        out = cache_dir / f"{key}_t.png"
        if out.exists():
            continue
        rgb = prepare_input(src, v)
        target = teacher(rgb)
        write_png(cache_dir / f"{key}_x.png", rgb)
        write_png(out, target)
        done += 1
        if done % 20 == 0:
            log(f"cache {teacher_path.stem}: {i + 1}/{len(jobs)} ({done} new)")
    return done


def cache_jobs(train: list[Source], seed: int = 0, passes: int = 4) -> list[tuple[Source, Variant]]:
    """Teacher work in priority order: every picture once at short side 256 first, then
    jittered and other-scale variants, so training can start on a complete first pass.
    Passes 1-4 make the 2088 pairs of Hayao stage 6; 5-7 add 594 photo views (stage 8),
    8-10 another 594 (stage 9), 11-13 another 594 (stage 10)."""
    rng = random.Random(seed)
    order = list(train)
    rng.shuffle(order)
    photos = [s for s in order if s.origin == "photo"]
    plan = [
        [(s, Variant(256, 0)) for s in order],
        [(s, Variant(256, 1)) for s in order],
        [(s, Variant(320, 0)) for s in photos],
        [(s, Variant(224, 2)) for s in order],
        # passes 5-7: more views of the photos alone (the line target is missed on photos, and
        # each new scale is a new picture to the teacher's 4x4 grid)
        [(s, Variant(288, 0)) for s in photos],
        [(s, Variant(384, 0)) for s in photos],
        [(s, Variant(320, 3)) for s in photos],
        # passes 8-10: three more, two of them near the short side the fidelity check uses
        [(s, Variant(352, 0)) for s in photos],
        [(s, Variant(240, 4)) for s in photos],
        [(s, Variant(304, 0)) for s in photos],
        # passes 11-13: each new view still moved photo line correlation at stage 9
        [(s, Variant(272, 0)) for s in photos],
        [(s, Variant(336, 5)) for s in photos],
        [(s, Variant(248, 6)) for s in photos],
    ]
    return [job for chunk in plan[:passes] for job in chunk]


def cached_pairs(cache_dir: Path) -> list[tuple[Path, Path]]:
    """All complete (input, target) pairs in a cache directory."""
    pairs = []
    for t in sorted(cache_dir.glob("*_t.png")):
        x = t.with_name(t.name[: -len("_t.png")] + "_x.png")
        if x.exists():
            pairs.append((x, t))
    return pairs


def iter_sources(
    photo_dirs: list[str], clip_dirs: list[str], frames_dir: Path, frames_per_clip: int
) -> tuple[list[Source], list[Source], list[Path]]:
    """(train sources, held-out photos, held-out clips)."""
    train_p, held_p = split_photos(photo_dirs)
    train_c, held_c = split_clips(clip_dirs)
    train = list(train_p)
    for clip in train_c:
        train.extend(extract_clip_frames(clip, frames_dir, frames_per_clip))
    return train, held_p, held_c

