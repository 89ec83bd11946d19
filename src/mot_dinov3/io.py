"""Frame sources (video file, MOTChallenge sequence, image folder) and result writers.

Sources stream frames one at a time, so memory stays flat however long the input is. Writers flush
as they go and are safe to close at any point, so an interrupted run keeps what it wrote.
"""

from __future__ import annotations

import configparser
import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mot_dinov3.errors import MissingFileError, UserError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FOLDER_FPS = 30.0


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        index: 1-based frame number (MOTChallenge convention).
        image: (H, W, 3) uint8 BGR.
        timestamp: seconds from the start, ``(index - 1) / fps``.
    """

    index: int
    image: np.ndarray
    timestamp: float


class FrameSource:
    """Iterate the frames of a video file, a MOTChallenge sequence folder or a folder of images.

    Args:
        path: a video file; a folder with ``img1/`` and ``seqinfo.ini`` (fps and length read from it);
            or a folder of images (sorted by name, fps ``fps`` or 30).
        fps: overrides the source's frame rate.

    Attributes:
        fps: frames per second (float).
        length: number of frames when known, else ``None``.
        name: the sequence name (folder or file stem), used for MOTChallenge result files.

    Raises:
        UserError: the path is missing, is a folder without images, or is not a readable video.
    """

    def __init__(self, path: str | Path, fps: float | None = None):
        self.path = Path(path)
        self._files: list[Path] | None = None
        self._cap: cv2.VideoCapture | None = None
        if not self.path.exists():
            raise MissingFileError(
                f"source={str(self.path)!r}: no such file or folder; pass a video file, "
                "a MOTChallenge sequence folder or a folder of images"
            )
        self.name = self.path.stem if self.path.is_file() else self.path.name
        if self.path.is_dir():
            self._open_folder(fps)
        else:
            self._open_video(fps)

    def _open_folder(self, fps: float | None) -> None:
        img_dir = self.path
        src_fps = None
        seq = read_seqinfo(self.path)  # keys are lower-case (configparser)
        if seq:
            img_dir = self.path / seq.get("imdir", "img1")
            src_fps = float(seq["framerate"]) if "framerate" in seq else None
            self.name = seq.get("name", self.name)
        elif (self.path / "img1").is_dir():
            img_dir = self.path / "img1"
        files = sorted(p for p in img_dir.glob("*") if p.suffix.lower() in IMAGE_EXTS) if img_dir.is_dir() else []
        if not files:
            raise UserError(
                f"source={str(self.path)!r}: no images found in {img_dir}; pass a video file, "
                "a MOTChallenge sequence folder (img1/ + seqinfo.ini) or a folder of images"
            )
        self._files = files
        self.fps = float(fps or src_fps or DEFAULT_FOLDER_FPS)
        self.length: int | None = len(files)
        first = cv2.imread(str(files[0]))
        if first is None:
            raise UserError(f"source={str(self.path)!r}: cannot decode image {files[0].name}; check the file")
        self.height, self.width = first.shape[:2]

    def _open_video(self, fps: float | None) -> None:
        cap = cv2.VideoCapture(str(self.path))
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok or first is None:
            cap.release()
            raise UserError(
                f"source={str(self.path)!r}: not a readable video (OpenCV could not decode a frame); "
                "pass a video file OpenCV can read (mp4, avi, mkv ...) or a folder of images"
            )
        cap.release()  # reopen rather than seek: seeking is unreliable for some codecs
        self._cap = cap = cv2.VideoCapture(str(self.path))
        src_fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps or (src_fps if src_fps and src_fps > 0 else DEFAULT_FOLDER_FPS))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.length = n if n > 0 else None
        self.height, self.width = first.shape[:2]

    def __iter__(self) -> Iterator[Frame]:
        if self._files is not None:
            for i, f in enumerate(self._files, start=1):
                img = cv2.imread(str(f))
                if img is None:
                    raise UserError(f"source={str(self.path)!r}: cannot decode image {f.name}; check the file")
                yield Frame(i, img, (i - 1) / self.fps)
            return
        assert self._cap is not None
        i = 0
        while True:
            ok, img = self._cap.read()
            if not ok:  # end of stream (or an undecodable tail, as in some AVI files)
                break
            i += 1
            yield Frame(i, img, (i - 1) / self.fps)

    def close(self) -> None:
        """Release the video handle (no-op for folders)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFrames:
    """Frames from any iterable of images (a generator, a list, a camera loop), with the interface of
    :class:`FrameSource`.

    Args:
        images: (H, W, 3) uint8 BGR arrays, all of one size; the first is read at construction.
        fps: their frame rate.
        name: the name results are written under.

    Raises:
        UserError: the iterable is empty or yields something that is not an (H, W, 3) uint8 image.
    """

    def __init__(self, images: Iterable[Any], fps: float = DEFAULT_FOLDER_FPS, name: str = "frames"):
        self.fps, self.name = float(fps), name
        self.length: int | None = len(images) if hasattr(images, "__len__") else None  # type: ignore[arg-type]
        self._it = iter(images)
        self._first = self._check(next(self._it, None), 1)
        self.height, self.width = self._first.shape[:2]

    @staticmethod
    def _check(image: object, index: int) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UserError(
                f"source frame {index}: expected an (H, W, 3) uint8 BGR image, got "
                f"{getattr(image, 'shape', type(image).__name__)}; pass BGR images (cv2.imread)"
            )
        return image

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(1, self._first, 0.0)
        for i, image in enumerate(self._it, start=2):
            yield Frame(i, self._check(image, i), (i - 1) / self.fps)

    def close(self) -> None:
        """Nothing to release: the caller owns the iterable."""


