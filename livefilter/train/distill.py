"""`distill`: train a student generator to imitate a teacher ONNX, resumably, on the CPU.

Usage (see weights/README.md for the exact command behind each shipped student):
  python scripts/distill.py --teacher T.onnx --photos DIR... --clips DIR... --out weights/NAME.onnx
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import os
import random
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import data as D
from .fidelity import score, summarise
from .losses import DistillLoss, LossWeights
from .model import MULTIPLE, Student, StudentConfig, count_params, ema_update, export_onnx, load_onnx_student
from .teacher import to_uint8


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distill", description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, type=Path, help="teacher generator ONNX")
    p.add_argument("--photos", nargs="*", default=[], help="photo folders (or files)")
    p.add_argument("--clips", nargs="*", default=[], help="video folders (or files); frames are sampled")
    p.add_argument("--out", required=True, type=Path, help="student ONNX to write")
    p.add_argument("--work", type=Path, default=None, help="checkpoints and logs (default runs/distill/<out stem>)")
    p.add_argument("--cache", type=Path, default=None, help="teacher cache root (default <work>/../cache)")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=192)
    p.add_argument("--crop-step", type=int, default=1,
                   help="crop corners on multiples of this (8 keeps the teacher's and the student's pixel grids in phase)")
    p.add_argument("--no-flip", action="store_true",
                   help="no mirrored crops (the teacher is not mirror-symmetric, so a mirrored target is not its answer)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--minutes", type=float, default=0,
                   help="training wall-time budget across resumptions: the LR anneals by it and training stops (and exports) when it is spent; 0 = steps only")
    p.add_argument("--frames-per-clip", type=int, default=16)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=2, help="torch threads for training")
    p.add_argument("--cache-workers", type=int, default=1, help="background teacher processes (0: cache built elsewhere)")
    p.add_argument("--cache-passes", type=int, default=4,
                   help="teacher variants per picture: 1 = short side 256, 2 = + colour jitter, 3 = + 320 (photos), 4 = + 224 jittered, "
                        "5-7 = + photos at 288, at 384, and jittered at 320, 8-10 = + photos at 352, jittered at 240, and at 304, "
                        "11-13 = + photos at 272, jittered at 336, and jittered at 248")
    p.add_argument("--cache-only", action="store_true", help="fill the teacher cache (in this process) and stop")
    p.add_argument("--min-pairs", type=int, default=48, help="cached pairs needed before training starts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--photo-share", type=float, default=0.0,
                   help="fraction of each batch drawn from photos only (0: every cached pair alike)")
    p.add_argument("--c1", type=int, default=StudentConfig.c1)
    p.add_argument("--c2", type=int, default=StudentConfig.c2)
    grow = " (with an --init student: residual blocks to grow it to, appended as no-ops)"
    p.add_argument("--n-enc", type=int, default=None, help=f"blocks at 1/4 before going down, default {StudentConfig.n_enc}" + grow)
    p.add_argument("--n-mid", type=int, default=None, help=f"blocks at 1/8, default {StudentConfig.n_mid}" + grow)
    p.add_argument("--n-dec", type=int, default=None, help=f"blocks at 1/4 after coming back, default {StudentConfig.n_dec}" + grow)
    p.add_argument("--detail", type=int, default=StudentConfig.detail,
                   help="width of the patch MLP that reads raw input pixels (0: none; added to an --init student)")
    p.add_argument("--detail-depth", type=int, default=None,
                   help=f"hidden layers of the patch MLP, default {StudentConfig.detail_depth} (grown like --n-dec)")
    p.add_argument("--refine", type=int, default=StudentConfig.refine,
                   help="width of the 1/2-resolution refinement (0: none; added to an --init student)")
    p.add_argument("--w-line", type=float, default=LossWeights.line)
    p.add_argument("--w-grad", type=float, default=LossWeights.grad)
    p.add_argument("--w-ssim", type=float, default=LossWeights.ssim)
    p.add_argument("--w-line-mean", type=float, default=LossWeights.line_mean,
                   help="weight on matching each picture's mean line strength (ink density)")
    p.add_argument("--w-line-corr", type=float, default=LossWeights.line_corr,
                   help="weight on 1 - correlation of student and teacher line maps (what the fidelity check scores)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from another run's checkpoint (.pt) or an exported student (.onnx) and its architecture")
    p.add_argument("--export-only", action="store_true", help="export the current checkpoint and stop")
    p.add_argument("--no-progress", action="store_true")
    return p


class PairPool:
    """Cached (input, teacher) pairs held in memory; re-scanned as the cache grows."""

    def __init__(self, cache_dir: Path, exclude: set[str]) -> None:
        self.cache_dir = cache_dir
        self.exclude = exclude  # digests of held-out sources: never train on them
        self.items: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def refresh(self) -> int:
        for x, t in D.cached_pairs(self.cache_dir):
            key = x.name[: -len("_x.png")]
            if key in self.items or key.split("_", 1)[0] in self.exclude:
                continue
            xi, ti = D.read_rgb(x), D.read_rgb(t)
            if xi.shape != ti.shape:
                continue
            self.items[key] = (xi, ti)
        return len(self.items)

    def sample(self, rng: random.Random, batch: int, crop: int, photo_share: float = 0.0,
               crop_step: int = 1, flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """photo_share > 0 draws that fraction of the batch from photos (the rest from any pair):
        clip frames outnumber photos and repeat one scene, while photos vary.

        crop_step > 1 puts crop corners on multiples of it, and flip=False keeps pictures the
        right way round. The teacher's strokes depend on where a pixel sits in its 4x4 grid (its
        own output, the input moved by 1 px, keeps only 0.87 line correlation; by 4 px, 0.98),
        and the student's 4x4 patches can learn that only if crops keep both grids in phase.
        """
        keys = list(self.items)
        photos = [k for k in keys if "_f-1_" in k]  # cache keys of photos carry frame -1
        xs, ts = [], []
        for _ in range(batch):
            x, t = self.items[rng.choice(photos if photos and rng.random() < photo_share else keys)]
            h, w = x.shape[:2]
            ch, cw = min(crop, h - h % MULTIPLE), min(crop, w - w % MULTIPLE)
            y0 = rng.randint(0, (h - ch) // crop_step) * crop_step
            x0 = rng.randint(0, (w - cw) // crop_step) * crop_step
            xc, tc = x[y0 : y0 + ch, x0 : x0 + cw], t[y0 : y0 + ch, x0 : x0 + cw]
            if (ch, cw) != (crop, crop):  # rare: tiny picture, stretch to the batch size
                xc = cv2.resize(xc, (crop, crop), interpolation=cv2.INTER_AREA)
                tc = cv2.resize(tc, (crop, crop), interpolation=cv2.INTER_AREA)
            if flip and rng.random() < 0.5:
                xc, tc = xc[:, ::-1], tc[:, ::-1]
            xs.append(degrade(np.ascontiguousarray(xc), rng))
            ts.append(np.ascontiguousarray(tc))
        return np.stack(xs), np.stack(ts)


def degrade(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """Webcam-like damage on the student's input only: the target stays the teacher's answer
    for the clean picture, so the student learns to ignore sensor noise and JPEG blocks."""
    out = rgb
    if rng.random() < 0.35:
        sigma = rng.uniform(1.0, 7.0)
        nrng = np.random.default_rng(rng.getrandbits(32))
        noise = nrng.normal(0.0, sigma, out.shape[:2] + (1,)) + nrng.normal(0.0, sigma * 0.5, out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.35:
        q = rng.randint(35, 90)
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def run_student(model: Student, rgb: np.ndarray) -> np.ndarray:
    """Full picture through the torch student (reflect pad to the multiple, crop back)."""
    h, w = rgb.shape[:2]
    x = to_tensor(rgb[None])
    ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    with torch.no_grad():
        y = model(x)[0, :, :h, :w].permute(1, 2, 0).numpy()
    return to_uint8(y)


def lr_at(step: int, total: int, base: float, warmup: int = 100, time_frac: float = 0.0) -> float:
    """Warm-up then cosine decay; with a time budget, progress is whichever of steps or
    wall time is further along, so a run cut short by a busy CPU still ends annealed."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = min(1.0, max(time_frac, (step - warmup) / max(1, total - warmup)))
    return base * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * frac)))


