"""Measure `livefilter serve` on this machine: live page fps and round trip in headless Chromium,
photo conversion time after upload, clip speed against `python -m livefilter video`; optionally
take screenshots of the pages at phone and desktop width.

    python scripts/web_bench.py --seconds 20 --screens /tmp/screens

Loopback only; uses the installed default style unless --style/--model say otherwise, the
system chromium and chromedriver (nothing is downloaded). Speeds depend on the load of the
machine: the load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from webkit import Server, chrome, jpeg, wait_job, write_y4m  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def camera_clip(width: int, height: int, count: int) -> list[np.ndarray]:
    """Frames for the fake camera: a shared face clip letterboxed to width x height, else shapes."""
    import av
    import cv2

    frames = []
    clip = next(iter(sorted((SHARED / "clips").glob("liveportrait_driving_*.mp4"))), None) if SHARED.exists() else None
    if clip is not None:
        with av.open(str(clip)) as container:
            for frame in container.decode(video=0):
                image = frame.to_ndarray(format="bgr24")
                scale = height / image.shape[0]
                image = cv2.resize(image, (round(image.shape[1] * scale), height))
                canvas = np.full((height, width, 3), 90, np.uint8)
                x = (width - image.shape[1]) // 2
                canvas[:, x:x + image.shape[1]] = image
                frames.append(canvas)
                if len(frames) == count:
                    break
    if not frames:
        from conftest import draw_frame

        frames = [draw_frame(i, width, height) for i in range(count)]
    return frames


def measure_live(url: str, work: Path, seconds: float, size: tuple[int, int]) -> dict:
    y4m = write_y4m(work / "camera.y4m", camera_clip(*size, 90))
    driver = chrome(work / "profile-live", y4m)
    try:
        driver.get(url + "/live")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (driver.execute_script("return window.livefilterStats.framesShown") or 0) > 20:
                break
            time.sleep(0.2)
        start_frames = driver.execute_script("return window.livefilterStats.framesShown")
        driver.execute_script("window._lat = []; window._t0 = performance.now();")
        started = time.monotonic()
        fps_samples = []
        p95_samples = []
        while time.monotonic() - started < seconds:
            time.sleep(1.0)
            stats = driver.execute_script("return window.livefilterStats")
            fps_samples.append(stats["fps"])
            p95_samples.append(stats["latencyMsP95"])
        stats = driver.execute_script("return window.livefilterStats")
        elapsed = time.monotonic() - started
        shown = stats["framesShown"] - start_frames
        width = driver.execute_script("return document.getElementById('capture').width")
        height = driver.execute_script("return document.getElementById('capture').height")
        return {"frame_size": f"{width}x{height}", "seconds": round(elapsed, 1), "frames_shown": shown,
                "fps_overall": round(shown / elapsed, 1), "fps_shown_median": round(statistics.median(fps_samples), 1),
                "p50_ms_last200": round(stats["latencyMsP50"]), "p95_ms_last200": round(stats["latencyMsP95"]),
                "p95_ms_median_of_samples": round(statistics.median(p95_samples)), "errors": stats["errors"],
                "loadavg": loadavg()}
    finally:
        driver.quit()


def measure_photos(client, photos: list[Path]) -> list[dict]:
    out = []
    for path in photos:
        data = path.read_bytes()
        t0 = time.monotonic()
        response = client.post("/api/jobs", files={"file": (path.name, data)})
        t1 = time.monotonic()
        job = response.json()
        while job["state"] not in ("done", "failed"):
            time.sleep(0.005)
            job = client.get(f"/api/jobs/{job['id']}").json()
        t2 = time.monotonic()
        import cv2

        h, w = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        out.append({"photo": path.name, "size": f"{w}x{h}", "state": job["state"],
                    "upload_and_check_s": round(t1 - t0, 3), "after_upload_s": round(t2 - t1, 3),
                    "loadavg": loadavg()})
    return out


def measure_clip(client, clip: Path, style_args: list[str], work: Path, rounds: int = 3) -> dict:
    """`livefilter video` and the server on the same clip, alternating, ``rounds`` times each.

    CLI time is the wall time of the whole command (model loading included) and the frame rate
    it prints itself; server time runs from the start of the upload to the done state.
    """
    out = work / "cli.mp4"
    cli, web = [], []
    frames = 0
    for _ in range(rounds):
        t0 = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "livefilter", "video", str(clip), str(out), "--overwrite",
                              *style_args], cwd=REPO, capture_output=True, text=True)
        said = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
        cli.append({"wall_s": round(time.monotonic() - t0, 2), "says": said, "loadavg": loadavg()})
        t0 = time.monotonic()
        response = client.post("/api/jobs", files={"file": (clip.name, clip.read_bytes())})
        job, seen = wait_job(client, response.json()["id"], timeout=900)
        seconds = time.monotonic() - t0
        frames = job["frames_done"]
        running = [s["fps"] for s in seen if s["state"] == "running" and s["fps"]]
        web.append({"upload_to_done_s": round(seconds, 2), "fps": round(frames / seconds, 1),
                    "job_fps_last_seen": running[-1] if running else None, "loadavg": loadavg()})
    cli_fps = [float(c["says"].rsplit("(", 1)[1].split()[0]) for c in cli if "(" in c["says"]]
    return {"clip": clip.name, "frames": frames, "cli": cli, "web": web,
            "cli_fps_median_as_printed": statistics.median(cli_fps) if cli_fps else None,
            "web_fps_median_upload_to_done": statistics.median(w["fps"] for w in web),
            "cli_fps_median_wall": statistics.median(round(frames / c["wall_s"], 1) for c in cli),
            "web_job_fps_median": statistics.median(w["job_fps_last_seen"] for w in web if w["job_fps_last_seen"])}


def screenshots(url: str, client, work: Path, folder: Path, photos: list[Path], clip: Path | None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    y4m = write_y4m(work / "camera-shot.y4m", camera_clip(640, 360, 60))
    saved = []
    for label, size in (("phone", (390, 844)), ("desktop", (1280, 800))):
        driver = chrome(work / f"profile-{label}", y4m, size=size)
        # the exact viewport (headless windows are at least 500 px wide); phones are "mobile"
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": label == "phone"})
        try:
            driver.get(url + "/")
            time.sleep(1)
            inp = driver.find_element("id", "files")
            inp.send_keys("\n".join(str(p) for p in photos[:2] + ([clip] if clip else [])))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if driver.execute_script("return document.querySelectorAll('.item[data-state=done]').length") >= len(photos[:2]) + (1 if clip else 0):
                    break
                time.sleep(0.3)
            time.sleep(1)
            driver.execute_script("document.querySelectorAll('.compare').forEach(b => b.style.setProperty('--pos', '45%'))")
            path = folder / f"upload-{label}.png"
            driver.save_screenshot(str(path))
            saved.append(str(path))
            driver.get(url + "/live")
            time.sleep(6)
            path = folder / f"live-{label}.png"
            driver.save_screenshot(str(path))
            saved.append(str(path))
            driver.find_element("id", "sbs").click()
            time.sleep(2)
            path = folder / f"live-side-by-side-{label}.png"
            driver.save_screenshot(str(path))
            saved.append(str(path))
        finally:
            driver.quit()
    return saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="live measurement length")
    parser.add_argument("--style", default=None)
    parser.add_argument("--screens", type=Path, help="save screenshots here")
    parser.add_argument("--skip", nargs="*", default=[], choices=["live", "photo", "clip"])
    args = parser.parse_args()
    import httpx

    work = Path(tempfile.mkdtemp(prefix="lf-web-bench-"))
    style_args = ["--style", args.style] if args.style else []
    srv = Server(None, work / "cache", "--cache-mb", "0", "--resolution", "256", *style_args, log=work / "server.txt")
    results: dict = {"started_loadavg": loadavg()}
    try:
        with httpx.Client(base_url=srv.url, timeout=600) as client:
            results["style"] = client.get("/api/styles").json()["default"] if not args.style else args.style
            photos = sorted((SHARED / "photos" / "faces").glob("*.jpg"))[:3] if SHARED.exists() else []
            if not photos:
                from webkit import red_picture

                photos = [work / "p.jpg"]
                photos[0].write_bytes(jpeg(red_picture(1280, 720)))
            big = work / "phone-photo-4032x3024.jpg"
            import cv2

            base = cv2.imread(str(photos[0]))
            big.write_bytes(jpeg(cv2.resize(base, (4032, 3024)), 90))
            if "photo" not in args.skip:
                measure_photos(client, photos[:1])  # warm up: loads the model
                results["photos"] = measure_photos(client, photos + [big])
            clips = sorted((SHARED / "clips").glob("liveportrait_driving_*.mp4")) if SHARED.exists() else []
            clip = clips[0] if clips else None
            if clip is None:
                from conftest import make_clip

                clip = make_clip(work / "shapes.mp4", frames=150, width=640, height=360)
            if "clip" not in args.skip:
                results["clip"] = measure_clip(client, clip, style_args, work)
            if "live" not in args.skip:
                results["live"] = measure_live(srv.url, work, args.seconds, (640, 360))
            if args.screens:
                results["screens"] = screenshots(srv.url, client, work, args.screens, photos, clip)
    finally:
        srv.stop()
    results["server_log_live"] = [line for line in srv.text().splitlines() if "live connection closed" in line]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
