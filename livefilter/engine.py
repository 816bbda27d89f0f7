"""The style engine: one ONNX generator applied to one BGR picture.

`Engine(model)(bgr) -> bgr` is a pure function of the picture, so every caller (camera, clip,
still, benchmark) shares the same colour handling and geometry:
- the picture is resized, aspect ratio kept, to the internal short side (``resolution``),
- reflect-padded to the size multiple the generator needs, run, cropped back,
- resized to the caller's size.  Nothing is ever squashed.
The generator contract: RGB float in [-1, 1] in and out, NCHW or NHWC (read from the model).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from livefilter import upsample
from livefilter.errors import LivefilterError

log = logging.getLogger("livefilter")

DEFAULT_STYLE = "hayao"
DEFAULT_RESOLUTION = 256
MULTIPLE_KEY = "livefilter.multiple"
HD_META = "livefilter.hd"  # set by livefilter.train.hdmodel's exporter
RESOLUTION_META = "livefilter.resolution"  # the internal short side an HD file was trained for
_PROBE_MULTIPLES = (4, 8, 16, 32)
_IN_SCALE = np.float32(1 / 127.5)  # uint8 -> [-1, 1]: x * _IN_SCALE - 1

# Short names a user types -> onnxruntime provider names.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}


@dataclass(frozen=True)
class Painting:
    """The model's picture at its own size, before it is brought to the frame's size.

    Temporal smoothing works here, where the model's flicker is, on a few hundred thousand
    pixels instead of the frame's millions; the full-size step (`finish`) then adds what the
    frame itself holds, which is as steady as the camera. ``small`` is what the model saw,
    ``styled`` what it painted (both BGR uint8, same size); ``gains`` are the HD file's guide
    gains, or None for a plain resize.
    """

    small: np.ndarray
    styled: np.ndarray
    gains: np.ndarray | None = None

    def finish(self, frame: np.ndarray, styled: np.ndarray | None = None,
               work: upsample.GuideBuffers | None = None) -> np.ndarray:
        """The output at the frame's size; ``styled`` replaces the painted picture (smoothed);
        ``work`` keeps the full-size working pictures between frames of one stream."""
        styled = self.styled if styled is None else styled
        height, width = frame.shape[:2]
        if self.gains is not None:
            return upsample.guided(frame, self.small, styled, self.gains, work)
        if styled.shape[:2] == (height, width):
            return styled
        return cv2.resize(styled, (width, height), interpolation=cv2.INTER_LINEAR)

    def finish_i420(self, frame: np.ndarray, styled: np.ndarray | None = None,
                    work: upsample.GuideBuffers | None = None) -> np.ndarray | None:
        """`finish` written straight in I420 for an encoder, or None where that does not apply
        (a plain file without gains, or an odd size): the caller then uses `finish`."""
        height, width = frame.shape[:2]
        if self.gains is None or height % 2 or width % 2:
            return None
        return upsample.guided_i420(frame, self.small, self.styled if styled is None else styled,
                                    self.gains, work)


def shrink(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``bgr`` brought down to ``size`` (w, h) as INTER_AREA would, at a fraction of its cost.

    OpenCV's area filter is fast only for whole factors: 1280x720 to 568x320 (2.25x) took
    2.2 ms of a 25 ms frame. A linear resize to the nearest whole multiple of ``size`` and an
    area step by that whole factor gives the same picture (49-57 dB from the exact filter on
    photos and video frames) in 0.8 ms.
    """
    width, height = size
    factor = int(min(bgr.shape[1] / width, bgr.shape[0] / height) + 0.5)
    if factor >= 2 and bgr.shape[1::-1] != (factor * width, factor * height):
        bgr = cv2.resize(bgr, (factor * width, factor * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)


def to_size(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``bgr`` at the model's ``size`` (w, h): the area filter's picture going down, linear going up."""
    if bgr.shape[1::-1] == size:
        return bgr
    if size[0] * size[1] < bgr.shape[0] * bgr.shape[1]:
        return shrink(bgr, size)
    return cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)


def weights_dirs() -> list[Path]:
    """Where styles live: inside the installed package, else the source tree's weights/."""
    here = Path(__file__).resolve().parent
    return [here / "weights", here.parent / "weights"]


def list_styles() -> list[str]:
    """Names of the shipped styles (weights/<style>.onnx), sorted, without duplicates."""
    names: set[str] = set()
    for folder in weights_dirs():
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.onnx"))
    return sorted(names)


def resolve_model(style_or_path: str | Path) -> Path:
    """A style name or a path to an .onnx file -> the model file, or a one-line error."""
    text = str(style_or_path)
    as_path = Path(text).expanduser()
    looks_like_path = as_path.suffix.lower() == ".onnx" or "/" in text or "\\" in text
    if looks_like_path:
        if not as_path.is_file():
            raise LivefilterError(f"model file not found: {as_path}")
        return as_path
    for folder in weights_dirs():
        candidate = folder / f"{text}.onnx"
        if candidate.is_file():
            return candidate
    styles = list_styles()
    available = ", ".join(styles) if styles else "none installed"
    raise LivefilterError(f"unknown style '{text}' (available: {available}); or pass --model PATH.onnx")


def model_is_hd(path: str | Path) -> bool:
    """Whether a model file carries the HD path's gain head."""
    return _facts(path)[0]


def model_resolution(path: str | Path) -> int:
    """The internal short side a file was trained for (its ``livefilter.resolution``), else
    `DEFAULT_RESOLUTION`: what the commands run it at unless ``--resolution`` says otherwise."""
    return _facts(path)[1] or DEFAULT_RESOLUTION


def _facts(path: str | Path) -> tuple[bool, int | None]:
    """(HD file, trained resolution) of a model file, kept per file version.

    Asked each time a quality ladder is built (start-up, every style switch, every web live
    connection); onnxruntime reads metadata only through a session, so the answer is kept
    instead of loading a session each time.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return False, None
    return _model_facts(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _model_facts(path: str, _mtime_ns: int, _size: int) -> tuple[bool, int | None]:
    import onnxruntime as ort

    options = ort.SessionOptions()  # read, never run: no graph optimisation (a quarter of the time)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception:  # a broken file is the engine's to report
        return False, None
    outputs = [o.name for o in session.get_outputs()]
    meta = session.get_modelmeta().custom_metadata_map
    try:
        resolution = int(meta.get(RESOLUTION_META, ""))
    except ValueError:
        resolution = None
    return HD_META in meta and "gains" in outputs, resolution if resolution and resolution >= 16 else None


def preferred_file(model: str | Path) -> Path:
    """The file a style runs from: its ``_int8`` sibling when that is an HD file too, else the
    model itself. That int8 file ships only because it paints the same look (720p fidelity
    within 0.5 dB of the fp32 file, 0.1 dB at most in practice) faster (weights/README.md)."""
    model = Path(model)
    if model.stem.endswith("_int8"):
        return model
    sibling = model.with_name(f"{model.stem}_int8{model.suffix}")
    return sibling if sibling.is_file() and model_is_hd(sibling) else model


def provider_names(provider: str) -> list[str]:
    """Providers to ask onnxruntime for: the requested one if present, then CPU.

    An unavailable provider is a warning, not an error: the filter still works on the CPU.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = PROVIDER_ALIASES.get(provider.lower(), provider)
    if wanted == "CPUExecutionProvider":
        return ["CPUExecutionProvider"]
    if wanted not in available:
        short = [k for k, v in PROVIDER_ALIASES.items() if v in available and k != "directml"]
        log.warning("provider '%s' is not available in this onnxruntime (available: %s); using cpu",
                    provider, ", ".join(short) or "cpu")
        return ["CPUExecutionProvider"]
    return [wanted, "CPUExecutionProvider"]


def _checked_resolution(resolution: int | None) -> int | None:
    if resolution is not None and resolution < 16:
        raise LivefilterError(f"--resolution must be at least 16, got {resolution}")
    return resolution


def _dim(value: object) -> int | None:
    """A fixed dimension as int; symbolic or unknown dimensions as None."""
    return value if isinstance(value, int) and value > 0 else None


class Engine:
    """One loaded generator. Call it with a BGR uint8 picture; get one of the same size back."""

    def __init__(self, model: str | Path, resolution: int | None = DEFAULT_RESOLUTION,
                 threads: int | None = None, provider: str = "cpu", guided: bool = True) -> None:
        import onnxruntime as ort

        self.path = Path(model)
        if not self.path.is_file():
            raise LivefilterError(f"model file not found: {self.path}")
        self.resolution = _checked_resolution(resolution)
        self.guided = guided
        self._buffers = threading.local()  # full-size working pictures, one set per calling thread
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # No busy-waiting worker threads: the filter shares the CPU with the capture thread,
        # the encoder and the video-call app. Measured on 2 busy cores at 256x456: 2 threads
        # used 33 ms CPU per frame spinning vs 19 ms without, at the same wall time.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=provider_names(provider))
        except Exception as exc:  # onnxruntime raises several unrelated types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "INVALID_PROTOBUF" in first or "No graph was found" in first or self.path.stat().st_size == 0:
                # Say what the file should have been: the raw message only says "Protobuf".
                raise LivefilterError(f"cannot load model {self.path}: not a valid ONNX file "
                                      f"(truncated or damaged download?); expected an ONNX image generator "
                                      f"(RGB in [-1, 1], NCHW or NHWC)") from None
            raise LivefilterError(f"cannot load model {self.path}: {first[:200]}") from None
        self.providers = self.session.get_providers()
        self._check_io()
        meta = self.session.get_modelmeta().custom_metadata_map
        self.multiple = self._multiple_from(meta)
        # An HD file also predicts the gains that guide its picture up to the frame's full size
        # (livefilter/upsample.py); without them, or with guided=False, it runs as a plain student.
        outputs = [o.name for o in self.session.get_outputs()]
        self.hd = HD_META in meta and "gains" in outputs and self.layout == "NCHW" and self.fixed_size is None

    def at(self, resolution: int | None = None, guided: bool | None = None) -> "Engine":
        """The same loaded model at another quality level (sharing the session): what adaptive
        quality switches between without reloading anything."""
        other = copy.copy(self)
        if resolution is not None:
            other.resolution = _checked_resolution(resolution)
        if guided is not None:
            other.guided = guided
        return other

    @property
    def level(self) -> str:
        """A short name of the quality level, for overlays and logs."""
        kind = "hd" if self.hd and self.guided else "plain"
        return f"{kind}@{self.resolution}" if self.resolution else kind

    # --- model inspection -------------------------------------------------------------
    def _check_io(self) -> None:
        """Accept exactly one image in and one image out, NCHW or NHWC, 3 channels, float."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        expected = ("expected a generator with one float input and one float output of shape "
                    "(1, 3, H, W) or (1, H, W, 3), RGB in [-1, 1]")
        if len(inputs) != 1 or len(outputs) < 1:
            raise LivefilterError(f"model {self.path}: {expected}; got {len(inputs)} inputs, "
                                  f"{len(outputs)} outputs")
        inp, out = inputs[0], outputs[0]
        shape = list(inp.shape)
        if inp.type not in ("tensor(float)", "tensor(float16)") or len(shape) != 4:
            raise LivefilterError(f"model {self.path}: {expected}; got input {inp.type} {shape}")
        if shape[1] == 3 and shape[3] != 3:
            self.layout = "NCHW"
        elif shape[3] == 3 and shape[1] != 3:
            self.layout = "NHWC"
        elif shape[1] == 3 and shape[3] == 3:
            self.layout = "NCHW"  # 3x3 pictures only: ambiguous and harmless
        else:
            raise LivefilterError(f"model {self.path}: {expected}; got input shape {shape}")
        oshape = list(out.shape)
        channel_axis = 1 if self.layout == "NCHW" else 3
        if (out.type not in ("tensor(float)", "tensor(float16)") or len(oshape) != 4
                or _dim(oshape[channel_axis]) not in (None, 3)):
            raise LivefilterError(f"model {self.path}: {expected}; got output {out.type} {oshape}")
        if _dim(shape[0]) not in (None, 1):
            raise LivefilterError(f"model {self.path}: {expected}; got batch size {shape[0]}")
        self.input_name = inp.name
        self.dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        hw = (shape[2], shape[3]) if self.layout == "NCHW" else (shape[1], shape[2])
        self.fixed_size = (_dim(hw[0]), _dim(hw[1])) if _dim(hw[0]) and _dim(hw[1]) else None

    def _multiple_from(self, meta: dict[str, str]) -> int:
        """The size multiple: from metadata when the exporter wrote it, else probed."""
        if self.fixed_size is not None:
            return 1
        if MULTIPLE_KEY in meta:
            try:
                value = int(meta[MULTIPLE_KEY])
                if value >= 1:
                    return value
            except ValueError:
                pass
            log.warning("model %s: ignoring bad %s=%r", self.path, MULTIPLE_KEY, meta[MULTIPLE_KEY])
        return self._probe_multiple()

    def _probe_multiple(self) -> int:
        """Smallest multiple m whose odd multiples (m*k, k odd) the model runs and maps to size.

        Generators with k downsamplings and skip additions fail on sizes that are not a
        multiple of 2**k; a tiny run at m*odd tells whether m is enough.
        """
        import onnxruntime as ort

        run_options = ort.RunOptions()
        run_options.log_severity_level = 4
        for m in _PROBE_MULTIPLES:
            k = max(3, math.ceil(32 / m))
            k += 1 - k % 2
            size = m * k
            try:
                out = self._run(np.zeros((size, size, 3), self.dtype), run_options)
            except Exception:
                continue
            if out.shape[:2] == (size, size):
                return m
        raise LivefilterError(f"model {self.path}: does not run on any size tried "
                              f"(multiples {_PROBE_MULTIPLES}); expected an image-to-image generator")

    # --- inference ----------------------------------------------------------------------
    def _infer(self, x: np.ndarray, run_options: object = None) -> np.ndarray:
        """One batch of one picture in the model's layout -> its (1, 3, H, W) or (1, H, W, 3) output."""
        y = self.session.run(None, {self.input_name: np.ascontiguousarray(x, self.dtype)},
                             run_options)[0]
        if y.ndim != 4 or y.shape[0] != 1:
            raise LivefilterError(f"model {self.path}: output shape {y.shape}, expected one image")
        channels = y.shape[1] if self.layout == "NCHW" else y.shape[3]
        if channels != 3:
            raise LivefilterError(f"model {self.path}: output has {channels} channels, expected 3")
        return y

    def _run(self, rgb: np.ndarray, run_options: object = None) -> np.ndarray:
        """HxWx3 float in [-1, 1] -> HxWx3 float, whatever the model's layout."""
        x = rgb.transpose(2, 0, 1)[None] if self.layout == "NCHW" else rgb[None]
        y = self._infer(x, run_options)
        return y[0].transpose(1, 2, 0) if self.layout == "NCHW" else y[0]

    def _to_input(self, bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 (padded) -> the model's input: RGB in [-1, 1], in its layout.

        Written channel by channel into one buffer: the same float32 arithmetic as
        ``rgb.astype(float32) * (1 / 127.5) - 1`` (bit for bit) without its temporary arrays,
        a few times faster on a 456x256 picture.
        """
        h, w = bgr.shape[:2]
        if self.layout == "NCHW":
            x = np.empty((1, 3, h, w), np.float32)
            for c in range(3):
                np.multiply(bgr[:, :, 2 - c], _IN_SCALE, out=x[0, c])
        else:
            x = np.empty((1, h, w, 3), np.float32)
            np.multiply(bgr[:, :, ::-1], _IN_SCALE, out=x[0])
        np.subtract(x, np.float32(1.0), out=x)
        return x

    @staticmethod
    def _to_bgr8(planes: np.ndarray) -> np.ndarray:
        """(3, H, W) RGB float in [-1, 1] (any strides) -> HxWx3 BGR uint8.

        The same float32 arithmetic as ``clip((y + 1) * 127.5 + 0.5, 0, 255)`` truncated to
        uint8 (bit for bit), done in place on one copy, then merged to BGR by OpenCV.
        """
        t = np.add(planes, np.float32(1.0), dtype=np.float32)
        np.multiply(t, np.float32(127.5), out=t)
        np.add(t, np.float32(0.5), out=t)
        np.clip(t, 0, 255, out=t)
        u = t.astype(np.uint8)
        return cv2.merge((u[2], u[1], u[0]))

    def internal_size(self, width: int, height: int) -> tuple[int, int]:
        """The (w, h) the picture is resized to before padding: short side = resolution."""
        if self.fixed_size is not None:
            fh, fw = self.fixed_size
            scale = min(fw / width, fh / height)
        elif self.resolution is None:
            scale = 1.0
        else:
            scale = self.resolution / min(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """Stylise one BGR uint8 picture; returns BGR uint8 of the same height and width."""
        bgr = self._as_bgr8(bgr)
        work = getattr(self._buffers, "work", None)
        if work is None:
            work = self._buffers.work = upsample.GuideBuffers()
        return self.paint(bgr).finish(bgr, work=work)

    @staticmethod
    def _as_bgr8(bgr: np.ndarray) -> np.ndarray:
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        elif bgr.shape[2] == 4:
            bgr = bgr[:, :, :3]
        if bgr.dtype != np.uint8:
            raise LivefilterError(f"engine expects 8-bit pictures, got {bgr.dtype}")
        return bgr

    def paint(self, bgr: np.ndarray) -> Painting:
        """Run the model on one picture; `Painting.finish` brings the result to its size.

        ``bgr`` must be 8-bit with 3 channels (`__call__` converts grey and BGRA first).
        """
        bgr = self._as_bgr8(bgr)
        if self.hd:
            return self._paint_hd(bgr)
        height, width = bgr.shape[:2]
        iw, ih = self.internal_size(width, height)
        small = to_size(bgr, (iw, ih))
        if self.fixed_size is not None:
            th, tw = self.fixed_size
        else:
            m = self.multiple
            th, tw = -(-ih // m) * m, -(-iw // m) * m
        padded = small
        if (th, tw) != (ih, iw):
            # Pad at the bottom and right only: the picture's top-left pixel stays at the model's
            # grid origin, where training and the teacher put it (the students learned strokes
            # that depend on a pixel's place in the 4x4 grid).
            border = cv2.BORDER_REFLECT_101 if min(ih, iw) > 1 else cv2.BORDER_REPLICATE
            padded = cv2.copyMakeBorder(small, 0, th - ih, 0, tw - iw, border)
        y = self._infer(self._to_input(padded))
        planes = y[0] if self.layout == "NCHW" else y[0].transpose(2, 0, 1)
        if planes.shape[1:] != (th, tw):  # generators that change scale: map back to the padded size
            hwc = planes.transpose(1, 2, 0).astype(np.float32, copy=False)
            planes = cv2.resize(hwc, (tw, th), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
        return Painting(small, np.ascontiguousarray(self._to_bgr8(planes[:, :ih, :iw])))

    def hd_size(self, width: int, height: int) -> tuple[int, int]:
        """The HD path's internal (w, h): short side near ``resolution``, each side a multiple of
        the model's, rounded on its own. The picture is squeezed by at most half a multiple
        (under 1% at 256) and stretched back exactly by the upsampling, so nothing is padded
        and the full-resolution guide lines up with the model's grid."""
        iw, ih = self.internal_size(width, height)
        m = max(self.multiple, 8)
        return max(m, round(iw / m) * m), max(m, round(ih / m) * m)

    def _paint_hd(self, bgr: np.ndarray) -> Painting:
        height, width = bgr.shape[:2]
        iw, ih = self.hd_size(width, height)
        small = to_size(bgr, (iw, ih))
        styled_planes, gains = self.session.run(["output", "gains"], {self.input_name: self._to_input(small)})
        return Painting(small, self._to_bgr8(styled_planes[0]), gains[0] if self.guided else None)

    def describe(self) -> str:
        """One line for logs and the benchmark: which model, layout, multiple, provider."""
        return (f"{self.path.name}: {self.layout}, multiple {self.multiple}, "
                f"short side {self.resolution}, {self.level}, {self.providers[0]}")
