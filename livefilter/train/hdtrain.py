"""`hdtrain`: train the HD generator (student + gain head) against the teacher's look at 720p.

Targets are the teacher at short side 480 brought to 720 bicubic (livefilter.train.hdcache).
Each step takes crops at the output scale, area-shrinks them to the student's scale (as the
engine does with a whole frame) and scores the full-resolution result. Three things beyond the
plain distillation:
- faces first: at least ``--face-share`` of each batch is centred on a YuNet face box, and the
  L1 loss counts face pixels ``--w-face`` times more (video calls are faces);
- temporal stability learned: every crop has a twin moved by up to ``--shift`` pixels (sub-pixel
  at the student's scale, as head motion is) with its own sensor noise, and the two outputs must
  agree where they overlap (compound regularisation, Wang et al., ReReVST);
- resumable: a checkpoint every ``--ckpt-every`` steps, a wall-time budget across resumptions.

  python -m livefilter.train.hdtrain --teacher T.onnx --photos DIR... --clips DIR... \\
      --cache runs/cache --init weights/hayao.onnx --out weights/hayao.onnx --minutes 60
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch

from . import data as D
from . import hdcache as H
from .distill import degrade, lr_at, to_tensor
from .fidelity import face_boxes
from .hdmodel import (CONTEXT_SHRINK, ColourConfig, ColourHead, GainHead, HDStudent, HeadConfig, export_hd_onnx,
                      hd_from_student_onnx)
from .losses import DistillLoss, LossWeights
from .model import Student, StudentConfig, count_params, ema_update

STUDENT_MULTIPLE = 8  # the student's input sides are multiples of this (and the gain head's 4)


def low_side(crop: int, resolution: int) -> int | None:
    """A crop's side at the student's scale (short side ``resolution`` for 720), or None when it
    does not land exactly on the student's grid (the engine squeezes nothing at that size)."""
    side, rest = divmod(crop * resolution, H.OUT_SHORT)
    return side if not rest and side % STUDENT_MULTIPLE == 0 else None


class HDPool:
    """Cached (input at 720, teacher look at 720, face boxes), re-scanned as the cache grows."""

    def __init__(self, cache_dir: Path, exclude: set[str], detector: Path | None, resolution: int = 320) -> None:
        self.cache_dir, self.exclude, self.detector = cache_dir, exclude, detector
        self.items: dict[str, tuple[np.ndarray, np.ndarray, list]] = {}
        self.thumbs: dict[str, np.ndarray] = {}
        self.thumb_short = resolution // CONTEXT_SHRINK  # what the colour head sees of a whole frame

    def refresh(self) -> int:
        for key, xp, tp in H.cached_pairs(self.cache_dir):
            if key in self.items or key.split("_", 1)[0] in self.exclude:
                continue
            x, t = D.read_rgb(xp), D.read_rgb(tp)
            h, w = x.shape[:2]
            t = cv2.resize(t, (w, h), interpolation=cv2.INTER_CUBIC)
            self.items[key] = (x, t, face_boxes(self.detector, x[..., ::-1].copy()))
            tw = max(1, round(w * self.thumb_short / h))
            self.thumbs[key] = cv2.resize(x, (tw, self.thumb_short), interpolation=cv2.INTER_AREA)
        return len(self.items)

    def sample(self, rng: random.Random, batch: int, crop: int, face_share: float, shift: int, low: int):
        """Pairs of crops (the second moved by up to ``shift`` px); inputs degraded independently
        and area-shrunk to ``low`` px for the student. Returns (x_low, guide, target, face_mask,
        offsets, thumbnails of each crop's whole frame)."""
        keys = list(self.items)
        with_faces = [k for k in keys if self.items[k][2]]
        lows, guides, targets, masks, offs, thumbs = [], [], [], [], [], []
        for _ in range(batch):
            use_face = bool(with_faces) and rng.random() < face_share
            key = rng.choice(with_faces if use_face else keys)
            x, t, faces = self.items[key]
            thumbs += [self.thumbs[key]] * 2
            h, w = x.shape[:2]
            m = shift
            ch, cw = min(crop, h - 2 * m), min(crop, w - 2 * m)
            if use_face:
                fx, fy, fw, fh = rng.choice(faces)
                cy = fy + fh // 2 + rng.randint(-fh // 4, fh // 4)
                cx = fx + fw // 2 + rng.randint(-fw // 4, fw // 4)
                y0, x0 = cy - ch // 2, cx - cw // 2
            else:
                y0, x0 = rng.randint(0, h - ch), rng.randint(0, w - cw)
            y0, x0 = min(max(m, y0), h - ch - m), min(max(m, x0), w - cw - m)
            dy, dx = rng.randint(-m, m), rng.randint(-m, m)
            fm = np.zeros((h, w), np.float32)
            for fx, fy, fw, fh in faces:
                fm[fy:fy + fh, fx:fx + fw] = 1.0
            for yy, xx in ((y0, x0), (y0 + dy, x0 + dx)):
                xc = np.ascontiguousarray(x[yy:yy + ch, xx:xx + cw])
                tc = t[yy:yy + ch, xx:xx + cw]
                mc = fm[yy:yy + ch, xx:xx + cw]
                if (ch, cw) != (crop, crop):
                    xc = cv2.resize(xc, (crop, crop), interpolation=cv2.INTER_AREA)
                    tc = cv2.resize(tc, (crop, crop), interpolation=cv2.INTER_AREA)
                    mc = cv2.resize(mc, (crop, crop), interpolation=cv2.INTER_NEAREST)
                xd = degrade(xc, rng)
                lows.append(cv2.resize(xd, (low, low), interpolation=cv2.INTER_AREA))
                guides.append(xd)
                targets.append(np.ascontiguousarray(tc))
                masks.append(mc)
            offs.append((dy, dx))
        return (np.stack(lows), np.stack(guides), np.stack(targets), np.stack(masks)[:, None], offs, thumbs)


