"""The user's paths through the CLI, checked for what the user would notice.

- `video` writes the engine's own output (with the smoothing asked for, default included),
  not the input and not the unsmoothed frames;
- `camera --virtual --record` with the default smoothing sends and records filtered frames,
  every frame shown reaches the virtual camera and the recording, with the camera size and
  rate asked for (--size, --fps), and stops after --duration;
- `camera --camera-size` reaches the webcam;
- the live queue drops the OLDEST frame, and the live latency with a model of measured time
  stays within that time plus one frame interval plus a margin (a one-frame queue);
- the preview through the CLI (--side-by-side, --overlay) under Xvfb.
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import pyvirtualcam

from conftest import build_generator
from test_preview import Window, lower_part, near, xvfb  # noqa: F401  (xvfb is a fixture)
from livefilter.cli import build_parser, load_engine, main, make_stages
from livefilter.frames import Frame

REPO = Path(__file__).resolve().parents[1]
GREEN = (40, 200, 60)  # BGR background of the flat clip
INVERTED = tuple(255 - c for c in GREEN)


def make_flat_clip(path: Path, frames: int = 60, size: tuple[int, int] = (160, 120), fps: int = 30) -> Path:
    """Flat green with a white square moving along the top: the background is known exactly."""
    w, h = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12"}
        for i in range(frames):
            image = np.empty((h, w, 3), np.uint8)
            image[:] = GREEN
            x = (i * 3) % (w - h // 5)
            image[4:4 + h // 5, x:x + h // 5] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def background(image: np.ndarray) -> np.ndarray:
    """Median colour below the moving square, away from the borders."""
    h, w = image.shape[:2]
    return np.median(image[int(h * 0.5):int(h * 0.9), int(w * 0.1):int(w * 0.9)].reshape(-1, 3), axis=0)


@pytest.fixture(scope="module")
def live_media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_live")
    return {
        "clip": make_flat_clip(root / "flat.mp4"),
        # Output = -input exactly (the extra path's weights are zero): 255 - picture, so a
        # filtered frame is told from the camera's at a glance, whatever the smoothing does.
        "invert": build_generator(root / "invert.onnx", mix=-np.eye(3), downsample=2),
        "slow": build_generator(root / "slow.onnx", depth=6, width=32, tanh=True),
    }


def decode(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(float(f.pts * f.time_base), f.to_ndarray(format="bgr24"))
                for f in container.decode(container.streams.video[0])]


# -- video: the output is the engine's (and the smoothing's) own output ------------------------
def expected_video(src: Path, argv: list[str]) -> list[np.ndarray]:
    """What `video` must write: the CLI's own stages run here on the decoded input frames."""
    from livefilter.capture import FileSource

    args = build_parser().parse_args(["video", str(src), "unused.mp4", *argv])
    process, post = make_stages(load_engine(args), args)
    source, out = FileSource(src), []
    try:
        while (frame := source.read()) is not None:
            done = process(frame)
            out.append((post(done) if post is not None else done).image)
    finally:
        source.close()
    return out


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b[:a.shape[0], :a.shape[1]].astype(np.float64)).mean())


@pytest.mark.parametrize("smoothing", [[], ["--temporal", "ema", "--strength", "0.8"]],
                         ids=["default-flow", "ema-0.8"])
def test_video_writes_the_engines_smoothed_output(models, synthetic_clip, tmp_path, smoothing):
    model = ["--model", str(models["tiny"]), "--resolution", "48"]
    out = tmp_path / "out.mkv"
    assert main(["video", str(synthetic_clip), str(out), *model, *smoothing]) == 0
    got = [image for _, image in decode(out)]
    want = expected_video(synthetic_clip, model + smoothing)
    unsmoothed = expected_video(synthetic_clip, model + ["--temporal", "off"])
    inputs = expected_video(synthetic_clip, ["--model", str(models["identity_nchw"]), "--temporal", "off"])
    assert len(got) == len(want) == 45
    for i in range(0, 45, 4):  # sampled frames
        err = mean_abs(want[i], got[i])
        assert err < 4.0, (i, err)  # H.264 at crf 18 on a small picture
        assert mean_abs(inputs[i], got[i]) > 10 * max(err, 0.5), i  # not the unfiltered input
    # The smoothing was applied: later frames are measurably closer to the smoothed result
    # than to the unsmoothed one (frame 0 has no history, so they start out equal).
    closer = [mean_abs(want[i], got[i]) < mean_abs(unsmoothed[i], got[i]) for i in range(8, 45, 4)]
    gap = np.mean([mean_abs(want[i], unsmoothed[i]) for i in range(8, 45, 4)])
    assert gap > 0.5, f"smoothing changes too little here ({gap:.2f}) for the test to see it"
    assert all(closer), closer


# -- camera through the CLI: --virtual --record, default smoothing -----------------------------
_names = itertools.count()