def teacher_cache_dir(root: Path, teacher: Path) -> Path:
    return root / f"{teacher.stem}_{D.file_digest(teacher)[:8]}"


def heldout_set(args, held_photos, held_clips, cache_root: Path, log) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Held-out pictures at short side 256 with the teacher's answers (cached like the rest)."""
    frames_dir = cache_root / "frames"
    sources = list(held_photos)
    for clip in held_clips:
        sources.extend(D.extract_clip_frames(clip, frames_dir, 4))
    cdir = teacher_cache_dir(cache_root, args.teacher) / "heldout"
    v = D.Variant(256, 0)
    D.build_cache(args.teacher, [(s, v) for s in sources], cdir, threads=args.threads, log=log)
    out = []
    for s in sources:
        key = D.cache_key(s, v)
        name = s.path.name if s.origin == "photo" else f"{s.path.name}"
        out.append((name, D.read_rgb(cdir / f"{key}_x.png"), D.read_rgb(cdir / f"{key}_t.png")))
    return out


def evaluate(model: Student, held: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Scores on the held-out pictures ({} when a small data set holds none out)."""
    if not held:
        return {}
    model.eval()
    scores = [score(run_student(model, x), t) for _, x, t in held]
    model.train()
    return summarise(scores)


def _cache_worker(teacher: Path, jobs, cache_dir: Path) -> None:
    os.nice(5)
    D.build_cache(teacher, jobs, cache_dir, threads=1, log=lambda m: None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.teacher.is_file():
        print(f"distill: error: teacher not found: {args.teacher}", file=sys.stderr)
        return 2
    if not args.photos and not args.clips:
        print("distill: error: give --photos and/or --clips", file=sys.stderr)
        return 2
    if args.crop_step < 1 or args.crop % args.crop_step:
        print(f"distill: error: --crop-step must be at least 1 and divide --crop ({args.crop})", file=sys.stderr)
        return 2
    missing = [d for d in [*args.photos, *args.clips] if not Path(d).exists()]
    if missing and not args.export_only:
        print(f"distill: error: no such folder or file: {missing[0]}", file=sys.stderr)
        return 2
    work = args.work or Path("runs/distill") / args.out.stem
    work.mkdir(parents=True, exist_ok=True)
    cache_root = args.cache or work.parent / "cache"
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    log_file = open(work / "train.log", "a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, file=log_file, flush=True)
        if args.no_progress:
            print(line, flush=True)

    depths = {"n_enc": args.n_enc, "n_mid": args.n_mid, "n_dec": args.n_dec, "detail_depth": args.detail_depth}
    given = {k: v for k, v in depths.items() if v is not None}
    cfg = replace(StudentConfig(c1=args.c1, c2=args.c2, detail=args.detail, refine=args.refine), **given)
    model = Student(cfg)
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    ckpt_path = work / "ckpt.pt"
    step = 0
    elapsed_before = 0.0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        cfg = StudentConfig(**ck["cfg"])
        model, ema = Student(cfg), Student(cfg)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        elapsed_before = ck.get("elapsed", 0.0)
        log(f"resumed from {ckpt_path} at step {step}")
    elif args.init is not None:
        if args.init.suffix == ".onnx":
            base, weights = load_onnx_student(args.init)
            # new branches and blocks start as no-ops, so growing a trained student keeps its output
            cfg = replace(base, detail=args.detail or base.detail, refine=args.refine or base.refine,
                          **{k: max(v, getattr(base, k)) for k, v in given.items()})
            model, ema = Student(cfg), Student(cfg)
            opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
            grown = tuple(f"{stage}.{i}." for stage, n in (("enc", base.n_enc), ("mid", base.n_mid), ("dec", base.n_dec))
                          for i in range(n, getattr(cfg, f"n_{stage}")))
        else:
            weights = torch.load(args.init, map_location="cpu", weights_only=False)["ema"]
            grown = ()
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or any(not k.startswith(("detail_", "refine_", *grown)) for k in missing):
            print(f"distill: error: {args.init} does not match the student architecture", file=sys.stderr)
            return 2
        ema.load_state_dict(model.state_dict())
        log(f"initialised from {args.init}")

    meta = {"livefilter.teacher": args.teacher.name, "livefilter.params": str(count_params(ema))}
    if args.export_only:
        if not ckpt_path.exists():
            print(f"distill: error: no checkpoint in {work}", file=sys.stderr)
            return 2
        export_onnx(ema, args.out, {**meta, "livefilter.steps": str(step)})
        print(f"exported step {step} to {args.out}")
        return 0

    train_src, held_photos, held_clips = D.iter_sources(args.photos, args.clips, cache_root / "frames", args.frames_per_clip)
    if not train_src:
        print("distill: error: no training pictures found in --photos/--clips", file=sys.stderr)
        return 2
    exclude = {s.digest for s in held_photos} | {D.file_digest(c) for c in held_clips}
    log(f"train sources {len(train_src)} (photos {sum(s.origin == 'photo' for s in train_src)}), "
        f"held-out photos {len(held_photos)}, held-out clips {[c.name for c in held_clips]}")
    log(f"student {asdict(cfg)} params {count_params(model)}")
    held = heldout_set(args, held_photos, held_clips, cache_root, log)

    cdir = teacher_cache_dir(cache_root, args.teacher)
    workers = []
    jobs = D.cache_jobs(train_src, seed=args.seed, passes=args.cache_passes)
    if args.cache_only:
        n = D.build_cache(args.teacher, jobs, cdir, threads=args.threads, log=log)
        log(f"cache complete: {n} new teacher outputs in {cdir}")
        return 0
    for i in range(args.cache_workers):
        pr = mp.get_context("spawn").Process(target=_cache_worker, args=(args.teacher, jobs[i::args.cache_workers], cdir), daemon=True)
        pr.start()
        workers.append(pr)

    pool = PairPool(cdir, exclude)
    while pool.refresh() < args.min_pairs:
        log(f"waiting for teacher cache: {len(pool.items)}/{args.min_pairs} pairs")
        time.sleep(20)
    log(f"pairs in memory: {len(pool.items)}")

    crit = DistillLoss(LossWeights(line=args.w_line, grad=args.w_grad, ssim=args.w_ssim, line_mean=args.w_line_mean,
                                   line_corr=args.w_line_corr))
    rng = random.Random(args.seed * 1000003 + step)
    t0 = time.time()
    step_start = step
    model.train()
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=args.steps, initial=step, mininterval=10, desc=args.out.stem)
    running: dict[str, float] = {}

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "step": step, "cfg": asdict(cfg), "elapsed": elapsed_before + time.time() - t0,
                    "args": {k: str(v) for k, v in vars(args).items()}}, tmp)
        tmp.replace(ckpt_path)

    stopped_early = False
    while step < args.steps:
        if args.minutes and elapsed_before + time.time() - t0 > args.minutes * 60:
            stopped_early = True
            log(f"time budget of {args.minutes} min reached at step {step}")
            break
        if step % 200 == 0:
            pool.refresh()
        time_frac = (elapsed_before + time.time() - t0) / (args.minutes * 60) if args.minutes else 0.0
        lr = lr_at(step, args.steps, args.lr, time_frac=time_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        xb, tb = pool.sample(rng, args.batch, args.crop, args.photo_share, args.crop_step, not args.no_flip)
        x, t = to_tensor(xb), to_tensor(tb)
        s = model(x)
        loss, parts = crit(s, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_update(ema, model, step, cap=0.999)
        step += 1
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            running[k] = 0.98 * running.get(k, v) + 0.02 * v
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{running['loss']:.4f}", line=f"{running['line']:.4f}", refresh=False)
        if step % 50 == 0:
            log(f"step {step} lr {lr:.2e} pairs {len(pool.items)} "
                + " ".join(f"{k} {v:.4f}" for k, v in running.items())
                + f" s/step {(time.time() - t0) / max(1, step - step_start):.2f}")
        if step % args.ckpt_every == 0:
            save()
        if step % args.eval_every == 0:
            m = evaluate(ema, held)
            log("heldout " + json.dumps({k: round(v, 4) for k, v in m.items()}) + f" step {step}")
    if bar is not None:
        bar.close()
    save()
    export_onnx(ema, args.out, {**meta, "livefilter.steps": str(step)})
    m = evaluate(ema, held)
    log("final heldout " + json.dumps({k: round(v, 4) for k, v in m.items()}) + f" step {step}")
    total_min = (elapsed_before + time.time() - t0) / 60
    summary = {"out": str(args.out), "steps": step, "train_minutes": round(total_min, 1),
               "params": count_params(ema), "bytes": args.out.stat().st_size, "heldout": m,
               "stopped_early": stopped_early, "argv": sys.argv}
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"wrote {args.out} ({summary['bytes']} bytes, {summary['params']} params) after {total_min:.1f} min")
    for pr in workers:
        pr.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
