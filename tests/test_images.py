"""Bad and unusual images: clear errors, correct conversions, bounded memory."""

import io
import json
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from comfyui_dwpose.images import ImageError, as_rgb_uint8, load_image, save_image


@pytest.fixture(scope="module")
def photo(coco_images) -> np.ndarray:
    return load_image(coco_images["000000000785"])


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_jpeg_decodes_like_opencv(coco_images):
    """Upstream reads with cv2.imread; our decoder must give the same pixels."""
    for path in coco_images.values():
        np.testing.assert_array_equal(load_image(path), cv2.imread(str(path))[:, :, ::-1])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"the file is empty \(0 bytes\)"),
        (b"this is not an image at all" * 10, "not an image file, or a corrupt one"),
        (
            b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
            "not an image file, or a corrupt one|corrupt or truncated",
        ),
    ],
)
def test_unreadable_files(tmp_path, content, message):
    path = write(tmp_path / "bad.png", content)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files(tmp_path, photo, fmt):
    data = encode(photo, fmt)
    path = write(tmp_path / f"cut.{fmt.lower()}", data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such image file"):
        load_image(tmp_path / "nope.jpg")


def test_grayscale_rgba_palette_and_16_bit(tmp_path, photo):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    got = load_image(write(tmp_path / "gray.png", encode(gray, "PNG")))
    assert got.shape == (*gray.shape, 3) and (got == gray[:, :, None]).all()

    rgba = np.dstack([photo, np.full(photo.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(
        load_image(write(tmp_path / "rgba.png", encode(rgba, "PNG"))), photo
    )

    palette = Image.fromarray(photo).quantize(16)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(
        load_image(tmp_path / "palette.png"), np.asarray(palette.convert("RGB"))
    )

    deep = (gray.astype(np.uint16) << 8) | 0xAB  # 16-bit: the high byte is the picture
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    got = load_image(tmp_path / "deep.png")
    assert got.dtype == np.uint8 and (got == gray[:, :, None]).all()

    deep_rgb = (photo[:, :, ::-1].astype(np.uint16) << 8) | 0x11
    cv2.imwrite(str(tmp_path / "deep_rgb.png"), deep_rgb)
    np.testing.assert_array_equal(load_image(tmp_path / "deep_rgb.png"), photo)


def test_exif_orientation_is_applied(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.fromarray(photo).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    got = load_image(tmp_path / "rotated.jpg")
    assert got.shape == (photo.shape[1], photo.shape[0], 3)


def test_array_conversions():
    base = np.arange(12, dtype=np.uint8).reshape(2, 2, 3) * 20
    np.testing.assert_array_equal(as_rgb_uint8(base), base)
    np.testing.assert_array_equal(as_rgb_uint8(base.astype(np.float32) / 255.0), base)
    np.testing.assert_array_equal(as_rgb_uint8(base.astype(np.uint16) << 8), base)
    np.testing.assert_array_equal(as_rgb_uint8(base[:, :, 0]), np.repeat(base[:, :, :1], 3, axis=2))
    np.testing.assert_array_equal(as_rgb_uint8(np.dstack([base, base[:, :, :1]])), base)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((0, 10, 3), np.uint8), "the image has no pixels"),
        (
            np.zeros((10, 10, 2), np.uint8),
            r"expected an HxW or HxWxC image .* got shape \(10, 10, 2\)",
        ),
        (np.zeros((2, 10, 10, 3), np.uint8), "expected an HxW or HxWxC image"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((4, 4, 3), np.complex64), "unsupported pixel type complex64"),
    ],
)
def test_bad_arrays(array, message):
    with pytest.raises(ImageError, match=message):
        as_rgb_uint8(array)


def test_pixel_types_and_ranges():
    """Issue 12, case 8: float images in 0-255 were clipped as 0-1 (a white image); int16
    and int8 were refused while int32 was taken. Every type is now read by its values."""
    base = np.arange(12, dtype=np.uint8).reshape(2, 2, 3) * 20
    for dtype in (np.float16, np.float32, np.float64):
        np.testing.assert_array_equal(as_rgb_uint8(base.astype(dtype)), base)  # 0-255 floats
        np.testing.assert_array_equal(as_rgb_uint8(base.astype(dtype) / 255), base)  # 0-1
    overshoot = base / 255.0 * 1.2 - 0.05  # resampling overshoot around 0-1: clipped
    np.testing.assert_array_equal(
        as_rgb_uint8(overshoot), np.rint(np.clip(overshoot, 0, 1) * 255).astype(np.uint8)
    )
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64):
        np.testing.assert_array_equal(as_rgb_uint8((base // 2).astype(dtype)), base // 2)
    for dtype in (np.int32, np.int64, np.uint32, np.uint64):  # 16-bit data in a wide type
        np.testing.assert_array_equal(as_rgb_uint8(base.astype(dtype) << 8), base)
    np.testing.assert_array_equal(as_rgb_uint8(np.array([[True, False]])), [[[255] * 3, [0] * 3]])
    pil = Image.fromarray(base)
    np.testing.assert_array_equal(as_rgb_uint8(pil), base)
    np.testing.assert_array_equal(
        as_rgb_uint8(pil.convert("L")),
        np.asarray(pil.convert("RGB").convert("L"))[:, :, None].repeat(3, 2),
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            np.full((4, 4, 3), -0.9, np.float32),
            "image: float pixel values span -0.9 to -0.9; expected 0-1 (or 0-255). "
            "For a -1..1 image pass (image + 1) / 2",
        ),
        (
            np.full((4, 4), 1000.0),
            "image: float pixel values span 1000 to 1000; expected 0-1 (or 0-255). "
            "For a -1..1 image pass (image + 1) / 2",
        ),
        (
            np.full((4, 4), -3, np.int16),
            "image: int16 pixel values span -3 to -3; expected 0-255, or 0-65535 for 16-bit images",
        ),
        (
            np.full((4, 4), 70000, np.int64),
            "image: int64 pixel values span 70000 to 70000; expected 0-255, or 0-65535 for "
            "16-bit images",
        ),
        (
            np.zeros((5, 640, 3)).tolist(),
            "image: expected an image array or a PIL image, got a nested list of shape "
            "(5, 640, 3): convert it with np.asarray(image, np.uint8) first",
        ),
        ("photo.jpg", "image: expected an image array or a PIL image, got str"),
        (None, "image: expected an image array or a PIL image, got NoneType"),
        (
            np.zeros((3, 64, 48), np.float32),
            "image: expected an HxW or HxWxC image with C in 1, 3, 4, got shape (3, 64, 48)",
        ),
    ],
)
def test_values_and_shapes_refused_with_what_was_seen(value, message):
    with pytest.raises(ImageError) as info:
        as_rgb_uint8(value)
    assert str(info.value) == message


def png_of_zeros(path, width: int, height: int):
    """A valid black 1-bit PNG of any size, tiny on disk: zlib squeezes the zero rows."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then 8 pixels a byte
    packer = zlib.compressobj(6)
    rows = 1000
    data = b"".join(
        packer.compress(row * min(rows, height - top)) for top in range(0, height, rows)
    )
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data + packer.flush())
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


def test_image_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    """Issue 12, case 4: a 961 MP PNG of about 1 MB was decoded (6.7 GB peak) although
    images beyond 900 MP are meant to be refused before decoding. Now its header is read,
    it is refused, and the process never holds its pixels."""
    bomb = png_of_zeros(tmp_path / "bomb.png", 31_000, 31_000)
    assert bomb.stat().st_size < 2_000_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(bomb) as img:  # a valid PNG: PIL reads its header
        assert img.size == (31_000, 31_000)
    code = (
        "import re, sys\n"
        "from comfyui_dwpose.images import ImageError, load_image\n"
        "try:\n"
        "    load_image(sys.argv[1])\n"
        "except ImageError as exc:\n"
        "    print(exc)\n"
        "status = open('/proc/self/status').read()\n"
        "print('peak-kb', re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True)
    message, peak = done.stdout.strip().splitlines()
    assert message == (
        f"{bomb}: too large to decode: 31000x31000 is 961,000,000 pixels, beyond the limit "
        "of 900,000,000 (raise $DWPOSE_MAX_IMAGE_PIXELS to allow it)"
    )
    peak_mb = int(peak.split()[1]) / 1024
    assert peak_mb < 300, f"peak {peak_mb:.0f} MB: the pixels were decoded"  # they are 961 MB
    small = png_of_zeros(tmp_path / "small.png", 300, 200)
    assert load_image(small).shape == (200, 300, 3)


def test_save_image_is_atomic(tmp_path, photo):
    save_image(photo, tmp_path / "map.png")
    assert [p.name for p in tmp_path.iterdir()] == ["map.png"]
    np.testing.assert_array_equal(load_image(tmp_path / "map.png"), photo)
    with pytest.raises(TypeError):
        save_image(photo.astype(object), tmp_path / "broken.png")
    assert [p.name for p in tmp_path.iterdir()] == ["map.png"]  # nothing partial left


def run_cli_measured(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run `dwpose` in a fresh interpreter; returns it and that process's peak RSS in MB.

    The peak is VmHWM, which starts afresh at exec (ru_maxrss would count the forked
    copy of this test process too)."""
    code = (
        "import re, sys\n"
        "from comfyui_dwpose.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "status = open('/proc/self/status').read()\n"
        "print('peak-kb', re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    peak_kb = int(done.stdout.split("peak-kb")[-1]) if "peak-kb" in done.stdout else 0
    return done, peak_kb / 1024


def test_huge_image_in_bounded_memory(tmp_path, standins, photo):
    """A 12000x12000 photo (432 MB of pixels) runs end to end in about twice its size:
    no float copies of the image or of the canvas."""
    side = 12000
    big = cv2.resize(photo, (side, side), interpolation=cv2.INTER_LINEAR)
    Image.fromarray(big).save(tmp_path / "huge.jpg", quality=80)
    del big
    models = ["--detector", str(standins["det"]), "--pose-model", str(standins["pose"])]
    done, peak_mb = run_cli_measured(
        [
            "pose",
            str(tmp_path / "huge.jpg"),
            "-o",
            str(tmp_path / "out"),
            *models,
            "--resolution",
            "1024",
        ]
    )
    assert done.returncode == 0, done.stderr
    image_mb = side * side * 3 / 2**20
    assert image_mb < peak_mb < 2.6 * image_mb + 200, (
        f"peak {peak_mb:.0f} MB for a {image_mb:.0f} MB image"
    )
    [frame] = json.loads((tmp_path / "out" / "huge.json").read_text())
    assert (frame["canvas_width"], frame["canvas_height"]) == (side, side)  # caller's pixels
    assert Image.open(tmp_path / "out" / "huge.png").size == (1024, 1024)
