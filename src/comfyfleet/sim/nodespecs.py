"""The built-in node classes' specs, as ComfyUI 0.3.64's `/object_info` shows them.

EmptyImage, SaveImage, LoadImage, ImageBlur and SaveImageWebsocket are copied from the
recordings (traces/01_get, 03_upload); the rest follow the INPUT_TYPES in ComfyUI's nodes.py
and comfy_extras (nodes_post_processing, nodes_images, nodes_mask, nodes_preview_any).
"""

from __future__ import annotations

from comfyfleet.sim.catalogue import (
    MAX_RESOLUTION,
    PREFIX_TOOLTIP,
    SAVE_DESCRIPTION,
    SAVE_HIDDEN,
    UPSCALE_METHODS,
    NodeClass,
    float_input,
    int_input,
    v1_info,
    v3_info,
)
from comfyfleet.sim.sdspecs import sd_nodes


def _image_nodes() -> list[NodeClass]:
    res = MAX_RESOLUTION
    return [
        NodeClass(
            "EmptyImage",
            v1_info(
                "EmptyImage",
                {
                    "width": int_input(512, 1, res),
                    "height": int_input(512, 1, res),
                    "batch_size": int_input(1, 1, 4096, None),
                    "color": int_input(0, 0, 0xFFFFFF, 1, display="color"),
                },
                ["IMAGE"],
                category="image",
            ),
        ),
        NodeClass(
            "SaveImage",
            v1_info(
                "SaveImage",
                {
                    "images": ["IMAGE", {"tooltip": "The images to save."}],
                    "filename_prefix": [
                        "STRING",
                        {
                            "default": "ComfyUI",
                            "tooltip": PREFIX_TOOLTIP,
                        },
                    ],
                },
                [],
                category="image",
                display="Save Image",
                description=SAVE_DESCRIPTION,
                hidden=SAVE_HIDDEN,
                output_node=True,
            ),
        ),
        NodeClass(
            "PreviewImage",
            v1_info(
                "PreviewImage",
                {"images": ["IMAGE"]},
                [],
                category="image",
                display="Preview Image",
                description=SAVE_DESCRIPTION,
                hidden=SAVE_HIDDEN,
                output_node=True,
            ),
        ),
        NodeClass(
            "LoadImage",
            v1_info(
                "LoadImage",
                {"image": [[], {"image_upload": True}]},
                ["IMAGE", "MASK"],
                category="image",
                display="Load Image",
            ),
            file_combos={"image": "@input"},
            custom_validated=("image",),
            is_changed="input_file",
        ),
        NodeClass(
            "ImageInvert",
            v1_info(
                "ImageInvert",
                {"image": ["IMAGE"]},
                ["IMAGE"],
                category="image",
                display="Invert Image",
            ),
        ),
        NodeClass(
            "ImageScale",
            v1_info(
                "ImageScale",
                {
                    "image": ["IMAGE"],
                    "upscale_method": [UPSCALE_METHODS],
                    "width": int_input(512, 0, res),
                    "height": int_input(512, 0, res),
                    "crop": [["disabled", "center"]],
                },
                ["IMAGE"],
                category="image/upscaling",
                display="Upscale Image",
            ),
        ),
    ]


def _filter_nodes() -> list[NodeClass]:
    res = MAX_RESOLUTION
    return [
        NodeClass(
            "ImageBlur",
            v3_info(
                "ImageBlur",
                {
                    "image": ["IMAGE", {}],
                    "blur_radius": int_input(1, 1, 31),
                    "sigma": float_input(1.0, 0.1, 10.0, 0.1),
                },
                "image/postprocessing",
                "comfy_extras.nodes_post_processing",
            ),
        ),
        NodeClass(
            "ImageSharpen",
            v3_info(
                "ImageSharpen",
                {
                    "image": ["IMAGE", {}],
                    "sharpen_radius": int_input(1, 1, 31),
                    "sigma": float_input(1.0, 0.1, 10.0, 0.01),
                    "alpha": float_input(1.0, 0.0, 5.0, 0.01),
                },
                "image/postprocessing",
                "comfy_extras.nodes_post_processing",
            ),
        ),
        NodeClass(
            "SaveImageWebsocket",
            v1_info(
                "SaveImageWebsocket",
                {"images": ["IMAGE"]},
                [],
                category="api/image",
                module="custom_nodes.websocket_image_save",
                output_node=True,
            ),
            is_changed="always",
        ),
        NodeClass(
            "GetImageSize",
            v1_info(
                "GetImageSize",
                {"image": ["IMAGE"]},
                ["INT", "INT", "INT"],
                category="image",
                module="comfy_extras.nodes_images",
                hidden={"unique_id": "UNIQUE_ID"},
                output_name=["width", "height", "batch_size"],
                description="Returns width and height of the image, and passes it through "
                "unchanged.",
            ),
            unique_id=True,
        ),
        NodeClass(
            "PreviewAny",
            v1_info(
                "PreviewAny",
                {"source": ["*", {}]},
                [],
                category="utils",
                module="comfy_extras.nodes_preview_any",
                display="Preview Any",
                output_node=True,
            ),
        ),
        NodeClass(
            "SolidMask",
            v1_info(
                "SolidMask",
                {
                    "value": float_input(1.0, 0.0, 1.0, 0.01),
                    "width": int_input(512, 1, res),
                    "height": int_input(512, 1, res),
                },
                ["MASK"],
                category="mask",
                module="comfy_extras.nodes_mask",
            ),
        ),
        NodeClass(
            "ImageCompositeMasked",
            v1_info(
                "ImageCompositeMasked",
                {
                    "destination": ["IMAGE"],
                    "source": ["IMAGE"],
                    "x": int_input(0, 0, res),
                    "y": int_input(0, 0, res),
                    "resize_source": ["BOOLEAN", {"default": False}],
                },
                ["IMAGE"],
                category="image",
                module="comfy_extras.nodes_mask",
                optional={"mask": ["MASK"]},
            ),
        ),
    ]


def builtin_classes() -> dict[str, NodeClass]:
    return {node.name: node for node in [*_image_nodes(), *_filter_nodes(), *sd_nodes()]}


def extra_class(name: str) -> NodeClass:
    """A stand-in's own node class (a custom node other stand-ins lack): its optional
    IMAGE input comes out unchanged."""
    return NodeClass(
        name,
        v1_info(name, {}, ["IMAGE"], category="custom", optional={"image": ["IMAGE"]}),
    )


def node_classes(
    extra: tuple[str, ...] = (), without: tuple[str, ...] = ()
) -> dict[str, NodeClass]:
    """The built-in classes minus `without`, plus a pass-through class per `extra` name."""
    classes = {name: node for name, node in builtin_classes().items() if name not in without}
    classes.update((name, extra_class(name)) for name in extra if name not in classes)
    return classes
