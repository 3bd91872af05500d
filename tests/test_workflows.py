"""Every shipped workflow (workflows/*.json) uses only existing node classes and inputs:
this pack's (its classes) and ComfyUI's core nodes (tests/data/comfyui_core_nodes.json,
ComfyUI 0.3.64's /object_info for the core nodes used; tests/test_comfyui_server.py checks
that record against a live server). Each UI file holds the same graph as its API file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_nodes import env, nodes, pack  # noqa: F401  (the pack loaded as ComfyUI loads it)

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted(
    p.name.removesuffix("_api.json") for p in (ROOT / "workflows").glob("*_api.json")
)
CORE = json.loads((ROOT / "tests" / "data" / "comfyui_core_nodes.json").read_text())["nodes"]
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def test_every_workflow_ships_in_both_formats():
    ui = sorted(p.stem for p in (ROOT / "workflows").glob("*.json") if not p.stem.endswith("_api"))
    assert ui == WORKFLOWS
    assert {"dwpose_basic", "dwpose_controlnet", "dwpose_video", "dwpose_keypoints"} <= set(ui)


def definition(pack, kind: str) -> dict:  # noqa: F811  (pack: the module, passed in)
    """`kind`'s inputs (name -> spec, in order) and output types."""
    if kind in pack.NODE_CLASS_MAPPINGS:
        cls = pack.NODE_CLASS_MAPPINGS[kind]
        types = cls.INPUT_TYPES()
        inputs = {**types["required"], **types.get("optional", {})}
        required = set(types["required"])
        return {"inputs": inputs, "required": required, "outputs": list(cls.RETURN_TYPES)}
    assert kind in CORE, f"{kind} is neither this pack's nor a recorded core node"
    info = CORE[kind]
    inputs = {
        n: info["input"][part][n]
        for part in ("required", "optional")
        for n in info["input_order"].get(part, [])
    }
    return {
        "inputs": inputs,
        "required": set(info["input_order"]["required"]),
        "outputs": info["output"],
    }


@pytest.mark.parametrize("name", WORKFLOWS)
def test_api_workflow_uses_existing_nodes_inputs_and_values(pack, nodes, name):  # noqa: F811
    api = json.loads((ROOT / "workflows" / f"{name}_api.json").read_text())
    for node_id, entry in api.items():
        kind = entry["class_type"]
        spec = definition(pack, kind)
        given = entry["inputs"]
        assert set(given) <= set(spec["inputs"]), (name, kind, set(given) - set(spec["inputs"]))
        assert spec["required"] <= set(given), (name, kind, spec["required"] - set(given))
        for input_name, value in given.items():
            input_spec = spec["inputs"][input_name]
            if isinstance(value, list):  # a link: [node id, output slot] of a matching type
                source = api[value[0]]["class_type"]
                produced = definition(pack, source)["outputs"][value[1]]
                expected = "COMBO" if isinstance(input_spec[0], list) else input_spec[0]
                assert produced == expected or "*" in (produced, expected), (
                    name,
                    node_id,
                    input_name,
                )
                continue
            options = input_spec[1] if len(input_spec) > 1 else {}
            choices = input_spec[0] if isinstance(input_spec[0], list) else None
            if input_spec[0] == "COMBO":  # ComfyUI's newer node schema
                choices = options.get("options")
            if choices and kind in pack.NODE_CLASS_MAPPINGS:
                cls = pack.NODE_CLASS_MAPPINGS[kind]
                if hasattr(cls, "VALIDATE_INPUTS") and input_name in ("detector", "pose_model"):
                    assert cls.VALIDATE_INPUTS(**{input_name: value}) is True, (name, value)
                elif input_name != "keypoints_file":  # a file ComfyUI's input folder gets
                    assert value in choices, (name, kind, input_name, value)
            elif choices:  # core: fixed menus recorded; file menus are recorded empty
                assert value in choices, (name, kind, input_name, value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert options.get("min", value) <= value <= options.get("max", value), input_name


@pytest.mark.parametrize("name", WORKFLOWS)
def test_ui_workflow_is_the_api_workflow(pack, name):  # noqa: F811
    """Same nodes, links as [node id, slot], widget values in the editor's order (with the
    extra value a seed's 'control after generate' and an upload button store)."""
    ui = json.loads((ROOT / "workflows" / f"{name}.json").read_text())
    api = json.loads((ROOT / "workflows" / f"{name}_api.json").read_text())
    assert sorted(api, key=int) == [
        str(n["id"]) for n in sorted(ui["nodes"], key=lambda n: n["id"])
    ]
    links = {link[0]: link for link in ui["links"]}
    for node in ui["nodes"]:
        entry = api[str(node["id"])]
        assert entry["class_type"] == node["type"]
        spec = definition(pack, node["type"])
        assert [o["type"] for o in node["outputs"]] == spec["outputs"]
        for i in node["inputs"]:
            if i["link"] is None:
                assert i["name"] not in entry["inputs"]
            else:
                _, src, slot, dst, dst_slot, kind = links[i["link"]]
                assert entry["inputs"][i["name"]] == [str(src), slot]
                assert node["inputs"][dst_slot] is i and dst == node["id"]
                assert (
                    ui["nodes"][[n["id"] for n in ui["nodes"]].index(src)]["outputs"][slot]["type"]
                    == kind
                )
        values = list(node["widgets_values"])
        for input_name, input_spec in spec["inputs"].items():
            if not (isinstance(input_spec[0], list) or input_spec[0] in WIDGET_TYPES):
                continue
            value = values.pop(0)
            if not isinstance(entry["inputs"].get(input_name), list):
                assert entry["inputs"][input_name] == value, (name, node["type"], input_name)
            options = input_spec[1] if len(input_spec) > 1 else {}
            if options.get("control_after_generate"):
                assert values.pop(0) in ("fixed", "increment", "decrement", "randomize")
            if any(options.get(k) for k in ("image_upload", "video_upload", "audio_upload")):
                assert values.pop(0) == "image"
        assert values == [], (name, node["type"])
    assert ui["last_link_id"] == max(links, default=0)
    assert ui["last_node_id"] == max(n["id"] for n in ui["nodes"])


def test_workflow_inputs_are_bundled(nodes):  # noqa: F811
    """Every input file a workflow names is one the pack copies into ComfyUI's input folder."""
    named = set()
    for name in WORKFLOWS:
        api = json.loads((ROOT / "workflows" / f"{name}_api.json").read_text())
        for entry in api.values():
            for key in ("image", "file", "keypoints_file"):
                if isinstance(entry["inputs"].get(key), str):
                    named.add(entry["inputs"][key])
    assert named == set(nodes.EXAMPLE_INPUTS)
    assert all(path.is_file() for path in nodes.EXAMPLE_INPUTS.values())
