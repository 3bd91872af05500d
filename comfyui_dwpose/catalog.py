"""Model menus: which model files a dropdown offers, what each one is, and where it lies.

A local .onnx file is told apart by its graph's inputs and outputs, read once per file
version: a YOLOX detector has one output (batch, anchors, 5 + classes), a SimCC pose
model two (batch, keypoints, bins). So a file appears only in the menu it fits, and other
ONNX files that share a folder (comfyui_controlnet_aux keeps depth, YOLO-NAS... models in
its `ckpts/`) in neither. Registry models not on disk yet are listed with a label and
downloaded on first use. A file under a registry name whose bytes differ from the
registry's is used as it is once its graph fits, with a log line saying so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .hub import (
    REGISTRY,
    ChecksumError,
    ModelError,
    ModelNotFoundError,
    known_names,
    resolve_model,
    verify,
)

log = logging.getLogger(__name__)

NOT_DOWNLOADED = " (not downloaded)"
AUX_PACK = "comfyui_controlnet_aux"
AUX_CKPTS_ENV = "AUX_ANNOTATOR_CKPTS_PATH"
OTHER = "other"  # an ONNX graph that is neither a detector nor a pose model

_KINDS: dict[tuple[str, int, int], str | None] = {}


def onnx_kind(path: str | os.PathLike[str]) -> str | None:
    """'detector', 'pose' or 'other' from the file's graph signature; None when it cannot
    be read (no onnx/onnxruntime, or not an ONNX file). Remembered per path, size, mtime."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key not in _KINDS:
        signature = _signature(real)
        _KINDS[key] = None if signature is None else signature_kind(*signature)
    return _KINDS[key]


def signature_kind(inputs: list[tuple], outputs: list[tuple]) -> str:
    """The kind of a graph from its input and output shapes (dims: int, or None if dynamic)."""
    image_input = len(inputs) == 1 and len(inputs[0]) == 4 and inputs[0][1] in (3, None)
    if image_input and len(outputs) == 1 and len(outputs[0]) == 3:
        classes = outputs[0][2]
        if classes is None or classes >= 5:
            return "detector"
    if image_input and len(outputs) == 2 and all(len(o) == 3 for o in outputs):
        keypoints = {o[1] for o in outputs}
        if len(keypoints) == 1:
            return "pose"
    return OTHER


def _signature(path: str) -> tuple[list[tuple], list[tuple]] | None:
    def dims(shape) -> tuple:
        return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)

    try:
        import onnx
    except ImportError:
        onnx = None
    try:
        if onnx is not None:
            graph = onnx.load(path, load_external_data=False).graph
            weights = {t.name for t in graph.initializer}

            def shapes(values) -> list[tuple]:
                return [
                    dims(d.dim_value or None for d in v.type.tensor_type.shape.dim)
                    for v in values
                    if v.name not in weights
                ]

            return shapes(graph.input), shapes(graph.output)
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return (
            [dims(i.shape) for i in session.get_inputs()],
            [dims(o.shape) for o in session.get_outputs()],
        )
    except ImportError:
        return None
    except Exception as exc:  # corrupt, truncated, not ONNX: the loader will say why
        log.debug("cannot read the ONNX graph of %s: %s", path, exc)
        return None


# ----------------------------------------------------------------------------- folders


def controlnet_aux_ckpts(custom_nodes_dirs: list[Path]) -> list[Path]:
    """comfyui_controlnet_aux's download folders: `$AUX_ANNOTATOR_CKPTS_PATH`, else its
    `ckpts/` in each custom_nodes folder. Inside, files lie at <owner>/<repo>/<file>."""
    env = os.environ.get(AUX_CKPTS_ENV)
    folders = [Path(env).expanduser()] if env else []
    folders += [Path(d) / AUX_PACK / "ckpts" for d in custom_nodes_dirs]
    return [f for f in dict.fromkeys(folders) if f.is_dir()]


def locate(name: str, folders: list[Path]) -> Path | None:
    """The first file for a menu name in the folders: `folder/name`, or for a registry
    name also `folder/<owner>/<repo>/<file>` (the Hub's layout, as comfyui_controlnet_aux
    keeps it)."""
    entry = REGISTRY.get(name)
    for folder in folders:
        for relative in (name, entry and f"{entry.repo_id}/{entry.filename}"):
            if relative and (folder / relative).is_file():
                return folder / relative
    return None


def _onnx_files(folders: list[Path]) -> dict[str, Path]:
    """Menu name -> file for every .onnx under the folders (the first folder wins a name).
    A registry file in the Hub's layout takes its registry name."""
    by_hub_path = {f"{e.repo_id}/{e.filename}": n for n, e in REGISTRY.items()}
    found: dict[str, Path] = {}
    for folder in folders:
        for root, _, files in os.walk(folder, followlinks=True):
            for file in sorted(files):
                if file.lower().endswith(".onnx"):
                    relative = Path(root, file).relative_to(folder).as_posix()
                    found.setdefault(by_hub_path.get(relative, relative), Path(root, file))
    return found


def _in_hf_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    entry = REGISTRY[name]
    return isinstance(try_to_load_from_cache(entry.repo_id, entry.filename), str)


# ------------------------------------------------------------------------------- menus


def menu(kind: str, folders: list[Path]) -> list[str]:
    """Dropdown values for 'detector' or 'pose': registry .onnx models first (the default
    first; labelled when not on disk), then local files whose graph fits `kind` (files
    that cannot be read are offered in both menus)."""
    local = _onnx_files(folders)
    names = []
    for name in known_names(kind):
        if name.endswith(".onnx"):
            there = name in local or _in_hf_cache(name)
            names.append(name if there else name + NOT_DOWNLOADED)
    for name, path in sorted(local.items()):
        if name not in REGISTRY and onnx_kind(path) in (kind, None):
            names.append(name)
    return names


def menu_name(value: str) -> str:
    """The model name of a dropdown value (its label removed)."""
    return value.removesuffix(NOT_DOWNLOADED)


def resolve(value: str, kind: str, folders: list[Path]) -> Path:
    """A local file for a dropdown value: found in the folders, else (registry names)
    downloaded into the first folder and verified.

    A file found under a registry name is verified too; when its bytes differ it is still
    used, as the user placed it, if its graph is readable and a `kind` model (a log line
    says so).
    """
    name = menu_name(value)
    path = locate(name, folders)
    if path is None:
        if name in REGISTRY:
            return resolve_model(name, kind=kind, models_dir=folders[0] if folders else None)
        where = ", ".join(str(f) for f in folders)
        raise ModelNotFoundError(
            f"{kind} model {name!r} is not in the DWPose model folders ({where}). Put the "
            f"file there, or choose a known model ({', '.join(known_names(kind))}) to "
            "download it."
        )
    found = onnx_kind(path) if path.suffix.lower() == ".onnx" else None
    if found not in (kind, None):
        what = "neither a detector nor a pose model" if found == OTHER else f"a {found} model"
        raise ModelError(
            f"{path} is {what} (read from its inputs and outputs), not a {kind} model: "
            f"choose another {kind} model."
        )
    entry = REGISTRY.get(name)
    if entry is not None:
        try:
            verify(path, entry)
        except ChecksumError:
            if found is None:  # unreadable: likely a broken download; the error says what to do
                raise
            log.warning(
                "DWPose: %s is not the registry's %s (%s, other bytes); using it as it is, "
                "its graph is a %s model.", path, name, entry.url, kind,
            )  # fmt: skip
    return path
