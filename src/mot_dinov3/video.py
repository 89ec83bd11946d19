"""The annotated-video writer: H.264 through PyAV (plays in browsers), OpenCV ``mp4v`` or ``MJPG`` otherwise.

``codec="auto"`` (the default) writes H.264 (yuv420p, ``+faststart`` so a browser can start playing before
the file has loaded) in ``.mp4``, ``.m4v``, ``.mov`` and ``.mkv`` when PyAV and an H.264 encoder (libx264,
libopenh264) are installed, else OpenCV ``mp4v`` with a notice; ``.avi`` gets ``MJPG``. Like every writer
in :mod:`mot_dinov3.io`, :class:`VideoWriter` writes a temporary file beside its path and moves it into
place only when it plays. With ``background=True`` frames are encoded on a thread of their own, so encoding
overlaps the caller's next frame (FFmpeg and OpenCV release the GIL while they encode).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mot_dinov3.errors import UserError, WriteError
from mot_dinov3.io import VIDEO_EXTS, _commit, _free_space, _kept, ensure_writable, part_path

log = logging.getLogger(__name__)

CODECS = ("auto", "h264", "mp4v", "mjpg")
H264_EXTS = (".mp4", ".m4v", ".mov", ".mkv")  # containers H.264 goes in (browsers play .mp4 best)
H264_ENCODERS = ("libx264", "libopenh264", "h264")  # PyAV encoder names, tried in order ("h264": FFmpeg's default)
FASTSTART_EXTS = (".mp4", ".m4v", ".mov")  # MP4-family muxers: the index goes first


def find_h264_encoder() -> tuple[str | None, str]:
    """The first of :data:`H264_ENCODERS` that PyAV can open, and why none could.

    Returns:
        ``(name, "")`` with the encoder's name (e.g. ``"libx264"``), or ``(None, reason)`` when PyAV is
        not installed or has no working H.264 encoder.
    """
    try:
        import av
    except ImportError:
        return None, "PyAV is not installed"
    for name in H264_ENCODERS:
        try:
            ctx: Any = av.CodecContext.create(name, "w")
            ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 64, "yuv420p", Fraction(1, 30)
            ctx.open()
            return str(ctx.codec.name), ""
        except (av.FFmpegError, ValueError, TypeError, AttributeError):  # not built in, or cannot open here
            continue
    return None, f"PyAV {getattr(av, '__version__', '?')} has no working H.264 encoder ({', '.join(H264_ENCODERS)})"


def resolve_codec(path: str | Path, codec: str = "auto") -> str:
    """The codec :class:`VideoWriter` writes ``path`` with: ``"h264"``, ``"mp4v"`` or ``"mjpg"``.

    ``"auto"``: ``"mjpg"`` for ``.avi``; else ``"h264"`` when an H.264 encoder is available, ``"mp4v"``
    (with a logged notice) when not.

    Raises:
        UserError: an unknown codec, an extension no codec here writes (not in :data:`VIDEO_EXTS`),
            ``"h264"`` in ``.avi`` or with no H.264 encoder available.
    """
    if codec not in CODECS:
        raise UserError(f"codec={codec!r}: unknown; use one of {', '.join(CODECS)}")
    ext = Path(path).suffix.lower()
    if ext not in VIDEO_EXTS:
        kind = f"a {ext} video" if ext else "a video without an extension"
        raise UserError(f"output={str(path)!r}: cannot write {kind}; use one of {', '.join(VIDEO_EXTS)}")
    if codec == "auto" and ext == ".avi":
        return "mjpg"
    if codec in ("auto", "h264"):
        if codec == "h264" and ext not in H264_EXTS:
            raise UserError(f"codec='h264': cannot go in {ext}; use a .mp4 output (or .m4v, .mov, .mkv)")
        encoder, why = find_h264_encoder()
        if encoder:
            return "h264"
        if codec == "h264":
            raise UserError(
                f"codec='h264': {why}; pip install 'av>=12' (its wheels include libx264) or use codec='mp4v'"
            )
        log.warning(
            f"note: output={str(path)!r}: {why}: writing mp4v, which browsers do not play; pip install 'av>=12'"
        )
        return "mp4v"
    return codec


class _OpenCvEncoder:
    """``mp4v`` / ``MJPG`` through ``cv2.VideoWriter`` (which never reports a failed write)."""

    def __init__(self, part: Path, path: Path, codec: str, fps: float, size_wh: tuple[int, int]):
        fourcc = "MJPG" if codec == "mjpg" else "mp4v"
        self._w = cv2.VideoWriter(str(part), cv2.VideoWriter.fourcc(*fourcc), float(fps), size_wh)
        if not self._w.isOpened():
            part.unlink(missing_ok=True)
            raise UserError(
                f"output={str(path)!r}: OpenCV cannot write {fourcc} in {path.suffix}; use a .mp4 or .avi path"
            )

    def write(self, image: np.ndarray) -> None:
        self._w.write(image)

    def close(self) -> None:
        self._w.release()


class _PyAvEncoder:
    """H.264 (yuv420p) through PyAV, encoded on FFmpeg's threads; odd widths and heights are padded by one
    pixel (the edge repeated), as 4:2:0 chroma needs even sizes. FFmpeg errors surface as ``OSError``.

    BGR is converted to I420 by OpenCV (BT.601 limited range, as FFmpeg's swscale does; SIMD and
    several threads, where swscale's bgr24 path is one thread) and libx264 runs ``superfast``: on a
    CPU the annotated video shares the cores with the detector."""

    def __init__(self, part: Path, path: Path, fps: float, size_wh: tuple[int, int]):
        import av

        self._av = av
        w, h = size_wh
        self._pad = (h % 2, w % 2)  # bottom, right
        options = {"movflags": "+faststart"} if path.suffix.lower() in FASTSTART_EXTS else {}
        encoder = find_h264_encoder()[0] or "h264"
        self._out: Any = None
        try:
            self._out = av.open(str(part), mode="w", options=options)
            stream: Any = self._out.add_stream(encoder, rate=Fraction(float(fps)).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
            stream.codec_context.thread_type = "AUTO"
            if stream.codec_context.name == "libx264":
                stream.codec_context.options = {"preset": "superfast", "crf": "23"}
            else:  # libopenh264 and others: a bit rate of 0.1 bit per pixel per frame
                stream.bit_rate = int(max(200_000, 0.1 * stream.width * stream.height * fps))
            stream.codec_context.open()  # now, not in the first write
        except (av.FFmpegError, ValueError) as exc:
            if self._out is not None:
                with contextlib.suppress(av.FFmpegError, ValueError):
                    self._out.close()
            part.unlink(missing_ok=True)
            raise UserError(f"output={str(path)!r}: PyAV cannot write H.264 here ({exc}); use codec='mp4v'") from exc
        self._stream = stream
        self._frames = 0

    def write(self, image: np.ndarray) -> None:
        bottom, right = self._pad
        if bottom or right:
            image = cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_REPLICATE)
        yuv = np.asarray(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2YUV_I420), np.uint8)
        frame = self._av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = self._frames
        self._frames += 1
        self._mux(frame)

    def _mux(self, frame: Any) -> None:
        try:
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
        except self._av.FFmpegError as exc:
            raise _as_os_error(exc) from exc

    def close(self) -> None:
        try:
            self._mux(None)  # flush the encoder's delayed frames
        finally:
            try:
                self._out.close()  # the trailer (and, with +faststart, the index moved to the front)
            except self._av.FFmpegError as exc:
                raise _as_os_error(exc) from exc


def _as_os_error(exc: Exception) -> OSError:
    if isinstance(exc, OSError):
        return exc
    code = getattr(exc, "errno", None)
    return OSError(code if isinstance(code, int) else errno.EIO, getattr(exc, "strerror", None) or str(exc))


def plays(path: str | Path) -> bool:
    """OpenCV opens ``path`` and decodes its first frame."""
    cap = cv2.VideoCapture(str(path))
    try:
        return bool(cap.isOpened() and cap.read()[0])
    finally:
        cap.release()


class VideoWriter:
    """Annotated-video writer: H.264 through PyAV, or OpenCV ``mp4v`` / ``MJPG`` (:func:`resolve_codec`).

    Frames go to a temporary file beside ``path``; :meth:`close` (safe to call more than once)
    finalises it and renames it into place when it plays, else removes it, so an earlier video at
    ``path`` is never replaced by an empty or unplayable one.

    Args:
        path: the video file (an extension of :data:`~mot_dinov3.io.VIDEO_EXTS`).
        fps: frames per second (> 0).
        size_wh: (width, height) of every frame, pixels; H.264 pads an odd one by a pixel.
        codec: ``"auto"``, ``"h264"``, ``"mp4v"`` or ``"mjpg"`` (:func:`resolve_codec`).
        background: encode on a thread of its own, up to :data:`BACKGROUND_DEPTH` frames behind
            :meth:`write`; the caller must not modify an image after passing it. A write error is then
            raised by a later :meth:`write` or by :meth:`close`.

    Attributes:
        codec: the codec written (``"h264"``, ``"mp4v"`` or ``"mjpg"``).
        frames: frames encoded so far.
        written: :meth:`close` moved a playable video into place.

    Raises:
        UserError: what :func:`resolve_codec` raises, or the file cannot be opened for writing.
    """

    def __init__(
        self, path: str | Path, fps: float, size_wh: tuple[int, int], codec: str = "auto", background: bool = False
    ):
        self.codec = resolve_codec(path, codec)
        self.path = ensure_writable(path, "output")
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self._part = part_path(self.path, keep_suffix=True)
        self._enc: _OpenCvEncoder | _PyAvEncoder | None = (
            _PyAvEncoder(self._part, self.path, fps, self.size_wh)
            if self.codec == "h264"
            else _OpenCvEncoder(self._part, self.path, self.codec, fps, self.size_wh)
        )
        self.frames = 0
        self.written = False
        self._error: Exception | None = None  # a background write that failed (WriteError, or a bug's)
        self._raised = False
        self._queue: queue.Queue | None = None
        self._room = threading.Semaphore(BACKGROUND_DEPTH)  # free places in the queue
        self._reserved = False
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._drain, name="video-encode", daemon=True)
            self._thread.start()

    def write(self, image: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR frame of the size given at construction.

        Raises:
            UserError: the frame has another size.
            WriteError: the encoder could not write it (disk full, I/O error); the frames before it stay.
                In the background: an earlier frame's error, raised again by every later write.
        """
        assert self._enc is not None, "write after close"
        if image.shape[1::-1] != self.size_wh:  # OpenCV would drop it silently
            raise UserError(
                f"output={str(self.path)!r}: a frame of {image.shape[1]}x{image.shape[0]} for a "
                f"{self.size_wh[0]}x{self.size_wh[1]} video; give every frame the first one's size"
            )
        self._raise_pending()
        if self._queue is None:
            self._encode(image)
        else:
            self.reserve()
            self._reserved = False
            self._queue.put(image)

    def reserve(self) -> None:
        """Wait until :meth:`write` can take a frame without waiting (in the background: until the
        encoder has room; else nothing to wait for). A caller writing a frame to several outputs waits
        here first, so an interrupt during the wait leaves the frame in none of them.
        """
        if self._queue is not None and not self._reserved:
            self._room.acquire()
            self._reserved = True

    def _encode(self, image: np.ndarray) -> None:
        assert self._enc is not None
        try:
            self._enc.write(image)
        except OSError as exc:
            raise WriteError(
                f"output={str(self.path)!r}: cannot write frame {self.frames + 1} ({exc.strerror or exc}; "
                f"{_free_space(self.path)})"
            ) from exc
        self.frames += 1

    def _drain(self) -> None:
        """The background thread: encode queued frames until ``None``; after an error, drop the rest."""
        assert self._queue is not None
        while (image := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._encode(image)
                except Exception as exc:  # raised in the caller's thread by the next write() or close()
                    self._error = exc
            self._room.release()

    def _raise_pending(self) -> None:
        if self._error is not None:
            self._raised = True
            raise self._error

    def close(self) -> None:
        """Finalise the video: in place when it plays, removed when it holds no frame.

        Raises:
            WriteError: the finished file does not play (disk full, I/O error); it is removed and an
                earlier file at ``path`` is kept. In the background, also a write error not yet raised
                (the frames before it are kept when they play).
        """
        if self._enc is None:
            return
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
        enc, self._enc = self._enc, None
        failure = ""
        try:
            enc.close()
        except OSError as exc:
            failure = f"{exc.strerror or exc}; "
        playable = bool(self.frames) and plays(self._part)
        if self.frames and not playable:
            space = _free_space(self.path)
            self._part.unlink(missing_ok=True)
            raise WriteError(
                f"output={str(self.path)!r}: the finished video does not play ({failure or 'disk full or an I/O error? '}"
                f"{space}); it was removed{_kept(self.path)}"
            )
        _commit(self._part, self.path, "output", keep=playable)
        self.written = playable
        if not self._raised:
            self._raise_pending()


BACKGROUND_DEPTH = 2  # frames a background VideoWriter holds before write() waits (memory: 2 frames)
