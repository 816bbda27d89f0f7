"""Video file sink: H.264 (or VP9 for .webm) with the source's timestamps and audio.

What the user is promised: every frame written with its own pts in the input's time base (so
29.97 fps and variable frame rate survive), the input's audio copied packet for packet when
the container accepts the codec (else transcoded), and no half-written file under the final
name: the output goes to a hidden temporary file beside the target and is renamed at the end.
Audio is muxed alongside the video as it progresses, so an interrupted run still has the audio
up to the last converted frame.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from livefilter.errors import LivefilterError
from livefilter.frames import Frame

log = logging.getLogger("livefilter")

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
VIDEO_ENCODERS = {
    "webm": ["libvpx-vp9", "libvpx"],
    "default": ["libx264", "h264", "libopenh264", "mpeg4"],
}
AUDIO_ENCODERS = {"webm": ["libopus", "opus", "libvorbis", "vorbis"], "default": ["aac"]}
# x264's ultrafast: at 720p it costs 4 ms of CPU a frame against 11 for veryfast, for the same
# picture (crf 18) at about 2.4x the bitrate (3.0 against 1.3 Mbit/s on a talking head), which
# is still an ordinary 720p bitrate. Conversion is CPU-bound on 2 cores, so a 720p clip converts
# about 20% faster; --preset veryfast gives the smaller file.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")
DEFAULT_X264_PRESET = "ultrafast"
ENCODER_OPTIONS = {
    "libx264": {"preset": DEFAULT_X264_PRESET, "crf": "18", "bf": "0"},
    "libvpx-vp9": {"deadline": "good", "cpu-used": "5", "row-mt": "1", "crf": "30", "b": "0"},
    "libvpx": {"deadline": "good", "cpu-used": "5", "crf": "10", "b": "2M"},
    "mpeg4": {"qscale": "3"},
}
# Fragmented MP4/MOV (a fragment about every second): whatever happens to the process (crash,
# power loss, disk full), the file on disk stays playable up to the last complete fragment.
# ``delay_moov`` holds the moov back until the first fragment is cut, so it is written once
# every stream's first timestamp is known: the edit lists then keep a late or early audio start
# and the AAC priming trim of the source (with a plain empty_moov every track starts at 0 and
# the audio moves against the video).
# The edit lists' shifts are counted in the movie timescale: FFmpeg's default of 1000 rounds a
# late start to whole milliseconds (45.67 ms -> 45 ms); 48000 keeps it to the audio sample.
MOV_FLAGS = "+frag_keyframe+empty_moov+delay_moov+default_base_moof+negative_cts_offsets"
CONTAINER_OPTIONS = {
    "mp4": {"movflags": MOV_FLAGS, "frag_duration": "1000000", "movie_timescale": "48000"},
    "mov": {"movflags": MOV_FLAGS, "frag_duration": "1000000", "movie_timescale": "48000"},
}
_SMPTE170M = 6  # FFmpeg's AVCOL_SPC_SMPTE170M: the BT.601 matrix
_MPEG_RANGE = 1  # AVCOL_RANGE_MPEG: limited range (16-235)
AUDIO_LEAD = 0.25  # seconds of audio muxed ahead of the video, so players start with both


def _to_video_frame(image: np.ndarray, pix_fmt: str):
    """The encoder's frame for a BGR picture of even size.

    OpenCV's BGR to I420 gives FFmpeg's default conversion (BT.601, limited range, within one
    level) at a third of the CPU time: 1.4 against 3.8 ms a 720p frame, a tenth of a frame's
    budget in conversion.
    """
    import av
    import cv2

    if pix_fmt == "yuv420p":
        return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")


def _available(name: str) -> bool:
    import av

    try:
        av.Codec(name, "w")
        return True
    except Exception:
        return False


def pick_encoder(candidates: list[str]) -> str:
    """First encoder this PyAV build has; says so when it is not the preferred one."""
    for name in candidates:
        if _available(name):
            if name != candidates[0]:
                log.warning("%s is not available in this PyAV build; encoding with %s",
                            candidates[0], name)
            return name
    raise LivefilterError(f"no usable video encoder in this PyAV build (tried {', '.join(candidates)})")


def same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output(path: Path, inputs: list[Path], overwrite: bool) -> str:
    """Refuse outputs that would destroy something; returns the container format name."""
    fmt = CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise LivefilterError(f"unsupported output extension '{path.suffix}' for {path} "
                              f"(use {', '.join(CONTAINERS)})")
    for source in inputs:
        if same_file(path, source):
            raise LivefilterError(f"output is the same file as the input: {path}")
    if path.is_dir():
        raise LivefilterError(f"output is a folder: {path}")
    if path.exists() and not overwrite:
        raise LivefilterError(f"output already exists: {path} (use --overwrite to replace it)")
    if not path.parent.is_dir():
        raise LivefilterError(f"output folder does not exist: {path.parent}")
    return fmt


class VideoFileSink:
    """Encodes frames to ``path``; audio from ``template`` (usually the input file) when present."""

    takes_i420 = True  # frames already in the encoder's layout are written as they are

    def __init__(self, path: str | Path, template: str | Path | None = None, fps: float | None = None,
                 size: tuple[int, int] | None = None, overwrite: bool = False,
                 audio: bool = True, preset: str | None = None) -> None:
        self.path = Path(path)
        if preset is not None and preset not in X264_PRESETS:
            raise LivefilterError(f"unknown preset '{preset}' (choose one of {', '.join(X264_PRESETS)})")
        self.preset = preset
        self.template = Path(template) if template is not None else None
        self.format = check_output(self.path, [self.template] if self.template else [], overwrite)
        self.fps = fps or 30.0
        self.size = size
        self.audio = audio
        self.frames_written = 0
        self.audio_packets_skipped = 0
        self.tmp = self.path.with_name(f".{self.path.name}.livefilter-partial")
        try:
            with open(self.tmp, "wb"):
                pass
        except OSError as exc:
            raise LivefilterError(f"cannot write to {self.path.parent}: {exc.strerror or exc}") from None
        self._container = None
        self._file = None
        self._video = None
        self._tb: Fraction | None = None
        self._audio_in = None
        self._audio_packets = None
        self._audio_next = None
        self._audio_out = None
        self._transcode = False
        self._audio_start: int | None = None  # transcoding: first decoded sample, in 1/sample_rate
        self._audio_samples = 0  # transcoding: samples handed to the encoder so far
        self._last_seconds = 0.0
        self._frame_duration = 1.0 / self.fps
        self._last_pts: int | None = None
        self._complete = False
        self._closed = False
        self._warned_resize = False

    # --- setup on the first frame (its size and time base decide the stream) ------------------
    def _start(self, frame: Frame) -> None:
        import av

        width, height = frame.size
        self._tb = frame.time_base or Fraction(1, 1000)
        self._size = (width, height)
        even = (width + width % 2, height + height % 2)
        if even != (width, height):
            log.warning("%dx%d is odd; padding to %dx%d for the encoder", width, height, *even)
        # Through a Python file object, so write errors (disk full, file too large) raise at
        # once instead of being swallowed by FFmpeg's buffered I/O until the end.
        self._file = open(self.tmp, "wb")
        self._container = av.open(self._file, "w", format=self.format,
                                  options=CONTAINER_OPTIONS.get(self.format, {}))
        codec = pick_encoder(VIDEO_ENCODERS.get(self.format, VIDEO_ENCODERS["default"]))
        rate = Fraction(self.fps).limit_denominator(100000) if self.fps else None
        options = dict(ENCODER_OPTIONS.get(codec, {}))
        if codec == "libx264" and self.preset is not None:
            options["preset"] = self.preset
        stream = self._container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height = even
        stream.pix_fmt = "yuv420p"
        # Say which matrix the pixels use (OpenCV's and FFmpeg's BT.601, limited range): players
        # that guess take BT.709 for HD, which shifts reds and greens. Primaries stay unsaid:
        # they are the input's, which the conversion to BGR did not change.
        stream.codec_context.colorspace = _SMPTE170M
        stream.codec_context.color_range = _MPEG_RANGE
        stream.time_base = self._tb
        stream.codec_context.time_base = self._tb
        self._video = stream
        self._open_audio()

    def _open_audio(self) -> None:
        """Copy the template's first audio stream, or transcode it when the container refuses it."""
        import av

        if not self.audio or self.template is None:
            return
        try:
            source = av.open(str(self.template), metadata_errors="ignore")
        except av.FFmpegError:
            return
        if not source.streams.audio:
            source.close()
            return
        a_in = source.streams.audio[0]
        ctx = a_in.codec_context
        if ctx is None or not ctx.sample_rate or not ctx.channels:
            # Damaged header: codec, sample rate or channels unknown. The muxer would refuse the
            # stream (and with it the whole file), so the video is converted without it.
            log.warning("the audio of %s is unreadable (%s); converting without audio", self.template.name,
                        "unknown codec" if ctx is None else "no sample rate or channels")
            source.close()
            return
        name = a_in.codec_context.name
        supported = self._container.supported_codecs
        if name in supported or (a_in.codec and a_in.codec.name in supported):
            self._audio_out = self._container.add_stream_from_template(a_in)
        else:
            encoder = next((c for c in AUDIO_ENCODERS.get(self.format, AUDIO_ENCODERS["default"])
                            if _available(c)), None)
            if encoder is None:
                log.warning("cannot keep the %s audio in %s: no suitable audio encoder", name, self.path.name)
                source.close()
                return
            rate = 48000 if "opus" in encoder else (a_in.rate or 48000)
            self._audio_out = self._container.add_stream(encoder, rate=rate)
            try:
                self._audio_out.layout = a_in.layout.name if a_in.layout.nb_channels <= 2 else "stereo"
            except Exception:
                self._audio_out.layout = "stereo"
            self._transcode = True
            log.warning("the %s container cannot hold %s audio; transcoding it to %s",
                        self.format, name, encoder)
        self._audio_in = source
        self._audio_stream_in = a_in
        self._audio_packets = source.demux(a_in)

    # --- writing -----------------------------------------------------------------------------
    def write(self, frame: Frame) -> None:
        import av

        if self._closed:
            raise RuntimeError("write() after close()")
        if self._container is None:
            self._start(frame)
        i420 = (frame.format == "yuv420p" and frame.size == self._size
                and (self._video.width, self._video.height) == self._size)
        image = frame.image if i420 else frame.bgr()
        if not i420 and image.shape[1::-1] != self._size:
            if not self._warned_resize:
                log.warning("frame size changed mid-stream; resizing to %dx%d", *self._size)
                self._warned_resize = True
            import cv2

            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        if not i420 and (self._video.width, self._video.height) != self._size:
            pad_h, pad_w = self._video.height - image.shape[0], self._video.width - image.shape[1]
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        if frame.pts is not None and frame.time_base is not None:
            pts = round(frame.pts * frame.time_base / self._tb) if frame.time_base != self._tb else frame.pts
        else:
            pts = round(self.frames_written * self._frame_duration / self._tb)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        out = (av.VideoFrame.from_ndarray(image, format="yuv420p") if i420
               else _to_video_frame(image, self._video.pix_fmt))
        out.pts = pts
        out.time_base = self._tb
        seconds = float(pts * self._tb)
        try:
            self._mux_audio_until(seconds + AUDIO_LEAD)
            for packet in self._video.encode(out):
                self._container.mux(packet)
        except OSError as exc:
            raise LivefilterError(f"writing {self.path} failed after {self.frames_written} frames: "
                                  f"{exc.strerror or exc}") from None
        self.frames_written += 1
        if self.frames_written > 1:
            self._frame_duration = max(1e-4, seconds - self._last_seconds)
        self._last_seconds = seconds

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Mux source audio packets up to ``seconds`` (None: all of it)."""
        import av

        if self._audio_packets is None:
            return
        while True:
            packet = self._audio_next
            if packet is None:
                try:
                    packet = next(self._audio_packets, None)
                except av.FFmpegError as exc:
                    log.warning("audio of %s damaged; audio stops at %.1f s (%s)",
                                self.template.name, self._last_seconds, exc)
                    packet = None
                if packet is None:
                    self._finish_audio()
                    return
                if packet.size == 0:
                    continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if seconds is not None and stamp is not None and float(stamp * packet.time_base) > seconds:
                self._audio_next = packet
                return
            self._audio_next = None
            self._mux_audio_packet(packet)

    def _mux_audio_packet(self, packet) -> None:
        import av

        if not self._transcode:
            if packet.dts is None:
                return  # the muxer cannot place it; happens only for damaged packets
            packet.stream = self._audio_out
            try:
                self._container.mux(packet)
            except av.error.ArgumentError as exc:
                # Damaged source audio (timestamps going backwards, bad sizes): the muxer
                # refuses the packet. Lose that packet, not the whole conversion.
                self.audio_packets_skipped += 1
                if self.audio_packets_skipped == 1:
                    log.warning("skipping damaged audio packets from %s (%s)", self.template.name,
                                str(exc).split(":")[0])
            return
        try:
            frames = packet.decode()
        except av.FFmpegError:
            return
        for frame in frames:
            self._place_audio_frame(frame)
            for out in self._audio_out.encode(frame):
                self._container.mux(out)

    def _place_audio_frame(self, frame) -> None:
        """Transcoding: time the frame from the first decoded sample on, counting samples.

        The first decoded frame's pts is where the first audible sample is (the decoder has
        already dropped the source's priming), so the output starts there too; after that the
        samples are counted, which keeps the audio gapless even when the source's packet
        timestamps jitter. The encoder's own priming is then signalled by the muxer (edit list
        or CodecDelay), not played.
        """
        rate = frame.sample_rate
        if self._audio_start is None:
            start = frame.pts * frame.time_base if frame.pts is not None and frame.time_base else 0
            self._audio_start = round(start * rate)
        frame.pts = self._audio_start + self._audio_samples
        frame.time_base = Fraction(1, rate)
        self._audio_samples += frame.samples

    def _finish_audio(self) -> None:
        if self._audio_packets is None:
            return
        if self._transcode:
            for out in self._audio_out.encode(None):
                self._container.mux(out)
        self._audio_packets = None
        self._audio_in.close()
        self._audio_in = None

    def end_of_stream(self) -> None:
        """The source ended normally: on close, keep the audio to its very end."""
        self._complete = True

    # --- finishing -----------------------------------------------------------------------------
    def _finalise(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._video.encode(None):
                self._container.mux(packet)
            if self._audio_packets is not None:
                self._mux_audio_until(None if self._complete else self._last_seconds + self._frame_duration)
                self._finish_audio()
        finally:
            try:
                self._container.close()
            finally:
                self._container = None
                self._file.close()
            if self._audio_in is not None:
                self._audio_in.close()
                self._audio_in = None

    def close(self) -> None:
        """Finish the file and move it to its final name (also after an interruption)."""
        if self._closed:
            return
        self._closed = True
        if self.frames_written == 0:
            self._discard()
            return
        try:
            self._finalise()
        except OSError as exc:
            self._closed = False
            kept = self.abort()
            where = f"; the {self.frames_written} frames converted are in {kept}" if kept else ""
            raise LivefilterError(f"could not finish {self.path}: {exc.strerror or exc}{where}") from None
        os.replace(self.tmp, self.path)

    def abort(self) -> Path | None:
        """The run failed: keep what was written as <name>.partial<ext>, never under the final name.

        Fragmented MP4/MOV and Matroska stay playable up to the last complete fragment even
        when finishing the file fails too (disk full), so the partial file is kept either way.
        """
        if self._closed:
            return None
        self._closed = True
        if self.frames_written == 0:
            self._discard()
            return None
        try:
            self._finalise()
        except Exception as exc:
            log.debug("finishing %s failed: %s", self.tmp, exc)
            if self._file is not None:
                self._file.close()
        partial = self._partial_name()
        try:
            os.replace(self.tmp, partial)
        except OSError:
            return None
        # Not "N frames": when the disk filled up, the last fragment may be cut and not play.
        log.warning("kept what was written before the failure (up to frame %d) in %s",
                    self.frames_written, partial)
        return partial

    def salvage(self) -> Path | None:
        """Quitting at once (second Ctrl-C): no time to finish the file, but do not leave it
        hidden either: move what is on disk to <name>.partial<ext>. Fragmented MP4/MOV and
        Matroska play up to the last complete fragment. Safe to call from a signal handler."""
        try:
            if self._file is not None:
                self._file.flush()
        except Exception:  # the main thread may be inside a write on the same file
            pass
        if not self.tmp.exists():
            return None
        if self.frames_written == 0:
            self.tmp.unlink(missing_ok=True)
            return None
        partial = self._partial_name()
        try:
            os.replace(self.tmp, partial)
        except OSError:
            return None
        return partial

    def _partial_name(self) -> Path:
        """<name>.partial<ext>, or .partial-2, -3, ... so an earlier partial file is never replaced."""
        candidate = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        n = 2
        while candidate.exists():
            candidate = self.path.with_name(f"{self.path.stem}.partial-{n}{self.path.suffix}")
            n += 1
        return candidate

    def _discard(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
        if self._file is not None:
            self._file.close()
        self.tmp.unlink(missing_ok=True)