@pytest.fixture
def only_recording_camera(monkeypatch):
    """The CLI picks the first pyvirtualcam backend that opens: make a recording one the only one."""
    opened: list = []

    class Recording:
        def __init__(self, *, width, height, fps, fourcc, device, **kw):
            self.width, self.height, self.fps = width, height, fps
            self.frames: list[np.ndarray] = []
            opened.append(self)

        def send(self, frame: np.ndarray) -> None:
            self.frames.append(frame.reshape(self.height, self.width, 3).copy())

        def close(self) -> None:
            pass

        def device(self) -> str:
            return "recording"

        def native_fourcc(self):
            return None

    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {})
    pyvirtualcam.register_backend(f"cli-recording{next(_names)}", Recording)
    return opened


def shown(err: str) -> tuple[int, int, float | None, float | None]:
    """frames shown, dropped, latency p50 and p95 (s) from the camera command's summary line."""
    match = re.search(r"(\d+) frames shown, (\d+) dropped", err)
    assert match, err
    lat = re.search(r"latency p50 (\d+) ms p95 (\d+) ms", err)
    p50, p95 = (int(lat.group(1)) / 1000, int(lat.group(2)) / 1000) if lat else (None, None)
    return int(match.group(1)), int(match.group(2)), p50, p95


def test_camera_virtual_and_record_send_every_shown_frame_filtered(live_media, only_recording_camera,
                                                                   tmp_path, capsys):
    record = tmp_path / "rec.mp4"
    code = main(["camera", "--source", str(live_media["clip"]), "--loop", "--virtual", "--no-preview",
                 "--size", "320x180", "--fps", "24", "--record", str(record), "--duration", "2.5",
                 "--model", str(live_media["invert"]), "--resolution", "64"])
    err = capsys.readouterr().err
    assert code == 0, err
    frames, dropped, _, _ = shown(err)
    [cam] = only_recording_camera
    assert (cam.width, cam.height, cam.fps) == (320, 180, 24.0)  # --size, --fps
    # Every frame shown went to the virtual camera: the square moves in every frame, so the
    # picture changes from one send to the next at least once per frame shown (re-sends of the
    # last picture while waiting may come on top, unchanged).
    changes = sum(not np.array_equal(a, b) for a, b in zip(cam.frames, cam.frames[1:]))
    assert changes >= frames - 1 and frames > 0, (changes, frames)
    # ...letterboxed 160x120 -> 240x180 in the middle of 320x180, and filtered (the default
    # flow smoothing keeps a still background as it is).
    for sent in cam.frames[:: max(1, len(cam.frames) // 8)]:
        assert sent.shape == (180, 320, 3)
        assert sent[:, :38].max() == 0 and sent[:, -38:].max() == 0
        assert np.abs(background(sent[:, 40:280]) - INVERTED).max() <= 6
    # The recording holds exactly the frames shown, filtered, at their capture times.
    recorded = decode(record)
    assert len(recorded) == frames
    for _, image in recorded[:: max(1, frames // 8)]:
        assert image.shape == (120, 160, 3)
        assert np.abs(background(image) - INVERTED).max() <= 6
    stamps = [t for t, _ in recorded]
    assert stamps == sorted(stamps)
    # --duration 2.5: the run stopped after 2.5 s of capture (and did not stop much earlier).
    assert 1.5 <= stamps[-1] <= 2.5 + 0.1, stamps[-1]


def test_camera_size_reaches_the_webcam(live_media, tmp_path, monkeypatch, capsys):
    """--camera-size is what the webcam is asked for; its frames are what gets recorded."""
    import livefilter.capture as capture

    asked: list = []

    class FakeCamera:
        live = True
        fps = 30.0

        def __init__(self, spec, size=None):
            asked.append((spec, size))
            self.size, self.count = size, 0
            self.time_base = Fraction(1, 1000)

        def read(self):
            if self.count >= 12:
                return None
            time.sleep(1 / 30)
            w, h = self.size
            image = np.empty((h, w, 3), np.uint8)
            image[:] = GREEN
            frame = Frame(image, capture_time=time.monotonic(), pts=self.count * 33,
                          time_base=self.time_base, index=self.count)
            self.count += 1
            return frame

        def close(self):
            pass

    monkeypatch.setattr(capture, "CameraSource", FakeCamera)
    record = tmp_path / "cam.mkv"
    code = main(["camera", "--source", "0", "--camera-size", "96x64", "--no-preview", "--record",
                 str(record), "--model", str(live_media["invert"]), "--resolution", "32"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert asked == [("0", (96, 64))]
    frames, _, _, _ = shown(err)
    recorded = decode(record)
    assert len(recorded) == frames and recorded[0][1].shape == (64, 96, 3)


# -- the live queue ------------------------------------------------------------------------------
def test_live_queue_drops_the_oldest_frame():
    """Which frame goes: with a one-frame queue and nobody taking, the newest one stays."""
    from livefilter.pipeline import RunStats, _Capture

    frames: queue.Queue = queue.Queue(maxsize=1)
    stats = RunStats()
    capture = _Capture(None, frames, live=True, stop=threading.Event(), stats=stats)
    for i in range(5):
        assert capture._put(Frame(np.zeros((2, 2, 3), np.uint8), capture_time=0.0, index=i))
    assert frames.get_nowait().index == 4
    assert stats.frames_dropped == 4 and frames.empty()


def _process_seconds(args, image: np.ndarray, runs: int = 12) -> tuple[float, float]:
    """Median and worst time of the CLI's own process + post stages on one frame."""
    process, post = make_stages(load_engine(args), args)
    times = []
    for i in range(runs):
        frame = Frame(image, capture_time=time.monotonic(), index=i)
        started = time.perf_counter()
        done = process(frame)
        if post is not None:
            post(done)
        times.append(time.perf_counter() - started)
    return float(np.median(times[2:])), float(max(times[2:]))


def test_live_latency_is_one_model_run_plus_one_frame(live_media, tmp_path, capsys):
    """Benchmark-style: a model slower than the 30 fps camera, its time measured here first.

    With a one-frame queue that drops the oldest frame, a frame waits at most one frame
    interval for the model to come free, then one model run and the step after it:
    p95 <= 2 x (model + step after) + 1/fps + margin.
    A deeper queue (or keeping the oldest frame) adds whole model runs to that.
    """
    # The level is pinned: auto quality would step away from the slow model, which is the
    # point of this measurement (tests/test_quality.py checks the stepping itself).
    argv = ["--source", str(live_media["clip"]), "--loop", "--no-preview", "--duration", "4",
            "--quality", "hd", "--model", str(live_media["slow"]), "--resolution", "96"]
    args = build_parser().parse_args(["camera", *argv])
    image = decode(live_media["clip"])[0][1]
    median, worst = _process_seconds(args, image)
    for size in range(128, 400, 32):  # a fast machine: make the model just slower than the camera
        if median >= 1.5 / 30:
            break
        args.resolution = size
        argv[-1] = str(size)
        median, worst = _process_seconds(args, image)
    from test_live import scheduling_jitter

    jitter = scheduling_jitter()
    code = main(["camera", *argv])
    jitter = max(jitter, scheduling_jitter())
    err = capsys.readouterr().err
    assert code == 0, err
    frames, dropped, p50, p95 = shown(err)
    assert dropped > 0  # the model is slower than the camera, so the queue is exercised
    # Scheduling on a busy 2-core machine: the model's own spread and the wake-up delay
    # measured around the run. A ten-frame queue adds about nine model runs to the p95.
    # ``median`` is the model and the step after it; the two run on their own threads, so a
    # frame may also wait for the step after the model to finish the frame before it.
    margin = 0.030 + 0.5 * median + 2 * jitter
    bound = 2 * median + 1 / 30 + margin
    print(f"model {median * 1000:.0f} ms (worst {worst * 1000:.0f}), jitter {jitter * 1000:.0f} ms, "
          f"p50 {p50 * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms, bound {bound * 1000:.0f} ms, load {os.getloadavg()[0]:.2f}")
    assert p95 <= bound, (p95, bound, median)


# -- the preview through the CLI ------------------------------------------------------------------
class CliWindow(Window):
    """The preview window of a `livefilter camera` child process (title "livefilter")."""

    def __init__(self, proc: subprocess.Popen, env: dict, shots: Path) -> None:
        self.proc, self.env, self.shots, self.remapped = proc, env, shots, False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"camera exited early: {proc.communicate()}")
            ids = self._x("xdotool", "search", "--name", "^livefilter$").split()
            if ids:
                self.id = int(ids[0])
                return
            time.sleep(0.2)
        raise AssertionError("preview window never appeared")


def test_preview_through_the_cli_side_by_side_with_overlay(live_media, xvfb, tmp_path):
    env = {**os.environ, "DISPLAY": xvfb, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "livefilter", "camera", "--source",
                             str(live_media["clip"]), "--loop", "--side-by-side", "--overlay",
                             "--duration", "60", "--model", str(live_media["invert"]),
                             "--resolution", "64"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        win = CliWindow(proc, env, tmp_path)

        def ok(shot: np.ndarray) -> bool:
            h, w = shot.shape[:2]
            left, right = shot[:, : w // 2], shot[:, w // 2:]
            return (w > 1.8 * h and near(lower_part(left), GREEN)
                    and near(lower_part(right), INVERTED) and has_info_box(shot))

        shot = win.wait_for("cli-side-by-side", ok)
        assert shot.shape[1] / shot.shape[0] == pytest.approx(320 / 120, abs=0.05)
        win.key("q")
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "frames shown" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def has_info_box(shot: np.ndarray) -> bool:
    """The FPS/latency box: solid black rows with white text, bottom-left."""
    h, w = shot.shape[:2]
    corner = shot[int(h * 0.75):h - 2, 3:int(w * 0.3)]
    solid_rows = ((corner.max(axis=2) < 40).mean(axis=1) > 0.95).sum()
    return solid_rows >= 2 and (corner.min(axis=2) > 200).any()
