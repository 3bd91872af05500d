"""Property-based tests (hypothesis) of everything that reads what users hand in: the
POSE_KEYPOINT reader and the renderer, the image loader, the array adapters.

Whatever comes in, the only exceptions are the project's own, with their messages, and
nothing is allocated past the size limits. Examples are derandomised (the same on every
run, so CI is reproducible) and counted by MAX_EXAMPLES; their run time is in the report.
"""

import io
import json
import math
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from comfyui_dwpose import PoseFrame, from_pose_keypoint, render_pose
from comfyui_dwpose.images import ImageError, as_rgb_uint8, image_list, load_image
from comfyui_dwpose.limits import SizeLimitError
from comfyui_dwpose.pose_keypoint import PoseKeypointError
from comfyui_dwpose.render import map_size

MAX_EXAMPLES = 150
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Small limits, so that "nothing past the limits" is cheap to check (bytes traced by
# tracemalloc: numpy registers its allocations there).
MAP_PIXELS = 1 << 16
IMAGE_PIXELS = 1 << 18

# What render_pose itself refuses (plain ValueErrors with these messages).
RENDER_MESSAGES = ("stick_width must be", "render_pose got no frames", "PoseFrame:")


@pytest.fixture(autouse=True)
def small_limits(monkeypatch):
    monkeypatch.setenv("DWPOSE_MAX_MAP_PIXELS", str(MAP_PIXELS))
    monkeypatch.setenv("DWPOSE_MAX_IMAGE_PIXELS", str(IMAGE_PIXELS))


def traced_peak(work) -> int:
    """Peak bytes traced while `work()` runs (its result is dropped)."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------ POSE_KEYPOINT


def mostly(good, bad, odds: int = 9):
    """`good` about `odds` times in `odds` + 1, else `bad`: most examples go deep."""
    return st.sampled_from([True] * odds + [False]).flatmap(lambda ok: good if ok else bad)


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=4),
    st.dictionaries(st.text(max_size=2), st.none(), max_size=2),
)
special = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0.0, 0.5, 1.0, 1.18, -0.2, 1e12, -1e30, 2**63, 1e308, float("nan")]),
)
number = mostly(st.floats(-20, 300), special, odds=4)
canvas_side = mostly(
    st.integers(1, 400),
    st.one_of(
        st.integers(-3, 4096), st.sampled_from([0, 10**9, 100_000, 2**63]), st.floats(), junk
    ),
    odds=4,
)


@st.composite
def part(draw, points: int) -> object:
    """Mostly the right number of (x, y, c) values, in pixels or normalised, with special
    values planted among them; else one junk value among them, a wrong length, or junk.
    Values come from a seeded generator: drawing hundreds one by one is slow."""
    kind = draw(st.sampled_from(["right"] * 12 + ["spoiled", "wrong", "junk"]))
    if kind == "junk":
        return draw(junk)
    n = 3 * points if kind != "wrong" else draw(st.integers(0, 3 * points + 4))
    scale = draw(st.sampled_from([300.0, 1.0]))  # pixels, or normalised to the canvas
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.uniform(-0.05 * scale, 1.1 * scale, n)
    values[2::3] = rng.choice([0.0, 0.5, 1.0], len(values[2::3]))
    values = values.tolist()
    for index, value in draw(st.lists(st.tuples(st.integers(0, 3 * points), special), max_size=4)):
        if n:
            values[index % n] = value
    if kind == "spoiled" and n:
        values[draw(st.integers(0, n - 1))] = draw(junk)
    return values


person = mostly(
    st.fixed_dictionaries(
        {},
        optional={
            "pose_keypoints_2d": part(18),
            "face_keypoints_2d": part(68),
            "hand_left_keypoints_2d": part(21),
            "hand_right_keypoints_2d": part(21),
            "foot_keypoints_2d": part(6),
            "keypoints_133": mostly(part(133), st.none(), odds=1),
            "box": mostly(
                st.lists(number, min_size=4, max_size=5), st.lists(special, max_size=6) | junk
            ),
            "person_id": mostly(st.integers(0, 9), special | junk),
        },
    ),
    junk,
)
frame = mostly(
    st.fixed_dictionaries(
        {
            "canvas_width": canvas_side,
            "canvas_height": canvas_side,
            "people": mostly(st.lists(person, min_size=1, max_size=3), junk | st.just([])),
        }
    ),
    junk,
)
pose_keypoint = mostly(st.lists(frame, min_size=1, max_size=3), st.one_of(frame, junk), odds=4)


@FUZZ
@given(
    value=pose_keypoint,
    resolution=st.integers(0, 96),
    coordinates=st.sampled_from(["auto", "pixels", "normalised"]),
)
def test_pose_keypoint_reader_and_renderer(value, resolution, coordinates):
    """Anything a node or a JSON file can hold: frames, or one PoseKeypointError; their
    maps, or a SizeLimitError before any allocation. The JSON route sees the same."""
    try:
        frames = from_pose_keypoint(value, coordinates, source="fuzz.json")
    except PoseKeypointError as exc:
        assert str(exc).startswith("fuzz.json: ") and "\n" not in str(exc)
        event("refused by the reader")
        return
    event(f"read: {len(frames)} frame(s), {sum(map(len, frames))} people")
    text = json.dumps(value)  # Python's json writes NaN bare, as such files have them
    assert len(from_pose_keypoint(json.loads(text), coordinates)) == len(frames)
    for pose in frames:
        assert np.isfinite(pose.keypoints).all() and np.isfinite(pose.scores).all()
        assert (np.abs(pose.keypoints) <= 2**20).all()
        width, height = map_size(pose.width, pose.height, resolution)

        def draw(pose=pose, width=width, height=height):
            try:
                drawn = render_pose(pose, width, height, feet=True)
            except SizeLimitError:
                assert width * height > MAP_PIXELS
                event("map refused: size")
                return
            event("map drawn")
            assert drawn.shape == (height, width, 3) and drawn.dtype == np.uint8

        assert traced_peak(draw) <= 2 * 3 * MAP_PIXELS + 2**20


@FUZZ
@given(
    people=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
    specials=st.lists(st.tuples(st.integers(0, 2 * 3 * 133), number.map(float)), max_size=12),
    bad_scores=st.lists(st.tuples(st.integers(0, 3 * 133), st.floats(width=32)), max_size=6),
    frame_size=st.tuples(st.integers(1, 400), st.integers(1, 400)),
    size=st.tuples(st.integers(-5, 400), st.integers(-5, 400)),
    stick_width=st.one_of(st.integers(-2, 12), st.sampled_from(["xinsr", "wide", 2.5, None])),
)
def test_renderer_on_arbitrary_frames(
    people, seed, specials, bad_scores, frame_size, size, stick_width
):
    """Keypoints anywhere, with NaN, infinities and 1e300 planted among them, scores of
    any value, any map size and limb width: a map, or the project's own refusal."""
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(-50, 450, (people, 133, 2))
    scores = rng.uniform(0, 1, (people, 133))
    for index, value in specials if people else []:
        keypoints.reshape(-1)[index % keypoints.size] = value
    for index, value in bad_scores if people else []:
        scores.reshape(-1)[index % scores.size] = value
    pose = PoseFrame(keypoints, scores, np.zeros((people, 4)), np.ones(people), *frame_size)
    try:
        drawn = render_pose(pose, *size, stick_width=stick_width, feet=True)
    except SizeLimitError:
        assert min(size) < 1 or size[0] * size[1] > MAP_PIXELS
        event("refused: map size")
        return
    except ValueError as exc:
        assert str(exc).startswith(RENDER_MESSAGES), exc
        event("refused: stick width")
        return
    assert drawn.shape == (size[1], size[0], 3)
    event("drawn" if drawn.any() else "drawn, empty")


# ------------------------------------------------------------------ image files


def encoded(fmt: str, size=(7, 5), mode="RGB") -> bytes:
    """A small image file; a format that cannot store the mode gets it as RGB."""
    buffer = io.BytesIO()
    pixels = np.arange(size[0] * size[1] * 3, dtype=np.uint32).reshape(size[1], size[0], 3)
    image = Image.fromarray((pixels % 251).astype(np.uint8)).convert(mode)
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


SAMPLES = [encoded(f) for f in ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")] + [
    encoded("PNG", mode="L"), encoded("PNG", mode="I;16"), encoded("TIFF", mode="CMYK"),
]  # fmt: skip


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims any size (its data is one empty row)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


@st.composite
def image_bytes(draw) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind >= 4:  # an intact file of some format, mode and size (some beyond the limit)
        fmt = draw(st.sampled_from(["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"]))
        mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "1", "I;16", "CMYK"]))
        size = draw(st.tuples(st.integers(1, 600), st.integers(1, 600)))
        return encoded(fmt, size, mode)
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return png_header(draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1)))
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    if kind == 2:  # flipped bytes
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return bytes(data[: draw(st.integers(0, len(data)))])  # truncated


