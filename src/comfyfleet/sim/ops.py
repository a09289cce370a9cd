"""What each built-in node class does in the stand-in.

Values on links: IMAGE is a list of `Image` (the batch), MASK a list of `Mask`, LATENT a
`Latent`; models, CLIP, VAE and conditioning are plain descriptive strings. CPU work runs
in a worker thread (`asyncio.to_thread`) so the event loop keeps serving requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from comfyfleet.sim import images
from comfyfleet.sim.files import Storage, temp_prefix
from comfyfleet.sim.images import Image, Mask

Outputs = tuple[Any, ...]
UI = dict[str, Any] | None


@dataclass(frozen=True)
class Latent:
    width: int
    height: int
    batch: int
    seed: int | None = None


class NodeContext(Protocol):
    """What a node may do besides computing: save files, report progress, send text."""

    storage: Storage
    node_id: str
    prompt: dict[str, Any]
    extra_pnginfo: dict[str, Any] | None
    step_ms: float
    # Test control (sim/faults.py): SaveImage pads each file to at least this size (bytes).
    pad_output_bytes: int

    async def progress(self, value: int, total: int, preview: bytes | None) -> None: ...

    def text(self, message: str) -> None: ...


Op = Callable[[dict[str, Any], NodeContext], Awaitable[tuple[Outputs, UI]]]


async def empty_image(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    image = images.solid(i["width"], i["height"], i["color"])
    return ([image] * i["batch_size"],), None


async def save_image(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    return (), {"images": await asyncio.to_thread(_save, i["images"], i["filename_prefix"], ctx)}


async def preview_image(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    saved = await asyncio.to_thread(_save, i["images"], temp_prefix(), ctx, "temp")
    return (), {"images": saved}


def _save(batch: list[Image], prefix: str, ctx: NodeContext, kind: str = "output") -> list[Any]:
    folder, name, counter, subfolder = ctx.storage.save_target(prefix, kind)
    text = {"prompt": json.dumps(ctx.prompt)}
    for key, value in (ctx.extra_pnginfo or {}).items():
        text[key] = json.dumps(value)
    results = []
    for number, image in enumerate(batch):
        filename = f"{name.replace('%batch_num%', str(number))}_{counter:05}_.png"
        level = 1 if kind == "temp" else 4
        png = images.encode_png(image, text, level)
        if kind == "output" and ctx.pad_output_bytes > len(png):
            images.write_padded_png(folder / filename, png, ctx.pad_output_bytes)
        else:
            ctx.storage.write(folder / filename, png)
        results.append({"filename": filename, "subfolder": subfolder, "type": kind})
        counter += 1
    return results


async def load_image(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    path = ctx.storage.annotated_path(i["image"])
    image = await asyncio.to_thread(_load, path)
    return ([image], [images.solid_mask(64, 64, 0.0)]), None


def _load(path: Path) -> Image:
    try:
        return images.decode(path.read_bytes())
    except images.UnidentifiedImageError:
        raise images.UnidentifiedImageError(f"cannot identify image file '{path}'") from None


async def image_invert(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    return ([images.invert(image) for image in i["image"]],), None


async def image_scale(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    def work() -> list[Image]:
        return [images.scale(image, i["width"], i["height"]) for image in i["image"]]

    return (await asyncio.to_thread(work),), None


async def passthrough(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    """Blur and sharpen: sizes are what matter to clients, so pixels pass unchanged."""
    return (list(i["image"]),), None


async def custom_node(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    """A stand-in's extra class (`--extra-class`): its IMAGE through, or a small grey one."""
    if "image" in i:
        return (list(i["image"]),), None
    return ([images.solid(64, 64, 0x808080)],), None


async def save_image_websocket(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    batch: list[Image] = i["images"]
    for step, image in enumerate(batch):
        png = await asyncio.to_thread(images.encode_png, image, None, 1)
        await ctx.progress(step, len(batch), png)
    return (), None


async def get_image_size(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    batch: list[Image] = i["image"]
    width, height = batch[0].width, batch[0].height
    ctx.text(f"width: {width}, height: {height}\n batch size: {len(batch)}")
    return (width, height, len(batch)), None


async def preview_any(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    source = i.get("source")
    if isinstance(source, str):
        value = source
    elif isinstance(source, int | float | bool):
        value = str(source)
    elif source is None:
        value = "None"
    else:
        try:
            value = json.dumps(source)
        except (TypeError, ValueError):
            value = str(source)
    return (), {"text": [value]}


async def solid_mask(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    return ([images.solid_mask(i["width"], i["height"], i["value"])],), None


async def composite_masked(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    dest: list[Image] = i["destination"]
    source: list[Image] = i["source"]
    masks: list[Mask] | None = i.get("mask")

    def work() -> list[Image]:
        out = []
        for index, image in enumerate(dest):
            src = source[index % len(source)]
            if i["resize_source"]:
                src = images.scale(src, image.width, image.height)
            mask = masks[index % len(masks)] if masks else None
            out.append(images.composite(image, src, i["x"], i["y"], mask))
        return out

    return (await asyncio.to_thread(work),), None


async def checkpoint_loader(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    name = i["ckpt_name"]
    return (f"model:{name}", f"clip:{name}", f"vae:{name}"), None


async def lora_loader(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    lora = f"+lora:{i['lora_name']}"
    return (i["model"] + lora, i["clip"] + lora), None


async def clip_text_encode(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    return (f"cond:{i['text']}",), None


async def empty_latent(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    return (Latent(i["width"], i["height"], i["batch_size"]),), None


async def ksampler(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    """One `progress` (and one preview frame) per step, `step_ms` apart."""
    latent: Latent = i["latent_image"]
    steps: int = i["steps"]
    # Previews are latent-sized, as ComfyUI's latent previewers are before upscaling.
    small = images.noise(max(1, latent.width // 8), max(1, latent.height // 8), i["seed"])
    for step in range(1, steps + 1):
        await asyncio.sleep(ctx.step_ms / 1000)
        png = await asyncio.to_thread(images.encode_png, small, None, 1)
        await ctx.progress(step, steps, png)
    return (Latent(latent.width, latent.height, latent.batch, i["seed"]),), None


async def vae_decode(i: dict[str, Any], ctx: NodeContext) -> tuple[Outputs, UI]:
    latent: Latent = i["samples"]
    width, height = latent.width // 8 * 8, latent.height // 8 * 8

    def work() -> list[Image]:
        if latent.seed is None:
            return [images.solid(width, height, 0x808080)] * latent.batch
        return [images.noise(width, height, latent.seed + n) for n in range(latent.batch)]

    return (await asyncio.to_thread(work),), None


OPS: dict[str, Op] = {
    "EmptyImage": empty_image,
    "SaveImage": save_image,
    "PreviewImage": preview_image,
    "LoadImage": load_image,
    "ImageInvert": image_invert,
    "ImageScale": image_scale,
    "ImageBlur": passthrough,
    "ImageSharpen": passthrough,
    "SaveImageWebsocket": save_image_websocket,
    "GetImageSize": get_image_size,
    "PreviewAny": preview_any,
    "SolidMask": solid_mask,
    "ImageCompositeMasked": composite_masked,
    "CheckpointLoaderSimple": checkpoint_loader,
    "LoraLoader": lora_loader,
    "CLIPTextEncode": clip_text_encode,
    "EmptyLatentImage": empty_latent,
    "KSampler": ksampler,
    "VAEDecode": vae_decode,
}
