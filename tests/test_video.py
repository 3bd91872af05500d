"""Videos end to end on real encoded files made here: codecs and containers, rotation,
variable frame rate, 1 and 0 frames, truncated and broken files, audio; outputs, resume,
isolation of failures, workers, and detector skipping against the per-frame pipeline.

Models: the golden stand-ins for the plumbing (their detector always finds the same two
people), and tests/followers.py (outputs follow coloured figures) where what is tracked
must follow the picture.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import ROOT, outputs_in
from followers import draw_figures, follow

from comfyui_dwpose import DWPose
from comfyui_dwpose.cli import main
from comfyui_dwpose.files import OutputBusy, OutputError, locked
from comfyui_dwpose.images import load_image
from comfyui_dwpose.video import (
    JsonWriter,
    Outputs,
    VideoError,
    convert_video,
    iter_poses,
    probe,
    read_frames,
)

SIZE = (96, 128)  # h, w


def figures(i, size=SIZE):
    """Two figures walking towards each other and crossing (the green one in front)."""
    h, w = size
    x = 0.1 * w + 1.5 * i
    x2 = 0.75 * w - 1.5 * i
    return [
        (0, x, 0.15 * h, x + 0.2 * w + 4 * np.sin(i / 4), 0.85 * h),
        (1, x2, 0.2 * h, x2 + 0.2 * w, 0.8 * h),
    ]


def encode(path, count, codec="libx264", pix_fmt="yuv420p", size=SIZE, pts=None, rotation=None,
           audio=False, options=None, fmt=None):  # fmt: skip
    """Write `count` frames of `figures` to `path`; `pts` in milliseconds makes it VFR."""
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream(codec, rate=None if pts else 30)
        stream.width, stream.height = size[1], size[0]
        stream.pix_fmt = pix_fmt
        if pts:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=16000) if audio else None
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(draw_figures(size, figures(i, size)), "rgb24")
            if pts:
                frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if sound:
            samples = av.AudioFrame.from_ndarray(
                np.zeros((1, 16000), np.float32), format="fltp", layout="mono"
            )
            samples.sample_rate, samples.pts = 16000, 0
            out.mux(sound.encode(samples))
            out.mux(sound.encode())
    return path


def decoded(path):
    """(times in seconds, sizes, rotations) of every frame of a video."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return (
        [float(f.time) for f in frames],
        {(f.width, f.height) for f in frames},
        {f.rotation for f in frames},
    )


@pytest.fixture(scope="module")
def estimator(standins):
    est = DWPose(standins["det"], standins["pose"])
    follow(est)
    return est


def check_outputs(folder, stem, source, people=2):
    """The pose video, JSON and npz of `source` agree with it frame for frame."""
    times, sizes, _ = decoded(source)
    (width, height) = sizes.pop()
    info = probe(source)
    if info.rotation % 180:
        width, height = height, width
    out_times, out_sizes, out_rotations = decoded(folder / f"{stem}.mp4")
    assert len(out_times) == len(times)
    np.testing.assert_allclose(out_times, np.array(times) - times[0], atol=1e-3)
    assert out_sizes == {(width, height)} and out_rotations == {0}
    entries = json.loads((folder / f"{stem}.json").read_text())
    assert len(entries) == len(times)
    assert {(e["canvas_width"], e["canvas_height"]) for e in entries} == {(width, height)}
    with np.load(folder / f"{stem}.npz") as npz:
        assert len(npz["offsets"]) == len(times) + 1 and npz["offsets"][0] == 0
        np.testing.assert_allclose(npz["times"], times, atol=1e-6)
        rows = npz["offsets"][-1]
        assert npz["keypoints"].shape == (rows, 133, 2) and npz["keypoints"].dtype == np.float32
        assert npz["scores"].shape == (rows, 133) and npz["boxes"].shape == (rows, 4)
        assert (int(npz["width"]), int(npz["height"])) == (width, height)
        if people is not None:  # None: a model whose tracks need not follow the figures
            assert len(set(npz["track_ids"].tolist())) == people
        ids = [p["person_id"] for e in entries for p in e["people"]]
        assert ids == npz["track_ids"].tolist()
    assert not list(folder.glob(".*partial*"))


CONTAINERS = {
    "mp4-h264": ("mp4", "libx264", "yuv420p", SIZE),
    "mkv-mpeg4": ("mkv", "mpeg4", "yuv420p", SIZE),
    "webm-vp9": ("webm", "libvpx-vp9", "yuv420p", SIZE),
    "avi-mjpeg": ("avi", "mjpeg", "yuvj420p", SIZE),
    "mov-h264-odd-size": ("mov", "libx264", "yuv444p", (95, 127)),
}