def prefetch(frames: Iterable[Frame], depth: int = 4) -> Generator[Frame, None, None]:
    """Decode frames in a background thread, up to ``depth`` ahead of the consumer.

    Image decoding (OpenCV releases the GIL) then overlaps detection instead of adding to it: about
    6 ms per 1080p JPEG frame on a 2-core CPU, and more of the frame time on a GPU. Errors raised while
    reading (e.g. :class:`UserError` for an undecodable image) are re-raised in the consumer, in
    order. Closing the generator (``close()``, or leaving a ``for`` loop) stops the thread before it
    returns, so the source can be closed safely afterwards.

    Args:
        frames: any iterable of frames, typically a :class:`FrameSource`.
        depth: most frames held decoded ahead (memory: ``depth`` frames).

    Yields:
        The frames of ``frames``, in order.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for frame in frames:
                if not put(frame):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put(e)
            return
        put(end)

    thread = threading.Thread(target=work, name="frame-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def ensure_writable(path: str | Path, name: str) -> Path:
    """Create ``path``'s parent folder and check a file can be written there.

    Args:
        path: the file to write.
        name: the parameter that named it (``output``, ``save_mot``, ``save_json``), for the message.

    Raises:
        UserError: naming ``name`` when the location is not writable.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a"):
            pass
    except OSError as exc:
        raise UserError(
            f"{name}={str(p)!r}: cannot write there ({exc.strerror or exc}); choose a writable path"
        ) from exc
    return p


class VideoWriter:
    """Annotated-video writer (OpenCV). ``mp4v`` for ``.mp4``/``.mov``, ``MJPG`` for ``.avi``.

    The container is finalised by :meth:`close`, which is safe to call more than once, so a video
    closed after an interrupt is playable.

    Raises:
        UserError: the file cannot be opened for writing.
    """

    def __init__(self, path: str | Path, fps: float, size_wh: tuple[int, int]):
        self.path = ensure_writable(path, "output")
        fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
        self._w: cv2.VideoWriter | None = cv2.VideoWriter(
            str(self.path), cv2.VideoWriter.fourcc(*fourcc), float(fps), size_wh
        )
        if not self._w.isOpened():
            raise UserError(f"output={str(self.path)!r}: OpenCV cannot write this format; use a .mp4 or .avi path")
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR frame of the size given at construction."""
        assert self._w is not None, "write after close"
        self._w.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._w is not None:
            self._w.release()
            self._w = None


class MotWriter:
    """MOTChallenge result writer: ``frame,id,x,y,w,h,conf,-1,-1,-1`` per line.

    Frames are 1-based, boxes tlwh in pixels. Each frame's lines are flushed at once, so a killed run
    keeps every finished frame.
    """

    def __init__(self, path: str | Path):
        self.path = ensure_writable(path, "save_mot")
        self._f = open(self.path, "w", encoding="utf-8")

    def write(self, frame_index: int, ids: np.ndarray, xyxy: np.ndarray, conf: np.ndarray) -> None:
        """Write one frame's tracks: ``ids`` (M,) int, ``xyxy`` (M, 4) float pixels, ``conf`` (M,) float."""
        lines = []
        for tid, (x1, y1, x2, y2), c in zip(ids, xyxy, conf):
            lines.append(f"{frame_index},{int(tid)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{c:.4f},-1,-1,-1\n")
        self._f.writelines(lines)
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def read_mot_txt(path: str | Path) -> np.ndarray:
    """Read a MOTChallenge txt (results or gt) as an (N, C) float64 array; empty files give (0, 10)."""
    p = Path(path)
    if p.stat().st_size == 0:
        return np.zeros((0, 10))
    return np.atleast_2d(np.loadtxt(p, delimiter=","))


def read_seqinfo(seq_dir: str | Path) -> dict[str, str]:
    """Return the ``[Sequence]`` section of ``seq_dir/seqinfo.ini`` (empty when absent)."""
    ini = configparser.ConfigParser()
    ini.read(Path(seq_dir) / "seqinfo.ini")
    return dict(ini["Sequence"]) if ini.has_section("Sequence") else {}
