"""Model registry and fetching: turn a model name or path into a verified local file.

Weights live on the Hugging Face Hub. Downloading, resuming, caching and the progress bar
are huggingface_hub's; this module decides where to look first (local model folders, the
Hugging Face cache), pins known files by size and sha256, and turns every failure into a
`ModelError` whose message says what happened and what to do about it.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.utils import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from tqdm.auto import tqdm

KINDS = ("detector", "pose", "checkpoint")
MODEL_SUFFIXES = (".onnx", ".pth", ".safetensors")
MODELS_DIR_ENV = "DWPOSE_MODELS_DIR"
# Seconds to wait for the Hub's first answer before a download. huggingface_hub retries
# connection errors with growing pauses before it gives up (28 s for a refused connection,
# 6.5 minutes for a silent one: bench/unreachable_hub.py); one bounded request says
# "unreachable" instead, and the download starts only when the Hub answers.
REACHABLE_TIMEOUT = 4.0


@dataclass(frozen=True)
class ModelFile:
    """One file on the Hub. `sha256`/`size` are None where they are not known."""

    name: str  # what users type; the file name, or owner/repo/file where names clash
    repo_id: str
    filename: str  # path inside the repo
    kind: str  # "detector", "pose" or "checkpoint" (PyTorch .pth of a pose model)
    sha256: str | None = None
    size: int | None = None

    @property
    def url(self) -> str:
        return _file_url(self)


def _entries(*files: ModelFile) -> dict[str, ModelFile]:
    return {f.name: f for f in files}


REGISTRY: dict[str, ModelFile] = _entries(
    ModelFile("yolox_l.onnx", "yzd-v/DWPose", "yolox_l.onnx", "detector", size=216_746_733),
    ModelFile(
        "dw-ll_ucoco_384.onnx",
        "yzd-v/DWPose",
        "dw-ll_ucoco_384.onnx",
        "pose",
        sha256="724f4ff2439ed61afb86fb8a1951ec39c6220682803b4a8bd4f598cd913b1843",
        size=134_399_116,
    ),
    ModelFile(
        "dw-ll_ucoco_384.pth",
        "yzd-v/DWPose",
        "dw-ll_ucoco_384.pth",
        "checkpoint",
        sha256="0d9408b13cd863c4e95a149dd31232f88f2a12aa6cf8964ed74d7d97748c7a07",
    ),
    ModelFile(
        "dw-ll_ucoco.pth",
        "yzd-v/DWPose",
        "dw-ll_ucoco.pth",
        "checkpoint",
        sha256="e9600664e7927229ed594197d552023e3be213f810beb38847a959ec8261e0f7",
    ),
    ModelFile(
        "dw-mm_ucoco.pth",
        "yzd-v/DWPose",
        "dw-mm_ucoco.pth",
        "checkpoint",
        sha256="b24f27f57d18d8bb7abc3af8e09bcc5f77ee9ecae13439f70a8f7d1b885413cf",
    ),
    ModelFile(
        "dw-ss_ucoco.pth",
        "yzd-v/DWPose",
        "dw-ss_ucoco.pth",
        "checkpoint",
        sha256="c13dfb1dc63aac2d794ac130bb89734330b3c74a1aff921a40fcde1d87361ffc",
    ),
    ModelFile(
        "dw-tt_ucoco.pth",
        "yzd-v/DWPose",
        "dw-tt_ucoco.pth",
        "checkpoint",
        sha256="7097f5af7f100609acffe58eb01734f02ffbfe22794fe029c2ea0a4d68d0f42d",
    ),
    ModelFile("dw-ll_ucoco.onnx", "hr16/UnJIT-DWPose", "dw-ll_ucoco.onnx", "pose"),
    ModelFile("hr16/yolox-onnx/yolox_l.onnx", "hr16/yolox-onnx", "yolox_l.onnx", "detector"),
)

DEFAULT_DETECTOR = "yolox_l.onnx"
DEFAULT_POSE_MODEL = "dw-ll_ucoco_384.onnx"


class ModelError(Exception):
    """A model could not be turned into a usable local file; the message says why and what to do."""


class UnknownModelError(ModelError):
    """The name is neither a file, a registry name, nor a Hub reference (or is the wrong kind)."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """An explicit local path does not exist."""


class NotCachedError(ModelError):
    """Offline (or the Hub is unreachable) and the file is in none of the places looked."""


class HubNotFoundError(ModelError):
    """The Hub answered that the repository, revision or file does not exist."""


class DownloadError(ModelError):
    """Any other failure while fetching from the Hub."""


class ChecksumError(ModelError):
    """A file's size or sha256 differs from the pinned value."""


