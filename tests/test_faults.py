"""Faults: disk full, SIGTERM, double Ctrl-C, rotation, odd sources, and a fuzz of damaged clips.

Every case must end in a converted file or a clear error, never a traceback or a hang.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import make_clip, probe, set_mp4_rotation
from livefilter.capture import FileSource
from livefilter.cli import main

POSIX = sys.platform != "win32"


def cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "livefilter", *map(str, args)], capture_output=True,
                          text=True, timeout=kwargs.pop("timeout", 120), **kwargs)


def decodable_frames(path: Path) -> int:
    source = FileSource(path)
    count = 0
    while source.read() is not None:
        count += 1
    source.close()
    return count


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("faults") / "clip.mp4", frames=90, width=160, height=120,
                     rate=Fraction(30))


@pytest.mark.skipif(not POSIX, reason="needs RLIMIT_FSIZE")
def test_disk_full_gives_clear_error_and_playable_partial(models, clip, tmp_path):
    import resource

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    out = tmp_path / "full.mp4"
    result = cli("video", clip, out, "--model", models["tiny"], "--resolution", "32", "--temporal", "off",
                 preexec_fn=small_disk)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("livefilter: error: ") and "File too large" in last
    assert not out.exists()  # never a half file under the final name
    partial = tmp_path / "full.partial.mp4"
    assert partial.exists() and decodable_frames(partial) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.partial.mp4"]


def _start_slow_conversion(models, clip, out):
    partial = out.with_name(f".{out.name}.livefilter-partial")
    proc = subprocess.Popen([sys.executable, "-m", "livefilter", "video", str(clip), str(out), "--model",
                             str(models["slow"]), "--resolution", "120", "--temporal", "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.stat().st_size > 0:
            time.sleep(0.3)
            break
        time.sleep(0.05)
    assert proc.poll() is None, "conversion ended before it could be interrupted"
    return proc


@pytest.mark.skipif(not POSIX, reason="POSIX signals")
def test_sigterm_finishes_a_playable_file(models, clip, tmp_path):
    out = tmp_path / "term.mp4"
    proc = _start_slow_conversion(models, clip, out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err
    assert "interrupted at frame" in err
    assert 0 < probe(out)["frames"] < 90


@pytest.mark.skipif(not POSIX, reason="POSIX signals")
def test_second_ctrl_c_quits_at_once(models, clip, tmp_path):
    proc = _start_slow_conversion(models, clip, tmp_path / "twice.mp4")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err


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


ODD_SOURCES = {
    "no_audio": dict(name="silent.mp4", width=96, height=64, audio=False),
    "grey": dict(name="grey.mkv", width=64, height=48, pix_fmt="gray"),
    "10bit": dict(name="deep.mkv", width=64, height=48, codec="libx264", pix_fmt="yuv420p10le"),
    "tiny_16x16": dict(name="tiny.mp4", width=16, height=16),
    "8k": dict(name="huge.mkv", width=7680, height=4320, frames=1, codec="libx264", audio=False),
}


@pytest.mark.parametrize("kind", sorted(ODD_SOURCES))
def test_odd_sources_convert(models, tmp_path, kind):
    spec = dict(ODD_SOURCES[kind])
    frames = spec.pop("frames", 8)
    src = make_clip(tmp_path / spec.pop("name"), frames=frames, **spec)
    out = tmp_path / "out.mkv"
    assert main(["video", str(src), str(out), "--model", str(models["tiny"]), "--resolution", "32",
                 "--temporal", "off"]) == 0
    a, b = probe(src), probe(out)
    assert b["frames"] == a["frames"] == frames
    assert b["size"] == a["size"]
    assert bool(b["audio"]) == bool(a["audio"])


def test_audio_only_file_is_refused(models, tmp_path):
    src = make_clip(tmp_path / "voice.mp4", video=False)
    result = cli("video", src, tmp_path / "out.mp4", "--model", models["tiny"])
    assert result.returncode == 2 and result.stderr.strip() == f"livefilter: error: no video stream in {src}"


def _mutations(data: bytes, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = bytearray(data)
    kind = seed % 4
    if kind == 0:  # flipped bytes all over
        for at in rng.integers(64, len(buf), 40):
            buf[int(at)] ^= int(rng.integers(1, 256))
    elif kind == 1:  # garbage block in the middle
        at = int(rng.integers(len(buf) // 4, 3 * len(buf) // 4))
        buf[at:at + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    elif kind == 2:  # cut short
        buf = buf[: int(rng.integers(200, len(buf)))]
    else:  # a chunk removed
        at = int(rng.integers(100, len(buf) - 3000))
        del buf[at:at + 3000]
    return bytes(buf)


@pytest.mark.parametrize("seed", range(8))
def test_fuzz_damaged_clips_clean_error_or_playable(models, tmp_path, seed):
    src = make_clip(tmp_path / "fuzz.mkv", frames=30, width=64, height=48)
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(_mutations(src.read_bytes(), seed))
    out = tmp_path / "out.mp4"
    result = cli("video", damaged, out, "--model", models["tiny"], "--resolution", "32",
                 "--temporal", "off", timeout=60)
    assert "Traceback" not in result.stderr
    if result.returncode == 0:
        assert decodable_frames(out) > 0
    else:
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("livefilter: error: ")
        assert not out.exists()
