"""Media decoding: files -> pixels. Nothing here knows about models or indexes.

``video`` imports PyAV lazily (extra ``xmr[video]``), so importing this package stays cheap."""
from .image import (
    IMAGE_EXTENSIONS,
    ImagePreprocess,
    load_image,
    preprocess_images,
)
from .video import VIDEO_EXTENSIONS, VideoInfo, VideoReader, iter_frames, probe, sample_frames, sample_timestamps

__all__ = [
    "IMAGE_EXTENSIONS", "ImagePreprocess", "load_image", "preprocess_images",
    "VIDEO_EXTENSIONS", "VideoInfo", "VideoReader", "iter_frames", "probe", "sample_frames", "sample_timestamps",
]
