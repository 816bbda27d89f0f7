"""Sources: file frames with pts, rotation, corrupt data skipped, paced and looping file source."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pytest

from conftest import CLIPS, make_clip, probe
from livefilter.capture import CameraSource, FileSource, PacedFileSource, _upright
from livefilter.errors import LivefilterError
from livefilter.frames import Frame


def read_all(source):
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    return frames


def test_file_source_frames_and_timestamps(synthetic_clip):
    source = FileSource(synthetic_clip)
    assert not source.live and source.size == (161, 120)
    assert abs(source.fps - 30000 / 1001) < 0.01
    frames = read_all(source)
    expected = probe(synthetic_clip)["seconds"]
    assert len(frames) == len(expected) == 45
    assert [f.seconds for f in frames] == pytest.approx(expected, abs=1e-9)
    assert [f.index for f in frames] == list(range(45))
    assert frames[0].image.shape == (120, 161, 3) and frames[0].image.dtype == np.uint8


def test_rotation_turns_picture_upright():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3, 1).repeat(3, axis=2)
    assert _upright(image, 0) is image
    # Display matrix -90 (a phone's "rotate=90"): shown turned clockwise, so 3 wide becomes 3 tall.
    turned = _upright(image, -90)
    assert turned.shape[:2] == (3, 2)
    assert turned[0, 0, 0] == image[1, 0, 0] and turned[0, 1, 0] == image[0, 0, 0]
    assert np.array_equal(_upright(image, 180), image[::-1, ::-1])


def test_corrupt_packets_in_the_middle_are_skipped(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=60, width=96, height=64, audio=False)
    data = bytearray(clip.read_bytes())
    rng = np.random.default_rng(1)
    middle = len(data) // 2
    for offset in rng.integers(middle - 2000, middle + 2000, 300):
        data[int(offset)] ^= 0xFF
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    try:
        source = FileSource(damaged)
    except LivefilterError:
        pytest.skip("damage hit the header this time")
    frames = read_all(source)
    assert 0 < len(frames) <= 60  # ran to the end instead of failing midway


def test_paced_source_plays_at_clip_rate_and_loops(tmp_path):
    clip = make_clip(tmp_path / "p.mp4", frames=6, width=32, height=32, rate=Fraction(60), audio=False)
    source = PacedFileSource(clip, loop=True)
    assert source.live
    start = time.monotonic()
    frames = [source.read() for _ in range(15)]
    elapsed = time.monotonic() - start
    source.close()
    seconds = [f.seconds for f in frames]
    assert seconds == sorted(seconds) and len(set(seconds)) == 15  # keeps counting across loops
    assert seconds[-1] == pytest.approx(14 / 60, abs=1e-3)
    assert elapsed >= seconds[-1] - 0.02  # paced, not as fast as possible
    assert [f.index for f in frames] == list(range(15))


def test_paced_source_without_loop_ends(tmp_path):
    clip = make_clip(tmp_path / "q.mp4", frames=4, width=32, height=32, rate=Fraction(120), audio=False)
    assert len(read_all(PacedFileSource(clip))) == 4


def test_missing_camera_is_one_clear_error():
    with pytest.raises(LivefilterError, match="no camera at index 9"):
        CameraSource(9)
    with pytest.raises(LivefilterError, match="/dev/video98"):
        CameraSource("/dev/video98")


@pytest.mark.skipif(not (CLIPS / "lipnet_grid_bbaf2n.mpg").is_file(), reason="shared clips absent")
def test_mpeg_program_stream_reads_every_frame():
    frames = read_all(FileSource(CLIPS / "lipnet_grid_bbaf2n.mpg"))
    assert len(frames) == probe(CLIPS / "lipnet_grid_bbaf2n.mpg")["frames"]


class FakeCapture:
    """Stands in for cv2.VideoCapture: delivers frames until ``unplugged`` is set."""

    world = {"unplugged": False, "opened": 0, "settings": {}}

    def __init__(self, spec):
        self.spec = spec
        FakeCapture.world["opened"] += 1

    def isOpened(self):
        return not FakeCapture.world["unplugged"]

    def set(self, prop, value):
        FakeCapture.world["settings"][prop] = value
        return True

    def get(self, prop):
        return 30.0

    def read(self):
        if FakeCapture.world["unplugged"]:
            return False, None
        return True, np.full((24, 32, 3), 77, np.uint8)

    def release(self):
        pass


def test_camera_requests_mjpg_small_buffer_and_survives_unplugging(monkeypatch):
    import cv2

    FakeCapture.world.update(unplugged=False, opened=0, settings={})
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    camera = CameraSource(0, fps=100)
    settings = FakeCapture.world["settings"]
    assert settings[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert settings[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    assert camera.live and camera.size == (32, 24)
    assert camera.read().image.mean() == 77 and camera.notice is None
    FakeCapture.world["unplugged"] = True
    lost = [camera.read() for _ in range(3)]  # last good picture, no exception, no busy loop
    assert all(f is not None and f.image.mean() == 77 for f in lost)
    assert "lost" in camera.notice
    FakeCapture.world["unplugged"] = False
    camera._next_retry = 0.0  # do not wait the 1 s retry interval in a test
    back = camera.read()
    assert back.image.mean() == 77 and camera.notice is None
    assert FakeCapture.world["opened"] >= 2  # it reconnected
    camera.close()


def test_pipeline_passes_camera_notice_to_sinks():
    from livefilter.pipeline import run

    class NoticeSource:
        live, fps, size = True, 30.0, (4, 4)

        def __init__(self):
            self.i = 0
            self.notice = None

        def read(self):
            time.sleep(0.05)  # a camera's pace: the pipeline sees each state
            self.i += 1
            if self.i > 6:
                return None
            self.notice = "camera 0 lost - reconnecting" if 3 <= self.i <= 4 else None
            return Frame(np.zeros((4, 4, 3), np.uint8), time.monotonic(), index=self.i)

        def close(self):
            pass

    class NoticeSink:
        def __init__(self):
            self.notices = []

        def write(self, frame):
            pass

        def show_notice(self, text):
            self.notices.append(text)

        def close(self):
            pass

    sink = NoticeSink()
    run(NoticeSource(), lambda f: f, [sink], live=True, queue_size=8)
    assert sink.notices and "lost" in sink.notices[0] and sink.notices[-1] is None
