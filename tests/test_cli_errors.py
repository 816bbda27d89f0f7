"""Bad input: one line `livefilter: error: ...`, non-zero exit, never a traceback (real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_clip


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "livefilter", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    err = result.stderr.strip()
    assert result.returncode != 0
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("livefilter: error: ")
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("err") / "ok.mp4", frames=12, width=64, height=48)


def test_missing_input(models, tmp_path):
    result = run_cli("video", tmp_path / "nope.mp4", tmp_path / "out.mp4", "--model", models["tiny"])
    assert_one_line_error(result, "input not found", "nope.mp4")


def test_not_a_video(models, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 50)
    result = run_cli("video", fake, tmp_path / "out.mp4", "--model", models["tiny"])
    assert_one_line_error(result, "not a video file", "notes.mp4")


def test_empty_file(models, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert_one_line_error(run_cli("video", empty, tmp_path / "out.mp4", "--model", models["tiny"]),
                          "empty")


def test_truncated_video(models, clip, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    out = tmp_path / "out.mp4"
    assert_one_line_error(run_cli("video", cut, out, "--model", models["tiny"]), "cut.mp4")
    assert not out.exists()


def test_output_folder_missing(models, clip, tmp_path):
    result = run_cli("video", clip, tmp_path / "no" / "such" / "out.mp4", "--model", models["tiny"])
    assert_one_line_error(result, "output folder does not exist")


def test_unwritable_output(models, clip):
    result = run_cli("video", clip, "/proc/livefilter-out.mp4", "--model", models["tiny"])
    assert_one_line_error(result, "cannot write")


def test_output_same_as_input(models, clip):
    result = run_cli("video", clip, clip, "--model", models["tiny"], "--overwrite")
    assert_one_line_error(result, "same file as the input")
    assert clip.stat().st_size > 0


def test_unknown_extension(models, clip, tmp_path):
    assert_one_line_error(run_cli("video", clip, tmp_path / "out.xyz", "--model", models["tiny"]),
                          "unsupported output extension")


def test_unknown_style(clip, tmp_path):
    result = run_cli("video", clip, tmp_path / "out.mp4", "--style", "nosuchstyle")
    assert_one_line_error(result, "unknown style 'nosuchstyle'")
    assert not list(tmp_path.iterdir())


def test_model_with_wrong_io(models, clip, tmp_path):
    result = run_cli("video", clip, tmp_path / "out.mp4", "--model", models["wrong"])
    assert_one_line_error(result, str(models["wrong"]), "expected")
    assert not list(tmp_path.iterdir())  # no temp file left behind


def test_nonexistent_camera(models):
    result = run_cli("camera", "--source", "7", "--no-preview", "--model", models["tiny"])
    assert_one_line_error(result, "no camera at index 7")


def test_nonexistent_camera_device(models):
    result = run_cli("camera", "--source", "/dev/video99", "--no-preview", "--model", models["tiny"])
    assert_one_line_error(result, "/dev/video99")


def test_image_not_a_picture(models, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00" * 100)
    assert_one_line_error(run_cli("image", bad, tmp_path / "out.png", "--model", models["tiny"]),
                          "cannot read")


# --- what a new user meets first: help with examples, and errors that say what to do ---------
def test_every_help_ends_with_examples():
    import argparse

    from livefilter.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {"livefilter": parser.format_help()}
    helps.update({name: p.format_help() for name, p in sub.choices.items()})
    assert {"demo", "camera", "video", "image", "styles", "bench"} <= set(helps)
    for name, text in helps.items():
        tail = text[text.index("examples:"):].splitlines() if "examples:" in text else []
        examples = [line for line in tail[1:] if line.strip().startswith("livefilter ")]
        assert 2 <= len(examples) <= 3, f"{name}: {tail}"
        if name != "livefilter":
            assert examples[0].strip().startswith(f"livefilter {name}"), name


def test_top_level_help_runs_from_the_command_line():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "livefilter demo" in result.stdout and "examples:" in result.stdout


def test_no_camera_says_what_to_try(models):
    err = assert_one_line_error(run_cli("camera", "--source", "7", "--no-preview", "--model", models["tiny"]),
                                "no camera at index 7")
    assert "--source clip.mp4" in err and "check the camera" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the v4l2loopback hint is for Linux")
def test_no_virtual_camera_gives_the_one_line_setup(models, clip):
    if list(Path("/dev").glob("video*")):
        pytest.skip("a video device exists here; this test needs a machine without one")
    result = run_cli("camera", "--virtual", "--source", clip, "--model", models["tiny"])
    err = assert_one_line_error(result, "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
                                        "card_label=livefilter")
    assert "apt install v4l2loopback-dkms" in err
    assert "Did you run" not in err  # pyvirtualcam's own advice is replaced by ours, not repeated


def test_missing_model_file(clip, tmp_path):
    assert_one_line_error(run_cli("video", clip, tmp_path / "out.mp4", "--model", tmp_path / "nope.onnx"),
                          "model file not found", "nope.onnx")


def test_missing_source_file(models, tmp_path):
    assert_one_line_error(run_cli("camera", "--source", tmp_path / "gone.mp4", "--model", models["tiny"]),
                          "gone.mp4", "no such file")
