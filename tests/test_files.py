"""Safe output writing (comfyui_dwpose/files.py): whole files or none, never over an input,
one process per output, OS errors as one line naming the path."""

import errno
import os
import signal
import subprocess
import sys
import tempfile

import pytest
from conftest import ROOT

from comfyui_dwpose import files
from comfyui_dwpose.files import OutputBusy, OutputError


def test_replacing_gives_a_whole_file_or_none(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), files.replacing(target) as partial:
        partial.write_text("half")
        raise RuntimeError("the writer died")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.json"]
    files.write_text(target, "new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["out.json"]


def test_partial_names_are_unique_per_process_and_call(tmp_path):
    a, b = files.partial_name(tmp_path / "x.mp4"), files.partial_name(tmp_path / "x.mp4")
    assert a != b and a.parent == tmp_path
    assert a.name.startswith(f".x.mp4.{os.getpid()}-") and a.name.endswith(".partial")


def test_os_errors_are_one_line_naming_the_path(tmp_path):
    (tmp_path / "map.png").mkdir()
    (tmp_path / "map.png" / "inside").write_text("keep")
    with pytest.raises(OutputError) as info:
        files.write_text(tmp_path / "map.png", "data")
    assert str(info.value) == f"cannot write {tmp_path / 'map.png'}: Is a directory"
    assert not info.value.fatal
    # Disk full, injected at the write call (a fault of the OS, as ENOSPC is).
    with pytest.raises(OutputError) as info, files.replacing(tmp_path / "a.json") as partial:
        partial.write_text("{")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(info.value) == (
        f"cannot write {tmp_path / 'a.json'}: No space left on device (free some space, or "
        "write elsewhere)"
    )
    assert info.value.fatal
    assert sorted(os.listdir(tmp_path)) == ["map.png"]  # the partial is gone


def test_folders_that_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(OutputError) as info:
        files.check_folder(tmp_path / "taken" / "out")
    assert str(info.value) == (
        f"cannot write into {tmp_path / 'taken' / 'out'}: {tmp_path / 'taken'} is a file, "
        "not a folder"
    )
    files.check_folder(tmp_path / "new" / "deeper")  # creatable: fine, and not created
    assert not (tmp_path / "new").exists()

    def read_only(**kwargs):  # what a read-only folder answers (root bypasses chmod here)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(OutputError) as info:
        files.check_folder(tmp_path)
    assert str(info.value) == f"cannot write into {tmp_path}: Permission denied"
    assert info.value.fatal


def test_outputs_that_are_inputs_are_refused(tmp_path):
    (tmp_path / "in").mkdir()
    photo = tmp_path / "in" / "photo.png"
    photo.write_bytes(b"png")
    (tmp_path / "link").symlink_to(tmp_path / "in")
    os.link(photo, tmp_path / "hard.png")
    for output in (
        photo,
        tmp_path / "in" / ".." / "in" / "photo.png",  # the same resolved path
        tmp_path / "link" / "photo.png",  # through a linked folder
        tmp_path / "hard.png",  # the same file under another name
    ):
        with pytest.raises(OutputError) as info:
            files.refuse_inputs([tmp_path / "other.json", output], [photo], ": choose another")
        assert str(info.value) == f"{output} would replace the input {photo}: choose another"
    files.refuse_inputs([tmp_path / "in" / "photo.json"], [photo])  # another file: fine


HOLDER = """
import sys, time
from comfyui_dwpose import files
with files.locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_lock_is_exclusive_and_released_when_its_process_dies(tmp_path):
    stem = tmp_path / "clip"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(stem)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = f"^{stem}: another process is writing it now$"
        with pytest.raises(OutputBusy, match=busy), files.locked(stem, timeout=0):
            pass
        waited = []
        with (
            pytest.raises(OutputBusy),
            files.locked(stem, timeout=0.2, on_wait=lambda: waited.append(True)),
        ):
            pass
        assert waited == [True]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with files.locked(stem, timeout=0):  # the OS released the dead process's lock
        assert files.lock_path(stem).parent.name == files.LOCKS


def test_clean_partials_removes_only_those_of_the_output(tmp_path):
    names = [
        ".x.png.123-ab12cd34.partial", ".x.png.partial", ".x.npz.9-00ff.partial.keypoints",
        ".x.png2.1-ab.partial", ".y.png.1-ab.partial", "x.png",
    ]  # fmt: skip
    for name in names:
        (tmp_path / name).write_text("")
    (tmp_path / ".x_frames.5-abcd.partial").mkdir()
    files.clean_partials(tmp_path / "x.png")
    files.clean_partials(tmp_path / "x.npz")
    files.clean_partials(tmp_path / "x_frames")
    assert sorted(os.listdir(tmp_path)) == [".x.png2.1-ab.partial", ".y.png.1-ab.partial", "x.png"]
