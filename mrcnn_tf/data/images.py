"""Reading image files as RGB uint8, whatever their format, depth or EXIF orientation.

Pillow reads every format; the conversions that peers get wrong are handled here:

- grayscale (``L``, ``LA``) is replicated to three channels;
- alpha (``RGBA``, ``LA``, ``PA``) is dropped, as Detectron2 and ``tf.io.decode_image`` do;
- 16-bit images (``I;16`` and relatives) are scaled to 8 bits by ``>> 8`` (Pillow's own
  ``convert`` clips them at 255 instead, which turns most 16-bit images white);
- EXIF orientation is applied, so pixels match what an annotation tool showed — unless the
  annotation file's width/height match the stored (unrotated) pixels, which means the tool
  ignored the tag (see :func:`probe_image` and the COCO reader).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["EXIF_ORIENTATION", "ImageHeader", "load_rgb", "probe_image"]

#: The EXIF tag that says how the stored pixels must be turned for display.
EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says.

    Attributes:
        width, height: the size **as displayed** (after the EXIF orientation).
        format: Pillow's format name (``JPEG``, ``PNG`` ...).
        mode: Pillow's pixel mode (``RGB``, ``L``, ``I;16`` ...).
        orientation: the EXIF orientation 1..8 (1 = as stored).
    """

    width: int
    height: int
    format: str
    mode: str
    orientation: int

    @property
    def stored_size(self) -> tuple[int, int]:
        """``(width, height)`` of the pixels as stored, before the orientation."""
        if self.orientation in _SWAPS_AXES:
            return self.height, self.width
        return self.width, self.height


@contextlib.contextmanager
def _image_errors(what: str) -> Iterator[None]:
    """Pillow's errors as ValueError (not an image, corrupt), keeping the file-system ones."""
    try:
        yield
    except UnidentifiedImageError as exc:
        raise ValueError("not an image file (no known image format)") from exc
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{what}: {exc}") from exc


def probe_image(path: str | os.PathLike) -> ImageHeader:
    """Read an image's header (not its pixels).

    Raises:
        FileNotFoundError, PermissionError, IsADirectoryError: as ``open`` does.
        ValueError: the bytes are not an image Pillow knows.
    """
    with _image_errors("unreadable image"), Image.open(path) as image:
        orientation = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
        if orientation not in range(1, 9):
            orientation = 1
        width, height = image.size
        if orientation in _SWAPS_AXES:
            width, height = height, width
        return ImageHeader(width, height, str(image.format), image.mode, orientation)


def load_rgb(path: str | os.PathLike, apply_orientation: bool = True) -> np.ndarray:
    """Decode an image file fully into uint8 ``[H, W, 3]`` RGB.

    Args:
        path: the file.
        apply_orientation: turn the pixels as the EXIF orientation says (the default).

    Raises:
        ValueError: the file is not an image, or is truncated or corrupt.
        OSError: the file cannot be opened.
    """
    with _image_errors("corrupt or truncated image"), Image.open(path) as image:
        image.load()
        if apply_orientation:
            image = ImageOps.exif_transpose(image)
        return _to_rgb(image)


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in _SIXTEEN_BIT:
        pixels = np.asarray(image).astype(np.int64)
        gray = np.clip(pixels >> 8, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "F":
        gray = np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
