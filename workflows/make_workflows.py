"""Write the example workflows, each in ComfyUI's UI format (workflows/NAME.json, for the
editor) and API format (workflows/NAME_api.json, for POST /prompt), from one description.

Node definitions: this pack's classes, and ComfyUI's core nodes as its /object_info
describes them (tests/data/comfyui_core_nodes.json, taken from ComfyUI 0.3.64), so both
files list every input in the order the editor stores them. Run from the repository after
changing a node's inputs: python workflows/make_workflows.py
(`--record-core-nodes http://127.0.0.1:8188` first renews the core nodes' record from a
running ComfyUI).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE_NODES = ROOT / "tests" / "data" / "comfyui_core_nodes.json"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UPLOADS = ("image_upload", "video_upload", "audio_upload")

MODELS = {"detector": "yolox_l.onnx", "pose_model": "dw-ll_ucoco_384.onnx"}  # registry names
IMAGE, VIDEO, KEYPOINTS = "dwpose_skier.jpg", "dwpose_skier_pan.mp4", "dwpose_skier_keypoints.json"
CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"
CONTROLNET = "control_v11p_sd15_openpose_fp16.safetensors"


def link(node: int, slot: int = 0) -> list:
    """An input fed by output `slot` of node `node` (API format)."""
    return [str(node), slot]


# name -> {id: (class, position, inputs)}; inputs not given take the node's defaults.
WORKFLOWS: dict[str, dict[int, tuple[str, tuple[int, int], dict]]] = {
    "dwpose_basic": {
        1: ("LoadImage", (40, 100), {"image": IMAGE}),
        2: ("DWPoseWB_Estimator", (400, 100), {"image": link(1), **MODELS}),
        3: ("SaveImage", (800, 100), {"images": link(2), "filename_prefix": "dwpose/pose_map"}),
        4: ("DWPoseWB_SaveKeypoints", (800, 480), {"pose_keypoint": link(2, 1)}),
    },
    "dwpose_controlnet": {
        1: ("LoadImage", (40, 100), {"image": IMAGE}),
        2: ("DWPoseWB_Estimator", (400, 100), {
            "image": link(1), **MODELS, "resolution": 512,
        }),
        3: ("SaveImage", (800, 560), {"images": link(2), "filename_prefix": "dwpose/pose_map"}),
        4: ("CheckpointLoaderSimple", (40, 560), {"ckpt_name": CHECKPOINT}),
        5: ("CLIPTextEncode", (400, 560), {
            "clip": link(4, 1), "text": "a skier on a snowy mountain slope, photo, detailed",
        }),
        6: ("CLIPTextEncode", (400, 800), {
            "clip": link(4, 1), "text": "blurry, lowres, deformed hands, extra limbs",
        }),
        7: ("ControlNetLoader", (800, 100), {"control_net_name": CONTROLNET}),
        8: ("ControlNetApplyAdvanced", (1160, 100), {
            "positive": link(5), "negative": link(6), "control_net": link(7), "image": link(2),
            "vae": link(4, 2), "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0,
        }),
        9: ("EmptyLatentImage", (1160, 400), {"width": 768, "height": 512, "batch_size": 1}),
        10: ("KSampler", (1520, 100), {
            "model": link(4), "positive": link(8), "negative": link(8, 1),
            "latent_image": link(9), "seed": 0, "steps": 20, "cfg": 7.0,
            "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
        }),
        11: ("VAEDecode", (1880, 100), {"samples": link(10), "vae": link(4, 2)}),
        12: ("SaveImage", (2120, 100), {"images": link(11), "filename_prefix": "dwpose/controlnet"}),
    },
    "dwpose_video": {
        1: ("LoadVideo", (40, 100), {"file": VIDEO}),
        2: ("GetVideoComponents", (400, 100), {"video": link(1)}),
        3: ("DWPoseWB_ModelLoader", (400, 300), MODELS),
        4: ("DWPoseWB_Estimator", (760, 100), {
            "image": link(2), **MODELS, "model": link(3), "detect_every": 4, "smooth": True,
            "fps": link(2, 2),
        }),
        5: ("DWPoseWB_Render", (1140, 100), {"pose_keypoint": link(4, 1)}),
        6: ("CreateVideo", (1500, 100), {"images": link(5), "fps": link(2, 2), "audio": link(2, 1)}),
        7: ("SaveVideo", (1820, 100), {"video": link(6), "filename_prefix": "dwpose/pose_video"}),
        8: ("DWPoseWB_SaveKeypoints", (1140, 520), {
            "pose_keypoint": link(4, 1), "filename_prefix": "dwpose/pose_video",
        }),
    },
    "dwpose_keypoints": {
        1: ("DWPoseWB_LoadKeypoints", (40, 100), {"keypoints_file": KEYPOINTS}),
        2: ("DWPoseWB_Render", (420, 100), {"pose_keypoint": link(1)}),
        3: ("SaveImage", (780, 100), {"images": link(2), "filename_prefix": "dwpose/keypoints_map"}),
    },
    "dwpose_retarget": {
        1: ("LoadVideo", (40, 100), {"file": VIDEO}),
        2: ("GetVideoComponents", (400, 100), {"video": link(1)}),
        3: ("DWPoseWB_Estimator", (700, 100), {"image": link(2), **MODELS}),
        4: ("DWPoseWB_TrackSmooth", (1080, 100), {"pose_keypoint": link(3, 1), "fps": link(2, 2)}),
        5: ("LoadImage", (700, 560), {"image": IMAGE}),
        6: ("DWPoseWB_Retarget", (1440, 100), {
            "pose_keypoint": link(4), "reference_image": link(5), **MODELS,
        }),
        7: ("DWPoseWB_Render", (1800, 100), {"pose_keypoint": link(6)}),
        8: ("CreateVideo", (2160, 100), {"images": link(7), "fps": link(2, 2), "audio": link(2, 1)}),
        9: ("SaveVideo", (2480, 100), {"video": link(8), "filename_prefix": "dwpose/retargeted"}),
        10: ("DWPoseWB_SaveKeypoints", (1800, 520), {
            "pose_keypoint": link(6), "filename_prefix": "dwpose/retargeted",
        }),
    },
}  # fmt: skip


def load_pack():
    """This folder as ComfyUI loads it (a package named after its path)."""
    name = "dwpose_pack_for_workflows"
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def class_info(cls) -> dict:
    """A pack node class described as ComfyUI's /object_info describes a node."""
    types = cls.INPUT_TYPES()
    return {
        "input": {k: types.get(k, {}) for k in ("required", "optional")},
        "input_order": {k: list(types.get(k, {})) for k in ("required", "optional")},
        "output": list(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "display_name": None,
    }


def definitions() -> dict[str, dict]:
    pack = load_pack()
    infos = json.loads(CORE_NODES.read_text())["nodes"]
    for key, cls in pack.NODE_CLASS_MAPPINGS.items():
        infos[key] = class_info(cls) | {"display_name": pack.NODE_DISPLAY_NAME_MAPPINGS[key]}
    return infos


def inputs_in_order(info: dict) -> list[tuple[str, list]]:
    return [
        (name, info["input"][part][name])
        for part in ("required", "optional")
        for name in info["input_order"].get(part, [])
    ]


def is_widget(spec: list) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def default(spec: list):
    options = spec[1] if len(spec) > 1 else {}
    if "default" in options:
        return options["default"]
    choices = spec[0] if isinstance(spec[0], list) else options.get("options", [])
    return choices[0]


def api_format(graph: dict, infos: dict) -> dict:
    api = {}
    for node_id, (kind, _, given) in sorted(graph.items()):
        info = infos[kind]
        inputs = {}
        for name, spec in inputs_in_order(info):
            if name in given:
                inputs[name] = given[name]
            elif is_widget(spec):
                inputs[name] = default(spec)
        unknown = set(given) - set(inputs)
        if unknown:
            raise ValueError(f"{kind} has no input(s) {sorted(unknown)}")
        title = info["display_name"] or kind
        api[str(node_id)] = {"class_type": kind, "inputs": inputs, "_meta": {"title": title}}
    return api


def ui_format(api: dict, graph: dict, infos: dict) -> dict:
    links = []  # [id, source node, source slot, target node, target slot, type]
    outputs_links: dict[tuple[int, int], list[int]] = {}
    nodes = []
    for order, (key, entry) in enumerate(api.items()):
        node_id = int(key)
        info = infos[entry["class_type"]]
        inputs, widgets = [], []
        for name, spec in inputs_in_order(info):
            value = entry["inputs"].get(name)
            linked = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            socket_type = "COMBO" if isinstance(spec[0], list) else spec[0]
            link_id = None
            if linked:
                src, slot = int(value[0]), value[1]
                link_id = len(links) + 1
                links.append([link_id, src, slot, node_id, len(inputs), socket_type])
                outputs_links.setdefault((src, slot), []).append(link_id)
            if is_widget(spec):
                options = spec[1] if len(spec) > 1 else {}
                widgets.append(default(spec) if linked else value)
                if options.get("control_after_generate"):
                    widgets.append("fixed")
                if any(options.get(u) for u in UPLOADS):
                    widgets.append("image")
                if linked:
                    inputs.append(
                        {
                            "name": name,
                            "type": socket_type,
                            "widget": {"name": name},
                            "link": link_id,
                        }
                    )
            else:
                inputs.append({"name": name, "type": socket_type, "link": link_id})
        nodes.append({
            "id": node_id, "type": entry["class_type"], "pos": list(graph[node_id][1]),
            "size": [340, 300], "flags": {}, "order": order, "mode": 0, "inputs": inputs,
            "outputs": [], "properties": {"Node name for S&R": entry["class_type"]},
            "widgets_values": widgets,
        })  # fmt: skip
    for link_ in links:  # a link's type is the output's
        src_info = infos[api[str(link_[1])]["class_type"]]
        link_[5] = src_info["output"][link_[2]]
    by_id = {n["id"]: n for n in nodes}
    for link_ in links:
        target = by_id[link_[3]]
        [socket] = [i for i in target["inputs"] if i["link"] == link_[0]]
        if "widget" not in socket:
            socket["type"] = link_[5]
    for node in nodes:
        info = infos[node["type"]]
        for slot, (kind, name) in enumerate(zip(info["output"], info["output_name"])):
            used = outputs_links.get((node["id"], slot))
            node["outputs"].append({"name": name, "type": kind, "links": used, "slot_index": slot})
    return {
        "last_node_id": max(by_id), "last_link_id": len(links), "nodes": nodes, "links": links,
        "groups": [], "config": {}, "extra": {"ds": {"scale": 0.6, "offset": [0, 0]}},
        "version": 0.4,
    }  # fmt: skip


# Menus of files (the models and inputs a user has): recorded empty, checked by no test.
FILE_MENUS = {
    ("LoadImage", "image"), ("LoadVideo", "file"), ("CheckpointLoaderSimple", "ckpt_name"),
    ("ControlNetLoader", "control_net_name"),
}  # fmt: skip


def record_core_nodes(url: str) -> None:
    """Write CORE_NODES from a running ComfyUI's /object_info: the core nodes the workflows use."""
    from urllib.request import urlopen

    with urlopen(f"{url}/object_info") as response:
        info = json.loads(response.read())
    with urlopen(f"{url}/system_stats") as response:
        version = json.loads(response.read())["system"]["comfyui_version"]
    used = {kind for graph in WORKFLOWS.values() for kind, _, _ in graph.values()}
    nodes = {}
    for kind in sorted(used):
        if info[kind]["python_module"].startswith("custom_nodes."):
            continue
        entry = {k: info[kind][k] for k in ("input", "input_order", "output", "output_name")}
        entry["display_name"] = info[kind]["display_name"]
        for part in entry["input"].values():
            for name, spec in part.items():
                if (kind, name) in FILE_MENUS:
                    if isinstance(spec[0], list):
                        spec[0] = []
                    else:
                        spec[1]["options"] = []
        nodes[kind] = entry
    record = {"comfyui": version, "source": f"{url}/object_info", "nodes": nodes}
    CORE_NODES.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{CORE_NODES.relative_to(ROOT)}: {len(nodes)} core nodes of ComfyUI {version}")


def main() -> None:
    if sys.argv[1:2] == ["--record-core-nodes"]:  # URL of a running ComfyUI
        record_core_nodes(sys.argv[2].rstrip("/"))
    infos = definitions()
    for name, graph in WORKFLOWS.items():
        api = api_format(graph, infos)
        ui = ui_format(api, graph, infos)
        for path, value in ((f"{name}.json", ui), (f"{name}_api.json", api)):
            (ROOT / "workflows" / path).write_text(json.dumps(value, indent=2) + "\n")
            print(f"workflows/{path}")


if __name__ == "__main__":
    main()
