"""PyTorch definitions of the official DWPose / RTMPose / YOLOX architectures.

State-dict names and shapes equal the official OpenMMLab checkpoints (mmpose 1.x
RTMPose, mmdet 3.x YOLOX), so they load with ``strict=True``::

    model = build_model("rtmpose-l", input_size=(384, 288))
    model.load_state_dict(state_dict)
    simcc_x, simcc_y = model.eval()(crops)

    detector = build_model("yolox-l")
    flat = detector.eval()(images)  # [N, 8400, 85] at 640x640, Megvii's ONNX layout

``export_onnx`` writes files with the official ONNX signatures. ``load_net`` reads any
weights file (``.pth`` checkpoints safely, ``.safetensors``, official ``.onnx`` files by
graph structure) into its official architecture; ``save_net`` writes ``.onnx`` or
``.safetensors``.
"""

from .arch import ConversionError, NetConfig
from .export import export_onnx, onnx_signature
from .factory import MODEL_SPECS, ModelSpec, build_model, get_spec, list_models
from .files import Net, load_net, save_net
from .rtmpose import RTMPose
from .yolox import YOLOX, megvii_flatten

__all__ = [
    "MODEL_SPECS",
    "YOLOX",
    "ConversionError",
    "ModelSpec",
    "Net",
    "NetConfig",
    "RTMPose",
    "build_model",
    "export_onnx",
    "get_spec",
    "list_models",
    "load_net",
    "megvii_flatten",
    "onnx_signature",
    "save_net",
]
