"""Shared fixtures: tiny generator ONNX models and synthetic clips, all built by the tests.

Nothing here needs the network or the real weights; /work/shared (../shared beside the repo)
is only used by tests that skip cleanly when it is absent.
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


# --- tools a test needs ----------------------------------------------------------------------
def require_tool(available: bool, what: str, install: str = "") -> None:
    """Skip a test whose tool is missing; under CI=true fail it instead.

    A skip is invisible in a green run, so CI must install every tool the suite uses (see
    .ci/run) and a missing one is an error there. Only for tools (torch, Xvfb, xdotool,
    ImageMagick, Chromium, setuptools, ...), not for hardware or the ../shared data.
    """
    if available:
        return
    message = f"not available: {what}" + (f" ({install})" if install else "")
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so this fails instead of skipping: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require_executables(*names: str, install: str = "") -> None:
    """`require_tool` for programs on PATH, e.g. require_executables("Xvfb", "xdotool")."""
    missing = [n for n in names if shutil.which(n) is None]
    require_tool(not missing, ", ".join(missing), install)


def require_module(name: str, install: str = ""):
    """`require_tool` for a Python module (``pytest.importorskip`` that fails under CI=true)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        require_tool(False, f"the Python module {name}", install or f"pip install {name}")


def require_chromium() -> tuple[str, str]:
    """Paths of Chromium and chromedriver (for browser tests), or skip/fail as above."""
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    require_tool(browser is not None and driver is not None, "Chromium with chromedriver",
                 "apt-get install chromium chromium-driver")
    return browser, driver
CLIPS = SHARED / "data" / "clips"
TEACHERS = SHARED / "teachers"


# --- ONNX generators -----------------------------------------------------------------------
def build_generator(path: Path, layout: str = "NCHW", *, mix: np.ndarray | None = None,
                    bias: np.ndarray | None = None, downsample: int = 0, width: int = 8,
                    depth: int = 0, tanh: bool = False, multiple_meta: int | None = None,
                    seed: int = 0) -> Path:
    """A generator with the project's I/O contract (RGB in [-1, 1], one image in, one out).

    ``mix``/``bias``: the output is ``mix @ rgb + bias`` per pixel (exact, for colour tests).
    ``downsample`` k > 0 adds a stride-2 path and an upsampling skip join, so the model only
    runs on sizes that are multiples of 2**k (like real generators). ``depth`` adds 3x3
    convolutions of ``width`` channels to make the model slower.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    if layout == "NCHW":
        inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])
        out = helper.make_tensor_value_info("styled", TensorProto.FLOAT, [1, 3, "h", "w"])
        x = "image"
    else:
        inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, "h", "w", 3])
        out = helper.make_tensor_value_info("styled", TensorProto.FLOAT, [1, "h", "w", 3])
        nodes.append(helper.make_node("Transpose", ["image"], ["x"], perm=[0, 3, 1, 2]))
        x = "x"
    m = np.eye(3) if mix is None else np.asarray(mix, float)
    b = np.zeros(3) if bias is None else np.asarray(bias, float)
    nodes.append(helper.make_node("Conv", [x, const("mix_w", m.reshape(3, 3, 1, 1)), const("mix_b", b)],
                                  ["y0"]))
    y = "y0"
    if downsample or depth:
        nodes.append(helper.make_node("Conv", [x, const("in_w", rng.normal(0, 0.3, (width, 3, 3, 3)))],
                                      ["f0"], pads=[1, 1, 1, 1]))
        f = "f0"
        for i in range(downsample):
            nodes.append(helper.make_node(
                "Conv", [f, const(f"down{i}", rng.normal(0, 0.1, (width, width, 3, 3)))],
                [f"d{i}"], strides=[2, 2], pads=[1, 1, 1, 1]))
            f = f"d{i}"
        for i in range(depth):
            nodes.append(helper.make_node(
                "Conv", [f, const(f"deep{i}", rng.normal(0, 0.05, (width, width, 3, 3)))],
                [f"c{i}"], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
            f = f"r{i}"
        if downsample:
            scale = float(2 ** downsample)
            nodes.append(helper.make_node("Resize", [f, "", const("scales", np.array([1, 1, scale, scale]))],
                                          ["up"], mode="nearest"))
            f = "up"
        nodes.append(helper.make_node("Add", [f, "f0"], ["joined"]))  # fails unless sizes match
        nodes.append(helper.make_node("Conv", ["joined", const("out_w", np.zeros((3, width, 1, 1)))],
                                      ["extra"]))
        nodes.append(helper.make_node("Add", [y, "extra"], ["y1"]))
        y = "y1"
    if tanh:
        nodes.append(helper.make_node("Tanh", [y], ["y2"]))
        y = "y2"
    if layout == "NCHW":
        nodes.append(helper.make_node("Identity", [y], ["styled"]))
    else:
        nodes.append(helper.make_node("Transpose", [y], ["styled"], perm=[0, 2, 3, 1]))
    graph = helper.make_graph(nodes, "test_generator", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if multiple_meta is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "livefilter.multiple", str(multiple_meta)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_wrong_model(path: Path) -> Path:
    """A valid ONNX model that is not an image generator: one grey channel in and out."""
    import onnx
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "h", "w"])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "grey", [inp], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Named test generators (built once per session)."""
    root = tmp_path_factory.mktemp("models")
    return {
        "identity_nchw": build_generator(root / "identity_nchw.onnx", "NCHW"),
        "identity_nhwc": build_generator(root / "identity_nhwc.onnx", "NHWC"),
        "tiny": build_generator(root / "tiny.onnx", "NCHW", downsample=2, tanh=True,
                                mix=np.eye(3)[::-1] * 0.9),
        "tiny_nhwc": build_generator(root / "tiny_nhwc.onnx", "NHWC", downsample=3, tanh=True),
        "meta16": build_generator(root / "meta16.onnx", "NCHW", downsample=2, multiple_meta=16),
        "slow": build_generator(root / "slow.onnx", "NCHW", depth=6, width=32, tanh=True),
        "wrong": build_wrong_model(root / "wrong.onnx"),
    }


