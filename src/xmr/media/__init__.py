"""Media decoding: files -> pixels. Nothing here knows about models or indexes."""
from .image import (
    IMAGE_EXTENSIONS,
    ImagePreprocess,
    load_image,
    preprocess_images,
)

__all__ = ["IMAGE_EXTENSIONS", "ImagePreprocess", "load_image", "preprocess_images"]