def known_names(kind: str | None = None) -> list[str]:
    """Registry names, optionally of one kind (for CLI help and ComfyUI dropdowns)."""
    return [n for n, f in REGISTRY.items() if kind is None or f.kind == kind]


def resolve_model(
    name_or_path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    models_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    progress: bool = True,
) -> Path:
    """Return a local file for a path, a registry name or a Hub reference `owner/repo/file`.

    An existing file is used as it is. A name is looked for in `models_dir`, then
    `$DWPOSE_MODELS_DIR`, then the Hugging Face cache, and downloaded last (into
    `models_dir` when given, so ComfyUI keeps weights under its models folder; into the
    Hugging Face cache otherwise). Files with a pinned size/sha256 are verified.
    `local_files_only=None` follows `HF_HUB_OFFLINE`.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, not {kind!r}")
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if isinstance(name_or_path, os.PathLike):
        raise _missing_path(path)

    entry = REGISTRY.get(text)
    if entry is None:
        entry = _hub_reference(text, kind)
    if entry is None:
        if _looks_like_path(text):
            raise _missing_path(path)
        raise UnknownModelError(
            f"Unknown model {text!r}. {_known_names_text(kind)}\n{_ACCEPTED_FORMS}"
        )
    # A checkpoint is a pose model in PyTorch form (the torch backend runs it).
    if kind is not None and entry.kind != kind and (kind, entry.kind) != ("pose", "checkpoint"):
        raise UnknownModelError(
            f"{text!r} is a {entry.kind} model, not a {kind} model. {_known_names_text(kind)}"
        )
    return _fetch(entry, models_dir, cache_dir, local_files_only, progress)


def download(
    names: Iterable[str] | None = None,
    *,
    models_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Fetch models ahead of time (`dwpose download`) so later runs work offline."""
    if isinstance(names, str):
        names = [names]
    wanted = list(names or [DEFAULT_DETECTOR, DEFAULT_POSE_MODEL])
    return [
        resolve_model(n, models_dir=models_dir, cache_dir=cache_dir, progress=progress)
        for n in wanted
    ]


# ---------------------------------------------------------------------------- fetching

_ACCEPTED_FORMS = (
    "Accepted forms: a known name (above); the path of a local model file "
    "(.onnx, .pth, .safetensors); or a Hugging Face Hub reference owner/repo/path/to/file."
)
_REPO_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_HUB_REFERENCE = re.compile(rf"({_REPO_PART}/{_REPO_PART})/([^\\]+)")
_TRUE = {"1", "ON", "YES", "TRUE"}
# Older huggingface_hub releases have no tqdm_class; there progress=False is not honoured.
_HAS_TQDM_CLASS = "tqdm_class" in inspect.signature(hf_hub_download).parameters


