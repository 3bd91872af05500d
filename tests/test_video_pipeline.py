"""The batched video pipeline (video_pipeline.py, `dwpose video --workers N --batch-videos`)
on the CPU with the torch backend in float32: three videos whose frames go through the
models together give the keypoints of each video converted alone (to float rounding), the
same tracks and the same detector decisions; the batches really hold several videos'
frames; an error in one call reaches only its own video.

Models: the seeded reference RTMPose-t (real torch compute, so keypoints depend on how the
batch was formed) behind a detector that boxes the figures (tests/followers.py, around the
seeded YOLOX-nano).
"""

import io
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout

import numpy as np
import pytest
from followers import FollowingDetector
from test_video import cli, encode

from comfyui_dwpose import DWPose
from comfyui_dwpose import cli as cli_module
from comfyui_dwpose.images import ImageError
from comfyui_dwpose.video import convert_video
from comfyui_dwpose.video_pipeline import BatchingEstimator

SIZES = {"a": ((96, 128), 6), "b": ((112, 96), 5), "c": ((96, 128), 8)}  # (h, w), frames


@pytest.fixture(scope="module")
def estimator(openmmlab):
    est = DWPose(
        openmmlab / "yolox-nano.pt", openmmlab / "rtmpose-t-wb-256.pt", backend="torch",
        device="cpu", precision="fp32",
    )  # fmt: skip
    est.detector.model = FollowingDetector(est.detector.model.input_size[0], est.detector.model)
    return est


def assert_same_poses(one, other, stem):
    with np.load(one / f"{stem}.npz") as a, np.load(other / f"{stem}.npz") as b:
        assert a["offsets"].tolist() == b["offsets"].tolist() and a["offsets"][-1] > 0
        assert a["track_ids"].tolist() == b["track_ids"].tolist()
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-3)
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-2)
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)


@pytest.fixture(scope="module")
def run(estimator, tmp_path_factory):
    """The videos, and `dwpose video` on them with our estimator: its outputs and the lines
    it printed. The first run converts them one at a time: the reference."""
    folder = tmp_path_factory.mktemp("pipeline")
    sources = {
        n: encode(folder / f"{n}.mp4", count, size=size) for n, (size, count) in SIZES.items()
    }

    def dwpose(name, *options):
        with pytest.MonkeyPatch.context() as patch, redirect_stdout(io.StringIO()) as out:
            patch.setattr(cli_module, "_estimator", lambda args: estimator)
            assert (
                cli({"det": "-", "pose": "-"}, *sources.values(), "-o", folder / name, *options)
                == 0
            )
        return folder / name, sorted(out.getvalue().splitlines())

    return sources, dwpose, dwpose("one")


def test_batched_videos_give_each_video_s_own_poses(estimator, run, tmp_path):
    sources, _, (reference, _) = run
    batcher = BatchingEstimator(estimator, linger=2.0)  # always full batches: exact counts

    def one(path):
        with batcher.stream():
            return convert_video(path, tmp_path, batcher)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(one, sources.values()))
    for name in sources:
        assert_same_poses(reference, tmp_path, name)
    # Each step of the three videos is one batch while all three run, then two, then one.
    assert batcher.frames == sum(count for _, count in SIZES.values())
    assert batcher.frames / batcher.batches >= 2


def test_cli_batch_videos_detects_on_the_same_frames(run):
    sources, dwpose, (reference, lines) = run
    batched, batched_lines = dwpose("batched", "--workers", 3, "--batch-videos")
    for name in sources:
        assert_same_poses(reference, batched, name)
    assert batched_lines == [line.replace("/one/", "/batched/") for line in lines]
    assert all("detector on " in line for line in lines)


def test_an_error_reaches_only_its_own_caller(estimator):
    batcher = BatchingEstimator(estimator, linger=2.0)
    good = np.full((64, 48, 3), 30, np.uint8)
    bad = np.full((64, 48, 3), np.nan, np.float32)

    def call(image):
        with batcher.stream():
            try:
                return len(batcher([image]))
            except ImageError as exc:
                return str(exc)

    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(call, [good, bad, good]))
    assert got[0] == got[2] == 1
    assert "NaN" in got[1] or "nan" in got[1].lower()
