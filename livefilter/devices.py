"""`livefilter devices`: which cameras the OS offers and whether a virtual camera can be made.

A user about to join a call needs two answers before anything else: which ``--source`` is the
webcam (index, /dev path, name, the sizes and formats it really offers) and whether the virtual
camera will work (on Linux a v4l2loopback device, with ``exclusive_caps`` so Chrome-based call
apps list it; on Windows and macOS OBS's virtual camera). On Linux everything comes from sysfs
and V4L2 ioctls, so no camera is opened for streaming; nothing here fails when there is none.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

SYSFS_V4L = Path("/sys/class/video4linux")
SYSFS_LOOPBACK = Path("/sys/module/v4l2loopback")
LOOPBACK_HINT = ("sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=livefilter "
                 "(package v4l2loopback-dkms)")
OBS_HINT = "install OBS Studio and click Start Virtual Camera once, then close OBS"
OBS_CLSID = "{A3FCE0F5-3493-419F-958A-ABA1250EC20B}"  # the DirectShow filter OBS registers
OBS_MAC_PATHS = ("/Library/CoreMediaIO/Plug-Ins/DAL/obs-mac-virtualcam.plugin",)
OBS_MAC_EXTENSIONS = Path("/Library/SystemExtensions")

# --- V4L2 ioctls (linux/videodev2.h) --------------------------------------------------------
_CAP_VIDEO_CAPTURE = 0x1
_CAP_DEVICE_CAPS = 0x80000000
_BUF_TYPE_VIDEO_CAPTURE = 1
_FRMSIZE_DISCRETE, _FRMSIZE_CONTINUOUS, _FRMSIZE_STEPWISE = 1, 2, 3


class _Capability(ctypes.Structure):
    _fields_ = [("driver", ctypes.c_char * 16), ("card", ctypes.c_char * 32), ("bus_info", ctypes.c_char * 32),
                ("version", ctypes.c_uint32), ("capabilities", ctypes.c_uint32),
                ("device_caps", ctypes.c_uint32), ("reserved", ctypes.c_uint32 * 3)]


class _FmtDesc(ctypes.Structure):
    _fields_ = [("index", ctypes.c_uint32), ("type", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("description", ctypes.c_char * 32), ("pixelformat", ctypes.c_uint32),
                ("mbus_code", ctypes.c_uint32), ("reserved", ctypes.c_uint32 * 3)]


class _FrmSize(ctypes.Structure):
    _fields_ = [("index", ctypes.c_uint32), ("pixel_format", ctypes.c_uint32), ("type", ctypes.c_uint32),
                ("data", ctypes.c_uint32 * 6), ("reserved", ctypes.c_uint32 * 2)]


def _ioc(direction: int, number: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("V") << 8) | number


VIDIOC_QUERYCAP = _ioc(2, 0, ctypes.sizeof(_Capability))
VIDIOC_ENUM_FMT = _ioc(3, 2, ctypes.sizeof(_FmtDesc))
VIDIOC_ENUM_FRAMESIZES = _ioc(3, 74, ctypes.sizeof(_FrmSize))


def fourcc_text(code: int) -> str:
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip()


@dataclass
class Camera:
    """One video device node as the OS reports it."""

    index: int
    path: str
    name: str
    formats: list[str] = field(default_factory=list)  # "MJPG: 1280x720, 640x480"
    driver: str | None = None
    capture: bool | None = None  # False for metadata nodes (a UVC camera has two nodes)
    loopback: bool = False
    error: str | None = None


@dataclass
class VirtualBackend:
    """The virtual-camera backend on this OS: present or not, details, and the fix when not."""

    name: str
    ready: bool
    details: list[str] = field(default_factory=list)
    hint: str | None = None


def _query(path: str, camera: Camera) -> None:
    """Fill driver, capture capability and formats from V4L2 ioctls; errors become text."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError as exc:
        extra = " (add your user to the 'video' group)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
        camera.error = f"cannot open: {exc.strerror or exc}{extra}"
        return
    try:
        cap = _Capability()
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, cap)
        camera.driver = cap.driver.decode(errors="replace")
        caps = cap.device_caps if cap.capabilities & _CAP_DEVICE_CAPS else cap.capabilities
        camera.capture = bool(caps & _CAP_VIDEO_CAPTURE)
        camera.loopback = camera.loopback or "loopback" in camera.driver
        if not camera.capture:
            return
        for i in range(64):
            desc = _FmtDesc(index=i, type=_BUF_TYPE_VIDEO_CAPTURE)
            try:
                fcntl.ioctl(fd, VIDIOC_ENUM_FMT, desc)
            except OSError:
                break
            camera.formats.append(f"{fourcc_text(desc.pixelformat)}: {', '.join(_sizes(fd, desc.pixelformat)) or '?'}")
    except OSError as exc:
        camera.error = f"not a V4L2 device ({exc.strerror or exc})"
    finally:
        os.close(fd)


