"""Helpers for the web tests: run the real `livefilter serve` on a free port and talk to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


class Server:
    """`python -m livefilter serve ... --port 0` in a subprocess; ``url`` once it listens."""

    def __init__(self, styles_dir: Path | None, cache_dir: Path, *extra: str, log: Path) -> None:
        args = [sys.executable, "-m", "livefilter", "serve", "--port", "0", "--cache-dir", str(cache_dir),
                "--resolution", "64", *extra]
        if styles_dir is not None:
            args += ["--styles-dir", str(styles_dir)]
        self.log = log
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=open(log, "w"), env=env)
        self.url = self._wait_for_url()
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))

    def _wait_for_url(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            for line in text.splitlines():
                if "serving on " in line:
                    url = line.split("serving on ", 1)[1].split()[0].rstrip("/")
                    # the socket is bound before the line is printed; wait until uvicorn answers
                    if _answers(url):
                        return url
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {text[-2000:]}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def text(self) -> str:
        return self.log.read_text()


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/api/styles", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def raw(port: int, request: bytes, read_timeout: float = 20.0) -> bytes:
    """Send raw bytes, return what the server answers (up to 64 kB)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(request)
        return _read_some(sock)


def _read_some(sock: socket.socket) -> bytes:
    data = b""
    try:
        while len(data) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if not length or len(body) >= length[0]:
                    break
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


def jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def png(image: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def decode(data: bytes) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a picture"
    return image


def red_picture(width: int = 160, height: int = 120) -> np.ndarray:
    """Mostly red (BGR) with a grey stripe: the test style swaps red and blue."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = (30, 40, 220)
    image[height // 3: height // 2] = 128
    return image


def wait_job(client, job_id: str, timeout: float = 120.0) -> tuple[dict, list[dict]]:
    """Poll until done or failed; returns the final status and every status seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        status = response.json()
        seen.append(status)
        if status["state"] in ("done", "failed"):
            return status, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {seen[-1] if seen else None}")


# --- a real browser (Debian's chromium + chromium-driver, never downloaded) ----------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install .[test])"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """A 4:2:0 (C420jpeg) y4m file for Chromium's fake camera; BGR frames, even sizes."""
    import cv2

    height, width = frames[0].shape[:2]
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            handle.write(b"FRAME\n")
            handle.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())  # Y, then U, then V
    return path


def camera_frames(width: int = 320, height: int = 180, count: int = 30) -> list[np.ndarray]:
    """Red background, a white bar moving across: the "swap" style turns the red blue."""
    import cv2

    frames = []
    for i in range(count):
        image = np.zeros((height, width, 3), np.uint8)
        image[:] = (30, 40, 220)
        x = (i * width // count) % width
        cv2.rectangle(image, (x, 0), (x + width // 8, height - 1), (255, 255, 255), -1)
        frames.append(image)
    return frames


def chrome(user_data_dir: Path, y4m: Path | None = None, size: tuple[int, int] = (1280, 800)):
    """Headless Chromium through the system chromedriver (Selenium Manager never runs)."""
    os.environ["SE_OFFLINE"] = "true"  # belt and braces: Selenium Manager must not download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-default-apps", "--disable-extensions",
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 f"--user-data-dir={user_data_dir}", f"--window-size={size[0]},{size[1]}",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
        options.add_argument(flag)
    if y4m is not None:
        options.add_argument(f"--use-file-for-fake-video-capture={Path(y4m).resolve()}")
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


CANVAS_PIXELS = """
const c = document.getElementById(arguments[0]);
if (!c || !c.width) return null;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let r = 0, g = 0, b = 0; const n = d.length / 4; const cells = [];
for (let i = 0; i < d.length; i += 4) { r += d[i]; g += d[i + 1]; b += d[i + 2]; }
const step = Math.max(1, Math.floor(c.width / 16));
for (let x = 0; x < c.width; x += step) { const i = 4 * (Math.floor(c.height / 2) * c.width + x); cells.push(d[i] + d[i + 1] + d[i + 2]); }
return {r: r / n, g: g / n, b: b / n, w: c.width, h: c.height, row: cells};
"""