class _SilentTqdm(tqdm):
    def __init__(self, *args, **kwargs):
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _fetch(
    entry: ModelFile,
    models_dir: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool | None,
    progress: bool,
) -> Path:
    folders = _local_folders(models_dir)
    for folder, _ in folders:
        candidate = folder / entry.name
        if candidate.is_file():
            verify(candidate, entry)
            return candidate

    cache = Path(cache_dir or hf_constants.HF_HUB_CACHE).expanduser()
    places = [(folder / entry.name, label) for folder, label in folders]
    places.append((cache / f"models--{entry.repo_id.replace('/', '--')}", "Hugging Face cache"))

    # The cache first, without a network round trip: pinned files do not change.
    try:
        cached = hf_hub_download(
            entry.repo_id, entry.filename, cache_dir=cache, local_files_only=True
        )
    except LocalEntryNotFoundError:
        cached = None
    except ValueError as e:  # huggingface_hub rejects the repo id or file name
        raise UnknownModelError(f"{entry.name!r} is not a valid Hub reference: {e}") from e
    if cached is not None:
        verify(Path(cached), entry)
        return Path(cached)

    offline = _is_offline(local_files_only)
    if offline:
        reason = (
            "local_files_only=True was passed"
            if local_files_only
            else "offline mode is on (HF_HUB_OFFLINE is set)"
        )
        raise NotCachedError(_not_cached_message(entry, reason, places, folders, offline))

    unreachable = _unreachable(_endpoint())
    if unreachable is not None:
        reason = f"the Hugging Face Hub at {_endpoint()} could not be reached ({unreachable})"
        raise NotCachedError(_not_cached_message(entry, reason, places, folders, offline))

    local_dir = None
    if models_dir is not None:
        # models_dir/<name>: qualified names keep their owner/repo folders, so files never clash.
        local_dir = Path(models_dir).expanduser() / entry.name[: -len(entry.filename)]
    extra = {}
    if _HAS_TQDM_CLASS and not progress:
        extra["tqdm_class"] = _SilentTqdm
    try:
        got = hf_hub_download(
            entry.repo_id,
            entry.filename,
            cache_dir=cache,
            local_dir=local_dir,
            endpoint=_endpoint_override(),
            **extra,
        )
    except LocalEntryNotFoundError as e:
        cause = e.__cause__ or e
        reason = (
            "the Hugging Face Hub could not be reached or refused the request "
            f"({type(cause).__name__}: {cause})"
        )
        raise NotCachedError(_not_cached_message(entry, reason, places, folders, offline)) from e
    except GatedRepoError as e:
        raise DownloadError(
            f"Cannot download {entry.filename!r}: {entry.repo_id} is a gated repository. "
            f"Accept its terms at {_endpoint()}/{entry.repo_id} and log in "
            "(`hf auth login` or the HF_TOKEN variable)."
        ) from e
    except RepositoryNotFoundError as e:
        raise HubNotFoundError(
            f"Cannot download {entry.filename!r}: repository {entry.repo_id!r} was not found on "
            "the Hugging Face Hub (or it is private and you are not logged in). "
            f"Check the name{_also_not_a_path(entry)}."
        ) from e
    except RevisionNotFoundError as e:
        raise HubNotFoundError(
            f"Cannot download {entry.filename!r}: {entry.repo_id} has no 'main' revision."
        ) from e
    except EntryNotFoundError as e:
        raise HubNotFoundError(
            f"Cannot download {entry.filename!r}: repository {entry.repo_id} has no such file. "
            f"Its files are listed at {_endpoint()}/{entry.repo_id}/tree/main"
            f"{_also_not_a_path(entry)}."
        ) from e
    except HfHubHTTPError as e:
        raise DownloadError(
            f"Downloading {entry.filename!r} from {entry.repo_id} failed: {e}"
        ) from e
    except Exception as e:  # the HTTP client's own errors (timeouts, resets, disk full...)
        raise DownloadError(
            f"Downloading {entry.filename!r} from {entry.repo_id} failed: "
            f"{type(e).__name__}: {e}. Run the command again to resume the download."
        ) from e
    verify(Path(got), entry)
    return Path(got)


def _unreachable(endpoint: str) -> str | None:
    """Why `endpoint` does not answer one HEAD request within `REACHABLE_TIMEOUT` seconds
    (refused, reset, no route, no name, silence), or None when it answers at all.

    urllib follows the same proxy variables as huggingface_hub. The request runs in a
    thread, so a name lookup that hangs counts against the bound too. TLS failures are
    left to huggingface_hub, which may trust other certificates than the standard library.
    """
    outcome: list[str | None] = []

    def probe() -> None:
        request = urllib.request.Request(f"{endpoint}/", method="HEAD")
        try:
            # The socket waits longer than the caller, so silence always reads the same.
            urllib.request.urlopen(request, timeout=REACHABLE_TIMEOUT + 1).close()
        except urllib.error.HTTPError:
            pass  # an HTTP status is an answer
        except Exception as exc:
            reason = getattr(exc, "reason", exc)
            if not isinstance(reason, ssl.SSLError):
                outcome.append(f"{type(reason).__name__}: {reason}")
                return
        outcome.append(None)

    thread = threading.Thread(target=probe, name="dwpose-hub-probe", daemon=True)
    thread.start()
    thread.join(REACHABLE_TIMEOUT)
    if not outcome:
        return f"no answer within {REACHABLE_TIMEOUT:g} s"
    return outcome[0]


def _local_folders(models_dir: str | os.PathLike[str] | None) -> list[tuple[Path, str]]:
    folders = []
    if models_dir is not None:
        folders.append((Path(models_dir).expanduser(), "models_dir"))
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        folders.append((Path(env).expanduser(), f"${MODELS_DIR_ENV}"))
    return folders


def _is_offline(local_files_only: bool | None) -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; also honour it when set later.
    if local_files_only is not None:
        return local_files_only
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE or hf_constants.HF_HUB_OFFLINE


def _endpoint_override() -> str | None:
    # Like HF_HUB_OFFLINE, HF_ENDPOINT (a mirror) is read by huggingface_hub at import only.
    endpoint = os.environ.get("HF_ENDPOINT")
    return endpoint.rstrip("/") if endpoint else None


