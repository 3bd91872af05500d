"""ONNX export with the signatures of the official DWPose / RTMPose / YOLOX files.

Pose models: input ``input [batch, 3, H, W]``, outputs ``simcc_x [batch, K, W*2]`` and
``simcc_y [batch, K, H*2]`` (mmdeploy's names, as in ``dw-ll_ucoco_384.onnx``).
Detectors: input ``images [batch, 3, H, W]``, output ``output [batch, A, 85]`` (Megvii's
names and layout, as in DWPose's ``yolox_l.onnx``). The batch axis is dynamic.
Detectors can also be exported with dynamic height and width (``dynamic_size``): YOLOX is
fully convolutional, so one file then runs any multiple-of-32 size; the size it was
exported at is recorded as metadata ``input_size`` ("HxW"), the size to letterbox to.

The TorchScript-based exporter (``dynamo=False``) is used: it still ships with torch 2.x,
needs no extra package (the dynamo exporter needs ``onnxscript``), writes a single
self-contained file at a fixed opset, and names dynamic axes directly.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import files

DEFAULT_OPSET = 17


def onnx_signature(model: nn.Module) -> tuple[list[str], list[str]]:
    """(input names, output names) of the official file for this kind of model."""
    kind = getattr(model, "kind", None)
    if kind == "pose":
        return ["input"], ["simcc_x", "simcc_y"]
    if kind == "det":
        return ["images"], ["output"]
    raise TypeError(f"cannot tell the ONNX signature of {type(model).__name__}")


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_size: tuple[int, int] | None = None,
    dynamic_batch: bool = True,
    opset: int = DEFAULT_OPSET,
    dynamic_size: bool = False,
) -> Path:
    """Export ``model`` (an RTMPose or YOLOX from this package) to ``path``; returns it.

    ``input_size`` is ``(height, width)``, by default the model's own. The model is
    exported in eval mode and put back in its previous mode afterwards. The file is
    written under a temporary name in the same folder and renamed into place, so a
    crash never leaves a partial file under the final name; an OS error is a
    `files.OutputError` naming the file. ``dynamic_size`` (detectors)
    makes height, width and the anchor count dynamic too.
    """
    path = Path(path)
    height, width = input_size if input_size is not None else model.input_size
    pose = getattr(model, "kind", None) == "pose"
    if pose and (height, width) != tuple(model.input_size):
        raise ValueError(
            f"a pose model built for {model.input_size} cannot export at {(height, width)}:"
            " its head is sized for the input"
        )
    if pose and dynamic_size:
        raise ValueError("a pose model cannot export with a dynamic size: its head is sized")
    input_names, output_names = onnx_signature(model)
    axes = {0: "batch"} if dynamic_batch else {}
    dynamic_axes = {name: dict(axes) for name in input_names + output_names}
    if dynamic_size:
        dynamic_axes[input_names[0]].update({2: "height", 3: "width"})
        dynamic_axes[output_names[0]][1] = "anchors"
    param = next(model.parameters())
    dummy = torch.zeros(1, 3, height, width, dtype=param.dtype, device=param.device)

    files.make_folder(path.parent)
    was_training = model.training
    model.eval()
    # A temporary name in the same folder, renamed when complete (files.replacing); created
    # by the exporter with the usual permissions (mkstemp would leave the file private).
    try:
        with files.replacing(path) as partial:
            with torch.no_grad():
                out_shapes = [tuple(t.shape) for t in _as_tuple(model(dummy))]
            with torch.no_grad(), warnings.catch_warnings():
                # The TorchScript exporter announces its deprecation on every call.
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(
                    model,
                    (dummy,),
                    partial,
                    input_names=input_names,
                    output_names=output_names,
                    dynamic_axes=dynamic_axes or None,
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
            nominal = f"{height}x{width}" if dynamic_size else None
            _set_static_output_dims(partial, output_names, out_shapes, dynamic_axes, nominal)
    finally:
        model.train(was_training)
    return path


def _as_tuple(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def _set_static_output_dims(
    file: str | os.PathLike[str],
    names: list[str],
    shapes: list[tuple[int, ...]],
    dynamic_axes: dict[str, dict[int, str]],
    nominal_size: str | None = None,
) -> None:
    """Write the fixed output dims (keypoints, bins, anchors) into the graph's outputs,
    and the ``input_size`` metadata of a dynamic-size export.

    With a dynamic batch the TorchScript exporter leaves every non-batch output dim
    symbolic (the reshapes go through Shape ops); the official files declare them, and
    consumers read e.g. the anchor count from there. Needs the ``onnx`` package; without
    it the file is still valid, only less descriptive (a dynamic-size one would lack its
    size, so that is an error).
    """
    try:
        import onnx
    except ImportError:
        if nominal_size is not None:
            raise
        return
    proto = onnx.load(os.fspath(file))
    for output in proto.graph.output:
        if output.name not in names:
            continue
        shape = shapes[names.index(output.name)]
        dims = output.type.tensor_type.shape.dim
        for i, size in enumerate(shape):
            if i in dynamic_axes[output.name]:
                continue
            dims[i].Clear()
            dims[i].dim_value = size
    if nominal_size is not None:
        proto.metadata_props.add(key="input_size", value=nominal_size)
    onnx.checker.check_model(proto)
    onnx.save(proto, os.fspath(file))
