"""Images in and out: files, PIL images and arrays into RGB uint8, maps onto disk, with clear
errors.

Pixel values of arrays are read by their type (`as_rgb_uint8`): floats in 0-1 as diffusers
and ComfyUI give them, or in 0-255 (detected: a maximum above 1.5), integers by their
values. Anything ambiguous or broken is an `ImageError` that says what was received.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import files
from .limits import SizeLimitError, check_image_size, max_image_pixels

# Float images: a maximum up to FLOAT_ONE_MAX is 0-1 (resampling overshoots 1 a little),
# up to FLOAT_255_MAX is 0-255; values down to -FLOAT_UNDERSHOOT of the range are clipped.
FLOAT_ONE_MAX = 1.5
FLOAT_255_MAX = 280.0
FLOAT_UNDERSHOOT = 0.1


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
    Image.MAX_IMAGE_PIXELS = max_image_pixels()  # PIL refuses twice this; we refuse more
    try:
        with Image.open(path) as img:  # reads the header only
            if img.width * img.height == 0:
                raise ImageError(f"{path}: the image has no pixels ({img.width}x{img.height})")
            check_image_size(img.width, img.height, f"{path}: too large to decode")
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            return as_rgb_uint8(pil_to_array(img), name=str(path))
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not an image file, or a corrupt one ({exc})") from exc
    except SizeLimitError as exc:
        raise ImageError(str(exc)) from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: too large to decode ({exc})") from exc
    except OSError as exc:  # PIL reports truncated and broken data as OSError
        raise ImageError(f"{path}: the image data is corrupt or truncated ({exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def pil_to_array(img: Image.Image) -> np.ndarray:
    """A PIL image as a uint8 (or 16-bit grayscale) array, copied in bands to bound memory."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return np.asarray(img)  # 16/32-bit grayscale, float: as_rgb_uint8 reads the values
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


def as_rgb_uint8(image, name: str = "image") -> np.ndarray:
    """Any reasonable image as HxWx3 RGB uint8.

    Takes a PIL image, or an array (numpy, or anything `np.asarray` turns into one, such as
    a CPU tensor) of shape HxW, HxWx1 (grayscale), HxWx3 or HxWx4 (alpha dropped). Pixels:
    uint8 as they are; bool as 0/255; uint16 keeps the high byte; other integer types
    (int8 to int64, uint32, uint64) by their values: 0-255 as they are, up to 65535 as 16-bit,
    negative or larger values refused. Floats: 0-1 (a maximum up to 1.5 is resampling
    overshoot, clipped), or 0-255 when the maximum is above 1.5 (up to 280), scaled; NaN,
    infinity and other ranges (a -1..1 image) are refused. Nested lists and other shapes
    are an `ImageError` that says what was received.
    """
    if isinstance(image, Image.Image):
        image = pil_to_array(image)
    elif isinstance(image, (list, tuple)):
        raise ImageError(
            f"{name}: expected an image array or a PIL image, got {_describe_list(image)}"
        )
    elif not isinstance(image, np.ndarray) and not hasattr(image, "__array__"):
        raise ImageError(
            f"{name}: expected an image array or a PIL image, got {type(image).__name__}"
        )
    arr = as_array(image, name)
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
    arr = _to_uint8(arr, name)
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    if channels == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def image_list(images, name: str = "images") -> tuple[list, bool]:
    """The images of a call, and whether one image was given. A PIL image or an HxW(xC)
    array is one image; a BxHxWxC array, or a list or tuple of images, is several. Nested
    Python lists are refused with the shape seen."""
    if isinstance(images, Image.Image):
        return [images], True
    if isinstance(images, (list, tuple)):
        for i, item in enumerate(images):
            if isinstance(item, (list, tuple, int, float)):
                raise ImageError(
                    f"{name}: expected an image or a list of images (arrays or PIL images), "
                    f"got {_describe_list(images, i)}"
                )
        return list(images), False
    if isinstance(images, np.ndarray) or hasattr(images, "__array__"):
        arr = as_array(images, name)
        if arr.ndim in (2, 3):
            return [arr], True
        if arr.ndim == 4:
            return list(arr), False
        raise ImageError(
            f"{name}: expected an HxWxC image or a BxHxWxC batch, got shape {arr.shape}"
        )
    raise ImageError(
        f"{name}: expected an image or a list of images (arrays or PIL images), got "
        f"{type(images).__name__}"
    )


def as_array(image, name: str = "image") -> np.ndarray:
    """`np.asarray(image)`, or an `ImageError` (a GPU tensor, an object that is no array)."""
    try:
        return np.asarray(image)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ImageError(f"{name}: cannot read it as an array ({exc})") from exc


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if kind in "iu":
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 65535:
            raise ImageError(
                f"{name}: {arr.dtype} pixel values span {low} to {high}; expected 0-255, "
                "or 0-65535 for 16-bit images"
            )
        return (arr >> 8 if high > 255 else arr).astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise ImageError(f"{name}: the image has NaN or infinite values")
        low, high = float(arr.min()), float(arr.max())
        top = 1.0 if high <= FLOAT_ONE_MAX else 255.0
        if high > FLOAT_255_MAX or low < -FLOAT_UNDERSHOOT * top:
            raise ImageError(
                f"{name}: float pixel values span {low:.4g} to {high:.4g}; expected 0-1 (or "
                "0-255). For a -1..1 image pass (image + 1) / 2"
            )
        out = np.clip(arr, 0.0, top)
        if top != 255.0:
            out *= 255.0 / top
        return np.rint(out, out=out).astype(np.uint8)
    raise ImageError(f"{name}: unsupported pixel type {arr.dtype}")


def _describe_list(value: list | tuple, bad: int = 0) -> str:
    """What a list that is no image holds: its shape when nested, else its item `bad`."""
    try:
        shape = np.shape(value)
    except ValueError:  # ragged
        shape = ()
    if len(shape) > 1:
        return (
            f"a nested {type(value).__name__} of shape {shape}: convert it with "
            "np.asarray(image, np.uint8) first"
        )
    item = value[bad] if len(value) > bad else None
    return f"a {type(value).__name__} whose item {bad} is a {type(item).__name__}"


def save_image(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write an RGB uint8 array whole or not at all (`files.replacing`); an OS error is an
    `OutputError` naming the file."""
    path = Path(path)
    with files.replacing(path) as partial:
        Image.fromarray(image).save(partial, format=_format_of(path))


def _format_of(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP"}.get(
        ext, "PNG"
    )
