"""PyTorch definitions of the official DWPose / RTMPose / YOLOX architectures.

State-dict names and shapes equal the official OpenMMLab checkpoints (mmpose 1.x
RTMPose, mmdet 3.x YOLOX), so they load with ``strict=True``::

    model = build_model("rtmpose-l", input_size=(384, 288))
    model.load_state_dict(state_dict)
    simcc_x, simcc_y = model.eval()(crops)

    detector = build_model("yolox-l")
    flat = detector.eval()(images)  # [N, 8400, 85] at 640x640, Megvii's ONNX layout

``export_onnx`` writes files with the official ONNX signatures.
"""

from .export import export_onnx, onnx_signature
from .factory import MODEL_SPECS, ModelSpec, build_model, get_spec, list_models
from .rtmpose import RTMPose
from .yolox import YOLOX, megvii_flatten

__all__ = [
    "MODEL_SPECS",
    "YOLOX",
    "ModelSpec",
    "RTMPose",
    "build_model",
    "export_onnx",
    "get_spec",
    "list_models",
    "megvii_flatten",
    "onnx_signature",
]
