#!/usr/bin/env python
"""The 1280x720 30 fps talking-head clip the live and conversion figures are measured on.

    python scripts/make_call_clip.py ../shared/data/clips/liveportrait_source_s18.mp4 \\
        ../shared/data/clips/liveportrait_source_s32.mp4 --out call720.mp4

Joins the clips' pictures (sound is not needed for the live bench), each brought to 1280x720
(cubic; the two above already are), and encodes them with x264 at 30 fps, crf 20.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
import cv2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", default="1280x720")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    frames = 0
    with av.open(str(args.out), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"crf": "20"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for clip in args.clips:
            with av.open(str(clip)) as inp:
                for frame in inp.decode(video=0):
                    image = frame.to_ndarray(format="bgr24")
                    if image.shape[:2] != (height, width):
                        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
                    for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                        out.mux(packet)
                    frames += 1
        for packet in stream.encode():
            out.mux(packet)
    print(f"{args.out}: {frames} frames, {width}x{height} at 30 fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
