"""The ComfyUI-compatible door: ComfyUI's HTTP routes, WebSocket messages and workflow formats over the
native queue, job store and hub (docs/api.md, "ComfyUI-compatible routes")."""

from .bridge import ComfyBridge
from .convert import comfy_format, prompt_to_workflow, ui_to_workflow, workflow_to_prompt
from .routes import comfy_api

__all__ = ["ComfyBridge", "comfy_api", "comfy_format", "prompt_to_workflow", "ui_to_workflow", "workflow_to_prompt"]
