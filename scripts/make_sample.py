#!/usr/bin/env python3
"""Re-encode one GRID corpus clip into the small H.264 + AAC sample that `livefilter demo` converts.

The GRID audiovisual sentence corpus (Cooke, Barker, Cunningham and Shao, 2006) is released under
CC BY 4.0, so a re-encoded clip may ship with attribution (livefilter/samples/README.md). The
clip is held out of the students' training, so the demo shows a face they never saw.

  python scripts/make_sample.py ../shared/data/clips/lipnet_grid_lrwp9a.mpg livefilter/samples/grid_lrwp9a.mp4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av


def reencode(src: Path, dst: Path, crf: int = 26, audio_kbps: int = 48) -> None:
    """Every frame and the whole soundtrack, same size and rate, into H.264 (yuv420p) + AAC."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "+faststart"}) as out:
        v_in = inp.streams.video[0]
        a_in = inp.streams.audio[0] if inp.streams.audio else None
        rate = v_in.average_rate or 25
        v_out = out.add_stream("libx264", rate=rate,
                               options={"crf": str(crf), "preset": "slow", "bf": "0"})
        v_out.width, v_out.height, v_out.pix_fmt = v_in.codec_context.width, v_in.codec_context.height, "yuv420p"
        a_out = None
        if a_in is not None:
            a_out = out.add_stream("aac", rate=a_in.codec_context.sample_rate)
            a_out.bit_rate = audio_kbps * 1000
            a_out.layout = "mono"
        streams = [s for s in (v_in, a_in) if s is not None]
        index = 0
        for packet in inp.demux(*streams):
            for frame in packet.decode():
                if packet.stream.type == "video":
                    frame = frame.reformat(format="yuv420p")
                    frame.pts, frame.time_base = index, 1 / rate
                    index += 1
                    out.mux(v_out.encode(frame))
                else:
                    frame.pts = None
                    out.mux(a_out.encode(frame))
        out.mux(v_out.encode(None))
        if a_out is not None:
            out.mux(a_out.encode(None))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--crf", type=int, default=26)
    args = parser.parse_args()
    reencode(args.input, args.output, args.crf)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
