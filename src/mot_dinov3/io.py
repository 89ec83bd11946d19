"""Frame sources (video file, MOTChallenge sequence, image folder) and result writers (the video writer,
:class:`VideoWriter`, lives in :mod:`mot_dinov3.video` and is importable from here too).

Sources stream frames one at a time, so memory stays flat however long the input is. Writers never
touch an earlier file at their path while they work: they write ``<name>.<random>.part`` beside it and
rename it into place when closed, and only when it holds at least one complete frame, so a run that
fails before its first frame leaves the earlier results as they were, and an interrupted or failing
run keeps every frame it finished (whole MOT lines, a playable video).
"""

from __future__ import annotations

import configparser
import errno
import logging
import math
import os
import queue
import secrets
import shutil
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from mot_dinov3.errors import MissingFileError, UserError, WriteError

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".avi")  # what mot_dinov3.video.VideoWriter writes
REPORT_EXTS = (".html", ".htm")
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


def letterbox(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``size_wh`` (aspect ratio kept) and centred on black."""
    w, h = size_wh
    ih, iw = image.shape[:2]
    scale = min(w / iw, h / ih)
    nw, nh = max(1, min(w, round(iw * scale))), max(1, min(h, round(ih * scale)))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((h, w, 3), np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


class _FrameSize:
    """Brings every frame to the first frame's size (:func:`letterbox`), with one notice for the source."""

    def __init__(self, size_wh: tuple[int, int], what: str):
        self.size_wh, self.what, self.noticed = size_wh, what, False

    def __call__(self, image: np.ndarray, label: str) -> np.ndarray:
        if image.shape[1::-1] == self.size_wh:
            return image
        if not self.noticed:
            self.noticed = True
            (w, h), (iw, ih) = self.size_wh, image.shape[1::-1]
            log.warning(
                f"note: {self.what}: frame {label} is {iw}x{ih}, not {w}x{h} like the first: letterboxed to "
                f"{w}x{h} (and any later frame of another size)"
            )
        return letterbox(image, self.size_wh)


class FrameSource:
    """Iterate the frames of a video file, a MOTChallenge sequence folder or a folder of images.

    Args:
        path: a video file; a folder with ``img1/`` and ``seqinfo.ini`` (fps and length read from it);
            or a folder of images (sorted by name, fps ``fps`` or 30). Images of another size than the
            first are letterboxed to its size (:func:`letterbox`, with a notice).
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
        self._img_dir: Path | None = None
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
            src_fps = seqinfo_number(self.path, seq, "framerate")
            self.name = seq.get("name", self.name)
        elif (self.path / "img1").is_dir():
            img_dir = self.path / "img1"
        files = sorted(p for p in img_dir.glob("*") if p.suffix.lower() in IMAGE_EXTS) if img_dir.is_dir() else []
        if not files:
            raise UserError(
                f"source={str(self.path)!r}: no images found in {img_dir}; pass a video file, "
                "a MOTChallenge sequence folder (img1/ + seqinfo.ini) or a folder of images"
            )
        self._files, self._img_dir = files, img_dir
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
            sized = _FrameSize((self.width, self.height), f"source={str(self.path)!r}")
            for i, f in enumerate(self._files, start=1):
                img = cv2.imread(str(f))
                if img is None:
                    raise UserError(f"source={str(self.path)!r}: cannot decode image {f.name}; check the file")
                yield Frame(i, sized(img, f.name), (i - 1) / self.fps)
            return
        assert self._cap is not None
        i = 0
        while True:
            ok, img = self._cap.read()
            if not ok:  # end of stream (or an undecodable tail, as in some AVI files)
                break
            i += 1
            yield Frame(i, img, (i - 1) / self.fps)

    def input_role(self, path: Path) -> str | None:
        """What the resolved ``path`` is to this source when writing it would destroy an input (``"the
        source video"``, a place in the source image folder or the sequence's ``seqinfo.ini``, ``gt/``,
        ``det/``); ``None`` when it is free."""
        src = self.path.resolve()
        if self._img_dir is None:
            return "the source video" if same_file(path, src) else None
        img_dir = self._img_dir.resolve()
        if path.is_relative_to(img_dir):
            return f"inside the source image folder {img_dir}"
        if path == src / "seqinfo.ini" or path.is_relative_to(src / "gt") or path.is_relative_to(src / "det"):
            return f"an input of the source sequence {src}"
        return None

    def close(self) -> None:
        """Release the video handle (no-op for folders)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFrames:
    """Frames from any iterable of images (a generator, a list, a camera loop), with the interface of
    :class:`FrameSource`.

    Args:
        images: (H, W, 3) uint8 BGR arrays; the first is read at construction, and later ones of
            another size are letterboxed to its size (:func:`letterbox`, with a notice).
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
        sized = _FrameSize((self.width, self.height), "source")
        for i, image in enumerate(self._it, start=2):
            yield Frame(i, sized(self._check(image, i), str(i)), (i - 1) / self.fps)

    def close(self) -> None:
        """Nothing to release: the caller owns the iterable."""


T = TypeVar("T")


def prefetch(frames: Iterable[T], depth: int = 4) -> Generator[T, None, None]:
    """Decode frames in a background thread, up to ``depth`` ahead of the consumer (any iterable: the
    pipeline also runs its detector this way, :func:`mot_dinov3.pipeline.detect_ahead`).

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


def part_path(path: Path, keep_suffix: bool = False) -> Path:
    """A fresh temporary name beside ``path``: ``<name>.<random>.part`` (``<stem>.<random>.part<suffix>``
    with ``keep_suffix``, for writers that choose the format from the extension)."""
    tag = secrets.token_hex(4)
    return path.with_name(f"{path.stem}.{tag}.part{path.suffix}" if keep_suffix else f"{path.name}.{tag}.part")


def ensure_writable(path: str | Path, name: str) -> Path:
    """Create ``path``'s parent folder and check a file can be created there, without touching ``path``
    itself (an earlier file stays as it is until a complete new one replaces it).

    Args:
        path: the file to write.
        name: the parameter that named it (``output``, ``save_mot``, ``save_json``), for the message.

    Raises:
        UserError: naming ``name`` when the location is not writable, is a folder or a read-only file.
    """
    p = Path(path)
    try:
        if p.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        if p.exists() and not os.access(p, os.W_OK):
            raise PermissionError(errno.EACCES, "the file is read-only")
        p.parent.mkdir(parents=True, exist_ok=True)
        probe = part_path(p)
        probe.open("x").close()
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"{name}={str(p)!r}: cannot write there ({exc.strerror or exc}); choose a writable path"
        ) from exc
    return p


