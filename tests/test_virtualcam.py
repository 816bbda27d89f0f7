"""Virtual camera sink: letterboxing, the real pipeline into a recording pyvirtualcam backend,
and the no-device error a user sees."""

from __future__ import annotations

import itertools
import time
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import pyvirtualcam
from onnx import TensorProto, helper, numpy_helper
from pyvirtualcam.util import encode_fourcc

from conftest import encode_h264
from livefilter.capture import FileSource, PacedFileSource
from livefilter.engine import Engine
from livefilter.errors import LivefilterError
from livefilter.frames import Frame
from livefilter.pipeline import run
from livefilter.sinks.virtualcam import VirtualCameraSink, how_to_get_a_virtual_camera, letterbox

CLIP_BGR = (40, 200, 60)  # background colour of the synthetic clip
INVERTED_BGR = tuple(255 - c for c in CLIP_BGR)


# -- fixtures the test makes itself ----------------------------------------------------------
def save_model(path: Path, kind: str) -> Path:
    """A tiny generator with the project's I/O contract (RGB in [-1, 1], dynamic H, W).

    "invert": NCHW 1x1 convolution with weights -I, so output = 255 - input: a filter whose
    result is known exactly. "random": NHWC, randomly initialised 3x3 convolution + tanh,
    standing in for an untrained student.
    """
    if kind == "invert":
        weight = -np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
        nodes = [helper.make_node("Conv", ["image", "w"], ["out"])]
        shape = [1, 3, "h", "w"]
    else:
        rng = np.random.default_rng(0)
        weight = rng.normal(0, 0.3, (3, 3, 3, 3)).astype(np.float32)
        nodes = [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
                 helper.make_node("Conv", ["nchw", "w"], ["conv"], pads=[1, 1, 1, 1]),
                 helper.make_node("Tanh", ["conv"], ["act"]),
                 helper.make_node("Transpose", ["act"], ["out"], perm=[0, 2, 3, 1])]
        shape = [1, "h", "w", 3]
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_clip(path: Path, frames: int = 45, size: tuple[int, int] = (320, 240), fps: int = 30) -> Path:
    """H.264 clip: flat CLIP_BGR background with a white square moving across."""
    w, h = size

    def draw(i: int) -> np.ndarray:
        image = np.empty((h, w, 3), np.uint8)
        image[:] = CLIP_BGR
        x = (i * 5) % (w - h // 6)
        image[h // 12:h // 12 + h // 6, x:x + h // 6] = 255
        return image
    return encode_h264(path, draw, frames, fps)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vcam")
    return {"clip": make_clip(root / "clip.mp4"),
            "invert": save_model(root / "invert.onnx", "invert"),
            "random": save_model(root / "random.onnx", "random")}


_names = itertools.count()


@pytest.fixture
def recorder():
    """Register a pyvirtualcam backend that records what it is given; unregister afterwards."""

    class Recording:
        instances: list["Recording"] = []

        def __init__(self, *, width, height, fps, fourcc, device, **kw):
            self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
            self._device = device or "recording0"
            self.frames: list[np.ndarray] = []
            self.closed = 0
            Recording.instances.append(self)

        def send(self, frame: np.ndarray) -> None:
            # pyvirtualcam hands over a view of the sink's reusable buffer: copy it.
            self.frames.append(frame.copy())

        def close(self) -> None:
            self.closed += 1

        def device(self) -> str:
            return self._device

        def native_fourcc(self):
            return None

    name = f"recording{next(_names)}"
    pyvirtualcam.register_backend(name, Recording)
    Recording.backend_name = name
    yield Recording
    pyvirtualcam.camera.BACKENDS.pop(name, None)


def filter_with(engine: Engine):
    def process(frame: Frame) -> Frame:
        return replace(frame, image=engine(frame.image), original=frame.image)
    return process


def content_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the non-black part: where the letterboxed picture sits."""
    ys, xs = np.nonzero(image.max(axis=2) > 16)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


# -- letterbox --------------------------------------------------------------------------------
@pytest.mark.parametrize("in_size, expected_box", [
    ((320, 240), (80, 0, 560, 360)),    # 4:3 -> bars left and right
    ((360, 640), (219, 0, 421, 360)),   # portrait 9:16 -> narrow picture in the middle
    ((840, 240), (0, 88, 640, 271)),    # 3.5:1 -> bars above and below
    ((1280, 720), (0, 0, 640, 360)),    # same aspect, just smaller
])
def test_letterbox_keeps_aspect_ratio(in_size, expected_box):
    w, h = in_size
    image = np.full((h, w, 3), 200, np.uint8)
    out = letterbox(image, (640, 360))
    assert out.shape == (360, 640, 3) and out.dtype == np.uint8
    x0, y0, x1, y1 = content_box(out)
    assert abs(x0 - expected_box[0]) <= 1 and abs(y0 - expected_box[1]) <= 1
    assert abs(x1 - expected_box[2]) <= 1 and abs(y1 - expected_box[3]) <= 1
    # Never squashed: the picture's aspect ratio survives within a pixel of rounding.
    assert abs((x1 - x0) / (y1 - y0) - w / h) < 2 / min(x1 - x0, y1 - y0) * (w / h) + 1e-9


def test_letterbox_same_size_is_untouched_and_buffer_reuse_leaves_no_stale_pixels():
    exact = np.full((360, 640, 3), 7, np.uint8)
    assert letterbox(exact, (640, 360)) is exact
    buffer = np.zeros((360, 640, 3), np.uint8)
    letterbox(np.full((360, 1280, 3), 255, np.uint8), (640, 360), buffer)  # wide: fills rows 90..270
    out = letterbox(np.full((360, 360, 3), 255, np.uint8), (640, 360), buffer)  # square: columns 140..500
    assert out is buffer
    assert content_box(out) == (140, 0, 500, 360)
    assert out[:, :140].max() == 0 and out[:, 500:].max() == 0


# -- the pipeline into a recording backend --------------------------------------------------------
@pytest.mark.parametrize("model", ["invert", "random"])
def test_paced_pipeline_feeds_the_virtual_camera(media, recorder, model):
    engine = Engine(media[model], resolution=96)
    sink = VirtualCameraSink(640, 360, fps=30, backend=recorder.backend_name)
    source = PacedFileSource(media["clip"])
    stats = run(source, filter_with(engine), [sink], live=True)

    (camera,) = recorder.instances
    assert (camera.width, camera.height, camera.fps) == (640, 360, 30)
    assert camera.fourcc == encode_fourcc(pyvirtualcam.PixelFormat.BGR.value)
    assert camera.closed == 1  # the pipeline closed the sink, the sink closed the device
    assert stats.frames_read == 45
    assert stats.frames_written + stats.frames_dropped == stats.frames_read
    assert stats.frames_written >= 1
    assert len(camera.frames) == sink.frames_sent == stats.frames_written + sink.frames_repeated
    assert sink.frames_written == stats.frames_written
    for sent in camera.frames:
        assert sent.dtype == np.uint8 and sent.shape == (640 * 360 * 3,)
    last = camera.frames[-1].reshape(360, 640, 3)
    # 320x240 into 640x360: scaled to 480x360, black bars of 80 px left and right.
    assert last[:, :78].max() == 0 and last[:, 562:].max() == 0
    if model == "invert":
        # The camera receives the filtered picture in BGR order: 255 - clip colour.
        centre = last[200:340, 100:540].reshape(-1, 3).astype(float)
        assert np.abs(np.median(centre, axis=0) - INVERTED_BGR).max() <= 12


def test_file_source_sends_every_frame(media, recorder):
    """A non-live run never drops: the camera gets exactly one frame per clip frame."""
    engine = Engine(media["invert"], resolution=64)
    sink = VirtualCameraSink(320, 240, fps=30, backend=recorder.backend_name)
    stats = run(FileSource(media["clip"]), filter_with(engine), [sink], live=False)
    (camera,) = recorder.instances
    assert stats.frames_dropped == 0
    assert sink.frames_written == stats.frames_written == 45
    assert len(camera.frames) == sink.frames_sent == 45 + sink.frames_repeated
    assert {f.size for f in camera.frames} == {320 * 240 * 3}


def test_notice_resends_the_last_frame_with_a_banner(recorder):
    # fps 0.1: no repeat within this test's few milliseconds (repeats are tested below).
    sink = VirtualCameraSink(320, 180, fps=0.1, backend=recorder.backend_name)
    image = np.full((180, 320, 3), 90, np.uint8)
    sink.write(Frame(image, capture_time=0.0))
    sink.show_notice("camera lost")  # re-sends the last frame at once, with the banner
    sink.write(Frame(image, capture_time=0.0))  # the banner stays until cleared
    sink.show_notice(None)
    sink.close()
    sink.close()
    (camera,) = recorder.instances
    assert sink.frames_repeated == 0
    plain, noticed, still_noticed, cleared = (f.reshape(180, 320, 3) for f in camera.frames)
    assert camera.closed == 1
    assert np.array_equal(plain, image) and np.array_equal(cleared, image)
    assert np.array_equal(noticed, still_noticed)
    banner = noticed[:15]
    assert (banner[:, :, 2].astype(int) - banner[:, :, 0] > 60).mean() > 0.6  # a red strip on top
    assert np.array_equal(noticed[60:], image[60:])
    assert image.max() == 90  # the caller's picture is never drawn on


def test_notice_before_any_frame_sends_nothing(recorder):
    sink = VirtualCameraSink(64, 36, backend=recorder.backend_name)
    sink.show_notice("camera lost")
    sink.idle()
    sink.close()
    assert recorder.instances[0].frames == []


# -- errors the user sees ---------------------------------------------------------------------------
def test_no_device_error_explains_how_to_get_one(recorder):
    class NoDevice:
        def __init__(self, **kw):
            raise RuntimeError("No v4l2 loopback device found at /dev/video[0-99].")

    name = recorder.backend_name + "-missing"
    pyvirtualcam.register_backend(name, NoDevice)
    try:
        with pytest.raises(LivefilterError) as info:
            VirtualCameraSink(backend=name)
    finally:
        pyvirtualcam.camera.BACKENDS.pop(name, None)
    message = str(info.value)
    assert "\n" not in message
    assert "No v4l2 loopback device found" in message
    assert how_to_get_a_virtual_camera() in message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="v4l2loopback is Linux only")
def test_real_backend_without_device_on_this_machine():
    if list(Path("/dev").glob("video*")):
        pytest.skip("a video device exists here; this test needs a machine without one")
    with pytest.raises(LivefilterError) as info:
        VirtualCameraSink(backend="v4l2loopback")
    message = str(info.value)
    assert "\n" not in message
    assert "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=livefilter" in message
    with pytest.raises(LivefilterError, match="/dev/video9"):
        VirtualCameraSink(backend="v4l2loopback", device="/dev/video9")


def test_hint_per_operating_system():
    assert "exclusive_caps=1" in how_to_get_a_virtual_camera("linux")
    for platform in ("win32", "darwin"):
        hint = how_to_get_a_virtual_camera(platform)
        assert "OBS" in hint and "Virtual Camera" in hint


def test_unknown_backend_and_bad_size_are_one_line_errors():
    with pytest.raises(LivefilterError, match="unknown virtual camera backend 'nope'"):
        VirtualCameraSink(backend="nope")
    with pytest.raises(LivefilterError, match="positive"):
        VirtualCameraSink(0, 720)


# -- never silent ------------------------------------------------------------------------------------
def test_camera_keeps_sending_while_the_pipeline_stalls(media, recorder):
    """Call apps drop a camera that stops sending: a 1.5 s stall of the model must not be a gap."""

    sent_at: list[float] = []
    original_send = recorder.send

    def timed_send(self, frame):
        sent_at.append(time.monotonic())
        original_send(self, frame)

    recorder.send = timed_send
    engine = Engine(media["invert"], resolution=64)
    calls = itertools.count()

    def stalling(frame: Frame) -> Frame:
        if next(calls) == 10:
            time.sleep(1.5)  # the model is busy (or a switch, or a hiccup)
        return replace(frame, image=engine(frame.image), original=frame.image)

    sink = VirtualCameraSink(320, 240, fps=30, backend=recorder.backend_name)
    stats = run(PacedFileSource(media["clip"]), stalling, [sink], live=True)
    (camera,) = recorder.instances
    assert stats.frames_written >= 10
    gaps = np.diff(sent_at)
    # Without the sender thread the longest gap would be the 1.5 s stall itself.
    assert gaps.max() < 0.5, gaps.max()
    assert sink.frames_repeated >= 10  # about 45 repeats at 30 fps over 1.5 s
    assert len(camera.frames) == sink.frames_sent == sink.frames_written + sink.frames_repeated
    # The repeats are the last frame, unchanged.
    assert any(np.array_equal(a, b) for a, b in zip(camera.frames, camera.frames[1:]))


def test_camera_repeats_the_last_frame_at_its_rate_between_writes(recorder):
    sink = VirtualCameraSink(64, 36, fps=20, backend=recorder.backend_name)
    sink.write(Frame(np.full((36, 64, 3), 50, np.uint8), capture_time=0.0))
    deadline = time.monotonic() + 30
    while sink.frames_repeated < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    sink.close()
    frames = recorder.instances[0].frames
    assert sink.frames_repeated >= 5 and len(frames) == sink.frames_sent
    assert all((f == 50).all() for f in frames)


def test_a_failing_device_is_reported_on_the_next_write(recorder):
    def broken_send(self, frame):
        raise RuntimeError("device gone")

    recorder.send = broken_send
    sink = VirtualCameraSink(64, 36, fps=30, backend=recorder.backend_name)
    image = np.zeros((36, 64, 3), np.uint8)
    with pytest.raises(LivefilterError, match="virtual camera stopped: device gone"):
        for _ in range(100):
            sink.write(Frame(image, capture_time=0.0))
            time.sleep(0.01)
    sink.close()
