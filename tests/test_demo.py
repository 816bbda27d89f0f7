"""`livefilter demo`: converts the packaged sample on a machine with nothing else, says where the
result is, never replaces a file, and opens the preview only when a display exists."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import probe
from livefilter.demo import display_available, free_output, sample_clip

REPO = Path(__file__).resolve().parents[1]


def run_demo(*args: str, cwd: Path, display: str | None = None, timeout: float = 180
             ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if display:
        env["DISPLAY"] = display
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "livefilter", "demo", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24").astype(np.float32)


def test_sample_ships_with_the_package_and_is_small():
    sample = sample_clip()
    assert sample.is_relative_to(REPO / "livefilter")
    assert sample.stat().st_size < 300_000
    info = probe(sample)
    assert info["frames"] == 75 and info["size"] == (360, 288)
    assert info["audio_codec"] == "aac" and info["audio"]


def test_demo_without_a_display_writes_the_file_and_says_where(models, tmp_path):
    result = run_demo("--model", models["tiny"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "livefilter-demo.mp4"
    info = probe(out)
    assert info["frames"] == 75 and info["size"] == (360, 288)
    assert info["audio"], "the sample's speech is kept"
    assert f"the result is {out.resolve()}" in result.stderr
    assert "no display" in result.stderr
    assert "Traceback" not in result.stderr


def test_running_it_again_picks_a_new_name_and_keeps_the_first(models, tmp_path):
    first = tmp_path / "livefilter-demo.mp4"
    first.write_bytes(b"keep me")
    result = run_demo("--model", models["tiny"], "--no-preview", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert first.read_bytes() == b"keep me"
    assert probe(tmp_path / "livefilter-demo-2.mp4")["frames"] == 75
    assert free_output(tmp_path).name == "livefilter-demo-3.mp4"


def test_an_explicit_output_is_never_replaced_without_overwrite(models, tmp_path):
    target = tmp_path / "mine.mp4"
    target.write_bytes(b"precious")
    result = run_demo(target, "--model", models["tiny"], cwd=tmp_path)
    assert result.returncode != 0
    err = result.stderr.strip()
    assert err.startswith("livefilter: error: ") and len(err.splitlines()) == 1, err
    assert "already exists" in err and "--overwrite" in err
    assert target.read_bytes() == b"precious"


def test_default_style_gives_a_styled_clip(tmp_path):
    result = run_demo("out.mp4", "--no-preview", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out.mp4"
    assert probe(out)["frames"] == 75
    styled, original = first_frame(out), first_frame(sample_clip())
    assert styled.shape == original.shape
    # The shipped Hayao student repaints the picture (palette, lines), it does not copy it...
    assert np.abs(styled - original).mean() > 8
    # ...and keeps the scene: the face is where it was (structure correlates strongly).
    s, o = styled.mean(axis=2).ravel(), original.mean(axis=2).ravel()
    assert np.corrcoef(s, o)[0, 1] > 0.6


def test_display_rules():
    assert display_available({}, "win32") and display_available({}, "darwin")
    assert not display_available({}, "linux")
    assert display_available({"DISPLAY": ":0"}, "linux")
    assert display_available({"WAYLAND_DISPLAY": "wayland-0"}, "linux")


@pytest.fixture(scope="module")
def xvfb():
    """A private X server (Xvfb chooses a free display number and writes it to the pipe)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24",
                               "-nolisten", "tcp", "-noreset"], pass_fds=(write_fd,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 15)
        number = os.read(read_fd, 32).decode().strip() if ready else ""
        if not number.isdigit():
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        os.close(read_fd)
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def test_with_a_display_the_preview_plays_the_sample(models, tmp_path, xvfb):
    result = run_demo("--model", models["tiny"], "--preview-seconds", "3", cwd=tmp_path, display=xvfb)
    assert result.returncode == 0, result.stderr
    assert probe(tmp_path / "livefilter-demo.mp4")["frames"] == 75
    assert "preview:" in result.stderr
    shown = [line for line in result.stderr.splitlines() if "frames shown" in line]
    assert shown and int(shown[0].split("livefilter: ")[1].split()[0]) > 0, result.stderr
