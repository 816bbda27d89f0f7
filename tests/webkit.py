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