def overlap_l1(out: torch.Tensor, offs: list[tuple[int, int]]) -> torch.Tensor:
    """Mean L1 between each crop's output and its moved twin's, where they show the same pixels."""
    losses = []
    size = out.shape[-1]
    for i, (dy, dx) in enumerate(offs):
        a, b = out[2 * i], out[2 * i + 1]
        # twin pixel (r, c) shows image pixel (r + dy, c + dx) of a's frame
        ya, yb = (dy, 0) if dy >= 0 else (0, -dy)
        xa, xb = (dx, 0) if dx >= 0 else (0, -dx)
        hh, ww = size - abs(dy), size - abs(dx)
        losses.append((a[:, ya:ya + hh, xa:xa + ww] - b[:, yb:yb + hh, xb:xb + ww]).abs().mean())
    return torch.stack(losses).mean()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hdtrain", description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, type=Path)
    p.add_argument("--photos", nargs="*", default=[])
    p.add_argument("--clips", nargs="*", default=[])
    p.add_argument("--cache", required=True, type=Path, help="cache root (hdcache's --cache)")
    p.add_argument("--init", type=Path, default=None, help="a plain student ONNX to start the student from")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--work", type=Path, default=None, help="checkpoints and log (default runs/hd/<out stem>)")
    p.add_argument("--faces", type=Path, default=Path("../shared/models/face_detection_yunet_2026may.onnx"))
    p.add_argument("--steps", type=int, default=100000)
    p.add_argument("--minutes", type=float, default=60)
    p.add_argument("--batch", type=int, default=4, help="crop pairs per step")
    p.add_argument("--crop", type=int, default=270, help="crop side at the output scale (720)")
    p.add_argument("--resolution", type=int, default=256,
                   help="the student's short side for a 720 picture: the engine's --resolution it is trained for")
    p.add_argument("--shift", type=int, default=16, help="largest move of a crop's twin, output pixels")
    p.add_argument("--lr", type=float, default=1e-3, help="gain head and colour head")
    p.add_argument("--colour", type=int, default=0,
                   help="grow a whole-picture colour head this wide "
                        "(0: none; with --keep-heads an --init file's own is kept)")
    p.add_argument("--keep-heads", action="store_true",
                   help="start from an HD --init file's trained gain head instead of a fresh one")
    p.add_argument("--lr-student", type=float, default=1e-4)
    p.add_argument("--face-share", type=float, default=0.4)
    p.add_argument("--w-face", type=float, default=2.0)
    p.add_argument("--w-temporal", type=float, default=2.0)
    p.add_argument("--w-line-corr", type=float, default=1.0)
    p.add_argument("--w-palette", type=float, default=0.0,
                   help="mean dE of 16x16-cell colours, per 100 dE (the palette score)")
    p.add_argument("--w-ssim", type=float, default=0.0, help="SSIM at the output size (costly on 2 cores)")
    p.add_argument("--freeze-student", action="store_true",
                   help="train the gain head only (the student keeps its look; a step costs a third)")
    p.add_argument("--min-pairs", type=int, default=24)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--export-only", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.teacher.is_file():
        print(f"hdtrain: error: teacher not found: {args.teacher}", file=sys.stderr)
        return 2
    low = low_side(args.crop, args.resolution)
    if low is None:
        print(f"hdtrain: error: --crop {args.crop} at --resolution {args.resolution} is not a whole "
              f"multiple of {STUDENT_MULTIPLE} px at the student's scale (256: crops of 45k; 320: 90k)",
              file=sys.stderr)
        return 2
    work = args.work or Path("runs/hd") / args.out.stem
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    log_file = open(work / "train.log", "a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, file=log_file, flush=True)
        print(line, flush=True)

    ckpt_path = work / "ckpt.pt"
    step, elapsed_before = 0, 0.0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        colour = ColourHead(ColourConfig(**ck["colour"])) if ck.get("colour") else None
        model = HDStudent(Student(StudentConfig(**ck["cfg"])), GainHead(HeadConfig(**ck["head"])), colour)
        model.load_state_dict(ck["model"])
        ema = copy.deepcopy(model)
        ema.load_state_dict(ck["ema"])
        step, elapsed_before = ck["step"], ck.get("elapsed", 0.0)
        log(f"resumed from {ckpt_path} at step {step}")
    elif args.init is not None:
        model = hd_from_student_onnx(args.init, keep_heads=args.keep_heads, colour=ColourConfig(args.colour))
        ema = copy.deepcopy(model)
        log(f"student initialised from {args.init}" + (" with its heads" if args.keep_heads else ""))
    else:
        model = HDStudent(Student(), GainHead(), ColourHead(ColourConfig(args.colour)) if args.colour else None)
        ema = copy.deepcopy(model)
    ema.eval()
    heads = [*model.head.parameters(), *(model.colour.parameters() if model.colour is not None else [])]
    opt = torch.optim.Adam([{"params": heads, "lr": args.lr, "base": args.lr},
                            {"params": model.student.parameters(), "lr": args.lr_student, "base": args.lr_student}],
                           betas=(0.9, 0.99))
    if ckpt_path.exists():
        opt.load_state_dict(ck["opt"])
    meta = {"livefilter.teacher": args.teacher.name, "livefilter.params": str(count_params(ema)),
            "livefilter.look": f"teacher@{H.TEACHER_SHORT} at {H.OUT_SHORT}",
            "livefilter.resolution": str(args.resolution)}
    if args.export_only:
        export_hd_onnx(ema, args.out, {**meta, "livefilter.steps": str(step)})
        print(f"exported step {step} to {args.out}")
        return 0

    _, held_p = D.split_photos(args.photos)
    _, held_c = D.split_clips(args.clips)
    exclude = {s.digest for s in held_p} | {D.file_digest(c) for c in held_c}
    pool = HDPool(H.hd_cache_dir(args.cache, args.teacher), exclude, args.faces, args.resolution)
    seen, since = -1, time.time()
    while pool.refresh() < args.min_pairs:
        if len(pool.items) != seen:
            seen, since = len(pool.items), time.time()
        elif time.time() - since > 600:  # nobody is filling the cache
            print(f"hdtrain: error: only {seen} cached pairs (need --min-pairs {args.min_pairs}); "
                  f"fill the cache first: python -m livefilter.train.hdcache ...", file=sys.stderr)
            return 2
        log(f"waiting for the HD teacher cache: {len(pool.items)}/{args.min_pairs}")
        time.sleep(30)
    log(f"pairs {len(pool.items)}, with faces {sum(bool(v[2]) for v in pool.items.values())}; "
        f"params {count_params(model)}; args {json.dumps({k: str(v) for k, v in vars(args).items()})}")
    crit = DistillLoss(LossWeights(line_corr=args.w_line_corr, ssim=args.w_ssim, palette=args.w_palette))
    if args.freeze_student:
        model.student.requires_grad_(False)
    rng = random.Random(args.seed * 7919 + step)
    t0, step0 = time.time(), step
    running: dict[str, float] = {}
    model.train()

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                    "cfg": asdict(model.student.cfg), "head": asdict(model.head.cfg),
                    "colour": asdict(model.colour.cfg) if model.colour is not None else None,
                    "elapsed": elapsed_before + time.time() - t0}, tmp)
        tmp.replace(ckpt_path)

    while step < args.steps:
        spent = elapsed_before + time.time() - t0
        if args.minutes and spent > args.minutes * 60:
            log(f"time budget of {args.minutes} min reached at step {step}")
            break
        if step % 100 == 0:
            pool.refresh()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, g["base"], warmup=50,
                            time_frac=spent / (args.minutes * 60) if args.minutes else 0.0)
        xl, gd, tg, fm, offs, th = pool.sample(rng, args.batch, args.crop, args.face_share, args.shift, low)
        x, guide, t, mask = to_tensor(xl), to_tensor(gd), to_tensor(tg), torch.from_numpy(fm)
        out = model(x, guide, [to_tensor(z[None]) for z in th] if model.colour is not None else None)
        loss, parts = crit(out, t)
        face = ((out - t).abs().mean(1, keepdim=True) * mask).sum() / mask.sum().clamp(min=1.0)
        temporal = overlap_l1(out, offs)
        loss = loss + args.w_face * face + args.w_temporal * temporal
        parts |= {"face": float(face.detach()), "temporal": float(temporal.detach())}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        ema_update(ema, model, step, cap=0.998)
        step += 1
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            running[k] = 0.95 * running.get(k, v) + 0.05 * v
        if step % 25 == 0:
            log(f"step {step} pairs {len(pool.items)} " + " ".join(f"{k} {v:.4f}" for k, v in running.items())
                + f" s/step {(time.time() - t0) / max(1, step - step0):.2f}")
        if step % args.ckpt_every == 0:
            save()
    save()
    export_hd_onnx(ema, args.out, {**meta, "livefilter.steps": str(step)})
    total = (elapsed_before + time.time() - t0) / 60
    (work / "summary.json").write_text(json.dumps({"out": str(args.out), "steps": step, "train_minutes": round(total, 1),
                                                   "pairs": len(pool.items), "argv": sys.argv}, indent=2))
    log(f"wrote {args.out} after {step} steps, {total:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