def same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` (resolved) name one file: equal, or both existing and the same inode."""
    return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))


def check_outputs(paths: dict[str, str | None], source: FrameSource | ImageFrames) -> None:
    """Refuse, before anything is written, an output path (``{name: path}``; ``None`` or ``""``: not
    written) that is an input of ``source``, that another output uses too, or whose extension is not
    one its writer writes (``output``, the video: :data:`VIDEO_EXTS`; ``report``: :data:`REPORT_EXTS`);
    then check each one's folder is writable.

    Raises:
        UserError: naming the output and what it collides with.
    """
    seen: dict[Path, str] = {}
    for name, given in paths.items():
        if not given:
            continue
        path = str(given)
        suffix = Path(path).suffix
        if name == "output" and suffix.lower() not in VIDEO_EXTS:
            kind = f"a {suffix} video" if suffix else "a video without an extension"
            raise UserError(f"{name}={path!r}: cannot write {kind}; use one of {', '.join(VIDEO_EXTS)}")
        if name == "report" and suffix.lower() not in REPORT_EXTS:
            raise UserError(f"{name}={path!r}: the report is an HTML page; use a .html path")
        resolved = Path(path).resolve()
        role = source.input_role(resolved) if isinstance(source, FrameSource) else None
        if role:
            raise UserError(f"{name}={path!r} is {role}; choose another path")
        other = next((n for p, n in seen.items() if same_file(resolved, p)), None)
        if other:
            raise UserError(f"{name}={path!r} is also {other}=; choose different paths")
        seen[resolved] = name
        ensure_writable(path, name)


def _free_space(path: Path) -> str:
    try:
        return f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
    except OSError:
        return "free space unknown"


def _kept(path: Path) -> str:
    return "; the earlier file there is kept" if path.exists() else ""


def _commit(part: Path, path: Path, name: str, keep: bool) -> None:
    """Rename ``part`` onto ``path`` (``keep``), else remove it.

    Raises:
        WriteError: the rename failed (``part`` is removed).
    """
    try:
        if keep:
            os.replace(part, path)
            return
    except OSError as exc:
        raise WriteError(
            f"{name}={str(path)!r}: cannot move the finished file into place ({exc.strerror or exc})"
        ) from exc
    finally:
        if part.exists():
            part.unlink()


def write_atomic(path: str | Path, text: str, name: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it, renamed into place when complete:
    an earlier file at ``path`` is replaced only by a complete new one.

    Raises:
        WriteError: naming ``name`` (disk full, I/O error); ``path`` is left as it was.
    """
    p = ensure_writable(path, name)
    part = part_path(p)
    try:
        with open(part, "x", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise WriteError(
            f"{name}={str(p)!r}: cannot write ({exc.strerror or exc}; {_free_space(p)}){_kept(p)}"
        ) from exc
    _commit(part, p, name, keep=True)
    return p


class MotWriter:
    """MOTChallenge result writer: ``frame,id,x,y,w,h,conf,-1,-1,-1`` per line.

    Frames are 1-based, boxes tlwh in pixels. Each frame's lines go to a temporary file beside
    ``path`` at once (unbuffered); :meth:`close` renames it into place when at least one frame was
    written (an earlier file is replaced only then) and removes it otherwise.
    """

    def __init__(self, path: str | Path):
        self.path = ensure_writable(path, "save_mot")
        self._part = part_path(self.path)
        self._f = open(self._part, "xb", buffering=0)
        self._size = 0  # bytes of whole frames written
        self.frames = 0

    def write(self, frame_index: int, ids: np.ndarray, xyxy: np.ndarray, conf: np.ndarray) -> None:
        """Write one frame's tracks: ``ids`` (M,) int, ``xyxy`` (M, 4) float pixels, ``conf`` (M,) float.

        Raises:
            WriteError: the disk is full or failed; the file keeps the frames before this one, whole.
        """
        lines = []
        for tid, (x1, y1, x2, y2), c in zip(ids, xyxy, conf):
            lines.append(f"{frame_index},{int(tid)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{c:.4f},-1,-1,-1\n")
        data = memoryview("".join(lines).encode())
        try:
            while data:
                n = self._f.write(data)
                if not n:
                    raise OSError(errno.EIO, "nothing was written")
                data = data[n:]
        except OSError as exc:
            try:
                self._f.truncate(self._size)  # no line cut in the middle
            except OSError:
                pass
            raise WriteError(
                f"save_mot={str(self.path)!r}: cannot write frame {frame_index} ({exc.strerror or exc}; "
                f"{_free_space(self.path)})"
                + (f"; the {self.frames} frames before it are kept" if self.frames else _kept(self.path))
            ) from exc
        self._size = self._f.tell()
        self.frames += 1

    def close(self) -> None:
        """Move the results into place (at least one frame written) or remove them.

        Raises:
            WriteError: the finished file cannot be moved into place.
        """
        if not self._f.closed:
            self._f.close()
            _commit(self._part, self.path, "save_mot", keep=self.frames > 0)


def __getattr__(name: str) -> Any:
    """``mot_dinov3.io.VideoWriter``: the video writer, from :mod:`mot_dinov3.video` (imported on first use:
    it builds on this module)."""
    if name == "VideoWriter":
        from mot_dinov3.video import VideoWriter

        return VideoWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_mot_txt(path: str | Path) -> np.ndarray:
    """Read a MOTChallenge txt (results or gt) as an (N, C) float64 array; empty files give (0, 10)."""
    p = Path(path)
    if p.stat().st_size == 0:
        return np.zeros((0, 10))
    return np.atleast_2d(np.loadtxt(p, delimiter=","))


def read_seqinfo(seq_dir: str | Path) -> dict[str, str]:
    """Return the ``[Sequence]`` section of ``seq_dir/seqinfo.ini`` (empty when absent).

    Raises:
        UserError: the file is not a valid INI file.
    """
    path = Path(seq_dir) / "seqinfo.ini"
    ini = configparser.ConfigParser()
    try:
        ini.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        where = f" at line {line}" if isinstance(line, int) else ""
        raise UserError(
            f"{path}: not a valid seqinfo.ini ({exc.__class__.__name__}{where}); write a [Sequence] section of "
            "key=value lines (frameRate, seqLength, imDir) or remove the file"
        ) from exc
    return dict(ini["Sequence"]) if ini.has_section("Sequence") else {}


def seqinfo_number(seq_dir: Path, seq: dict[str, str], key: str, kind: type = float) -> float | None:
    """``seq[key]`` (a lower-case ``seqinfo.ini`` key) as a finite number > 0 of ``kind``; ``None`` when absent.

    Raises:
        UserError: the value is not such a number.
    """
    text = seq.get(key)
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UserError(
            f"{Path(seq_dir) / 'seqinfo.ini'}: {key}={text!r} is not a{'n integer' if kind is int else ' number'} > 0; "
            "fix the file"
        )
    return value
