"""Memory of `livefilter serve` over many uploads: does its RSS stay flat?

    python scripts/web_soak.py --uploads 200 --max-seconds 900

Starts the server on a free loopback port (the installed default style, or --styles-dir), then
uploads ``--uploads`` different small photos one after another (a few clips among them), each
waited for until done, and prints the server's RSS (from /proc) every 20 uploads. Different
bytes each time, so nothing comes from the cache; the cache is on, with a small cap, so its
eviction runs too. Bounded by count and by --max-seconds; loopback only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from webkit import Server, jpeg, wait_job  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--styles-dir", type=Path, default=None)
    parser.add_argument("--every", type=int, default=20, help="print RSS every N uploads")
    args = parser.parse_args()
    import httpx

    from conftest import draw_frame, make_clip

    work = Path(tempfile.mkdtemp(prefix="lf-web-soak-"))
    srv = Server(args.styles_dir, work / "cache", "--cache-mb", "2", "--resolution", "256", log=work / "server.txt")
    pid = srv.proc.pid
    samples = []
    started = time.monotonic()
    failed = 0
    try:
        with httpx.Client(base_url=srv.url, timeout=300) as client:
            samples.append({"uploads": 0, "rss_mb": round(rss_mb(pid), 1)})
            for i in range(args.uploads):
                if time.monotonic() - started > args.max_seconds:
                    break
                if i % 25 == 24:
                    path = make_clip(work / f"c{i}.mp4", frames=15 + i // 25, width=320, height=180, audio=True)
                    data, name = path.read_bytes(), "clip.mp4"
                    path.unlink()
                else:
                    image = draw_frame(i, 640, 480)
                    image[0, 0] = (i % 256, i // 256, 7)  # different bytes every time: no cache hits
                    data, name = jpeg(image, 90), "photo.jpg"
                response = client.post("/api/jobs", files={"file": (name, data)})
                if response.status_code == 200:  # a cache hit would not exercise the worker
                    raise SystemExit("unexpected cache hit")
                final, _ = wait_job(client, response.json()["id"], timeout=300)
                failed += final["state"] != "done"
                client.get(f"/api/jobs/{final['id']}/result")
                if (i + 1) % args.every == 0:
                    samples.append({"uploads": i + 1, "rss_mb": round(rss_mb(pid), 1),
                                    "seconds": round(time.monotonic() - started, 1),
                                    "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3])})
                    print(json.dumps(samples[-1]), flush=True)
    finally:
        srv.stop()
    after_warmup = [s["rss_mb"] for s in samples if s["uploads"] >= 2 * args.every]
    print(json.dumps({"uploads_done": samples[-1]["uploads"], "failed": failed,
                      "rss_mb_first": samples[1]["rss_mb"] if len(samples) > 1 else None,
                      "rss_mb_last": samples[-1]["rss_mb"],
                      "rss_mb_growth_after_warmup": round(after_warmup[-1] - after_warmup[0], 1) if after_warmup else None},
                     indent=2))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
