"""Images in and out: files and arrays into RGB uint8, maps onto disk, with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Beyond this an image is refused before decoding (PIL's own bomb check stops at ~179 MP).
MAX_PIXELS = 30_000 * 30_000


class ImageError(ValueError):
    """An image that cannot be used, with the reason and the file in the message."""


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an HxWx3 RGB uint8 array, honouring EXIF orientation.

    Grayscale, palette, RGBA (alpha dropped, as OpenCV does) and 16-bit images are converted;
    corrupt, truncated, empty and oversized files raise `ImageError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes)")
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as img:
            if img.width * img.height == 0:
                raise ImageError(f"{path}: the image has no pixels ({img.width}x{img.height})")
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            return as_rgb_uint8(pil_to_array(img), name=str(path))
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not an image file, or a corrupt one ({exc})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: too large to decode ({exc})") from exc
    except OSError as exc:  # PIL reports truncated and broken data as OSError
        raise ImageError(f"{path}: the image data is corrupt or truncated ({exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def pil_to_array(img: Image.Image) -> np.ndarray:
    """A PIL image as a uint8 (or 16-bit grayscale) array, copied in bands to bound memory."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(img)  # 16/32-bit grayscale: as_rgb_uint8 scales it
    if img.mode not in ("RGB", "L", "RGBA"):
        img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
    # np.asarray(img) goes through two whole-image byte copies; bands keep the peak at
    # one image plus one band, which matters for huge photos.
    first = np.asarray(img.crop((0, 0, img.width, 1)))
    out = np.empty((img.height, *first.shape[1:]), first.dtype)
    band = max(1, (1 << 24) // max(1, first.nbytes))
    for top in range(0, img.height, band):
        bottom = min(img.height, top + band)
        out[top:bottom] = np.asarray(img.crop((0, top, img.width, bottom)))
    return out


def as_rgb_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Any reasonable image array as HxWx3 RGB uint8.

    HxW and HxWx1 are grayscale, HxWx4 drops alpha; uint16 keeps the high byte; floats
    are taken as 0-1. Anything else is an `ImageError` that says what was received.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        channels = arr.shape[2]
    elif arr.ndim == 2:
        channels = 1
        arr = arr[:, :, None]
    else:
        raise ImageError(
            f"{name}: expected an HxW or HxWxC image with C in 1, 3, 4, got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{name}: the image has no pixels (shape {arr.shape})")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype in (np.int32, np.uint32, np.int64) and arr.min() >= 0:
        arr = (arr >> 8).clip(0, 255).astype(np.uint8) if arr.max() > 255 else arr.astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{name}: the image has NaN or infinite values")
        arr = np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    else:
        raise ImageError(f"{name}: unsupported pixel type {arr.dtype}")
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    if channels == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def save_image(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write an RGB uint8 array, to a temporary name first so a partial file never looks complete."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        Image.fromarray(image).save(tmp, format=_format_of(path))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _format_of(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP"}.get(
        ext, "PNG"
    )