def plain_student(hd_file: Path, out: Path) -> Path:
    """A plain student (one output, no HD metadata, the default size) cut from an HD file: what
    the engine's plain-student code paths are tested with now that every shipped style is HD."""
    onnx = require_module("onnx")
    from onnx.utils import Extractor

    model = onnx.load(str(hd_file))
    graph = Extractor(model).extract_model([i.name for i in model.graph.input], [model.graph.output[0].name])
    keep = [p for p in model.metadata_props if p.key not in ("livefilter.hd", "livefilter.resolution")]
    plain = onnx.helper.make_model(graph.graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    plain.metadata_props.extend(keep)
    onnx.save(plain, str(out))
    return out


@pytest.fixture(scope="session")
def plain_students(tmp_path_factory) -> dict[str, Path]:
    """``plain.onnx`` and its ``plain_int8.onnx`` sibling, cut from the shipped shinkai files."""
    weights = Path(__file__).resolve().parents[1] / "weights"
    root = tmp_path_factory.mktemp("plain")
    return {"fp32": plain_student(weights / "shinkai.onnx", root / "plain.onnx"),
            "int8": plain_student(weights / "shinkai_int8.onnx", root / "plain_int8.onnx")}


# --- synthetic clips -----------------------------------------------------------------------
def draw_frame(i: int, width: int, height: int) -> np.ndarray:
    """Moving shapes on a gradient: enough structure for encoders and motion."""
    import cv2

    img = np.empty((height, width, 3), np.uint8)
    img[:, :, 0] = (np.arange(width) * 255 // max(1, width - 1)).astype(np.uint8)[None, :]
    img[:, :, 1] = (np.arange(height) * 255 // max(1, height - 1)).astype(np.uint8)[:, None]
    img[:, :, 2] = (i * 7) % 256
    cx = int((i * 5) % max(1, width))
    cv2.circle(img, (cx, height // 2), max(2, height // 6), (0, 0, 255), -1)
    cv2.rectangle(img, (width // 4, (i * 3) % max(1, height)), (width // 4 + width // 6, (i * 3) % max(1, height) + 8),
                  (255, 255, 255), -1)
    return img


def encode_h264(path: Path, draw, frames: int, fps: int = 30, crf: str | None = "18") -> Path:
    """An H.264 clip of ``frames`` pictures, ``draw(i)`` giving picture i (BGR uint8, even size)."""
    import av

    first = draw(0)
    h, w = first.shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", **({"crf": crf} if crf else {})}
        for i in range(frames):
            image = first if i == 0 else draw(i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_clip(path: Path, frames: int = 45, width: int = 161, height: int = 120,
              rate: Fraction = Fraction(30000, 1001), audio: bool = True,
              pts_list: list[int] | None = None, codec: str | None = None,
              pix_fmt: str | None = None, video: bool = True) -> Path:
    """Write a synthetic clip with PyAV: moving shapes, optional 440 Hz sine audio.

    Odd sizes need a codec without 4:2:0 chroma: FFV1 in .mkv by default.
    ``pts_list`` (in 1/rate units of time base 1/90000 when given) makes a variable-rate clip.
    """
    import av

    path = Path(path)
    container = av.open(str(path), "w")
    vcodec = codec or ("ffv1" if path.suffix == ".mkv" else "libx264")
    tb = Fraction(1, 90000) if pts_list is not None else 1 / rate
    vstream = None
    if video:
        vstream = container.add_stream(vcodec, rate=rate)
        vstream.width, vstream.height = width, height
        vstream.pix_fmt = pix_fmt or ("yuv420p" if vcodec in ("libx264", "mpeg4") else "yuv444p")
        vstream.codec_context.time_base = tb
        vstream.time_base = tb
    astream = None
    if audio:
        astream = container.add_stream("aac", rate=48000)
        astream.layout = "mono"
    sample_rate, samples_done = 48000, 0
    duration = (pts_list[-1] * tb + 1 / rate) if pts_list is not None else frames / rate
    total_samples = int(duration * sample_rate)
    for i in range(frames):
        if vstream is not None:
            frame = av.VideoFrame.from_ndarray(draw_frame(i, width, height), format="bgr24")
            frame.pts = pts_list[i] if pts_list is not None else i
            frame.time_base = tb
            for packet in vstream.encode(frame):
                container.mux(packet)
        if astream is not None:
            until = min(total_samples, int((i + 1) / frames * total_samples))
            while samples_done + 1024 <= until or (i == frames - 1 and samples_done < total_samples):
                n = min(1024, total_samples - samples_done)
                t = (np.arange(n) + samples_done) / sample_rate
                chunk = (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)[None]
                aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                aframe.sample_rate = sample_rate
                aframe.pts = samples_done
                samples_done += n
                for packet in astream.encode(aframe):
                    container.mux(packet)
    for packet in (vstream.encode(None) if vstream is not None else []):
        container.mux(packet)
    if astream is not None:
        for packet in astream.encode(None):
            container.mux(packet)
    container.close()
    return path


def set_mp4_rotation(path: Path, clockwise: int) -> Path:
    """Write a display matrix into an MP4's track header, as phones do for portrait video."""
    import struct

    matrices = {90: (0, 0x10000, 0, -0x10000, 0, 0), 180: (-0x10000, 0, 0, 0, -0x10000, 0),
                270: (0, -0x10000, 0, 0x10000, 0, 0)}
    identity = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    data = bytearray(path.read_bytes())
    at = data.find(identity, data.find(b"tkhd"))
    assert at > 0, "no track header matrix found"
    data[at:at + 36] = struct.pack(">9i", *matrices[clockwise], 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    return path


def probe(path: Path) -> dict:
    """What the conversion tests compare: frames, pts in seconds, size, audio packet bytes."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        tb = video.time_base
        width, height = video.codec_context.width, video.codec_context.height
        seconds = [float(f.pts * tb) for f in container.decode(video)]
    audio_packets: list[bytes] = []
    audio_codec = None
    with av.open(str(path)) as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            audio_codec = stream.codec_context.name
            audio_packets = [bytes(p) for p in container.demux(stream) if p.size]
    return {"frames": len(seconds), "seconds": seconds, "size": (width, height),
            "audio_codec": audio_codec, "audio": audio_packets}


@pytest.fixture(scope="session")
def synthetic_clip(tmp_path_factory) -> Path:
    """45 frames, 161x120 (odd width), 30000/1001 fps, sine audio (AAC) in Matroska."""
    return make_clip(tmp_path_factory.mktemp("clips") / "shapes.mkv")
