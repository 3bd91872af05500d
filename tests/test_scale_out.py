"""Scale-out: `dwpose video --shard I/N` (schedulers without Ray) gives each video to one
shard, and the shards together write exactly what one run writes; onnxruntime keeps to
the share of cores that Ray gives an actor."""

import av
import numpy as np
import pytest
from test_video import cli, encode

from comfyui_dwpose.cli_video import shard_of
from comfyui_dwpose.runtime import cpu_threads


def outputs(folder):
    """Every file a run left in `folder` (locks aside), by name, as bytes."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def test_shards_split_the_sorted_list_once():
    videos = [f"v{i}.mp4" for i in (5, 0, 3, 1, 4, 2, 6)]
    parts = [shard_of(videos, i, 3) for i in range(3)]
    assert parts == [["v0.mp4", "v3.mp4", "v6.mp4"], ["v1.mp4", "v4.mp4"], ["v2.mp4", "v5.mp4"]]


def test_three_shards_write_what_one_run_writes(standins, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(5):
        encode(folder / f"v{i}.mp4", 3 + i)
    assert cli(standins, folder, "-o", tmp_path / "one") == 0
    for index in range(3):
        assert cli(standins, folder, "-o", tmp_path / "shards", "--shard", f"{index}/3") == 0
    written = capsys.readouterr().out
    assert written.count(" -> ") == 2 * 5  # each video once by the run, once by a shard
    one, shards = outputs(tmp_path / "one"), outputs(tmp_path / "shards")
    assert sorted(one) == sorted(f"v{i}{s}" for i in range(5) for s in (".mp4", ".json", ".npz"))
    assert shards.keys() == one.keys()
    for name in one:
        if name.endswith(".mp4"):
            assert frames(tmp_path / "one" / name) == frames(tmp_path / "shards" / name)
        else:
            assert shards[name] == one[name], name


def frames(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").tobytes() for f in container.decode(video=0)]


@pytest.mark.parametrize("bad", ["3/3", "1", "2/1", "a/b", "1/0"])
def test_bad_shards_are_usage_errors(standins, tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exit_:
        cli(standins, tmp_path, "-o", tmp_path / "out", "--shard", bad)
    assert exit_.value.code == 2
    assert "expected I/N with 0 <= I < N" in capsys.readouterr().err


def test_an_empty_shard_says_so(standins, tmp_path, capsys):
    encode(tmp_path / "v.mp4", 2)
    assert cli(standins, tmp_path / "v.mp4", "-o", tmp_path / "out", "--shard", "1/2") == 0
    assert "shard 1/2: none of the 1 videos is in it" in capsys.readouterr().out
    assert not np.any([p.suffix == ".mp4" for p in (tmp_path / "out").glob("*")])


def test_onnxruntime_threads_follow_omp_num_threads(monkeypatch):
    """Ray sets OMP_NUM_THREADS to each actor's share of the cores: the sessions keep to it."""
    cores = cpu_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores + 5))
    assert cpu_threads() == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert cpu_threads() == cores


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--summary", "s.json"], "--summary goes with --ray"),
        (["--workers", "2", "--batch-videos", "--ray", "auto"], "--batch-videos is for one"),
    ],
)
def test_options_that_do_not_go_together(standins, tmp_path, capsys, options, message):
    encode(tmp_path / "v.mp4", 2)
    assert cli(standins, tmp_path / "v.mp4", "-o", tmp_path / "out", *options) == 2
    assert message in capsys.readouterr().err
