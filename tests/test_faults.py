"""Faults a user meets: interrupted conversions, outputs that must not be destroyed, cameras
that vanish, damaged and odd input files, broken models, a full disk.

Every CLI run is a real subprocess with a time limit, so a hang fails the test instead of
blocking the suite, and the user-facing promise is checked as the user sees it: exit code,
the lines on stderr (one `livefilter: error:` line, never a traceback), and what is on disk.
"""

from __future__ import annotations

import itertools
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import make_clip, probe, set_mp4_rotation
from faultkit import (assert_clean_refusal, assert_no_traceback, cli_command, cli_env, decodable,
                      garbage_in_middle, run_cli)
from livefilter.capture import FileSource
from livefilter.cli import main
from livefilter.errors import LivefilterError
from livefilter.frames import Frame
from livefilter.pipeline import STALL_NOTICE, run


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fault_clips")
    return {
        "short": make_clip(root / "short.mp4", frames=30, width=64, height=48),
        "long_mp4": make_clip(root / "long.mp4", frames=90, width=64, height=48),
        "long_mkv": make_clip(root / "long.mkv", frames=90, width=64, height=48, codec="libx264"),
        # 400 frames at 30 fps: long enough to interrupt with the slow model.
        "interrupt": make_clip(root / "interrupt.mp4", frames=400, width=160, height=120,
                               rate=Fraction(30)),
    }


def convert_args(src: Path, dst: Path, model: Path, *extra: object) -> list[object]:
    return ["video", src, dst, "--model", model, "--resolution", "32", "--temporal", "off", *extra]


