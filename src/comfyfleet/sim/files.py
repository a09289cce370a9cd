"""The input/output/temp folders: saving outputs, uploads and the path rules of /view."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

FOLDER_TYPES = ("input", "output", "temp")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
TEMP_LETTERS = "abcdefghijklmnopqrstupvxyz"  # sic: ComfyUI's PreviewImage alphabet


class Storage:
    """The three folders under one root; without a root, a private temp dir is used."""

    def __init__(self, root: Path | None) -> None:
        self._owned = root is None
        self.root = root or Path(tempfile.gettempdir()) / "comfyfleet-sim-unopened"
        self.dirs = {kind: self.root / kind for kind in FOLDER_TYPES}

    def prepare(self) -> None:
        """Create the folders; the temp folder starts empty, as in ComfyUI."""
        if self._owned:
            self.root = Path(tempfile.mkdtemp(prefix="comfyfleet-sim-"))
            self.dirs = {kind: self.root / kind for kind in FOLDER_TYPES}
        shutil.rmtree(self.dirs["temp"], ignore_errors=True)
        for folder in self.dirs.values():
            folder.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Remove the private temp dir (a configured data dir is left alone)."""
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)

    def folder(self, kind: str | None) -> Path | None:
        return self.dirs.get(kind or "input")

    def input_images(self) -> tuple[str, ...]:
        """Files at the top level of input/ that look like images (LoadImage's combo)."""
        return tuple(
            sorted(
                entry.name
                for entry in os.scandir(self.dirs["input"])
                if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)
            )
        )

    def annotated_path(self, name: str) -> Path:
        """ComfyUI's `name [output]` / `[input]` / `[temp]` annotation; input by default."""
        for kind in FOLDER_TYPES:
            suffix = f" [{kind}]"
            if name.endswith(suffix):
                return self.dirs[kind] / name[: -len(suffix)]
        return self.dirs["input"] / name

    def input_exists(self, name: str) -> bool:
        return self.annotated_path(name).exists()

    def save_target(self, prefix: str, kind: str = "output") -> tuple[Path, str, int, str]:
        """(folder, base name, next counter, subfolder) for `prefix`, like ComfyUI's
        get_save_image_path: the counter continues from the files already there."""
        base_dir = self.dirs[kind]
        normalized = os.path.normpath(prefix)
        subfolder, filename = os.path.dirname(normalized), os.path.basename(normalized)
        folder = (base_dir / subfolder).resolve()
        if os.path.commonpath((base_dir.resolve(), folder)) != str(base_dir.resolve()):
            raise ValueError("Saving image outside the output folder is not allowed.")
        folder.mkdir(parents=True, exist_ok=True)
        counter = 0
        for existing in os.listdir(folder):
            head = existing[: len(filename) + 1]
            if head[:-1].lower() != filename.lower() or head[-1:] != "_":
                continue
            digits = existing[len(filename) + 1 :].split("_")[0]
            counter = max(counter, int(digits) if digits.isdigit() else 0)
        return folder, filename, counter + 1, subfolder

    def write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)

    def store_upload(
        self, kind: str, subfolder: str, filename: str, data: bytes, overwrite: bool
    ) -> str | None:
        """Save an upload; returns the final name, or None when the path escapes the folder.

        Same name + same bytes keeps the name (nothing written); same name + other bytes
        becomes `name (1).ext`, `name (2).ext`, ...
        """
        base = self.dirs[kind].resolve()
        folder = (base / os.path.normpath(subfolder)).resolve()
        target = (folder / filename).resolve()
        if os.path.commonpath((str(base), str(target))) != str(base):
            return None
        folder.mkdir(parents=True, exist_ok=True)
        stem, ext = os.path.splitext(filename)
        index = 1
        while not overwrite and target.exists():
            if _digest(target.read_bytes()) == _digest(data):
                return filename
            filename = f"{stem} ({index}){ext}"
            target = folder / filename
            index += 1
        self.write(target, data)
        return filename

    def view_path(self, filename: str, kind: str, subfolder: str | None) -> Path | int:
        """The file /view serves, or the HTTP status it answers instead (400/403/404)."""
        if not filename or filename[0] == "/" or ".." in filename:
            return 400
        # A name with CR/LF would be echoed into Content-Disposition, which aiohttp refuses
        # with an exception (a 500 in ComfyUI); no stored file has such a name anyway.
        if _CONTROL.search(filename + (subfolder or "")):
            return 400
        base = self.dirs.get(kind)
        if base is None:
            return 400
        folder = base.resolve()
        if subfolder is not None:
            candidate = (base / subfolder).resolve()
            if os.path.commonpath((str(candidate), str(folder))) != str(folder):
                return 403
            folder = candidate
        path = folder / os.path.basename(filename)
        return path if path.is_file() else 404

    def listing(self, kind: str) -> list[str]:
        """Top-level files of a folder, newest first (/internal/files/{kind})."""
        entries = [e for e in os.scandir(self.dirs[kind]) if e.is_file()]
        entries.sort(key=lambda e: -e.stat().st_mtime)
        return [e.name for e in entries]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def temp_prefix() -> str:
    return "ComfyUI_temp_" + "".join(random.choice(TEMP_LETTERS) for _ in range(5))


def content_type(filename: str) -> str:
    kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    risky = {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript"}
    return "application/octet-stream" if kind in risky | {"text/css"} else kind


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """IS_CHANGED for LoadImage: the upload's content hash ("" when it is gone)."""
    try:
        return _digest(path.read_bytes())
    except OSError:
        return ""