@pytest.mark.parametrize("case", sorted(CONTAINERS))
def test_codecs_and_containers(case, estimator, tmp_path):
    suffix, codec, pix_fmt, size = CONTAINERS[case]
    source = encode(tmp_path / f"clip.{suffix}", 24, codec, pix_fmt, size)
    done = convert_video(source, tmp_path / "out", estimator)
    assert done["frames"] == 24 and done["people"] == 2
    check_outputs(tmp_path / "out", "clip", source)
    with av.open(str(tmp_path / "out" / "clip.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        odd = size[0] % 2 or size[1] % 2
        assert stream.codec_context.pix_fmt == ("yuv444p" if odd else "yuv420p")


def test_rotated_video_comes_out_upright(estimator, tmp_path):
    """Rotation 90 in the display matrix means "turn 90 degrees counter-clockwise to show"
    (libavutil's convention): the stored 128x96 frames show as 96x128, the figure drawn at the
    stored left lands at the bottom, and keypoints are in the upright picture's pixels."""
    source = encode(tmp_path / "phone.mp4", 12, rotation=90)
    info = probe(source)
    assert (info.width, info.height, info.rotation) == (96, 128, 90)
    first = next(read_frames(source)).image
    upright = np.rot90(draw_figures(SIZE, figures(0)), 1)
    assert first.shape == (128, 96, 3)
    assert np.abs(first.astype(int) - upright).mean() < 3
    convert_video(source, tmp_path / "out", estimator)
    check_outputs(tmp_path / "out", "phone", source)
    with np.load(tmp_path / "out" / "phone.npz") as npz:
        boxes = npz["boxes"][: npz["offsets"][1]]
    # The red figure, stored at x 12..38 of 128, is at y 90..116 upright.
    assert any(abs(box[1] - 90) <= 3 and abs(box[3] - 116) <= 3 for box in boxes)


def test_variable_frame_rate_keeps_every_timestamp(estimator, tmp_path):
    pts = [0, 33, 50, 120, 130, 300, 310, 320, 500, 533]
    source = encode(tmp_path / "vfr.mp4", len(pts), pts=pts)
    times, _, _ = decoded(source)
    np.testing.assert_allclose(times, np.array(pts) / 1000, atol=1e-3)
    convert_video(source, tmp_path / "out", estimator)
    check_outputs(tmp_path / "out", "vfr", source)


def test_audio_track_is_ignored(estimator, tmp_path):
    source = encode(tmp_path / "music.mp4", 20, audio=True)
    convert_video(source, tmp_path / "out", estimator)
    check_outputs(tmp_path / "out", "music", source)


def test_a_single_frame(estimator, tmp_path):
    source = encode(tmp_path / "still.mp4", 1)
    assert convert_video(source, tmp_path / "out", estimator)["frames"] == 1
    check_outputs(tmp_path / "out", "still", source)


def test_overlay_and_png_frames(estimator, tmp_path):
    source = encode(tmp_path / "clip.mp4", 10)
    convert_video(source, tmp_path / "out", estimator, outputs=Outputs(overlay=True, frames=True))
    pngs = sorted((tmp_path / "out" / "clip_frames").iterdir())
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(10)]
    pose_map = load_image(pngs[0])
    times, sizes, _ = decoded(tmp_path / "out" / "clip_overlay.mp4")
    assert len(times) == 10 and sizes == {(128, 96)}
    with av.open(str(tmp_path / "out" / "clip_overlay.mp4")) as container:
        overlay = next(container.decode(video=0)).to_ndarray(format="rgb24")
    background = pose_map.max(axis=2) == 0
    # Where nothing is drawn the overlay shows the source (grey 30 background, figures).
    assert abs(np.median(overlay[background]) - 30) < 8
    assert (overlay[~background].astype(int) - pose_map[~background]).__abs__().mean() < 25


def broken_videos(folder):
    """Files that must fail, each with the reason expected in the message."""
    folder.mkdir()
    junk = folder / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 50)
    (folder / "empty.mp4").write_bytes(b"")
    with av.open(str(folder / "zero.mkv"), "w") as out:  # a video stream with no frames
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height = 64, 48
        sound = out.add_stream("aac", rate=16000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), "fltp", "mono")
        samples.sample_rate, samples.pts = 16000, 0
        out.mux(sound.encode(samples))
        out.mux(sound.encode())
    cases = {"junk.mp4": "not a video", "empty.mp4": "not a video", "zero.mkv": "no video frames"}
    for name, options in (
        ("front.mp4", {"movflags": "faststart"}),
        ("end.mp4", {}),
        ("cut.mkv", {}),
    ):
        full = encode(folder / f"full_{name}", 60, options=options)
        data = full.read_bytes()
        (folder / name).write_bytes(data[: len(data) * 2 // 3])
        full.unlink()
        cases[name] = "truncated" if name != "end.mp4" else "not a video"  # no index: unreadable
    return cases


def test_bad_and_truncated_files_fail_and_leave_nothing(estimator, tmp_path):
    cases = broken_videos(tmp_path / "bad")
    for name, reason in cases.items():
        with pytest.raises(VideoError, match=reason):
            convert_video(tmp_path / "bad" / name, tmp_path / "out", estimator)
    assert outputs_in(tmp_path / "out") == []


def test_skipping_the_detector_matches_the_per_frame_pipeline(estimator, tmp_path):
    """Figures that cross: with the detector on every 8th frame (and whenever tracking
    weakens), ids never switch and keypoints stay within 2 px (median) of running the
    detector on every frame."""
    source = encode(tmp_path / "cross.mp4", 60)
    every = list(iter_poses(source, estimator, detect_every=1, smooth=False))
    skipping = list(iter_poses(source, estimator, detect_every=8, smooth=False))
    assert len(every) == len(skipping) == 60
    distances = []
    for (a, _), (b, _) in zip(every, skipping):
        assert sorted(a.track_ids.tolist()) == sorted(b.track_ids.tolist())
        for n, track in enumerate(b.track_ids.tolist()):
            m = a.track_ids.tolist().index(track)
            distances.append(np.linalg.norm(a.keypoints[m] - b.keypoints[n], axis=-1))
    assert {tuple(sorted(p.track_ids.tolist())) for p, _ in skipping} <= {(0, 1), (0,), (1,)}
    assert np.median(distances) < 2.0  # measured 0.1 px
    # Fewer detections than frames by far; numbers in bench/video.py.
    from comfyui_dwpose.temporal import TrackingEstimator

    tracking = TrackingEstimator(estimator, detect_every=8)
    for frame in read_frames(source):
        tracking([frame.image])
    assert tracking.detections <= 60 / 3


def test_iter_poses_streams_smoothed_frames_with_images(estimator, tmp_path):
    source = encode(tmp_path / "clip.mp4", 30)
    everyone = list(iter_poses(source, estimator))
    out = list(iter_poses(source, estimator, keep_images=True, people=1))
    assert [frame.index for _, frame in out] == list(range(30))
    assert all(frame.image.shape == (96, 128, 3) for _, frame in out)
    # The one kept is the larger figure (red: 0.7 of the height against 0.6), always.
    red = [
        p.track_ids[np.argmax(p.boxes[:, 3] - p.boxes[:, 1])] for p, _ in everyone if len(p) == 2
    ]
    assert len(set(red)) == 1
    assert {tuple(pose.track_ids.tolist()) for pose, _ in out} == {(red[0],)}


def test_pose_on_boxes_equals_the_full_pipeline(standins, tiny_models, coco_images):
    image = load_image(coco_images["000000000785"])
    for max_side in (4096, 320):  # also through the shrink for large images
        est = DWPose(standins["det"], tiny_models["pose"], max_side=max_side)
        frame = est(image)
        again = est.pose_on_boxes([image], [frame.boxes], [frame.box_scores])[0]
        np.testing.assert_array_equal(again.keypoints, frame.keypoints)
        np.testing.assert_array_equal(again.scores, frame.scores)
        np.testing.assert_array_equal(again.boxes, frame.boxes)


# ---------------------------------------------------------------------------- the CLI


def cli(standins, *args):
    return main(["video", *map(str, args), "--detector", str(standins["det"]),
                 "--pose-model", str(standins["pose"])])  # fmt: skip


def test_cli_batch_isolates_failures_and_resumes(standins, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    encode(videos / "a.mp4", 8)
    encode(videos / "b.mkv", 8, codec="mpeg4")
    (videos / "broken.mp4").write_bytes(b"garbage" * 100)
    extra = encode(tmp_path / "c.mov", 5)
    out = tmp_path / "out"
    assert cli(standins, videos, tmp_path / "*.mov", "-o", out) == 1
    captured = capsys.readouterr()
    assert "broken.mp4: not a video" in captured.err
    assert "1 of 4 input(s) failed" in captured.err
    for stem, source in (("a", videos / "a.mp4"), ("b", videos / "b.mkv"), ("c", extra)):
        check_outputs(out, stem, source)
    assert not (out / "broken.mp4").exists()

    # Resume: finished videos are skipped; one whose outputs are incomplete is redone.
    (out / "b.npz").unlink()
    (out / ".b.json.partial").write_text("[{")  # left by an interrupted run
    stamp = (out / "a.mp4").stat().st_mtime_ns
    assert cli(standins, videos / "a.mp4", videos / "b.mkv", "-o", out) == 0
    captured = capsys.readouterr()
    assert "a.mp4: done before, skipped" in captured.out
    assert "b.mkv -> " in captured.out
    assert (out / "a.mp4").stat().st_mtime_ns == stamp
    check_outputs(out, "b", videos / "b.mkv")

    assert cli(standins, videos / "a.mp4", "-o", out, "--overwrite") == 0
    assert (out / "a.mp4").stat().st_mtime_ns != stamp


def test_cli_workers_give_the_same_outputs(standins, tmp_path):
    sources = [encode(tmp_path / f"v{i}.mp4", 6 + 2 * i) for i in range(3)]
    assert cli(standins, *sources, "-o", tmp_path / "one") == 0
    assert cli(standins, *sources, "-o", tmp_path / "two", "--workers", "2") == 0
    for source in sources:
        name = f"{source.stem}.json"
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def test_cli_usage_errors(standins, tmp_path, capsys):
    assert cli(standins, tmp_path / "nothing*.mp4", "-o", tmp_path / "out") == 2
    assert "no videos found" in capsys.readouterr().err
    encode(tmp_path / "x.mp4", 2)
    encode(tmp_path / "x.mkv", 2, codec="mpeg4")
    assert cli(standins, tmp_path / "x.mp4", tmp_path / "x.mkv", "-o", tmp_path / "out") == 2
    assert "would both write x.mp4" in capsys.readouterr().err
    args = (tmp_path / "x.mp4", "-o", tmp_path / "out", "--resolution", "512")
    assert cli(standins, *args) == 2


# ----------------------------------------------------------------- issue 12 (reliability)


def errors(captured) -> list[str]:
    return [line for line in captured.err.splitlines() if line.startswith("dwpose: ")]


def test_outputs_never_replace_the_input(standins, estimator, tmp_path, capsys):
    """Case 1: `dwpose video clip.mp4 -o .` in the clip's folder replaced the clip."""
    clip = encode(tmp_path / "clip.mp4", 4)
    before = clip.read_bytes()
    assert cli(standins, clip, "-o", tmp_path) == 2
    assert errors(capsys.readouterr()) == [
        f"dwpose: error: {tmp_path / 'clip.mp4'} would replace the input {clip}: choose "
        "another output folder (-o)"
    ]
    with pytest.raises(OutputError, match=f"^{tmp_path / 'clip.mp4'} would replace the input"):
        convert_video(clip, tmp_path, estimator)
    assert clip.read_bytes() == before and outputs_in(tmp_path) == ["clip.mp4"]


def test_unmatched_pattern_is_reported(standins, tmp_path, capsys):
    """Issue 9: `dwpose video a.mp4 "more/*.mov"` ignored the pattern silently."""
    source = encode(tmp_path / "a.mp4", 3)
    pattern = tmp_path / "more" / "*.mov"
    assert cli(standins, source, pattern, "-o", tmp_path / "out") == 1
    assert errors(capsys.readouterr()) == [
        f"dwpose: error: {pattern}: no file matches this pattern (skipped)",
        f"dwpose: error: 1 of 2 input(s) failed: {pattern}",
    ]
    check_outputs(tmp_path / "out", "a", source)


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_within_a_batch_and_a_rerun_finishes(standins, tmp_path, workers):
    """Case 6: Ctrl-C let the current video run to its end and dropped the queued ones.
    Now every running video stops within one batch of frames, nothing partial is left, a
    summary names what is unfinished, exit 130; the same command then finishes the job.
    `dwpose video` runs in its own process and gets SIGINT mid-video, as from a terminal."""
    sources = [encode(tmp_path / f"{name}.mp4", 60) for name in "ab"]
    out = tmp_path / "out"
    args = [*sources, "-o", out, "--workers", workers]
    run = dwpose_video(standins, *args)
    wait_until(lambda: out.exists() and any(out.glob(".a.*.partial*")), run)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate()
    assert run.returncode == 130, stderr.decode()
    assert [line for line in stderr.decode().splitlines() if line.startswith("dwpose: ")] == [
        "dwpose: error: interrupted: 0 of 2 video(s) finished, 0 failed, 2 not finished "
        f"({', '.join(map(str, sources))}); run the same command again to finish them"
    ]
    assert outputs_in(out) == []  # stopped mid-video (before: ran to its end), no partials
    assert cli(standins, *args) == 0
    for source in sources:
        check_outputs(out, source.stem, source, people=None)


def test_disk_full_leaves_no_partial_and_stops_the_batch(standins, tmp_path, monkeypatch, capsys):
    """Case 7: disk full left .partial files behind. ENOSPC is injected at the JSON write
    of the third frame (a fault of the OS); the video's partials are removed."""
    sources = [encode(tmp_path / f"{name}.mp4", 6) for name in "ab"]
    write = JsonWriter.write
    frames = []

    def write_until_full(self, pose):
        frames.append(pose)
        if len(frames) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(self, pose)

    monkeypatch.setattr(JsonWriter, "write", write_until_full)
    out = tmp_path / "out"
    assert cli(standins, *sources, "-o", out) == 1
    assert errors(capsys.readouterr()) == [
        f"dwpose: error: cannot write the outputs of a.mp4 in {out}: No space left on device "
        "(free some space, or write elsewhere)",
        "dwpose: error: stopped: 0 of 2 video(s) finished, 0 failed, 2 not finished "
        f"({sources[0]}, {sources[1]}); run the same command again to finish them",
    ]
    assert outputs_in(out) == []


def dwpose_video(standins, *args) -> subprocess.Popen:
    """`dwpose video ARGS` in its own process (another user's run)."""
    command = [sys.executable, "-m", "comfyui_dwpose.cli", "video", *map(str, args),
               "--detector", str(standins["det"]), "--pose-model", str(standins["pose"])]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=terminal_sigint)  # fmt: skip


def terminal_sigint() -> None:
    """SIGINT as a terminal's child has it: default. A process inherits an ignored SIGINT
    (some library in the test process may ignore it), and Python then never sees Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(condition, process) -> None:
    """Poll a state of the other run (no timing is asserted)."""
    while not condition():
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)


def is_busy(stem) -> bool:
    try:
        with locked(stem, timeout=0):
            return False
    except OutputBusy:
        return True


def test_a_second_run_waits_for_the_first(standins, tmp_path, capsys):
    """Case 2: two runs on the same input and output used the same temporary names and
    broke each other's files. The second now waits for the first and finds it done."""
    source = encode(tmp_path / "long.mp4", 120)
    out = tmp_path / "out"
    first = dwpose_video(standins, source, "-o", out)
    wait_until(lambda: out.is_dir() and is_busy(out / "long"), first)
    assert cli(standins, source, "-o", out) == 0
    captured = capsys.readouterr()
    assert "waiting for another dwpose run to finish long.mp4" in captured.out
    assert "long.mp4: done before, skipped" in captured.out
    assert first.wait() == 0
    check_outputs(out, "long", source, people=None)


def test_a_killed_run_leaves_no_broken_output_and_a_rerun_finishes(standins, tmp_path, capsys):
    """Case 2: a run killed mid-way left broken files that a rerun called done. Now its
    partials never get the final names, and the next run removes them and does the job."""
    source = encode(tmp_path / "long.mp4", 60)
    out = tmp_path / "out"
    first = dwpose_video(standins, source, "-o", out)
    wait_until(lambda: any(out.glob(".long.npz.*.partial.keypoints")), first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert outputs_in(out)  # its partial files
    assert not [name for name in outputs_in(out) if not name.startswith(".")]
    assert cli(standins, source, "-o", out) == 0
    assert "long.mp4 -> " in capsys.readouterr().out  # redone, not "done before"
    check_outputs(out, "long", source, people=None)
    assert outputs_in(out) == ["long.json", "long.mp4", "long.npz"]


def test_two_pose_runs_at_once_both_finish(standins, coco_images, tmp_path):
    """Case 2: two `dwpose pose` runs at once: one crashed every time (FileNotFoundError
    on the shared .partial name)."""
    command = [sys.executable, "-m", "comfyui_dwpose.cli", "pose", *map(str, coco_images.values()),
               "-o", str(tmp_path), "--detector", str(standins["det"]),
               "--pose-model", str(standins["pose"])]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) for _ in "ab"]
    assert [run.wait() for run in runs] == [0, 0], [run.stderr.read() for run in runs]
    assert outputs_in(tmp_path) == sorted(f"{i}.{e}" for i in coco_images for e in ("json", "png"))
    for image_id in coco_images:
        json.loads((tmp_path / f"{image_id}.json").read_text())
        assert load_image(tmp_path / f"{image_id}.png").shape[2] == 3
