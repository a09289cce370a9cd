"""comfyfleet: many ComfyUI servers as one image-generation service."""

__version__ = "0.1.0"
