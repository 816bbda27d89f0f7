"""Run any generator ONNX (teacher or student) on an RGB uint8 picture, whatever its layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


def _read_meta(session: ort.InferenceSession) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map or {})


class OnnxGenerator:
    """An RGB [-1, 1] -> RGB [-1, 1] generator session with layout and size multiple resolved.

    The layout comes from the input shape (channels of 3 in dim 1 means NCHW); the multiple from
    ``livefilter.multiple`` metadata when present, else 16, which satisfies every teacher.
    """

    def __init__(self, path: str | Path, threads: int = 2, multiple: int | None = None) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.layout = "NCHW" if inp.shape[1] == 3 else "NHWC"
        meta = _read_meta(self.session)
        self.multiple = multiple or int(meta.get("livefilter.multiple", 16))

    def run_float(self, x: np.ndarray) -> np.ndarray:
        """x: (H, W, 3) float32 in [-1, 1] with H, W multiples of ``self.multiple``."""
        if self.layout == "NCHW":
            feed = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
            out = self.session.run(None, {self.input_name: feed})[0][0].transpose(1, 2, 0)
        else:
            out = self.session.run(None, {self.input_name: np.ascontiguousarray(x[None])})[0][0]
        return out

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) of any size -> RGB uint8 of the same size (reflect pad, crop)."""
        h, w = rgb.shape[:2]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        x = rgb.astype(np.float32) / 127.5 - 1.0
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        y = self.run_float(x)[:h, :w]
        return to_uint8(y)


def to_uint8(y: np.ndarray) -> np.ndarray:
    """[-1, 1] float -> uint8 with rounding."""
    return np.clip((y + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