def _sizes(fd: int, pixelformat: int) -> list[str]:
    import fcntl

    sizes: list[str] = []
    for i in range(64):
        size = _FrmSize(index=i, pixel_format=pixelformat)
        try:
            fcntl.ioctl(fd, VIDIOC_ENUM_FRAMESIZES, size)
        except OSError:
            break
        d = size.data
        if size.type == _FRMSIZE_DISCRETE:
            sizes.append(f"{d[0]}x{d[1]}")
        else:  # continuous / stepwise: min_w, max_w, step_w, min_h, max_h, step_h
            sizes.append(f"{d[0]}x{d[3]} to {d[1]}x{d[4]}")
            break
    return sizes


def list_cameras_linux(sysfs: Path = SYSFS_V4L, dev: Path = Path("/dev"), query: bool = True) -> list[Camera]:
    """Video device nodes from sysfs (name, index), with formats from V4L2 when ``query``."""
    if not sysfs.is_dir():
        return []
    cameras = []
    for entry in sorted(sysfs.glob("video*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 1 << 30):
        number = entry.name[5:]
        if not number.isdigit():
            continue
        try:
            name = (entry / "name").read_text().strip()
        except OSError:
            name = "?"
        index_file = entry / "index"
        try:
            node_index = int(index_file.read_text().strip()) if index_file.is_file() else 0
        except (OSError, ValueError):
            node_index = 0
        camera = Camera(index=int(number), path=str(dev / entry.name), name=name)
        camera.loopback = "/virtual/" in str(entry.resolve())  # v4l2loopback has no hardware parent
        if query and Path(camera.path).exists():
            _query(camera.path, camera)
        elif not Path(camera.path).exists():
            camera.error = f"{camera.path} missing"
        if camera.capture is None and node_index > 0:
            camera.capture = False  # a camera's second node (metadata)
        cameras.append(camera)
    return cameras


def loopback_state(cameras: list[Camera], module: Path = SYSFS_LOOPBACK) -> VirtualBackend:
    """v4l2loopback: is the module loaded, which devices are loopback, is exclusive_caps on."""
    loops = [c for c in cameras if c.loopback]
    if not module.is_dir():
        return VirtualBackend("v4l2loopback", False, ["module not loaded, no loopback device"],
                              f"create one: {LOOPBACK_HINT}")
    details = []
    exclusive: list[str] = []
    caps_file = module / "parameters" / "exclusive_caps"
    try:
        exclusive = [v.strip() for v in caps_file.read_text().strip().split(",") if v.strip()]
    except OSError:
        details.append("exclusive_caps: unknown (cannot read parameters)")
    on = [v.upper() in ("Y", "1") for v in exclusive]
    if not loops:
        return VirtualBackend("v4l2loopback", False, ["module loaded but no loopback device"],
                              f"reload it: sudo modprobe -r v4l2loopback && {LOOPBACK_HINT}")
    for n, cam in enumerate(loops):
        flag = ("on" if on[n] else "off") if n < len(on) else "unknown"
        details.append(f"{cam.path} ({cam.name}): exclusive_caps {flag}")
    hint = None
    if exclusive and not all(on[:len(loops)] or [False]):
        hint = ("Chrome, Meet and Zoom may not list a device without exclusive_caps: "
                f"sudo modprobe -r v4l2loopback && {LOOPBACK_HINT}")
    return VirtualBackend("v4l2loopback", True, details, hint)


def obs_state(platform: str) -> VirtualBackend:
    """OBS Virtual Camera on Windows (registered DirectShow filter) or macOS (plug-in/extension)."""
    found: list[str] = []
    if platform.startswith(("win", "cygwin")):
        try:
            import winreg

            with winreg.OpenKey(winreg.HKEY_CLASSES_ROOT, rf"CLSID\{OBS_CLSID}"):
                found.append(f"registered (CLSID {OBS_CLSID})")
        except OSError:
            pass
        except ImportError:
            pass
    elif platform.startswith("darwin"):
        found += [p for p in OBS_MAC_PATHS if Path(p).exists()]
        if OBS_MAC_EXTENSIONS.is_dir():
            found += [str(p) for p in OBS_MAC_EXTENSIONS.glob("*/com.obsproject.obs-studio.mac-camera-extension*")]
    if found:
        return VirtualBackend("OBS Virtual Camera", True, found)
    return VirtualBackend("OBS Virtual Camera", False, ["not installed"], OBS_HINT)


def _probe_indices(limit: int = 4) -> list[Camera]:
    """Windows/macOS: no device names without extra packages; try the first indices with OpenCV."""
    import cv2

    cameras = []
    for i in range(limit):
        cap = cv2.VideoCapture(i)
        try:
            if cap.isOpened():
                w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
                cameras.append(Camera(index=i, path=str(i), name=f"camera {i}", formats=[f"default {w}x{h}"]))
        finally:
            cap.release()
    return cameras


@dataclass
class Report:
    platform: str
    cameras: list[Camera]
    backend: VirtualBackend
    pyvirtualcam_backends: list[str]


def gather(platform: str | None = None) -> Report:
    platform = sys.platform if platform is None else platform
    try:
        import pyvirtualcam

        backends = sorted(pyvirtualcam.camera.BACKENDS)
    except Exception:
        backends = []
    if platform.startswith("linux"):
        cameras = list_cameras_linux()
        backend = loopback_state(cameras)
    else:
        cameras = _probe_indices()
        backend = obs_state(platform)
    return Report(platform, cameras, backend, backends)


def format_report(report: Report) -> str:
    """What `livefilter devices` prints."""
    lines = ["cameras:"]
    real = [c for c in report.cameras if not c.loopback]
    if not real:
        where = "/sys/class/video4linux is empty or missing" if report.platform.startswith("linux") else \
            "OpenCV opened none of the first indices"
        lines.append(f"  none found ({where}); plug one in, or play a file live with --source clip.mp4")
    for cam in real:
        kind = "" if cam.capture is not False else "  (metadata node, not a picture source)"
        lines.append(f"  {cam.index}  {cam.path}  {cam.name}{kind}")
        for fmt in cam.formats:
            lines.append(f"       {fmt}")
        if cam.error:
            lines.append(f"       {cam.error}")
    backend = report.backend
    state = "ready" if backend.ready else "missing"
    lines.append(f"virtual camera ({backend.name}): {state}")
    lines += [f"  {d}" for d in backend.details]
    if backend.hint:
        lines.append(f"  hint: {backend.hint}")
    if report.pyvirtualcam_backends:
        lines.append(f"  pyvirtualcam: installed (backend {', '.join(report.pyvirtualcam_backends)})")
    else:
        lines.append("  pyvirtualcam has no backend on this OS")
    return "\n".join(lines)
