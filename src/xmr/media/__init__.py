"""Media decoding: files -> pixels. Nothing here knows about models or indexes.

``video`` imports PyAV lazily (extra ``xmr[video]``), so importing this package stays cheap."""
from .image import (
    IMAGE_EXTENSIONS,
    ImagePreprocess,
    load_image,
    preprocess_images,
)
from .video import VIDEO_EXTENSIONS, VideoInfo, VideoReader, iter_frames, probe, sample_frames, sample_timestamps


def media_type_of(name: str) -> str | None:
    """``"image"`` or ``"video"`` by the file name's extension (case-insensitive), else None."""
    import os

    ext = os.path.splitext(name)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return "video" if ext in VIDEO_EXTENSIONS else None


__all__ = [
    "media_type_of", "IMAGE_EXTENSIONS", "ImagePreprocess", "load_image", "preprocess_images",
    "VIDEO_EXTENSIONS", "VideoInfo", "VideoReader", "iter_frames", "probe", "sample_frames", "sample_timestamps",
]
