"""Model resolution through the real huggingface_hub code, with no network.

The Hub path runs against a Hugging Face cache built in tmp_path in the library's own
layout (blobs/, snapshots/<commit>/, refs/main) with HF_HUB_OFFLINE on. The few tests that
need the Hub to answer (download, "repository not found") talk to a tiny fake Hub served
on 127.0.0.1 through HF_ENDPOINT; nothing leaves the machine.
"""

import contextlib
import hashlib
import os
import re
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from conftest import HF_COMMIT as COMMIT
from conftest import add_to_hf_cache
from huggingface_hub import constants as hf_constants
from huggingface_hub import scan_cache_dir

from comfyui_dwpose import hub
from comfyui_dwpose.hub import (
    ChecksumError,
    HubNotFoundError,
    ModelFile,
    ModelNotFoundError,
    NotCachedError,
    UnknownModelError,
    resolve_model,
)

TEST_REPO = "test-owner/test-repo"


def fake_model(size: int = 4096, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def cache(monkeypatch, tmp_path) -> Path:
    """Offline, an empty HF cache in tmp_path (returned), no models folder from the environment."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads HF_HUB_OFFLINE once at import; its HTTP layer checks this
    # constant, so with it set any request would fail instead of reaching the network.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "hf_cache"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("DWPOSE_MODELS_DIR", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setattr(hub, "_SHA256_MEMO", {})
    monkeypatch.chdir(tmp_path)
    return cache


@pytest.fixture
def pinned(monkeypatch) -> tuple[ModelFile, bytes]:
    """A registry entry whose size and sha256 are those of a small fake model."""
    data = fake_model(4096, seed=1)
    entry = ModelFile("test-pose.onnx", TEST_REPO, "test-pose.onnx", "pose", sha256(data), 4096)
    monkeypatch.setitem(hub.REGISTRY, entry.name, entry)
    return entry, data


def test_registry_holds_the_spec_facts():
    reg = hub.REGISTRY
    assert reg[hub.DEFAULT_DETECTOR] == ModelFile(
        "yolox_l.onnx", "yzd-v/DWPose", "yolox_l.onnx", "detector", None, 216_746_733
    )
    pose = reg[hub.DEFAULT_POSE_MODEL]
    assert (pose.repo_id, pose.kind, pose.size) == ("yzd-v/DWPose", "pose", 134_399_116)
    assert pose.sha256 == "724f4ff2439ed61afb86fb8a1951ec39c6220682803b4a8bd4f598cd913b1843"
    assert reg["dw-tt_ucoco.pth"].sha256.startswith("7097f5af7f10")
    assert reg["dw-tt_ucoco.pth"].kind == "checkpoint"
    assert reg["dw-ll_ucoco.onnx"].repo_id == "hr16/UnJIT-DWPose"
    assert reg["hr16/yolox-onnx/yolox_l.onnx"].repo_id == "hr16/yolox-onnx"
    assert hub.known_names("detector") == ["yolox_l.onnx", "hr16/yolox-onnx/yolox_l.onnx"]
    assert len(hub.known_names("checkpoint")) == 5
    for name, entry in reg.items():
        assert name == entry.name and name.endswith(entry.filename)
        assert entry.kind in hub.KINDS
        assert entry.sha256 is None or re.fullmatch("[0-9a-f]{64}", entry.sha256)
    assert pose.url == "https://huggingface.co/yzd-v/DWPose/resolve/main/dw-ll_ucoco_384.onnx"


def test_existing_local_path_is_used_as_is(tmp_path):
    path = tmp_path / "mine" / "yolox_l.onnx"
    path.parent.mkdir()
    path.write_bytes(b"not even onnx")  # unverified: the user chose it
    assert resolve_model(path) == path
    assert resolve_model(str(path)) == path
    assert resolve_model("mine/yolox_l.onnx", kind="detector") == Path("mine/yolox_l.onnx")


@pytest.mark.parametrize("given", ["weights/nope.onnx", "nope.safetensors", "~/nope.pth"])
def test_missing_explicit_path_is_named(given):
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model(given)
    message = str(err.value)
    expected = Path(given).expanduser()
    assert f"'{expected}' does not exist" in message
    assert str(expected.absolute()) in message
    assert "dw-ll_ucoco_384.onnx" in message  # points at the names that would work
    assert isinstance(err.value, FileNotFoundError)


def test_missing_pathlike_is_a_path_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(tmp_path / "yolox_l.onnx")  # a Path is never a registry name


def test_cache_layout_is_the_one_huggingface_hub_reads(cache):
    add_to_hf_cache(cache, "hr16/UnJIT-DWPose", "dw-ll_ucoco.onnx", fake_model())
    (repo,) = scan_cache_dir(cache).repos
    assert repo.repo_id == "hr16/UnJIT-DWPose"
    (revision,) = repo.revisions
    assert revision.commit_hash == COMMIT and revision.refs == frozenset({"main"})
    assert [f.file_name for f in revision.files] == ["dw-ll_ucoco.onnx"]


def test_registry_name_found_in_hf_cache_offline(cache):
    data = fake_model(5000, seed=2)
    snapshot = add_to_hf_cache(cache, "hr16/UnJIT-DWPose", "dw-ll_ucoco.onnx", data)
    got = resolve_model("dw-ll_ucoco.onnx", kind="pose", cache_dir=cache)
    assert got == snapshot
    assert got.read_bytes() == data
    # cache_dir left out: huggingface_hub's default cache (here tmp_path's) is used
    assert resolve_model("dw-ll_ucoco.onnx") == snapshot


def test_cache_dir_is_honoured(tmp_path):
    custom = tmp_path / "custom_cache"
    snapshot = add_to_hf_cache(custom, "hr16/UnJIT-DWPose", "dw-ll_ucoco.onnx", fake_model())
    assert resolve_model("dw-ll_ucoco.onnx", cache_dir=custom) == snapshot
    with pytest.raises(NotCachedError, match="hf_cache/models--hr16--UnJIT-DWPose"):
        resolve_model("dw-ll_ucoco.onnx")  # the default cache does not have it


def test_qualified_name_found_in_hf_cache(cache):
    data = fake_model(seed=3)
    add_to_hf_cache(cache, "yzd-v/DWPose", "yolox_l.onnx", fake_model(seed=4))
    snapshot = add_to_hf_cache(cache, "hr16/yolox-onnx", "yolox_l.onnx", data)
    got = resolve_model("hr16/yolox-onnx/yolox_l.onnx", kind="detector", cache_dir=cache)
    assert got == snapshot and got.read_bytes() == data


def test_found_in_models_dir_and_in_env_folder(tmp_path, monkeypatch, cache):
    add_to_hf_cache(cache, "hr16/UnJIT-DWPose", "dw-ll_ucoco.onnx", fake_model(seed=5))
    env_dir = tmp_path / "env_models"
    env_dir.mkdir()
    (env_dir / "dw-ll_ucoco.onnx").write_bytes(fake_model(seed=6))
    monkeypatch.setenv("DWPOSE_MODELS_DIR", str(env_dir))
    assert resolve_model("dw-ll_ucoco.onnx", cache_dir=cache) == env_dir / "dw-ll_ucoco.onnx"

    comfy = tmp_path / "ComfyUI" / "models" / "dwpose"
    (comfy / "hr16" / "yolox-onnx").mkdir(parents=True)
    (comfy / "dw-ll_ucoco.onnx").write_bytes(fake_model(seed=7))
    (comfy / "hr16" / "yolox-onnx" / "yolox_l.onnx").write_bytes(fake_model(seed=8))
    # models_dir comes before $DWPOSE_MODELS_DIR, which comes before the HF cache
    got = resolve_model("dw-ll_ucoco.onnx", models_dir=comfy, cache_dir=cache)
    assert got == comfy / "dw-ll_ucoco.onnx"
    got = resolve_model("hr16/yolox-onnx/yolox_l.onnx", models_dir=comfy, cache_dir=cache)
    assert got == comfy / "hr16" / "yolox-onnx" / "yolox_l.onnx"


def test_hub_reference_from_cache_is_unverified(cache, pinned):
    data = fake_model(777, seed=9)
    snapshot = add_to_hf_cache(cache, "someone/pose-models", "v2/body.onnx", data)
    got = resolve_model("someone/pose-models/v2/body.onnx", cache_dir=cache)
    assert got == snapshot and got.read_bytes() == data

    # the full reference of a registry file is still that file, and still verified
    entry, good = pinned
    add_to_hf_cache(cache, TEST_REPO, entry.filename, good[::-1])
    with pytest.raises(ChecksumError, match="failed verification"):
        resolve_model(f"{TEST_REPO}/test-pose.onnx", cache_dir=cache)


def test_hub_reference_with_existing_local_folder_is_a_path(tmp_path):
    (tmp_path / "models" / "dw").mkdir(parents=True)
    with pytest.raises(ModelNotFoundError, match=re.escape("models/dw/typo.onnx' does not exist")):
        resolve_model("models/dw/typo.onnx")


def test_checksum_verified(cache, pinned):
    entry, data = pinned
    snapshot = add_to_hf_cache(cache, TEST_REPO, entry.filename, data)
    assert resolve_model("test-pose.onnx", cache_dir=cache) == snapshot
    assert list(hub._SHA256_MEMO.values()) == [entry.sha256]
    assert hub.file_sha256(snapshot) == sha256(data)


def test_checksum_mismatch_says_what_to_do(cache, pinned):
    entry, data = pinned
    bad = fake_model(4096, seed=10)  # right size, wrong bytes
    snapshot = add_to_hf_cache(cache, TEST_REPO, entry.filename, bad)
    with pytest.raises(ChecksumError) as err:
        resolve_model("test-pose.onnx", cache_dir=cache)
    message = str(err.value)
    blob = snapshot.resolve()
    assert "'test-pose.onnx'" in message
    assert f"sha256 {sha256(bad)}, expected {sha256(data)}" in message
    assert str(snapshot) in message
    assert f"Delete {blob} to download it again" in message  # the blob, not the symlink
    assert f"https://huggingface.co/{TEST_REPO}/resolve/main/test-pose.onnx" in message
    assert f"pass the path '{snapshot}' itself to use it as it is, unverified" in message
    # and doing what it says works: the path itself is accepted unverified
    assert resolve_model(str(snapshot)) == snapshot


def test_checksum_mismatch_in_models_dir(tmp_path, cache, pinned):
    entry, data = pinned
    models = tmp_path / "models"
    models.mkdir()
    (models / "test-pose.onnx").write_bytes(data[:-1] + b"\0")
    add_to_hf_cache(cache, TEST_REPO, entry.filename, data)  # a good copy elsewhere is not used
    with pytest.raises(ChecksumError, match=f"Delete {models / 'test-pose.onnx'} to download"):
        resolve_model("test-pose.onnx", models_dir=models, cache_dir=cache)


def test_size_mismatch(tmp_path, monkeypatch):
    entry = ModelFile("sized.onnx", TEST_REPO, "sized.onnx", "detector", size=4096)
    monkeypatch.setitem(hub.REGISTRY, entry.name, entry)
    models = tmp_path / "models"
    models.mkdir()
    (models / "sized.onnx").write_bytes(fake_model(1000))
    with pytest.raises(ChecksumError) as err:
        resolve_model("sized.onnx", models_dir=models)
    message = str(err.value)
    assert "it has 1,000 bytes, expected 4,096 bytes" in message
    assert str(models / "sized.onnx") in message
    (models / "yolox_l.onnx").write_bytes(fake_model(1000))  # the real pinned size
    with pytest.raises(ChecksumError, match="expected 216,746,733 bytes"):
        resolve_model("yolox_l.onnx", models_dir=models)


def test_hash_is_memoized_per_path_size_and_mtime(tmp_path, pinned):
    _, data = pinned
    models = tmp_path / "models"
    models.mkdir()
    path = models / "test-pose.onnx"
    path.write_bytes(data)
    assert resolve_model("test-pose.onnx", models_dir=models) == path
    stamp = path.stat().st_mtime_ns
    path.write_bytes(fake_model(4096, seed=11))  # same size, other bytes, old mtime back
    os.utime(path, ns=(stamp, stamp))
    assert resolve_model("test-pose.onnx", models_dir=models) == path  # not hashed again
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # a touched file is hashed again
    with pytest.raises(ChecksumError, match=sha256(fake_model(4096, seed=11))):
        resolve_model("test-pose.onnx", models_dir=models)


def test_offline_and_not_cached_lists_places_and_url(tmp_path, monkeypatch, cache):
    env_dir = tmp_path / "env_models"
    monkeypatch.setenv("DWPOSE_MODELS_DIR", str(env_dir))
    models = tmp_path / "ComfyUI" / "models"
    with pytest.raises(NotCachedError) as err:
        resolve_model("dw-ll_ucoco_384.onnx", models_dir=models, cache_dir=cache)
    message = str(err.value)
    assert "'dw-ll_ucoco_384.onnx' from yzd-v/DWPose is not available" in message
    assert "offline mode is on (HF_HUB_OFFLINE is set)" in message
    assert f"  - {models / 'dw-ll_ucoco_384.onnx'} (models_dir)" in message
    assert f"  - {env_dir / 'dw-ll_ucoco_384.onnx'} ($DWPOSE_MODELS_DIR)" in message
    assert f"  - {cache / 'models--yzd-v--DWPose'} (Hugging Face cache)" in message
    url = "https://huggingface.co/yzd-v/DWPose/resolve/main/dw-ll_ucoco_384.onnx"
    assert f"download {url} and put it at {models / 'dw-ll_ucoco_384.onnx'}" in message
    assert "`dwpose download dw-ll_ucoco_384.onnx` on a machine with network" in message
    assert not models.exists()  # looking wrote nothing


def test_local_files_only_without_folders(monkeypatch, cache):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(NotCachedError) as err:
        resolve_model("hr16/yolox-onnx/yolox_l.onnx", cache_dir=cache, local_files_only=True)
    message = str(err.value)
    assert "local_files_only=True was passed" in message
    assert "https://huggingface.co/hr16/yolox-onnx/resolve/main/yolox_l.onnx" in message
    assert "set DWPOSE_MODELS_DIR to that folder" in message
    assert "as hr16/yolox-onnx/yolox_l.onnx" in message


def test_unreachable_hub_is_translated(monkeypatch, fake_hub, cache):
    # local_files_only=False forces an attempt. The Hub answers our first request, then
    # huggingface_hub's offline switch makes its HTTP layer fail the way a dead connection
    # does, and the error must come out as ours.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(NotCachedError) as err:
        resolve_model("dw-ll_ucoco.onnx", cache_dir=cache, local_files_only=False)
    message = str(err.value)
    assert "could not be reached or refused the request (OfflineModeIsEnabled" in message
    assert f"{cache / 'models--hr16--UnJIT-DWPose'} (Hugging Face cache)" in message
    assert "check the connection" in message


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownModelError) as err:
        resolve_model("dwpose-large")
    message = str(err.value)
    assert "Unknown model 'dwpose-large'" in message
    for name in hub.REGISTRY:
        assert name in message
    assert "owner/repo/path/to/file" in message
    with pytest.raises(UnknownModelError) as err:
        resolve_model("yolo", kind="detector")
    assert "Known detector models: yolox_l.onnx, hr16/yolox-onnx/yolox_l.onnx." in str(err.value)
    assert "dw-ll_ucoco_384.onnx" not in str(err.value)


def test_wrong_kind_is_refused():
    with pytest.raises(UnknownModelError) as err:
        resolve_model("dw-ll_ucoco_384.onnx", kind="detector")
    assert "'dw-ll_ucoco_384.onnx' is a pose model, not a detector model" in str(err.value)
    with pytest.raises(ValueError, match="kind must be one of"):
        resolve_model("yolox_l.onnx", kind="segmenter")


def test_download_defaults_offline(cache):
    # The default detector pins only its size: a sparse file of that size passes.
    blob = add_to_hf_cache(cache, "yzd-v/DWPose", "yolox_l.onnx", b"").resolve()
    with open(blob, "r+b") as f:
        f.truncate(216_746_733)
    with pytest.raises(NotCachedError, match=re.escape("'dw-ll_ucoco_384.onnx' from yzd-v/DWPose")):
        hub.download(cache_dir=cache)  # the detector is there, the pose model is not
    snapshot = cache / "models--yzd-v--DWPose" / "snapshots" / COMMIT / "yolox_l.onnx"
    assert hub.download("yolox_l.onnx", cache_dir=cache) == [snapshot]


# ----------------------------------------------------------------- a fake Hub on loopback


class FakeHub(BaseHTTPRequestHandler):
    """Answers /<repo>/resolve/main/<file> like the Hub: HEAD metadata, GET bytes, 404 codes."""

    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[str]] = []

    def do_HEAD(self):
        self.answer(with_body=False)

    def do_GET(self):
        self.answer(with_body=True)

    def answer(self, with_body: bool):
        self.requests.append(f"{self.command} {self.path}")
        if self.path == "/":  # the front page: hub.py's first request asks whether we answer
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        owner, name, _, _, filename = urllib.parse.unquote(self.path).split("/", 5)[1:]
        repo = f"{owner}/{name}"
        data = self.files.get(f"{repo}/{filename}")
        if not any(key.startswith(repo + "/") for key in self.files):
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
        elif data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Repo-Commit", COMMIT)
        else:
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{sha256(data)}"')
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        if with_body and data:
            self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(FakeHub, "files", {})
    monkeypatch.setattr(FakeHub, "requests", [])
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield FakeHub
    server.shutdown()
    server.server_close()


def test_download_into_models_dir_then_offline(tmp_path, monkeypatch, fake_hub, cache, pinned):
    _, data = pinned
    fake_hub.files[f"{TEST_REPO}/test-pose.onnx"] = data
    models = tmp_path / "ComfyUI" / "models" / "dwpose"
    got = resolve_model("test-pose.onnx", models_dir=models, cache_dir=cache, progress=False)
    assert got == models / "test-pose.onnx"
    assert got.read_bytes() == data
    assert any(r.startswith("GET /test-owner/test-repo/resolve/main/") for r in fake_hub.requests)
    assert not list(models.rglob("*.incomplete"))
    assert not (cache / "models--test-owner--test-repo").exists()  # not duplicated
    # later, offline, the copy under models_dir is found without the Hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub.requests.clear()
    assert resolve_model("test-pose.onnx", models_dir=models, cache_dir=cache) == got
    assert fake_hub.requests == []


def test_download_into_hf_cache(fake_hub, cache):
    data = fake_model(3000, seed=12)
    fake_hub.files["someone/pose-models/body.onnx"] = data
    paths = hub.download(["someone/pose-models/body.onnx"], cache_dir=cache, progress=False)
    snapshot = cache / "models--someone--pose-models" / "snapshots" / COMMIT / "body.onnx"
    assert paths == [snapshot] and snapshot.read_bytes() == data
    assert (snapshot.resolve().parent / sha256(data)) == snapshot.resolve()
    fake_hub.requests.clear()
    assert resolve_model("someone/pose-models/body.onnx", cache_dir=cache) == snapshot
    assert fake_hub.requests == []  # a cached file needs no round trip


def test_downloaded_file_is_verified(fake_hub, cache, pinned):
    entry, _ = pinned
    fake_hub.files[f"{TEST_REPO}/test-pose.onnx"] = fake_model(4096, seed=13)
    with pytest.raises(ChecksumError, match=f"expected {entry.sha256}"):
        resolve_model("test-pose.onnx", cache_dir=cache, progress=False)


def test_repository_and_file_not_found_on_hub(fake_hub, cache):
    fake_hub.files["someone/pose-models/body.onnx"] = b"x"
    with pytest.raises(HubNotFoundError) as err:
        resolve_model("someone/no-such-repo/body.onnx", cache_dir=cache)
    message = str(err.value)
    assert "repository 'someone/no-such-repo' was not found" in message
    assert "is not a local file either" in message
    with pytest.raises(HubNotFoundError) as err:
        resolve_model("someone/pose-models/legs.onnx", cache_dir=cache)
    message = str(err.value)
    assert "Cannot download 'legs.onnx': repository someone/pose-models has no such file" in message
    assert f"{os.environ['HF_ENDPOINT']}/someone/pose-models/tree/main" in message


# ------------------------------------------------------------- a Hub that does not answer


@contextlib.contextmanager
def dead_hub(monkeypatch, behaviour: str):
    """HF_ENDPOINT at a real socket on 127.0.0.1 that accepts connections and then closes
    them unanswered ("close", a reset) or holds them without a word ("silent", a dead
    network); yields the list of accepted connections, complete once the block is left."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # huggingface_hub may try
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)
            if behaviour == "close":
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
    try:
        yield accepted
    finally:
        stop.set()
        thread.join()
        listener.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # connections still waiting count too
            while True:
                accepted.append(listener.accept()[0])
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.mark.parametrize("behaviour", ["close", "silent"])
def test_unreachable_hub_is_asked_once(monkeypatch, cache, behaviour):
    # huggingface_hub alone retries a reset connection 5 times with growing pauses (and
    # waits 10 s for each silent one); one bounded request decides instead.
    monkeypatch.setattr(hub, "REACHABLE_TIMEOUT", 0.5)
    with dead_hub(monkeypatch, behaviour) as accepted, pytest.raises(NotCachedError) as err:
        resolve_model("dw-ll_ucoco_384.onnx", cache_dir=cache, local_files_only=False)
    assert len(accepted) == 1
    message = str(err.value)
    reasons = {
        "close": ("(ConnectionResetError: ", "(RemoteDisconnected: "),
        "silent": ("(no answer within 0.5 s)",),
    }[behaviour]
    assert f"the Hugging Face Hub at {os.environ['HF_ENDPOINT']} could not be reached (" in message
    assert any(reason in message for reason in reasons), message.splitlines()[0]
    assert "dwpose download dw-ll_ucoco_384.onnx" in message
    assert "check the connection (proxy, firewall, HF_ENDPOINT, HF_TOKEN)" in message


def test_refused_hub(monkeypatch, cache):
    # A bound socket that does not listen refuses connections, like a closed port.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        with pytest.raises(NotCachedError, match=r"could not be reached .*ConnectionRefused"):
            hub.download(cache_dir=cache)


def test_estimator_with_default_names_asks_an_unreachable_hub_once(monkeypatch, cache):
    from comfyui_dwpose import DWPose

    expected = re.escape("'yolox_l.onnx' from yzd-v/DWPose")
    with dead_hub(monkeypatch, "close") as accepted, pytest.raises(NotCachedError, match=expected):
        DWPose(local_files_only=False)
    assert len(accepted) == 1
