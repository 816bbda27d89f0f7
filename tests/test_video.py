"""`livefilter video`: every frame, same timestamps, same size, audio packets identical."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import CLIPS, make_clip, probe
from livefilter.cli import main


def convert(models, src: Path, dst: Path, *extra: str) -> int:
    return main(["video", str(src), str(dst), "--model", str(models["tiny"]), "--resolution", "48",
                 *extra])


def assert_same_timing_and_audio(src: Path, dst: Path, even_size: bool = True) -> dict:
    a, b = probe(src), probe(dst)
    assert b["frames"] == a["frames"]
    assert max(abs(x - y) for x, y in zip(a["seconds"], b["seconds"])) < 1e-6
    width, height = a["size"]
    expected = (width + width % 2, height + height % 2) if even_size else (width, height)
    assert b["size"] == expected
    assert len(b["audio"]) == len(a["audio"])
    assert b["audio"] == a["audio"]  # bit for bit
    return b


def test_synthetic_clip_keeps_frames_pts_size_and_audio(models, synthetic_clip, tmp_path):
    out = tmp_path / "out.mp4"
    assert convert(models, synthetic_clip, out) == 0
    result = assert_same_timing_and_audio(synthetic_clip, out)
    assert result["size"] == (162, 120)  # odd width rounded up for H.264 only
    assert result["audio_codec"] == "aac"
    assert not list(tmp_path.glob(".*livefilter-partial"))  # temp file renamed away


def test_variable_frame_rate_survives(models, tmp_path):
    steps = [0, 3003, 6006, 15015, 16016, 30030, 33033, 45045, 46046, 60060]
    src = make_clip(tmp_path / "vfr.mp4", frames=len(steps), width=96, height=64, pts_list=steps)
    out = tmp_path / "vfr_out.mp4"
    assert convert(models, src, out) == 0
    got = probe(out)["seconds"]
    assert [round(s * 90000) for s in got] == steps
    assert_same_timing_and_audio(src, out)


@pytest.mark.parametrize("ext,audio_codec", [(".mkv", "aac"), (".mov", "aac"), (".webm", "opus")])
def test_containers_from_extension(models, synthetic_clip, tmp_path, ext, audio_codec):
    out = tmp_path / f"out{ext}"
    assert convert(models, synthetic_clip, out) == 0
    result = probe(out)
    assert result["frames"] == probe(synthetic_clip)["frames"]
    assert result["audio_codec"] == audio_codec  # webm cannot hold AAC: transcoded to Opus
    assert result["audio"]


def test_refuses_existing_output_unless_overwrite(models, synthetic_clip, tmp_path, capsys):
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"precious")
    assert convert(models, synthetic_clip, out) == 2
    assert out.read_bytes() == b"precious"
    assert "--overwrite" in capsys.readouterr().err
    assert convert(models, synthetic_clip, out, "--overwrite") == 0
    assert probe(out)["frames"] == 45


def test_no_audio_option(models, synthetic_clip, tmp_path):
    out = tmp_path / "silent.mp4"
    assert convert(models, synthetic_clip, out, "--no-audio") == 0
    assert probe(out)["audio"] == []


def test_ctrl_c_keeps_a_playable_file_with_audio(models, tmp_path):
    """SIGINT mid-run: exit 130, 'interrupted at frame N of M', N frames and their audio kept."""
    src = make_clip(tmp_path / "long.mp4", frames=400, width=160, height=120, rate=Fraction(30))
    out = tmp_path / "cut.mp4"
    partial = tmp_path / ".cut.mp4.livefilter-partial"
    cmd = [sys.executable, "-m", "livefilter", "video", str(src), str(out), "--model",
           str(models["slow"]), "--resolution", "120", "--temporal", "off"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.stat().st_size > 0:  # first packets muxed
            time.sleep(0.5)
            break
        time.sleep(0.05)
    assert proc.poll() is None, "conversion ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    line = next(l for l in err.splitlines() if "interrupted at frame" in l)
    done = int(line.split("interrupted at frame ")[1].split()[0])
    assert "of 400" in line and 0 < done < 400
    result = probe(out)
    assert result["frames"] == done
    assert result["audio"] == probe(src)["audio"][:len(result["audio"])]
    audio_seconds = len(result["audio"]) * 1024 / 48000
    assert audio_seconds >= done / 30 - 0.1  # audio reaches the last converted frame
    assert audio_seconds < 400 / 30  # but not the whole clip
    assert not partial.exists()


REAL_CLIPS = {
    "mpg_mp2": "lipnet_grid_bbaf2n.mpg",
    "h264_aac": "liveportrait_driving_d18.mp4",
    "portrait": "liveportrait_source_s13.mp4",
    "23.976fps": "pyfeat_WolfgangLanger_Pexels.mp4",
}


@pytest.mark.parametrize("kind", sorted(REAL_CLIPS))
def test_real_clips(models, tmp_path, kind):
    src = CLIPS / REAL_CLIPS[kind]
    if not src.is_file():
        pytest.skip(f"{src} not present")
    out = tmp_path / "out.mp4"
    assert convert(models, src, out, "--resolution", "32", "--temporal", "off") == 0
    result = assert_same_timing_and_audio(src, out)
    assert result["audio"], "source audio must be kept"


def test_falls_back_to_another_encoder_when_libx264_is_missing(models, synthetic_clip, tmp_path,
                                                                monkeypatch, caplog):
    import logging

    from livefilter.sinks import video_file

    real = video_file._available
    monkeypatch.setattr(video_file, "_available",
                        lambda name: name not in ("libx264", "h264", "libopenh264") and real(name))
    logger = logging.getLogger("livefilter")
    logger.addHandler(caplog.handler)
    try:
        out = tmp_path / "fallback.mp4"
        assert convert(models, synthetic_clip, out) == 0
    finally:
        logger.removeHandler(caplog.handler)
    assert "libx264 is not available" in caplog.text and "mpeg4" in caplog.text
    import av

    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert_same_timing_and_audio(synthetic_clip, out)


def test_written_colours_read_back_as_written(tmp_path):
    """The encoder's colour conversion keeps flat colours: what we paint is what plays."""
    import av
    import numpy as np

    from livefilter.frames import Frame
    from livefilter.sinks.video_file import VideoFileSink

    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (40, 90, 200), (230, 230, 230), (20, 20, 20)]
    image = np.zeros((96, 64 * len(colours), 3), np.uint8)
    for i, colour in enumerate(colours):
        image[:, 64 * i:64 * (i + 1)] = colour
    out = tmp_path / "colours.mp4"
    sink = VideoFileSink(out, fps=30)
    for i in range(3):
        sink.write(Frame(image=image, capture_time=0.0, pts=i, time_base=Fraction(1, 30)))
    sink.close()
    with av.open(str(out)) as container:
        first = next(container.decode(video=0))
        decoded = first.to_ndarray(format="bgr24")
    # the stream says BT.601 limited range, so a player that would guess BT.709 for HD does not
    assert (first.colorspace, first.color_range) == (6, 1)
    for i, colour in enumerate(colours):
        middle = decoded[32:64, 64 * i + 16:64 * i + 48].reshape(-1, 3).mean(axis=0)
        assert np.abs(middle - colour).max() < 6, (colour, middle)


