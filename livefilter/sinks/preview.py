"""Preview window sink: the filtered stream in an OpenCV window, with a few keys.

Keys: ``s`` toggles original | filtered side by side, ``i`` toggles an FPS and
capture-to-display latency overlay, ``h`` shows the key help, ``q``/Esc or closing the window
raise :class:`~livefilter.sinks.StopPipeline` so the pipeline shuts down cleanly. Other keys
(style 1-9, Space to pause) go to ``controls`` (see `livefilter.quality.LiveStages`).
The view is mirrored with ``mirror=True`` as in every webcam app; only the window is: the
frame other sinks get is never flipped, and text is drawn after flipping so it reads normally.

All OpenCV GUI calls must happen on one thread (Qt insists), so the pipeline calls
``write``/``idle``/``close`` from the thread that created the sink.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import deque
from collections.abc import Mapping

import cv2
import numpy as np

from livefilter.errors import LivefilterError
from livefilter.frames import Frame
from livefilter.sinks import StopPipeline

_NO_DISPLAY_HINT = "run with --no-preview (for example with --virtual or --record)"
_QUIT_KEYS = {ord("q"), ord("Q"), 27}
_SIDE_KEYS = {ord("s"), ord("S")}
_INFO_KEYS = {ord("i"), ord("I")}
_HELP_KEYS = {ord("h"), ord("H")}
VIEW_KEYS = ["s  original | filtered side by side", "i  fps / latency / quality overlay",
             "h  this help", "q or Esc  quit"]
# Window statistics cover this many seconds of writes: long enough to be steady,
# short enough to follow a change (a slow model kicking in, the camera lowering its rate).
_STATS_WINDOW_S = 1.0


def x_display_reachable(display: str, timeout: float = 0.5) -> bool:
    """Whether an X server answers at ``display`` (``[host]:N[.screen]``).

    Qt aborts the whole process (SIGABRT, no exception) when it cannot reach the display,
    so the preview must find out before OpenCV touches the GUI. Unparseable names are
    given the benefit of the doubt.
    """
    host, sep, rest = display.rpartition(":")
    if not sep:
        return True
    number = rest.split(".", 1)[0]
    if not number.isdigit():
        return True
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        # Linux X servers also listen on an abstract socket of the same name.
        for address in ("\0" + path, path):
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(timeout)
                    sock.connect(address)
                    return True
            except OSError:
                continue
        return False
    if "/" in host:  # e.g. macOS launchd socket paths: not something we can probe simply
        return True
    try:
        with socket.create_connection((host, 6000 + int(number)), timeout=timeout):
            return True
    except OSError:
        return False


def check_display(env: Mapping[str, str] | None = None, platform: str | None = None) -> None:
    """Raise LivefilterError with a one-line hint when no window can be shown.

    Only X11 systems need a check up front: Windows and macOS always have a desktop
    (or OpenCV raises a normal error that the sink converts).
    """
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform.startswith(("win", "darwin", "cygwin")):
        return
    display = env.get("DISPLAY", "")
    if not display:
        raise LivefilterError(f"no display for the preview window (DISPLAY is not set); {_NO_DISPLAY_HINT}")
    if not x_display_reachable(display):
        raise LivefilterError(f"cannot open display {display!r} for the preview window; {_NO_DISPLAY_HINT}")


def _font_scale(width: int) -> float:
    return max(0.45, min(1.0, width / 1400))


def draw_text_box(image: np.ndarray, lines: list[str], corner: str = "bottom-left",
                  color: tuple[int, int, int] = (255, 255, 255),
                  background: tuple[int, int, int] = (0, 0, 0), full_width: bool = False) -> None:
    """Draw ``lines`` in place on a filled box so they stay legible on any picture."""
    h, w = image.shape[:2]
    scale = _font_scale(w)
    thickness = 1 if scale < 0.8 else 2
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(line, font, scale, thickness) for line in lines]
    line_h = max(s[0][1] + s[1] for s in sizes) + int(6 * scale)
    box_w = max(s[0][0] for s in sizes) + int(16 * scale)
    box_h = line_h * len(lines) + int(8 * scale)
    pad = int(8 * scale)
    x0 = pad if corner.endswith("left") else w - box_w - pad
    y0 = pad if corner.startswith("top") else h - box_h - pad
    if full_width:
        x0, box_w, pad = 0, w, 0
        y0 = 0 if corner.startswith("top") else h - box_h
    x0, y0 = max(0, x0), max(0, y0)
    cv2.rectangle(image, (x0, y0), (min(w - 1, x0 + box_w), min(h - 1, y0 + box_h)), background, -1)
    text_x = x0 + (pad if full_width else 0) + int(8 * scale)
    for n, line in enumerate(lines):
        baseline_y = y0 + int(4 * scale) + line_h * (n + 1) - sizes[n][1]
        cv2.putText(image, line, (text_x, baseline_y), font, scale, color, thickness, cv2.LINE_AA)


def draw_notice(image: np.ndarray, text: str) -> np.ndarray:
    """Return a copy of ``image`` with a full-width red banner carrying ``text`` (e.g. "camera lost")."""
    out = image.copy()
    draw_text_box(out, [text], corner="top-left", color=(255, 255, 255), background=(0, 0, 150),
                  full_width=True)
    return out


def compose_view(frame: Frame, *, side_by_side: bool = False, info: str | None = None,
                 notice: str | None = None, mirror: bool = False,
                 help_lines: list[str] | None = None) -> np.ndarray:
    """The preview picture: filtered (or original | filtered), plus info box and notice.

    Never draws into ``frame.image`` or ``frame.original``: other sinks share them.
    Without ``frame.original`` side by side falls back to the filtered picture alone.
    """
    image = cv2.flip(frame.image, 1) if mirror else frame.image
    if side_by_side and frame.original is not None:
        original = cv2.flip(frame.original, 1) if mirror else frame.original
        h, w = image.shape[:2]
        if original.shape[:2] != (h, w):
            oh, ow = original.shape[:2]
            original = cv2.resize(original, (max(1, round(ow * h / oh)), h), interpolation=cv2.INTER_AREA)
        image = np.hstack([original, image])
    if info:
        image = image.copy() if image is frame.image else image
        draw_text_box(image, [info])
    if help_lines:
        image = image.copy() if image is frame.image else image
        draw_text_box(image, help_lines, corner="top-right")
    if notice:
        image = draw_notice(image, notice)
    return image


class PreviewSink:
    """Shows frames in a window; its keys steer the view and can stop the pipeline.

    ``write`` never modifies ``frame.image`` (other sinks share it); overlays are drawn
    on a copy. FPS comes from the intervals between writes, latency from
    ``frame.capture_time`` to just after the picture was handed to the window system.
    """

    main_thread_only = True  # the pipeline must call it from the thread that created it

    def __init__(self, title: str = "livefilter", side_by_side: bool = False, overlay: bool = False,
                 *, max_size: tuple[int, int] = (1280, 720), mirror: bool = False,
                 controls: object | None = None) -> None:
        check_display()
        self.title = title
        self.mirror = mirror
        self.controls = controls  # key(int) -> bool, status() -> str, help_lines() -> list[str]
        self.show_help = False
        self.side_by_side = side_by_side
        self.overlay = overlay
        self.max_size = max_size
        self._notice: str | None = None
        self._last_frame: Frame | None = None
        self._shown_shape: tuple[int, int] | None = None
        self._times: deque[float] = deque()
        self._latencies: deque[tuple[float, float]] = deque()
        self._closed = False
        self._seen_visible = False
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as exc:
            raise LivefilterError(
                f"cannot open a preview window ({_first_line(exc)}); {_NO_DISPLAY_HINT}") from exc

    # -- statistics -----------------------------------------------------------------
    @property
    def fps(self) -> float | None:
        """Writes per second over the last second, once two writes were seen."""
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return None
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])

    @property
    def latency(self) -> float | None:
        """Mean capture-to-display latency in seconds over the last second."""
        if not self._latencies:
            return None
        return sum(lat for _, lat in self._latencies) / len(self._latencies)

    def _record(self, now: float, latency: float | None) -> None:
        self._times.append(now)
        while self._times and now - self._times[0] > _STATS_WINDOW_S:
            self._times.popleft()
        if latency is not None:
            self._latencies.append((now, latency))
        while self._latencies and now - self._latencies[0][0] > _STATS_WINDOW_S:
            self._latencies.popleft()

    # -- composition ----------------------------------------------------------------
    def info_line(self) -> str:
        """The overlay text: FPS and capture-to-display latency over the last second."""
        fps, latency = self.fps, self.latency
        fps_text = f"{fps:5.1f} fps" if fps is not None else "  --- fps"
        lat_text = f"latency {latency * 1000:4.0f} ms" if latency is not None else "latency  --- ms"
        status = getattr(self.controls, "status", None)
        return f"{fps_text}   {lat_text}" + (f"   {status()}" if status is not None else "")

    def help_lines(self) -> list[str]:
        extra = getattr(self.controls, "help_lines", None)
        return VIEW_KEYS + (extra() if extra is not None else [])

    def compose(self, frame: Frame) -> np.ndarray:
        """The picture the window shows for ``frame`` in the current view mode."""
        return compose_view(frame, side_by_side=self.side_by_side,
                            info=self.info_line() if self.overlay else None, notice=self._notice,
                            mirror=self.mirror, help_lines=self.help_lines() if self.show_help else None)

    # -- window ---------------------------------------------------------------------
    def _show(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self._shown_shape != (h, w):
            scale = min(1.0, self.max_size[0] / w, self.max_size[1] / h)
            cv2.resizeWindow(self.title, max(1, round(w * scale)), max(1, round(h * scale)))
            self._shown_shape = (h, w)
        cv2.imshow(self.title, image)

    def _poll(self) -> None:
        """Process window events and keys; raise StopPipeline when the user quits."""
        key = cv2.waitKey(1)
        if key != -1:
            key &= 0xFF
            if key in _QUIT_KEYS:
                raise StopPipeline("preview: quit key pressed")
            if key in _SIDE_KEYS:
                self.side_by_side = not self.side_by_side
            elif key in _INFO_KEYS:
                self.overlay = not self.overlay
            elif key in _HELP_KEYS:
                self.show_help = not self.show_help
            elif self.controls is not None:
                self.controls.key(key)
        try:
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE)
        except cv2.error:
            visible = 0
        # Only trust "not visible" once the backend has reported the window visible: a
        # backend without this property answers -1 from the start, and must not quit at once.
        if visible >= 1:
            self._seen_visible = True
        elif self._seen_visible:
            raise StopPipeline("preview: window closed")

    def write(self, frame: Frame) -> None:
        """Show ``frame``; raise StopPipeline if the user pressed q/Esc or closed the window."""
        if self._closed:
            raise StopPipeline("preview: window closed")
        self._last_frame = frame
        self._show(self.compose(frame))
        self._poll()
        now = time.monotonic()
        self._record(now, now - frame.capture_time)

    def show_notice(self, text: str | None) -> None:
        """Show (or, with None/"", clear) a banner such as "camera lost", redrawing at once."""
        self._notice = text or None
        if self._last_frame is not None and not self._closed:
            self._show(self.compose(self._last_frame))
            self._poll()

    def idle(self) -> None:
        """Keep the window responsive while no frame arrives (e.g. camera lost).

        Redraws the last good frame (with any notice) and handles keys, so q still quits
        and the window does not freeze. Call it every few tens of milliseconds while waiting.
        """
        if self._closed:
            raise StopPipeline("preview: window closed")
        if self._last_frame is not None:
            self._show(self.compose(self._last_frame))
        self._poll()

    def close(self) -> None:
        """Close the window; safe to call twice and after the user closed it."""
        if self._closed:
            return
        self._closed = True
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)  # let the window system process the destruction
        except cv2.error:
            pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1].strip() if text else type(exc).__name__
