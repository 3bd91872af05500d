"""Sizes beyond which work is refused before any memory is allocated for it.

The defaults fit a machine with 24 GB of memory with room to spare. Each can be changed
with an environment variable (read at every check, so ComfyUI and scripts can set it) or
by assigning the module attribute:

- a pose map (render, CLI, nodes, preprocessor): at most MAX_MAP_SIDE pixels a side and
  MAX_MAP_PIXELS pixels ($DWPOSE_MAX_MAP_SIDE, $DWPOSE_MAX_MAP_PIXELS). At the limit a map
  is 768 MiB as uint8 and 3 GiB as the float32 a node or a pipeline receives; a 200 MP
  photo still gets its map at its own size;
- an image file: at most MAX_IMAGE_PIXELS pixels ($DWPOSE_MAX_IMAGE_PIXELS), read from the
  file's header before decoding (2.7 GB decoded at the limit). A POSE_KEYPOINT canvas is
  an image's size, so the same bound applies to it;
- a keypoint further than MAX_COORDINATE pixels from the origin is garbage: it is read
  and drawn as unseen.
"""

from __future__ import annotations

import os

MAX_MAP_SIDE = 32768
MAX_MAP_PIXELS = 16384 * 16384
MAX_IMAGE_PIXELS = 30_000 * 30_000
MAX_COORDINATE = float(1 << 20)


class SizeLimitError(ValueError):
    """A map, image or canvas beyond the limits: the message says which and how to raise them."""


def _limit(name: str, default: int) -> int:
    text = os.environ.get(f"DWPOSE_{name}")
    if text is None:
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise SizeLimitError(f"$DWPOSE_{name} must be a whole number, got {text!r}") from None
    if value < 1:
        raise SizeLimitError(f"$DWPOSE_{name} must be at least 1, got {value}")
    return value


def max_map_side() -> int:
    return _limit("MAX_MAP_SIDE", MAX_MAP_SIDE)


def max_map_pixels() -> int:
    return _limit("MAX_MAP_PIXELS", MAX_MAP_PIXELS)


def max_image_pixels() -> int:
    return _limit("MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS)


def check_map_size(width: int, height: int) -> None:
    """`SizeLimitError` unless a `width`x`height` map is positive and within the limits."""
    if width < 1 or height < 1:
        raise SizeLimitError(f"pose map size must be positive, got {width}x{height}")
    side, pixels = max_map_side(), max_map_pixels()
    if max(width, height) > side or width * height > pixels:
        raise SizeLimitError(
            f"a {width}x{height} pose map is beyond the limit of {side:,} pixels a side and "
            f"{pixels:,} pixels in all (about {pixels * 3 / 2**20:,.0f} MiB): choose a smaller "
            "resolution, or raise $DWPOSE_MAX_MAP_SIDE / $DWPOSE_MAX_MAP_PIXELS"
        )


def check_image_size(width: int, height: int, name: str = "image") -> None:
    """`SizeLimitError` for an image (or a canvas) of more than `max_image_pixels()`."""
    pixels = max_image_pixels()
    if width * height > pixels:
        raise SizeLimitError(
            f"{name}: {width}x{height} is {width * height:,} pixels, beyond the limit of "
            f"{pixels:,} (raise $DWPOSE_MAX_IMAGE_PIXELS to allow it)"
        )
