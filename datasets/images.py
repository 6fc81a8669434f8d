"""Safe image decoding and manifest path resolution (DESIGN.md section 5).

A bad image is never fatal: every way an image can be unusable raises :class:`ImageError`
with one of the :data:`REASONS` codes, which ``taomm prepare`` writes to the quarantine.

=====================  ==================================================================
reason                 meaning
=====================  ==================================================================
image_missing          the file does not exist, vanished, or is not a regular file
image_unreadable       empty, truncated, corrupt, or a format outside ALLOWED_FORMATS
image_too_large        more than ``max_pixels`` pixels (from the header) or ``max_bytes``
path_outside_root      the manifest path is absolute, has ``..``, or a symlink leaves root
=====================  ==================================================================
"""

from __future__ import annotations

import stat
import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image, ImageOps

REASONS = ("image_missing", "image_unreadable", "image_too_large", "path_outside_root")
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
# Decompression-bomb limit. Pillow's own global check (Image.MAX_IMAGE_PIXELS, ~89 Mpx,
# left untouched) still applies on top, so a larger max_pixels cannot go beyond it.
MAX_PIXELS = 40_000_000
MAX_BYTES = 50 * 2**20

_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class ImageError(Exception):
    """An image that cannot be used; ``.reason`` is one of REASONS, ``.detail`` a short text."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown image error reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def resolve_image_path(root: Path, relative: str) -> Path:
    """The real path of the file a manifest entry points to, inside ``root``.

    Raises ImageError('path_outside_root') for absolute paths, ``..`` components, or
    symlinks (anywhere along the path) that resolve outside root; ImageError('image_missing')
    if the target is absent or not a regular file.
    """
    # Checked on the text first, as both POSIX and Windows paths, before any filesystem access.
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or windows.anchor:
        raise ImageError("path_outside_root", f"absolute path {relative!r}")
    if ".." in posix.parts or ".." in windows.parts:
        raise ImageError("path_outside_root", f"'..' in {relative!r}")
    if "\0" in relative:
        raise ImageError("image_missing", f"invalid path {relative!r}")
    # RuntimeError: a symlink loop (Python < 3.13); ValueError: a name that cannot be
    # encoded (lone surrogates); OSError: e.g. a name too long for the filesystem.
    try:
        real_root = root.resolve(strict=True)
        real = (real_root / relative).resolve()
        if not real.is_relative_to(real_root):
            raise ImageError("path_outside_root", f"{relative!r} resolves outside the root")
        if not real.is_file():
            raise ImageError("image_missing", f"{relative!r} is not a file")
    except (OSError, RuntimeError, ValueError) as err:
        raise ImageError("image_missing", f"cannot resolve {relative!r}: {err}") from err
    return real


def load_image(path: Path, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES) -> Image.Image:
    """Decode ``path`` to a fully loaded RGB image (file closed), EXIF orientation applied.

    Only ALLOWED_FORMATS are tried, detected by content (the extension is ignored); GIF and
    other animations give their first frame. Raises :class:`ImageError` (see module docstring).
    """
    try:
        st = Path(path).stat()
    except FileNotFoundError as err:
        raise ImageError("image_missing", f"{path} does not exist") from err
    except OSError as err:
        raise ImageError("image_unreadable", f"cannot stat {path}: {err}") from err
    # Checked before opening: Image.open on a FIFO or device would block or read forever.
    if not stat.S_ISREG(st.st_mode):
        raise ImageError("image_missing", f"{path} is not a regular file")
    if st.st_size == 0:
        raise ImageError("image_unreadable", f"{path} is empty")
    if st.st_size > max_bytes:
        raise ImageError("image_too_large", f"{st.st_size} bytes > {max_bytes}")

    with warnings.catch_warnings():
        # Image.open warns (rather than raises) between 1x and 2x MAX_IMAGE_PIXELS.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=ALLOWED_FORMATS) as img:
                width, height = img.size
                if width * height > max_pixels:  # from the header, before any decoding
                    raise ImageError("image_too_large", f"{width}x{height} > {max_pixels} px")
                img.load()
                return _to_rgb(ImageOps.exif_transpose(img))
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageError("image_too_large", str(err)) from err
        except FileNotFoundError as err:
            raise ImageError("image_missing", f"{path} vanished") from err
        except Exception as err:
            # Pillow plugins signal corrupt data with many types (OSError, SyntaxError,
            # ValueError, EOFError, struct.error, IndexError, ...): all mean "unusable".
            raise ImageError("image_unreadable", f"{type(err).__name__}: {err}") from err


def _to_rgb(img: Image.Image) -> Image.Image:
    """An RGB copy of ``img``: transparency composited on white, high bit depths scaled to 8."""
    if img.mode in _HIGH_BIT_MODES:
        # Treated as 16-bit data (what PNG stores in these modes), not stretched per image.
        pixels = np.asarray(img, dtype=np.float64).clip(0, 65535) / 257.0
        return Image.fromarray(pixels.round().astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")
