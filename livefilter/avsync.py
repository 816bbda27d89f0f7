"""Audio-against-video timing of a file, measured the way a player sees it.

Lip sync is the promise users notice first, so the conversion tests and
``scripts/check_clips.py`` measure it the same way, from three angles:

- ``packet``: first audio packet minus first video packet (presentation times as the demuxer
  gives them, edit lists applied). A packet copy must keep this exactly.
- ``start``: first decoded audio frame minus first decoded video frame. The decoder drops the
  codec's priming where the container signals it (Opus pre-skip; an MP4 edit list trimming a
  track that starts with or before the video), so there this is the first audible sample. A
  late MP4 track keeps its AAC priming as silence inside the empty edit instead.
- ``onset``: the first sample louder than a threshold, from the first video frame on, minus
  that frame; counted sample by sample, so it holds whatever the container says about priming.
  Audio before the first frame is left out: an MP4 edit list trims it, while Matroska keeps it
  (as ``ffmpeg -c:a copy`` does) ahead of the picture, where it moves nothing against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VIDEO_PACKETS = 32  # B-frames: the earliest pts is among the first packets in decode order


def _first_video_packet(container) -> float | None:
    video = container.streams.video[0]
    stamps = []
    for packet in container.demux(video):
        if packet.pts is not None:
            stamps.append(float(packet.pts * packet.time_base))
        if len(stamps) >= VIDEO_PACKETS:
            break
    return min(stamps) if stamps else None


def _first_video_frame(container) -> float | None:
    video = container.streams.video[0]
    for frame in container.decode(video):
        if frame.pts is not None:
            return float(frame.pts * frame.time_base)
    return None


def offsets(path: str | Path, threshold: float | None = None) -> dict[str, float | None] | None:
    """Offsets in seconds (audio minus video) for ``path``; None when it has no audio or video.

    ``threshold`` (linear, full scale 1.0) also measures ``onset``; leave it out for real clips
    whose first sound is not a clean step.
    """
    import av

    path = str(path)
    with av.open(path) as container:
        if not container.streams.video or not container.streams.audio:
            return None
    result: dict[str, float | None] = {"packet": None, "start": None, "onset": None}
    with av.open(path) as container:
        video = _first_video_packet(container)
    with av.open(path) as container:
        audio = next((float(p.pts * p.time_base) for p in container.demux(container.streams.audio[0])
                      if p.pts is not None and p.size), None)
    if video is not None and audio is not None:
        result["packet"] = audio - video
    with av.open(path) as container:
        video_frame = _first_video_frame(container)
    if video_frame is None:
        return result
    with av.open(path) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            start = float(frame.pts * frame.time_base)
            if result["start"] is None:
                result["start"] = start - video_frame
                if threshold is None:
                    break
            samples = np.abs(frame.to_ndarray().astype(np.float64)) / _full_scale(frame.format.name)
            if not frame.format.is_planar:  # packed: channels interleaved in one row
                samples = samples.reshape(-1, max(1, frame.layout.nb_channels)).T
            times = start + np.arange(samples.shape[-1]) / frame.sample_rate
            loud = np.nonzero((samples.max(axis=0) > threshold) & (times >= video_frame - 1e-9))[0] \
                if samples.size else []
            if len(loud):
                result["onset"] = float(times[loud[0]]) - video_frame
                break
    return result


def _full_scale(sample_format: str) -> float:
    """The value of a full-scale sample in a PyAV audio format (floats are already 1.0)."""
    base = sample_format.rstrip("p")
    return {"s16": 32768.0, "s32": 2147483648.0, "s64": 9.2e18}.get(base, 1.0)
