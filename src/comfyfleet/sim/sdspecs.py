"""Specs of the standard SD nodes (nodes.py): checkpoint and LoRA loaders, text encode,
empty latent, KSampler, VAE decode. File combos are filled from the model inventory."""

from __future__ import annotations

from typing import Any

from comfyfleet.sim.catalogue import (
    MAX_RESOLUTION,
    SAMPLERS,
    SCHEDULERS,
    NodeClass,
    float_input,
    int_input,
    v1_info,
)


def _tip(kind: str, text: str) -> list[Any]:
    return [kind, {"tooltip": text}]


def sd_nodes() -> list[NodeClass]:
    res = MAX_RESOLUTION
    return [
        NodeClass(
            "CheckpointLoaderSimple",
            v1_info(
                "CheckpointLoaderSimple",
                {"ckpt_name": [[], {"tooltip": "The name of the checkpoint (model) to load."}]},
                ["MODEL", "CLIP", "VAE"],
                category="loaders",
                display="Load Checkpoint",
                description="Loads a diffusion model checkpoint, diffusion models are used to "
                "denoise latents.",
                tooltips=[
                    "The model used for denoising latents.",
                    "The CLIP model used for encoding text prompts.",
                    "The VAE model used for encoding and decoding images to and from latent space.",
                ],
            ),
            file_combos={"ckpt_name": "checkpoints"},
        ),
        NodeClass(
            "LoraLoader",
            v1_info(
                "LoraLoader",
                {
                    "model": _tip("MODEL", "The diffusion model the LoRA will be applied to."),
                    "clip": _tip("CLIP", "The CLIP model the LoRA will be applied to."),
                    "lora_name": [[], {"tooltip": "The name of the LoRA."}],
                    "strength_model": float_input(
                        1.0,
                        -100.0,
                        100.0,
                        0.01,
                        tooltip=(
                            "How strongly to modify the diffusion model. "
                            "This value can be negative."
                        ),
                    ),
                    "strength_clip": float_input(
                        1.0,
                        -100.0,
                        100.0,
                        0.01,
                        tooltip=(
                            "How strongly to modify the CLIP model. This value can be negative."
                        ),
                    ),
                },
                ["MODEL", "CLIP"],
                category="loaders",
                display="Load LoRA",
                description="LoRAs are used to modify diffusion and CLIP models, altering the "
                "way in which latents are denoised such as applying styles. Multiple LoRA nodes "
                "can be linked together.",
                tooltips=["The modified diffusion model.", "The modified CLIP model."],
            ),
            file_combos={"lora_name": "loras"},
        ),
        NodeClass(
            "CLIPTextEncode",
            v1_info(
                "CLIPTextEncode",
                {
                    "text": [
                        "STRING",
                        {
                            "multiline": True,
                            "dynamicPrompts": True,
                            "tooltip": "The text to be encoded.",
                        },
                    ],
                    "clip": _tip("CLIP", "The CLIP model used for encoding the text."),
                },
                ["CONDITIONING"],
                category="conditioning",
                display="CLIP Text Encode (Prompt)",
                description="Encodes a text prompt using a CLIP model into an embedding that can "
                "be used to guide the diffusion model towards generating specific images.",
                tooltips=[
                    "A conditioning containing the embedded text used to guide the diffusion model."
                ],
            ),
        ),
        NodeClass(
            "EmptyLatentImage",
            v1_info(
                "EmptyLatentImage",
                {
                    "width": int_input(
                        512, 16, res, 8, tooltip="The width of the latent images in pixels."
                    ),
                    "height": int_input(
                        512, 16, res, 8, tooltip="The height of the latent images in pixels."
                    ),
                    "batch_size": int_input(
                        1, 1, 4096, None, tooltip="The number of latent images in the batch."
                    ),
                },
                ["LATENT"],
                category="latent",
                display="Empty Latent Image",
                description="Create a new batch of empty latent images to be denoised via "
                "sampling.",
                tooltips=["The empty latent image batch."],
            ),
        ),
        NodeClass(
            "KSampler",
            v1_info(
                "KSampler",
                _ksampler_inputs(),
                ["LATENT"],
                category="sampling",
                display="KSampler",
                description="Uses the provided model, positive and negative conditioning to "
                "denoise the latent image.",
                tooltips=["The denoised latent."],
            ),
        ),
        NodeClass(
            "VAEDecode",
            v1_info(
                "VAEDecode",
                {
                    "samples": _tip("LATENT", "The latent to be decoded."),
                    "vae": _tip("VAE", "The VAE model used for decoding the latent."),
                },
                ["IMAGE"],
                category="latent",
                display="VAE Decode",
                description="Decodes latent images back into pixel space images.",
                tooltips=["The decoded image."],
            ),
        ),
    ]


def _ksampler_inputs() -> dict[str, list[Any]]:
    return {
        "model": _tip("MODEL", "The model used for denoising the input latent."),
        "seed": int_input(
            0,
            0,
            0xFFFFFFFFFFFFFFFF,
            None,
            control_after_generate=True,
            tooltip="The random seed used for creating the noise.",
        ),
        "steps": int_input(
            20, 1, 10000, None, tooltip="The number of steps used in the denoising process."
        ),
        "cfg": float_input(
            8.0,
            0.0,
            100.0,
            0.1,
            round=0.01,
            tooltip=(
                "The Classifier-Free Guidance scale balances creativity and adherence to the "
                "prompt. Higher values result in images more closely matching the prompt however "
                "too high values will negatively impact quality."
            ),
        ),
        "sampler_name": [
            SAMPLERS,
            {
                "tooltip": (
                    "The algorithm used when sampling, this can affect the quality, speed, "
                    "and style of the generated output."
                )
            },
        ],
        "scheduler": [
            SCHEDULERS,
            {
                "tooltip": (
                    "The scheduler controls how noise is gradually removed to form the image."
                )
            },
        ],
        "positive": _tip(
            "CONDITIONING",
            ("The conditioning describing the attributes you want to include in the image."),
        ),
        "negative": _tip(
            "CONDITIONING",
            ("The conditioning describing the attributes you want to exclude from the image."),
        ),
        "latent_image": _tip("LATENT", "The latent image to denoise."),
        "denoise": float_input(
            1.0,
            0.0,
            1.0,
            0.01,
            tooltip=(
                "The amount of denoising applied, lower values will maintain the structure of the "
                "initial image allowing for image to image sampling."
            ),
        ),
    }
