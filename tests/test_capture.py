"""Sources: file frames with pts, rotation, corrupt data skipped, paced and looping file source."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pytest

from conftest import CLIPS, make_clip, probe
from livefilter.capture import CameraSource, FileSource, PacedFileSource, _upright
from livefilter.errors import LivefilterError


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
