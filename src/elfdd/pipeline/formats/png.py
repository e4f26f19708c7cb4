"""A folder of images by class (torchvision's ImageFolder layout: ``root/<class>/<image>.png``), as PNG or any
other format PIL reads (``.jpg`` as SRe2L, RDED and CV-DD write their sets, ``.bmp``, ``.webp``, ``.tif``). Class
folders named by integers are those classes; otherwise the sorted folder names are classes 0, 1, ... Images are
8-bit pixels (space ``pixel``); a palette, CMYK or RGBA image is read as RGB (alpha dropped). Written back as PNG (lossless)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.errors import BadInput
from .registry import Format, RawSet, register_format

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# modes read as grey or RGB (the alpha channel dropped)
CONVERTED = {"P": "RGB", "PA": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "RGBA": "RGB", "LA": "L"}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _classes(root: Path) -> list[tuple[int, Path]]:
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise BadInput(f"{root} has no class folders (expected root/<class>/<image>.png or .jpg)")
    if all(p.name.isdigit() for p in folders):
        return sorted((int(p.name), p) for p in folders)
    return list(enumerate(folders))


def read(paths: list[Path], options: dict[str, Any]) -> RawSet:
    from PIL import Image, UnidentifiedImageError

    if len(paths) != 1 or not paths[0].is_dir():
        raise BadInput("an image-folder set is one folder of class folders")
    images, labels, files = [], [], []
    for label, folder in _classes(paths[0]):
        for file in _images(folder):
            try:
                with warnings.catch_warnings():  # PIL only warns between its limit and twice it
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(file) as picture:
                        mode = CONVERTED.get(picture.mode)
                        pixels = np.asarray(picture.convert(mode) if mode else picture)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise BadInput(
                    f"{file} is too large to be an image of a distilled set (over {Image.MAX_IMAGE_PIXELS:,} "
                    "pixels: a decompression bomb?); refused"
                ) from None
            except (OSError, UnidentifiedImageError) as exc:
                raise BadInput(f"{file} is not a readable image: {exc}") from None
            if pixels.dtype != np.uint8:
                raise BadInput(f"{file}: 8-bit images only, got {pixels.dtype}")
            images.append(pixels if pixels.ndim == 3 else pixels[..., None])
            labels.append(label)
            files.append(file)
    if not images:
        raise BadInput(f"{paths[0]} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if len({i.shape for i in images}) > 1:
        raise BadInput(
            f"{paths[0]}: the images differ in size or channels: {sorted({i.shape for i in images})}"
        )
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return RawSet(stacked, torch.tensor(labels), "pixel", files)


def write(synthetic, out: Path) -> list[Path]:
    """``out/<class>/<index>.png``: the images back in 8-bit pixels (lossy: rounding, values outside 0-1 clipped)."""
    from PIL import Image

    from .spaces import to_pixels

    if synthetic.soft:
        raise BadInput(
            "a set with soft labels cannot be written as PNG class folders; export it as mtt or npz"
        )
    pixels = (to_pixels(synthetic).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    written = []
    for index, (image, label) in enumerate(zip(pixels, synthetic.labels.tolist(), strict=True)):
        path = out / str(label) / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
        written.append(path)
    return written


def claims(path: Path) -> bool:
    return path.is_dir() and any(_images(folder) for folder in path.iterdir() if folder.is_dir())


register_format("png", Format(read, claims, write))
