"""Static int8 QDQ quantisation of a student, calibrated on real frames, and its verdict.

The int8 file is worth shipping only if it is faster on this CPU and loses < 0.5 dB against the
fp32 student, so this measures both and says which:
  python -m livefilter.train.quantize --model weights/hayao.onnx --teacher T.onnx --photos DIR... --out /tmp/hayao.int8.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from . import data as D
from .fidelity import psnr
from .teacher import OnnxGenerator

COLOUR_NODES = "/colour/"  # the node names of an HD file's colour head (hdmodel.ColourHead)


class FrameReader(CalibrationDataReader):
    """Feeds real pictures at the runtime's internal size (short side 256, multiple of 8).

    With `size` (h, w) every picture is scaled to cover it and centre-cropped, because the
    histogram calibrators (percentile, entropy) stack all frames and need one shape.
    """

    def __init__(self, files: list[Path], input_name: str, short: int = 256,
                 size: tuple[int, int] | None = None) -> None:
        self.items = []
        for f in files:
            if size is None:
                rgb = D.crop_multiple(D.resize_short(D.read_rgb(f), short), 8)
            else:
                rgb = cover_crop(D.read_rgb(f), *size)
            x = rgb.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0
            self.items.append({input_name: np.ascontiguousarray(x)})
        self.it = iter(self.items)

    def get_next(self):
        return next(self.it, None)


def cover_crop(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    """Scale so the picture covers h x w, then take the centre h x w."""
    scale = max(h / rgb.shape[0], w / rgb.shape[1])
    rh, rw = max(h, round(rgb.shape[0] * scale)), max(w, round(rgb.shape[1] * scale))
    big = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_AREA)
    top, left = (rh - h) // 2, (rw - w) // 2
    return np.ascontiguousarray(big[top:top + h, left:left + w])


CALIBRATION = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}


def calibration_size(short: int) -> tuple[int, int]:
    """One (h, w) for the histogram calibrators: the internal size of a 16:9 frame."""
    return short, round(short * 1.75 / 8) * 8


def quantize(model: Path, out: Path, calib_files: list[Path], method: str = "minmax",
             keep_fp32: tuple[str, ...] = (), short: int = 256) -> None:
    """Write the QDQ int8 model; nodes whose names start with one of `keep_fp32` stay float.
    ``short`` is the internal short side the file runs at (its ranges are calibrated there)."""
    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre)).graph
    name = graph.input[0].name
    excluded = [n.name for n in graph.node if keep_fp32 and n.name.startswith(tuple(keep_fp32))]
    # The colour head works on a thumbnail and applies one 3x3 colour matrix: float costs nothing
    # there, while int8 would wrap the full-size picture in quantise/dequantise steps.
    excluded += [n.name for n in graph.node if n.name.startswith(COLOUR_NODES)]
    # A prefix that names no node would quietly quantise the very layers it was meant to keep
    # (an HD file's student layers are /student/stem..., not /stem...).
    missing = [k for k in keep_fp32 if not any(e.startswith(k) for e in excluded)]
    if missing:
        pre.unlink(missing_ok=True)
        stems = sorted({"/".join(n.name.split("/")[:3]) for n in graph.node if n.name.startswith("/")})
        raise ValueError(f"--keep-fp32 {' '.join(missing)} names no node of {model.name} "
                         f"(its layers: {' '.join(stems[:12])} ...)")
    quantize_static(
        str(pre), str(out),
        FrameReader(calib_files, name, short, size=None if method == "minmax" else calibration_size(short)),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CALIBRATION[method], nodes_to_exclude=excluded,
    )
    # keep the runtime's metadata on the int8 file
    src, q = onnx.load(str(model)), onnx.load(str(out))
    del q.metadata_props[:]
    for p in src.metadata_props:
        e = q.metadata_props.add()
        e.key, e.value = p.key, p.value
    onnx.save(q, str(out))
    pre.unlink(missing_ok=True)


def compare(fp32: Path, int8: Path, teacher: Path, files: list[Path], threads: int = 2, repeats: int = 15,
            short: int = 256) -> dict:
    """PSNR of each against the teacher on held-out pictures at short side ``short``, and
    interleaved timing at 256x448."""
    a, b = OnnxGenerator(fp32, threads=threads), OnnxGenerator(int8, threads=threads)
    t = OnnxGenerator(teacher, threads=threads)
    pa, pb = [], []
    for f in files:
        x = D.resize_short(D.read_rgb(f), short)
        y = t(x)
        pa.append(psnr(a(x), y))
        pb.append(psnr(b(x), y))
    x = np.random.default_rng(0).uniform(-1, 1, (256, 448, 3)).astype(np.float32)
    ta, tb = [], []
    for g in (a, b):
        g.run_float(x)
    for _ in range(repeats):  # interleaved so background load hits both alike
        t0 = time.perf_counter()
        a.run_float(x)
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b.run_float(x)
        tb.append(time.perf_counter() - t0)
    fp32_ms, int8_ms = 1000 * float(np.median(ta)), 1000 * float(np.median(tb))
    fa, fb = float(np.mean(pa)), float(np.mean(pb))
    return {"fp32_ms": round(fp32_ms, 2), "int8_ms": round(int8_ms, 2),
            "fp32_psnr_vs_teacher": round(fa, 2), "int8_psnr_vs_teacher": round(fb, 2),
            "fp32_bytes": fp32.stat().st_size, "int8_bytes": int8.stat().st_size,
            "ship_int8": bool(int8_ms < fp32_ms and fa - fb < 0.5)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--teacher", required=True, type=Path)
    p.add_argument("--photos", nargs="+", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--calib", type=int, default=32, help="training photos used for calibration")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--method", choices=sorted(CALIBRATION), default="minmax",
                   help="how activation ranges are set from the calibration frames (percentile clips outliers)")
    p.add_argument("--keep-fp32", nargs="*", default=[], metavar="PREFIX",
                   help="node-name prefixes left in float, e.g. /head /detail (the layers that draw the lines)")
    args = p.parse_args(argv)
    for f in (args.model, args.teacher):
        if not f.is_file():
            print(f"quantize: error: no such model: {f}", file=sys.stderr)
            return 2
    from livefilter.engine import model_resolution

    short = model_resolution(args.model)
    train, held = D.split_photos(args.photos)
    calib = [s.path for s in train][:: max(1, len(train) // args.calib)][: args.calib]
    try:
        quantize(args.model, args.out, calib, args.method, tuple(args.keep_fp32), short)
    except ValueError as exc:
        print(f"quantize: error: {exc}", file=sys.stderr)
        return 2
    if not held:  # a tiny photo set may hold none out
        print(f"quantize: wrote {args.out}; no held-out photos to compare it on")
        return 0
    res = compare(args.model, args.out, args.teacher, [s.path for s in held], args.threads, short=short)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
