"""ComfyUI entry point of the comfyui-dwpose node pack.

ComfyUI imports this folder as a package named after its path, so everything below is
imported relatively: the bundled library and our `nodes` module, never ComfyUI's own
top-level `nodes` nor another installed copy of `comfyui_dwpose`.
"""

# pytest imports a root __init__.py as a bare module (no parent package) before running
# the tests; only a package import (ComfyUI's) defines the nodes.
if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