def _endpoint() -> str:
    return _endpoint_override() or hf_constants.ENDPOINT.rstrip("/")


def _file_url(entry: ModelFile) -> str:
    return f"{_endpoint()}/{entry.repo_id}/resolve/main/{entry.filename}"


def _hub_reference(text: str, kind: str | None) -> ModelFile | None:
    """`owner/repo/path/in/repo`, unless it is plainly a local path (its folder exists)."""
    match = _HUB_REFERENCE.fullmatch(text)
    if match is None or Path(text).expanduser().parent.is_dir():
        return None
    repo_id, filename = match.groups()
    if any(part in ("", ".", "..") for part in filename.split("/")):
        return None
    for entry in REGISTRY.values():
        if (entry.repo_id, entry.filename) == (repo_id, filename):
            return entry  # a known file under its full name: still verified
    return ModelFile(text, repo_id, filename, kind or "unknown")


def _looks_like_path(text: str) -> bool:
    return (
        "/" in text
        or "\\" in text
        or os.sep in text
        or text.startswith("~")
        or text.lower().endswith(MODEL_SUFFIXES)
    )


def _missing_path(path: Path) -> ModelNotFoundError:
    what = "is not a file" if path.exists() else "does not exist"
    return ModelNotFoundError(
        f"Model file {str(path)!r} {what} (looked at {path.absolute()}). "
        f"Give the path of an existing file, or a known model name. {_known_names_text(None)}"
    )


def _also_not_a_path(entry: ModelFile) -> str:
    if entry.name in REGISTRY:
        return ""
    return f" ({entry.name!r} is not a local file either: {Path(entry.name).absolute()})"


def _known_names_text(kind: str | None) -> str:
    kinds = KINDS if kind is None else (kind,)
    parts = []
    for k in kinds:
        listed = known_names(k)
        parts.append(f"Known {k} models: {', '.join(listed) if listed else '(none)'}.")
    return " ".join(parts)


def _not_cached_message(
    entry: ModelFile,
    reason: str,
    places: list[tuple[Path, str]],
    folders: list[tuple[Path, str]],
    offline: bool,
) -> str:
    if offline:
        retry = "allow network access (unset HF_HUB_OFFLINE, do not pass local_files_only)"
    else:
        retry = "check the connection (proxy, firewall, HF_ENDPOINT, HF_TOKEN) and try again"
    looked = "\n".join(f"  - {p} ({label})" for p, label in places)
    if folders:
        put = f"put it at {folders[0][0] / entry.name}"
    else:
        put = (
            f"put it in a folder of your choice as {entry.name} and set {MODELS_DIR_ENV} "
            "to that folder (or pass the file's path instead of the name)"
        )
    return (
        f"Model file {entry.filename!r} from {entry.repo_id} is not available: {reason}.\n"
        f"Looked in:\n{looked}\n"
        "To fix it, either:\n"
        f"  - download {_file_url(entry)} and {put};\n"
        f"  - or run `dwpose download {entry.name}` on a machine with network access "
        "and copy the file over the same way;\n"
        f"  - or {retry}."
    )


# ------------------------------------------------------------------------ verification

_SHA256_MEMO: dict[tuple[str, int, int], str] = {}
_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, read in chunks; remembered per (path, size, mtime) in this process."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    digest = _SHA256_MEMO.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(real, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        digest = _SHA256_MEMO[key] = h.hexdigest()
    return digest


def verify(path: Path, entry: ModelFile) -> None:
    """Raise `ChecksumError` when `path` differs from the size or sha256 pinned in `entry`."""
    if entry.size is not None:
        size = path.stat().st_size
        if size != entry.size:
            raise ChecksumError(
                _bad_file_message(
                    path, entry, f"it has {size:,} bytes, expected {entry.size:,} bytes"
                )
            )
    if entry.sha256 is not None:
        actual = file_sha256(path)
        if actual != entry.sha256.lower():
            raise ChecksumError(
                _bad_file_message(path, entry, f"sha256 {actual}, expected {entry.sha256}")
            )


def _bad_file_message(path: Path, entry: ModelFile, detail: str) -> str:
    real = path.resolve()
    where = str(path) if real == path.absolute() else f"{path} (stored at {real})"
    return (
        f"Model file {entry.name!r} at {where} failed verification: {detail}. "
        "It is incomplete, corrupt or a different version. "
        f"Delete {real} to download it again from {entry.url}, "
        f"or pass the path {str(path)!r} itself to use it as it is, unverified."
    )