@FUZZ
@given(data=image_bytes())
def test_image_loader(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "image.png"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except ImageError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        event("refused")
        return
    event("loaded")
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert image.shape[0] * image.shape[1] <= IMAGE_PIXELS


# ------------------------------------------------------------------ arrays


DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64,
          np.float16, np.float32, np.float64, np.bool_, np.complex64]  # fmt: skip
image_shapes = st.tuples(st.integers(1, 6), st.integers(1, 6)).flatmap(
    lambda hw: st.sampled_from([hw, (*hw, 1), (*hw, 3), (*hw, 4)])
)
any_shapes = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5)


@st.composite
def arrays(draw):
    """Arrays of every pixel type: mostly image shapes and values in a type's image range,
    else any shape and any value (NaN, infinities, negatives, 1e30)."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(mostly(image_shapes, any_shapes, odds=3))
    if draw(st.integers(0, 3)) == 0 or dtype.kind in "bc":
        return draw(hnp.arrays(dtype, shape))
    top = {"f": draw(st.sampled_from([1.0, 1.4, 255.0, 270.0])), "u": 255, "i": 127}[dtype.kind]
    if dtype.kind in "ui" and dtype.itemsize >= 2:
        top = draw(
            st.sampled_from(
                [255, 65535] if dtype.itemsize > 2 or dtype.kind == "u" else [255, 32767]
            )
        )
    low = -0.05 * top if dtype.kind == "f" else 0
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).uniform(low, top, shape).astype(dtype)


pil_images = st.builds(
    Image.new,
    st.sampled_from(["RGB", "RGBA", "L", "LA", "1", "P", "I", "I;16", "F", "CMYK", "YCbCr"]),
    st.tuples(st.integers(0, 6), st.integers(0, 6)),
)
other = st.one_of(
    junk,
    st.integers(),
    st.floats(),
    pil_images,
    pil_images,
    arrays().map(lambda a: a.tolist()),
    st.lists(st.lists(st.integers(0, 255), max_size=3), max_size=3),
)


@FUZZ
@given(value=mostly(arrays(), other, odds=3))
def test_array_adapters(value):
    """Any array (every pixel type, 0-5 dimensions, any values), list, PIL image or other
    object: an HxWx3 uint8 image, or an ImageError that says what came."""
    try:
        image = as_rgb_uint8(value, name="input")
    except ImageError as exc:
        assert str(exc).startswith("input: ") and "\n" not in str(exc)
        event("refused")
    else:
        event(f"converted from {type(value).__name__}")
        shape = np.shape(value) if not isinstance(value, Image.Image) else value.size[::-1]
        assert image.dtype == np.uint8 and image.shape == (*shape[:2], 3)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            top = 1.0 if value.max() <= 1.5 else 255.0  # 0-1, or 0-255 detected
            colour = value if value.ndim == 2 else value[:, :, :3]
            expected = min(float(colour.max()), top) / top * 255
            assert math.isclose(image.max(), max(expected, 0), abs_tol=1.0)
    try:
        images, single = image_list(value)
    except ImageError as exc:
        assert str(exc).startswith("images: ") and "\n" not in str(exc)
    else:
        assert isinstance(images, list) and (not single or len(images) == 1)
