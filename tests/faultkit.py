"""Helpers for the fault tests: odd and damaged media made on the spot, CLI runs in a
subprocess with a time limit, and checks for "one clean line" and "playable output".

Kept apart from conftest.py so the fault, fuzz and soak tests share them without making the
shared fixtures file grow; everything here is built by the tests themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# --- running the CLI -----------------------------------------------------------------------
def cli_env() -> dict[str, str]:
    """The environment for `python -m livefilter`: this checkout first on the path, no debug."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("LIVEFILTER_DEBUG", None)
    return env


def cli_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "livefilter", *map(str, args)]


def run_cli(*args: object, timeout: float = 60,
            preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """One CLI run; a hang fails the test through TimeoutExpired instead of blocking the suite."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout,
                          env=cli_env(), preexec_fn=preexec_fn)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("livefilter: error:")]


def assert_no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "set LIVEFILTER_DEBUG=1" not in result.stderr, result.stderr  # an unexpected exception


def assert_clean_refusal(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit with exactly one `livefilter: error:` line, the last thing printed."""
    assert_no_traceback(result)
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# --- checking outputs ----------------------------------------------------------------------
def decodable(path: Path) -> dict:
    """What a player gets out of ``path``: decodable video frames (stopping at the first damage,
    as a player would), their size, and the number of audio packets. Never raises for damage."""
    import av

    info = {"frames": 0, "size": None, "audio_packets": 0, "seconds": []}
    try:
        container = av.open(str(path))
    except av.FFmpegError:
        return info
    with container:
        if not container.streams.video:
            return info
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                info["frames"] += 1
                info["size"] = (frame.width, frame.height)
                if frame.pts is not None:
                    info["seconds"].append(float(frame.pts * stream.time_base))
        except av.FFmpegError:
            pass
    try:
        with av.open(str(path)) as container:
            if container.streams.audio:
                try:
                    for packet in container.demux(container.streams.audio[0]):
                        info["audio_packets"] += bool(packet.size)
                except av.FFmpegError:
                    pass
    except av.FFmpegError:
        pass
    return info


# --- damaging media ---------------------------------------------------------------------
def garbage_in_middle(data: bytes, size: int, seed: int = 0) -> bytes:
    out = bytearray(data)
    start = len(out) // 2 - size // 2
    out[start:start + size] = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    return bytes(out)


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One random damage of the kinds files really suffer; returns (bytes, description)."""
    out = bytearray(data)
    n = len(out)
    kind = str(rng.choice(["flip", "zero", "chunk", "truncate", "dup", "delete", "header"]))
    if kind == "flip":
        for offset in rng.integers(0, n, int(rng.integers(1, 60))):
            out[int(offset)] ^= 1 << int(rng.integers(0, 8))
    elif kind == "zero":
        start = int(rng.integers(0, n))
        end = min(n, start + int(rng.integers(16, 4096)))
        out[start:end] = bytes(end - start)
    elif kind == "chunk":
        start, size = int(rng.integers(0, n)), int(rng.integers(16, 2048))
        out[start:start + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    elif kind == "truncate":
        out = out[:int(rng.integers(1, n))]
    elif kind == "dup":
        start, size = int(rng.integers(0, n)), int(rng.integers(16, 4096))
        out[start:start] = out[start:start + size]
    elif kind == "delete":
        start = int(rng.integers(0, n))
        del out[start:start + int(rng.integers(1, 4096))]
    else:  # damage inside the first kilobyte: box sizes, codec headers
        for offset in rng.integers(0, min(n, 1024), int(rng.integers(1, 8))):
            out[int(offset)] = int(rng.integers(0, 256))
    return bytes(out), kind
