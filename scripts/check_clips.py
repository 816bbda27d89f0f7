"""Convert every clip in a folder with `livefilter video` and check what the user was promised.

For each clip: frames in/out, timestamps identical, size kept (even-rounded only when odd),
audio packets identical (or transcoded), the audio's start against the video in the source and
the output (lip sync; see `livefilter.avsync`; must agree within 1 ms), wall time and conversion
fps. Prints a Markdown table.

    python scripts/check_clips.py ../shared/data/clips --style hayao
    python scripts/check_clips.py ../shared/data/clips --ext .mov --model tiny.onnx
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

# The checkout this script sits in, not whichever livefilter happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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


OFFSET_TOLERANCE = 0.001  # seconds


def audio_offset(src: Path, out: Path, copied: bool) -> tuple[str, str, bool]:
    """Source and output audio offsets (ms) and whether they agree within 1 ms.

    A copy keeps every packet, so the packet offset is compared; a transcode keeps the first
    decoded sample, so the decoded start is.
    """
    from livefilter.avsync import offsets

    a, b = offsets(src), offsets(out)
    if a is None:
        return "-", "-", True
    if b is None:
        return f"{a['packet'] * 1000:+.2f}", "lost", False
    key = "packet" if copied else "start"
    if a[key] is None or b[key] is None:
        return "?", "?", False
    ok = abs(a[key] - b[key]) < OFFSET_TOLERANCE
    mark = "" if copied else " (decoded)"
    return f"{a[key] * 1000:+.2f}{mark}", f"{b[key] * 1000:+.2f}", ok


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
    # Matroska and WebM count time in milliseconds: a timestamp moves by up to half of one.
    # They also have no negative timestamps, so when the audio starts before the video the
    # muxer shifts the whole file (both streams) forward; timestamps are compared from the
    # first frame on, and the audio offset column checks the streams against each other.
    tolerance = 0.0005 + 1e-6 if out.suffix in (".mkv", ".webm") else 1e-6
    shift = b["seconds"][0] - a["seconds"][0] if a["seconds"] and b["seconds"] else 0.0
    row.update(
        frames_in=a["frames"], frames_out=b["frames"],
        pts_same=len(a["seconds"]) == len(b["seconds"])
        and all(abs(x + shift - y) < tolerance for x, y in zip(a["seconds"], b["seconds"])),
        size_in=a["size"], size_out=b["size"],
        size_ok=b["size"] in (a["size"], (w + w % 2, h + h % 2), (h + h % 2, w + w % 2)),
        audio=("none" if a["audio_codec"] is None else
               "identical" if a["audio"] == b["audio"] else
               f"{a['audio_codec']}->{b['audio_codec']} ({len(b['audio'])}/{len(a['audio'])} pkts)"),
        fps=b["frames"] / elapsed if elapsed else 0.0,
    )
    row["offset_in"], row["offset_out"], row["offset_ok"] = audio_offset(clip, out, a["audio"] == b["audio"])
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
    parser.add_argument("--ext", default=".mp4", choices=[".mp4", ".mov", ".mkv", ".webm"],
                        help="output container (default .mp4)")
    args = parser.parse_args()
    model_args: list[str] = []
    for name in ("style", "model", "resolution", "temporal", "threads"):
        value = getattr(args, name)
        if value is not None:
            model_args += [f"--{name}", str(value)]
    clips = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in {".mp4", ".mpg", ".avi", ".mkv", ".mov", ".webm"})
    if args.only:
        clips = [p for p in clips if p.name in args.only]
    print(f"output container: {args.ext}")
    print("| clip | size in -> out | frames in/out | pts same | audio | audio offset in ms | out ms "
          "| wall s | fps | CPU ms/frame |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            row = check(clip, Path(tmp) / f"{clip.stem}{args.ext}", model_args)
            if row["code"] != 0:
                failures += 1
                print(f"| {row['clip']} | FAILED ({row['code']}): {row['message'].splitlines()[-1]} | | | | | | | | |")
                continue
            ok = (row["frames_in"] == row["frames_out"] and row["pts_same"] and row["size_ok"]
                  and row["offset_ok"])
            failures += not ok
            size = f"{row['size_in'][0]}x{row['size_in'][1]} -> {row['size_out'][0]}x{row['size_out'][1]}"
            print(f"| {row['clip']} | {size} | {row['frames_in']}/{row['frames_out']} | "
                  f"{'yes' if row['pts_same'] else 'NO'} | {row['audio']} | {row['offset_in']} | "
                  f"{row['offset_out']}{'' if row['offset_ok'] else ' NO'} | {row['seconds']:.1f} | "
                  f"{row['fps']:.1f} | {1000 * row['cpu'] / max(1, row['frames_out']):.0f} |", flush=True)
    print(f"\n{len(clips) - failures} of {len(clips)} clips fully OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