def test_preset_trades_speed_for_size(models, tmp_path):
    """The default encoder is x264's fastest; --preset veryfast gives the smaller file of the
    same frames, and a preset x264 does not know is refused."""
    from livefilter.errors import LivefilterError
    from livefilter.sinks.video_file import DEFAULT_X264_PRESET, VideoFileSink

    assert DEFAULT_X264_PRESET == "ultrafast"
    src = make_clip(tmp_path / "noisy.mkv", frames=30, width=320, height=240)
    fast, small = tmp_path / "fast.mp4", tmp_path / "small.mp4"
    assert convert(models, src, fast) == 0
    assert convert(models, src, small, "--preset", "veryfast") == 0
    assert probe(fast)["frames"] == probe(small)["frames"] == 30
    assert small.stat().st_size < fast.stat().st_size
    with pytest.raises(LivefilterError, match="unknown preset 'quick'"):
        VideoFileSink(tmp_path / "x.mp4", preset="quick")
    assert not any(p.name.startswith(".x.mp4") for p in tmp_path.iterdir())


def test_i420_frames_are_written_as_they_are(tmp_path):
    """A stage that already wrote I420 gives the file the BGR frame would; a frame of another
    size mid-stream is converted back and resized, like a BGR one."""
    import av
    import cv2
    import numpy as np

    from livefilter.frames import Frame
    from livefilter.sinks.video_file import VideoFileSink

    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (160, 96), interpolation=cv2.INTER_CUBIC)
    i420 = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
    decoded = {}
    for name, frames in {
        "bgr": [Frame(image=image, capture_time=0.0, pts=i, time_base=Fraction(1, 30)) for i in range(3)],
        "i420": [Frame(image=i420, capture_time=0.0, pts=i, time_base=Fraction(1, 30), format="yuv420p")
                 for i in range(2)] + [Frame(image=cv2.cvtColor(cv2.resize(image, (80, 48)), cv2.COLOR_BGR2YUV_I420),
                                             capture_time=0.0, pts=2, time_base=Fraction(1, 30), format="yuv420p")],
    }.items():
        out = tmp_path / f"{name}.mp4"
        sink = VideoFileSink(out, fps=30)
        for frame in frames:
            sink.write(frame)
        sink.close()
        with av.open(str(out)) as container:
            decoded[name] = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert [d.shape for d in decoded["i420"]] == [(96, 160, 3)] * 3
    assert np.abs(decoded["i420"][0].astype(int) - decoded["bgr"][0]).mean() < 1.0
    assert np.abs(decoded["i420"][2].astype(int) - decoded["bgr"][2]).mean() < 12