# === 1. interrupted conversion ===============================================================
def _written(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _start_and_wait(cmd: list[str], partial: Path, settle: float, min_bytes: int = 1) -> subprocess.Popen:
    """Start a conversion and wait until its temporary file holds ``min_bytes``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and _written(partial) < min_bytes:
        time.sleep(0.05)
    time.sleep(settle)
    assert proc.poll() is None, "conversion ended before it could be interrupted: " + proc.stderr.read()
    return proc


def test_sigterm_keeps_the_frames_done_and_their_audio(models, clips, tmp_path):
    """SIGTERM (what `kill`, systemd and docker send) is a graceful stop too: exit 143."""
    out = tmp_path / "term.mp4"
    partial = tmp_path / ".term.mp4.livefilter-partial"
    cmd = cli_command("video", clips["interrupt"], out, "--model", models["slow"], "--resolution", "120",
                      "--temporal", "off")
    proc = _start_and_wait(cmd, partial, settle=1.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    line = next(l for l in err.splitlines() if "interrupted at frame" in l)
    done = int(line.split("interrupted at frame ")[1].split()[0])
    assert "of 400" in line and 0 < done < 400
    got = decodable(out)
    assert got["frames"] == done
    audio_seconds = got["audio_packets"] * 1024 / 48000
    assert done / 30 - 0.1 <= audio_seconds < done / 30 + 0.5  # audio up to the last frame, no further
    assert not partial.exists()


def test_second_ctrl_c_quits_at_once(monkeypatch, capsys):
    """The handler itself: first press asks for a clean stop, second leaves with 130 at once."""
    from livefilter import cli

    exits: list[int] = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    stop = threading.Event()
    guard = cli._GracefulStop(stop, "stopping: finishing the file", lambda: "kept in x.partial.mp4")
    guard._handle(signal.SIGINT, None)
    assert stop.is_set() and exits == []
    assert "press Ctrl-C again to quit at once" in capsys.readouterr().err
    guard._handle(signal.SIGINT, None)
    assert exits == [130]
    assert "quitting at once; kept in x.partial.mp4" in capsys.readouterr().err


def test_one_ctrl_c_after_a_normal_end_still_finishes_the_file(monkeypatch):
    """The pipeline sets its stop event itself when the source ends: a single Ctrl-C while the
    file is being finished must not count as the second, quit-at-once press."""
    from livefilter import cli

    exits: list[int] = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    stop = threading.Event()
    guard = cli._GracefulStop(stop, "stopping")
    stop.set()  # what pipeline.run does on every ending
    guard._handle(signal.SIGINT, None)
    assert exits == []


def test_second_sigint_in_a_real_process_exits_at_once(models, clips, tmp_path):
    """Two SIGINTs: exit 130 quickly, and never a half file under the final name."""
    out = tmp_path / "twice.mp4"
    partial = tmp_path / ".twice.mp4.livefilter-partial"
    cmd = cli_command("video", clips["interrupt"], out, "--model", models["slow"], "--resolution", "120",
                      "--temporal", "off", "--threads", "1")
    proc = _start_and_wait(cmd, partial, settle=0.5)
    proc.send_signal(signal.SIGINT)
    # Wait for the "stopping" line: the first press has been handled; press again at once.
    first = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "stopping" not in first:
        first += proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=30)[1]
    err = first + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    if "interrupted at frame" in err:  # the clean stop won the race: then the file is complete
        assert decodable(out)["frames"] > 0
    else:  # quit at once: nothing under the final name, and nothing left hidden either
        assert "quitting at once" in err
        assert not out.exists() and not partial.exists()
        kept = out.with_name("twice.partial.mp4")
        if kept.exists():
            assert str(kept) in err
            decodable(kept)  # opens without error; frames up to the last complete fragment


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_live_run_with_recording_stops_cleanly_on_signal(models, clips, tmp_path, sig, code):
    """`livefilter camera` (a looped file as the camera) recording to a file: the signal ends
    the run with its summary line and a finished, playable recording."""
    record = tmp_path / "rec.mp4"
    cmd = cli_command("camera", "--source", clips["short"], "--loop", "--no-preview", "--record", record,
                      "--model", models["tiny"], "--resolution", "32", "--temporal", "off")
    proc = _start_and_wait(cmd, tmp_path / ".rec.mp4.livefilter-partial", settle=1.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    summary = next(l for l in err.splitlines() if "frames shown" in l)
    shown = int(summary.split("livefilter: ")[1].split()[0])
    assert shown > 0
    assert decodable(record)["frames"] == shown
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.mp4"]


def test_salvage_moves_the_unfinished_file_beside_the_target(tmp_path):
    """What the second Ctrl-C calls: no finishing, just never leave the work hidden."""
    from livefilter.sinks.video_file import VideoFileSink

    sink = VideoFileSink(tmp_path / "out.mp4", fps=30)
    for i in range(45):  # more than one 1-second fragment
        sink.write(Frame(np.full((48, 64, 3), i * 5, np.uint8), 0.0, pts=i, time_base=Fraction(1, 30), index=i))
    kept = sink.salvage()
    assert kept == tmp_path / "out.partial.mp4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.partial.mp4"]
    assert decodable(kept)["frames"] >= 30  # complete fragments play without the file being finished
    empty = VideoFileSink(tmp_path / "nothing.mp4", fps=30)
    assert empty.salvage() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.partial.mp4"]


# === 2. never overwrite by accident ============================================================
def test_existing_output_is_refused_and_untouched(models, clips, tmp_path):
    out = tmp_path / "mine.mp4"
    out.write_bytes(b"the user's own file")
    result = run_cli(*convert_args(clips["short"], out, models["tiny"]))
    assert_clean_refusal(result, "already exists", "--overwrite")
    assert out.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.mp4"]  # no temp file left


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_output_equal_to_input_is_refused_however_spelled(models, clips, tmp_path, spelling):
    src = tmp_path / "in.mp4"
    shutil.copy(clips["short"], src)
    before = src.read_bytes()
    out = {"same": src, "dotdot": tmp_path / "sub" / ".." / "in.mp4", "symlink": tmp_path / "link.mp4",
           "hardlink": tmp_path / "hard.mp4"}[spelling]
    (tmp_path / "sub").mkdir()
    if spelling == "symlink":
        out.symlink_to(src)
    elif spelling == "hardlink":
        os.link(src, out)
    result = run_cli(*convert_args(src, out, models["tiny"], "--overwrite"))
    assert_clean_refusal(result, "same file as the input")
    assert src.read_bytes() == before


def test_killed_conversion_never_leaves_a_half_file_under_the_final_name(models, clips, tmp_path):
    """SIGKILL (a crash, the OOM killer) mid-run with --overwrite: the old output is intact."""
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous good version")
    partial = tmp_path / ".keep.mp4.livefilter-partial"
    cmd = cli_command("video", clips["interrupt"], out, "--model", models["slow"], "--resolution", "120",
                      "--temporal", "off", "--overwrite")
    proc = _start_and_wait(cmd, partial, settle=0.2, min_bytes=8000)  # a few fragments written
    proc.kill()
    proc.communicate(timeout=30)
    assert out.read_bytes() == b"previous good version"
    assert partial.exists()  # the hidden temporary file holds what was done
    assert decodable(partial)["frames"] > 0  # fragmented MP4: playable even after a crash


def test_completed_conversion_replaces_via_rename(models, clips, tmp_path):
    out = tmp_path / "new.mp4"
    out.write_bytes(b"old")
    result = run_cli(*convert_args(clips["short"], out, models["tiny"], "--overwrite"))
    assert result.returncode == 0, result.stderr
    assert decodable(out)["frames"] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.mp4"]


# === 3. camera faults ==========================================================================
class FakeCameras:
    """Stands in for cv2.VideoCapture: a camera that can be unplugged, busy, or plugged back."""

    def __init__(self) -> None:
        self.plugged, self.busy = True, False
        self.opens = self.reads = 0
        self.counter = itertools.count()

    def capture(self, spec, *args):
        world = self

        class Capture:
            def __init__(self) -> None:
                world.opens += 1
                self.open = world.plugged

            def isOpened(self) -> bool:
                return self.open

            def set(self, *a) -> bool:
                return True

            def get(self, *a) -> float:
                return 30.0

            def read(self):
                world.reads += 1
                if not (self.open and world.plugged) or world.busy:
                    return False, None
                time.sleep(1 / 60)  # a real camera blocks until its next picture
                return True, np.full((24, 32, 3), next(world.counter) % 200 + 20, np.uint8)

            def release(self) -> None:
                self.open = False

        return Capture()


@pytest.fixture
def cameras(monkeypatch) -> FakeCameras:
    import cv2

    world = FakeCameras()
    monkeypatch.setattr(cv2, "VideoCapture", world.capture)
    return world


def test_busy_camera_is_a_clear_error(cameras):
    from livefilter.capture import CameraSource

    cameras.busy = True
    with pytest.raises(LivefilterError, match="delivers no frames"):
        CameraSource(0)


def test_missing_camera_is_a_clear_error(cameras):
    from livefilter.capture import CameraSource

    cameras.plugged = False
    with pytest.raises(LivefilterError, match="no camera at index 0"):
        CameraSource(0)


def test_unplugged_camera_repeats_the_last_picture_and_reconnects(cameras):
    from livefilter.capture import CameraSource

    source = CameraSource(0, fps=50)
    frames = [source.read() for _ in range(3)]
    last_good = frames[-1].image.copy()
    assert source.notice is None
    cameras.plugged = False
    opens_before, reads_before = cameras.opens, cameras.reads
    start = time.monotonic()
    lost = []
    while time.monotonic() - start < 1.5:
        lost.append(source.read())
    elapsed = time.monotonic() - start
    assert all(np.array_equal(f.image, last_good) for f in lost)  # the last good picture, repeated
    assert source.notice == CameraSource.LOST_NOTICE
    # No busy loop: reads are paced by the frame rate, reopening about once a second.
    assert len(lost) <= elapsed * 50 + 2
    assert cameras.opens - opens_before <= elapsed + 2
    assert cameras.reads - reads_before <= cameras.opens - opens_before + 2
    cameras.plugged = True
    deadline = time.monotonic() + 5
    back = None
    while time.monotonic() < deadline:
        back = source.read()
        if source.notice is None:
            break
    assert source.notice is None, "camera did not reconnect"
    assert not np.array_equal(back.image, last_good)
    indices = [f.index for f in frames + lost + [back]]
    assert indices == sorted(indices)
    source.close()


class NoticeSink:
    """A live sink that records what a preview/virtual camera would show."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.notices: list[str | None] = []
        self.current: str | None = None
        self.written_with_notice = 0
        self.idles = 0
        self.closed = False

    def write(self, frame: Frame) -> None:
        self.frames.append(frame)
        self.written_with_notice += self.current is not None

    def show_notice(self, text: str | None) -> None:
        self.notices.append(text)
        self.current = text

    def idle(self) -> None:
        self.idles += 1

    def close(self) -> None:
        self.closed = True


def test_live_pipeline_shows_camera_lost_and_recovers(cameras):
    """Unplug mid-stream: sinks get the notice and keep receiving the last picture; plugged back:
    the notice goes away and fresh pictures flow again. The run never stops by itself."""
    from livefilter.capture import CameraSource

    source, sink = CameraSource(0, fps=30), NoticeSink()
    stop = threading.Event()
    results: dict = {}
    worker = threading.Thread(target=lambda: results.update(stats=run(
        source, lambda f: f, [sink], live=True, queue_size=1, stop_event=stop)))
    worker.start()
    try:
        time.sleep(0.5)
        cameras.plugged = False
        time.sleep(1.5)
        lost_writes = sink.written_with_notice
        cameras.plugged = True
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sink.current is not None:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join(timeout=15)
    assert not worker.is_alive(), "pipeline did not stop"
    assert sink.notices == [CameraSource.LOST_NOTICE, None]
    assert lost_writes > 0  # frames kept coming (the last picture) while the camera was gone
    assert results["stats"].interrupted and sink.closed
    assert len({int(f.image[0, 0, 0]) for f in sink.frames[-3:]}) > 1  # live pictures again


class StallingSource:
    """A live source whose read() blocks for ``stall`` seconds once, like an unplugged USB camera
    whose driver waits before giving up; then pictures come back."""

    live, fps, size = True, 30.0, (32, 24)

    def __init__(self, stall: float, stall_at: int = 5) -> None:
        self.stall, self.stall_at, self.i = stall, stall_at, 0

    def read(self) -> Frame:
        if self.i == self.stall_at:
            time.sleep(self.stall)
        else:
            time.sleep(1 / self.fps)
        self.i += 1
        return Frame(np.full((24, 32, 3), self.i % 256, np.uint8), time.monotonic(), index=self.i)

    def close(self) -> None:
        pass


def test_blocked_source_keeps_sinks_alive_with_a_notice():
    sink, source = NoticeSink(), StallingSource(stall=1.2)
    stop = threading.Event()
    worker = threading.Thread(target=run, args=(source, lambda f: f, [sink]),
                              kwargs=dict(live=True, queue_size=1, stop_event=stop, stall_seconds=0.3))
    worker.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (sink.notices and sink.notices[-1] is None):
        time.sleep(0.05)
    time.sleep(0.2)
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert sink.notices == [STALL_NOTICE, None]
    assert sink.idles >= 2  # redrawn / re-sent while nothing arrived
    assert sink.idles < 50  # ... at a calm pace, not in a busy loop
    assert max(f.index for f in sink.frames) > source.stall_at  # and frames flowed again afterwards


def test_virtual_camera_gets_the_banner_while_the_source_is_stalled():
    """The real virtual camera sink, on a recording backend: frames re-sent during the stall
    carry the red banner; the ones before and after do not."""
    import pyvirtualcam

    from livefilter.sinks.virtualcam import VirtualCameraSink

    sent: list[np.ndarray] = []

    class Recording:
        def __init__(self, *, width, height, fps, fourcc, device, **kw):
            self.fourcc = fourcc

        def send(self, frame):
            sent.append(frame.copy())

        def close(self):
            pass

        def device(self):
            return "recording-faults"

        def native_fourcc(self):
            return None

    pyvirtualcam.register_backend("recording-faults", Recording)
    try:
        sink = VirtualCameraSink(64, 48, fps=30, backend="recording-faults")
        source = StallingSource(stall=1.0)
        stop = threading.Event()
        threading.Timer(2.0, stop.set).start()
        run(source, lambda f: f, [sink], live=True, queue_size=1, stop_event=stop, stall_seconds=0.3)
    finally:
        pyvirtualcam.camera.BACKENDS.pop("recording-faults", None)
    images = [f.reshape(48, 64, 3) for f in sent]
    red = [bool((img[:6, :, 2].astype(int) - img[:6, :, 0] > 60).mean() > 0.5) for img in images]
    assert not red[0] and any(red) and not red[-1]
    first_red, last_red = red.index(True), len(red) - 1 - red[::-1].index(True)
    assert all(red[first_red:last_red + 1])  # one continuous "camera lost" period


# === 4. damaged and odd input =================================================================
def _odd_input(kind: str, clips: dict[str, Path], root: Path) -> Path:
    if kind == "zero_length":
        (root / "zero.mp4").write_bytes(b"")
        return root / "zero.mp4"
    if kind == "truncated_mp4":  # no index at the end: nothing can be read
        data = clips["long_mp4"].read_bytes()
        (root / "trunc.mp4").write_bytes(data[:len(data) * 2 // 3])
        return root / "trunc.mp4"
    if kind == "truncated_mkv":  # streamable container: the first two thirds can be converted
        data = clips["long_mkv"].read_bytes()
        (root / "trunc.mkv").write_bytes(data[:len(data) * 2 // 3])
        return root / "trunc.mkv"
    if kind == "garbage_mp4":
        (root / "garbage.mp4").write_bytes(garbage_in_middle(clips["long_mp4"].read_bytes(), 3000))
        return root / "garbage.mp4"
    if kind == "garbage_mkv":
        (root / "garbage.mkv").write_bytes(garbage_in_middle(clips["long_mkv"].read_bytes(), 3000))
        return root / "garbage.mkv"
    if kind == "no_audio":
        return make_clip(root / "silent.mp4", frames=20, width=64, height=48, audio=False)
    if kind == "audio_only":
        return make_clip(root / "sound.m4a", frames=30, video=False)
    if kind == "tiny_16x16":
        return make_clip(root / "tiny.mp4", frames=6, width=16, height=16)
    if kind == "grayscale":
        return make_clip(root / "gray.mkv", frames=6, width=64, height=48, pix_fmt="gray")
    if kind == "10bit":
        return make_clip(root / "ten.mp4", frames=6, width=64, height=48, pix_fmt="yuv420p10le")
    if kind == "rotated":
        return set_mp4_rotation(make_clip(root / "phone.mp4", frames=6, width=64, height=48), 90)
    if kind == "vfr":  # a phone's variable frame rate: gaps of 1, 3 and 5 frame times
        return make_clip(root / "vfr.mp4", frames=8, width=64, height=48, pts_list=VFR_PTS)
    if kind == "huge_8k":
        return make_clip(root / "8k.mp4", frames=1, width=7680, height=4320, audio=False)
    raise ValueError(kind)


VFR_PTS = [0, 3003, 12012, 15015, 30030, 33033, 36036, 51051]  # 1/90000 s

# kind -> expected: ("ok", frames, (w, h)) or ("refused", text in the error line)
ODD_INPUTS = {
    "zero_length": ("refused", "empty (0 bytes)"),
    "truncated_mp4": ("refused", "damaged or not a video file"),
    "audio_only": ("refused", "no video stream"),
    "truncated_mkv": ("ok", None, (64, 48)),
    "garbage_mp4": ("ok", None, (64, 48)),
    "garbage_mkv": ("ok", None, (64, 48)),
    "no_audio": ("ok", 20, (64, 48)),
    "tiny_16x16": ("ok", 6, (16, 16)),
    "grayscale": ("ok", 6, (64, 48)),
    "10bit": ("ok", 6, (64, 48)),
    "rotated": ("ok", 6, (48, 64)),  # turned upright: portrait, no rotation flag needed
    "vfr": ("ok", 8, (64, 48)),
    "huge_8k": ("ok", 1, (7680, 4320)),
}


@pytest.mark.parametrize("kind", list(ODD_INPUTS))
def test_odd_and_damaged_input(models, clips, tmp_path, kind):
    src = _odd_input(kind, clips, tmp_path)
    out = tmp_path / "out.mp4"
    result = run_cli(*convert_args(src, out, models["tiny"]), timeout=120)
    assert_no_traceback(result)
    expected = ODD_INPUTS[kind]
    if expected[0] == "refused":
        assert_clean_refusal(result, expected[1], src.name)
        assert not out.exists()
        return
    assert result.returncode == 0, result.stderr
    got = decodable(out)
    assert got["size"] == expected[2]
    if expected[1] is not None:
        assert got["frames"] == expected[1]
    else:  # damaged: converted as far as it decodes, and the user is told
        assert 0 < got["frames"] < 90
        assert "warning" in result.stderr, result.stderr
    if kind == "vfr":
        assert [round(t * 90000) for t in got["seconds"]] == VFR_PTS
    assert not list(tmp_path.glob(".*livefilter-partial"))


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_pipe_or_device_as_input_is_refused_without_blocking(models, tmp_path, kind):
    if kind == "fifo":
        src = tmp_path / "pipe.mp4"
        os.mkfifo(src)  # nobody writes to it: opening it for reading would block forever
    else:
        src = Path("/dev/zero")
        if not src.exists():
            pytest.skip("no /dev/zero")
    result = run_cli(*convert_args(src, tmp_path / "out.mp4", models["tiny"]), timeout=30)
    assert_clean_refusal(result, "not a regular file", str(src))
    result = run_cli("image", src, tmp_path / "out.png", "--model", models["tiny"], timeout=30)
    assert_clean_refusal(result, "not a regular file", str(src))


def test_corrupt_packets_are_counted(models, clips, tmp_path):
    src = tmp_path / "garbage.mp4"
    src.write_bytes(garbage_in_middle(clips["long_mp4"].read_bytes(), 3000))
    result = run_cli(*convert_args(src, tmp_path / "out.mp4", models["tiny"]))
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stderr.splitlines() if "corrupt video packets were skipped" in l)
    count = int(line.split("warning: ")[1].split()[0])
    assert count > 0
    assert decodable(tmp_path / "out.mp4")["frames"] <= 90 - count + 1


@pytest.mark.parametrize("clockwise", [90, 270])
def test_rotation_metadata_respected(models, tmp_path, clockwise):
    src = set_mp4_rotation(make_clip(tmp_path / "phone.mp4", frames=5, width=64, height=32, audio=False),
                           clockwise)
    source = FileSource(src)
    assert source.size == (32, 64)
    upright = source.read().image
    source.close()
    import av

    with av.open(str(src)) as container:
        stored = next(container.decode(video=0)).to_ndarray(format="bgr24")
    expected = np.rot90(stored, -1 if clockwise == 90 else 1)
    assert np.array_equal(upright, expected)
    out = tmp_path / "upright.mp4"
    assert main(["video", str(src), str(out), "--model", str(models["identity_nchw"]),
                 "--resolution", "32", "--temporal", "off"]) == 0
    assert probe(out)["size"] == (32, 64)
    with av.open(str(out)) as container:
        first = next(container.decode(video=0))
        assert int(first.rotation or 0) == 0  # pixels turned, no rotation tag left to apply twice
        got = first.to_ndarray(format="bgr24")
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 12


# === 5. model faults ===========================================================================
@pytest.mark.parametrize("kind", ["missing", "truncated", "empty", "text", "folder"])
def test_broken_model_file_is_one_line_naming_it(models, clips, tmp_path, kind):
    model = tmp_path / "style.onnx"
    if kind == "missing":
        pass
    elif kind == "truncated":
        model.write_bytes(models["tiny"].read_bytes()[:3000])
    elif kind == "empty":
        model.write_bytes(b"")
    elif kind == "text":
        model.write_text("<html>404 not found</html>\n")
    else:
        model.mkdir()
    result = run_cli(*convert_args(clips["short"], tmp_path / "out.mp4", model))
    line = assert_clean_refusal(result, str(model))
    if kind in ("missing", "folder"):
        assert "model file not found" in line
    else:
        assert "not a valid ONNX file" in line and "expected an ONNX image generator" in line
    assert not (tmp_path / "out.mp4").exists()


def _model_with(path: Path, inputs: list, outputs: list, nodes: list) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "odd", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _wrong_models(root: Path) -> dict[str, Path]:
    from onnx import TensorProto, helper

    def tensor(name, shape, kind=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, kind, shape)

    return {
        "four_channels": _model_with(root / "rgba.onnx", [tensor("x", [1, 4, "h", "w"])],
                                     [tensor("y", [1, 4, "h", "w"])],
                                     [helper.make_node("Identity", ["x"], ["y"])]),
        "two_inputs": _model_with(root / "two.onnx", [tensor("a", [1, 3, "h", "w"]), tensor("b", [1, 3, "h", "w"])],
                                  [tensor("y", [1, 3, "h", "w"])], [helper.make_node("Add", ["a", "b"], ["y"])]),
        "int_input": _model_with(root / "int.onnx", [tensor("x", [1, 3, "h", "w"], TensorProto.INT64)],
                                 [tensor("y", [1, 3, "h", "w"], TensorProto.INT64)],
                                 [helper.make_node("Identity", ["x"], ["y"])]),
        "flat_output": _model_with(root / "flat.onnx", [tensor("x", [1, 3, "h", "w"])], [tensor("y", [1, "n"])],
                                   [helper.make_node("Flatten", ["x"], ["y"])]),
    }


@pytest.mark.parametrize("kind", ["four_channels", "two_inputs", "int_input", "flat_output"])
def test_wrong_shaped_model_names_file_and_expectation(tmp_path, kind):
    from livefilter.engine import Engine

    model = _wrong_models(tmp_path)[kind]
    with pytest.raises(LivefilterError) as info:
        Engine(model, resolution=32)
    message = str(info.value)
    assert str(model) in message and "expected" in message
    assert "\n" not in message


def test_unavailable_provider_warns_and_runs_on_cpu(models, clips, tmp_path):
    out = tmp_path / "out.mp4"
    result = run_cli(*convert_args(clips["short"], out, models["tiny"], "--provider", "cuda"))
    assert result.returncode == 0, result.stderr
    assert "provider 'cuda' is not available" in result.stderr and "using cpu" in result.stderr
    assert decodable(out)["frames"] == 30


# === 7. disk full / unwritable output ===========================================================
def _assert_disk_full_outcome(result: subprocess.CompletedProcess, folder: Path, out: Path,
                              others: dict[str, bytes]) -> None:
    assert_no_traceback(result)
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("livefilter: error:") and out.name in line, result.stderr
    assert not out.exists()  # never a half file under the final name
    partial = out.with_name(f"{out.stem}.partial{out.suffix}")
    if partial.name in others:
        partial = out.with_name(f"{out.stem}.partial-2{out.suffix}")
    assert partial.exists(), result.stderr
    assert decodable(partial)["frames"] > 0  # what fitted is playable
    assert str(partial) in result.stderr  # and the user is told where it is
    for name, data in others.items():  # nothing else touched
        assert (folder / name).read_bytes() == data
    leftovers = {p.name for p in folder.iterdir()} - set(others) - {partial.name}
    assert not leftovers, leftovers


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory) -> Path:
    # Busy picture at 320x240: the converted output grows past the limits below within a second.
    return make_clip(tmp_path_factory.mktemp("big") / "big.mp4", frames=300, width=320, height=240,
                     rate=Fraction(30))


def test_file_size_limit_mid_conversion(models, big_clip, tmp_path):
    """RLIMIT_FSIZE makes every write past 150 kB fail with EFBIG, like a full disk would.
    An earlier run's partial file is the user's too: it must survive."""
    others = {"notes.txt": b"do not touch", "out.partial.mp4": b"an earlier partial result"}
    for name, data in others.items():
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "out.mp4"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    result = run_cli("video", big_clip, out, "--model", models["tiny"], "--resolution", "64",
                     "--temporal", "off", preexec_fn=limit, timeout=120)
    _assert_disk_full_outcome(result, tmp_path, out, others)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 160 kB tmpfs (needs root and mount); skipped where the machine does not allow it."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)],
                          capture_output=True, timeout=10)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, timeout=10)


def test_disk_full_mid_conversion(models, big_clip, small_tmpfs):
    others = {"notes.txt": b"do not touch"}
    (small_tmpfs / "notes.txt").write_bytes(others["notes.txt"])
    out = small_tmpfs / "out.mp4"
    result = run_cli("video", big_clip, out, "--model", models["tiny"], "--resolution", "64",
                     "--temporal", "off", timeout=120)
    _assert_disk_full_outcome(result, small_tmpfs, out, others)


def test_output_folder_not_writable(models, clips, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root ignores permission bits
            result = run_cli(*convert_args(clips["short"], "/proc/out.mp4", models["tiny"]))
        else:
            result = run_cli(*convert_args(clips["short"], folder / "out.mp4", models["tiny"]))
    finally:
        folder.chmod(0o700)
    assert_clean_refusal(result, "cannot write")
