"""Frames of a video, as photos to pose (`isrf pose --video FILE --fps N`).

Decoded with OpenCV (its FFmpeg backend, already an engine dependency), which applies a
phone video's rotation metadata. Frames are taken evenly in time, `fps` a second, and
written as high-quality JPEGs named in order (frame_00001.jpg, ...).
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from engine.errors import IsrfError

JPEG_QUALITY = 95


def extract_frames(video: Path, fps: float, folder: Path, progress: bool = True) -> list[Path]:
    """Write `fps` frames a second of `video` into `folder`; returns their paths."""
    import cv2

    video = Path(video)
    if not video.is_file():
        raise IsrfError(f"{video}: video file not found")
    if not fps > 0:
        raise IsrfError(f"--fps must be positive, got {fps}")
    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise IsrfError(f"{video}: not a video OpenCV can decode")
        rate = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if not rate > 0:
            raise IsrfError(f"{video}: the video does not say its frame rate")
        step = max(rate / fps, 1.0)  # source frames per frame taken
        folder.mkdir(parents=True, exist_ok=True)
        written, index, next_take = [], 0, 0.0
        with tqdm(total=count or None, desc="video frames", unit="frame", disable=not progress) as bar:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if index >= next_take - 1e-6:
                    path = folder / f"frame_{len(written) + 1:05d}.jpg"
                    if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                        raise IsrfError(f"{path}: could not write the frame")
                    written.append(path)
                    next_take += step
                index += 1
                bar.update()
    finally:
        capture.release()
    if not written:
        raise IsrfError(f"{video}: no frame could be decoded")
    return written
