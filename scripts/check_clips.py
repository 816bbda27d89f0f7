"""Convert every clip in a folder with `livefilter video` and check what the user was promised.

For each clip: frames in/out, timestamps identical, size kept (even-rounded only when odd),
audio packets identical (or transcoded), wall time and conversion fps. Prints a Markdown table.

    python scripts/check_clips.py ../shared/data/clips --style hayao
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path


def probe(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        tb = video.time_base
        size = (video.codec_context.width, video.codec_context.height)
        seconds = [float(f.pts * tb) for f in container.decode(video)]
    with av.open(str(path)) as container:
        audio = []
        codec = None
        if container.streams.audio:
            stream = container.streams.audio[0]
            codec = stream.codec_context.name
            audio = [bytes(p) for p in container.demux(stream) if p.size]
    return {"frames": len(seconds), "seconds": seconds, "size": size, "audio": audio,
            "audio_codec": codec}


def _cpu_seconds() -> float:
    """CPU time of this process (all threads): a speed figure that other load on the machine
    distorts far less than wall time."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def check(clip: Path, out: Path, model_args: list[str]) -> dict:
    from livefilter.cli import main

    started, cpu_started = time.monotonic(), _cpu_seconds()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["video", str(clip), str(out), "--overwrite", *model_args])
    elapsed, cpu = time.monotonic() - started, _cpu_seconds() - cpu_started
    row = {"clip": clip.name, "code": code, "seconds": elapsed, "cpu": cpu,
           "message": err.getvalue().strip()}
    if code != 0:
        return row
    a, b = probe(clip), probe(out)
    w, h = a["size"]
    row.update(
        frames_in=a["frames"], frames_out=b["frames"],
        pts_same=len(a["seconds"]) == len(b["seconds"])
        and all(abs(x - y) < 1e-6 for x, y in zip(a["seconds"], b["seconds"])),
        size_in=a["size"], size_out=b["size"],
        size_ok=b["size"] in (a["size"], (w + w % 2, h + h % 2), (h + h % 2, w + w % 2)),
        audio=("none" if a["audio_codec"] is None else
               "identical" if a["audio"] == b["audio"] else
               f"{a['audio_codec']}->{b['audio_codec']} ({len(b['audio'])}/{len(a['audio'])} pkts)"),
        fps=b["frames"] / elapsed if elapsed else 0.0,
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--style", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--resolution", default=None)
    parser.add_argument("--temporal", default=None)
    parser.add_argument("--threads", default=None)
    parser.add_argument("--only", nargs="*", default=None, help="clip names to run")
    args = parser.parse_args()
    model_args: list[str] = []
    for name in ("style", "model", "resolution", "temporal", "threads"):
        value = getattr(args, name)
        if value is not None:
            model_args += [f"--{name}", str(value)]
    clips = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in {".mp4", ".mpg", ".avi", ".mkv", ".mov", ".webm"})
    if args.only:
        clips = [p for p in clips if p.name in args.only]
    print("| clip | size in -> out | frames in/out | pts same | audio | wall s | fps | CPU ms/frame |")
    print("|---|---|---|---|---|---|---|---|")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            row = check(clip, Path(tmp) / f"{clip.stem}.mp4", model_args)
            if row["code"] != 0:
                failures += 1
                print(f"| {row['clip']} | FAILED ({row['code']}): {row['message'].splitlines()[-1]} | | | | | | |")
                continue
            ok = row["frames_in"] == row["frames_out"] and row["pts_same"] and row["size_ok"]
            failures += not ok
            size = f"{row['size_in'][0]}x{row['size_in'][1]} -> {row['size_out'][0]}x{row['size_out'][1]}"
            print(f"| {row['clip']} | {size} | {row['frames_in']}/{row['frames_out']} | "
                  f"{'yes' if row['pts_same'] else 'NO'} | {row['audio']} | {row['seconds']:.1f} | "
                  f"{row['fps']:.1f} | {1000 * row['cpu'] / max(1, row['frames_out']):.0f} |", flush=True)
    print(f"\n{len(clips) - failures} of {len(clips)} clips fully OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
