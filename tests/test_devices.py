"""`livefilter devices`: cameras from sysfs, the v4l2loopback state and the hints, on fake trees
(this machine has neither a camera nor a loopback device) and the real command's output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from livefilter.devices import (Report, format_report, list_cameras_linux, loopback_state,
                                obs_state)

REPO = Path(__file__).resolve().parents[1]


def fake_sysfs(root: Path, nodes: dict[str, tuple[str, bool]]) -> Path:
    """/sys/class/video4linux with entries linking to real or virtual device folders."""
    cls = root / "class" / "video4linux"
    cls.mkdir(parents=True)
    for node, (name, virtual) in nodes.items():
        target = root / "devices" / ("virtual" if virtual else "pci0000:00/usb1") / "video4linux" / node
        target.mkdir(parents=True)
        (target / "name").write_text(name + "\n")
        (target / "index").write_text("0\n")
        (cls / node).symlink_to(target)
    return cls


def test_cameras_and_loopback_devices_from_sysfs(tmp_path):
    sysfs = fake_sysfs(tmp_path, {"video0": ("Integrated Webcam", False), "video10": ("livefilter", True),
                                  "video2": ("USB Camera", False)})
    cameras = list_cameras_linux(sysfs, dev=tmp_path / "dev", query=False)
    assert [(c.index, c.name, c.loopback) for c in cameras] == [
        (0, "Integrated Webcam", False), (2, "USB Camera", False), (10, "livefilter", True)]
    assert cameras[0].path == str(tmp_path / "dev" / "video0")
    assert all(c.error and "missing" in c.error for c in cameras)  # no /dev nodes in the fake tree

    module = tmp_path / "module"
    (module / "parameters").mkdir(parents=True)
    (module / "parameters" / "exclusive_caps").write_text("Y,N,N,N,N,N,N,N\n")
    state = loopback_state(cameras, module)
    assert state.ready and state.hint is None
    assert state.details == [f"{cameras[2].path} (livefilter): exclusive_caps on"]
    (module / "parameters" / "exclusive_caps").write_text("N,N,N,N,N,N,N,N\n")
    state = loopback_state(cameras, module)
    assert state.ready and "exclusive_caps off" in state.details[0] and "exclusive_caps=1" in state.hint

    text = format_report(Report("linux", cameras, state, ["v4l2loopback"]))
    assert "  0  " in text and "Integrated Webcam" in text and "livefilter)" in text
    assert "(livefilter)" not in text.split("virtual camera")[0]  # loopback nodes are not cameras


def test_nothing_installed_reads_well(tmp_path):
    cameras = list_cameras_linux(tmp_path / "absent")
    assert cameras == []
    state = loopback_state(cameras, tmp_path / "no-module")
    assert not state.ready and "modprobe v4l2loopback" in state.hint and "exclusive_caps=1" in state.hint
    module = tmp_path / "module"
    (module / "parameters").mkdir(parents=True)
    state = loopback_state([], module)  # loaded with devices=0
    assert not state.ready and "no loopback device" in state.details[0] and "modprobe -r" in state.hint
    text = format_report(Report("linux", [], loopback_state([], tmp_path / "x"), []))
    assert text.splitlines()[1].startswith("  none found")
    assert "virtual camera (v4l2loopback): missing" in text and "hint: create one" in text


def test_obs_state_elsewhere():
    state = obs_state("plan9")
    assert not state.ready and "OBS" in state.hint


def test_devices_command_on_this_machine():
    done = subprocess.run([sys.executable, "-m", "livefilter", "devices"], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cameras:") and "virtual camera (" in done.stdout
    assert "Traceback" not in done.stderr
    if not Path("/sys/module/v4l2loopback").exists() and sys.platform.startswith("linux"):
        assert "hint: create one: sudo modprobe v4l2loopback" in done.stdout


def test_v4l2_request_codes_match_the_kernel_header():
    """No camera here to query: at least the ioctl numbers and struct sizes must be videodev2.h's."""
    from livefilter import devices

    assert devices.VIDIOC_QUERYCAP == 0x80685600
    assert devices.VIDIOC_ENUM_FMT == 0xC0405602
    assert devices.VIDIOC_ENUM_FRAMESIZES == 0xC02C564A
    assert devices.fourcc_text(0x47504A4D) == "MJPG" and devices.fourcc_text(0x56595559) == "YUYV"
