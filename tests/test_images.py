"""Safe image decoding and manifest path resolution (taomm.datasets.images)."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from taomm.datasets.images import (
    MAX_PIXELS,
    REASONS,
    ImageError,
    load_image,
    resolve_image_path,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RED, BLUE, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def save(img: Image.Image, path: Path, fmt: str | None = None, **kwargs) -> Path:
    img.save(path, fmt, **kwargs)
    return path


def noise(width: int = 128, height: int = 96, seed: int = 0) -> Image.Image:
    """Incompressible content, so the encoded bytes spread over the whole image."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def png_header(width: int, height: int) -> bytes:
    """A PNG declaring width x height (1-bit grey) whose pixel data is garbage."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"not zlib data")
        + chunk(b"IEND", b"")
    )


def assert_reason(reason: str, func, *args, **kwargs) -> ImageError:
    with pytest.raises(ImageError) as info:
        func(*args, **kwargs)
    assert info.value.reason == reason, info.value
    assert info.value.detail
    return info.value


def close(pixel: tuple[int, ...], expected: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected, strict=True))


# --- bad inputs -------------------------------------------------------------------------


def test_error_reason_must_be_known():
    assert ImageError("image_missing", "x").reason in REASONS
    with pytest.raises(ValueError):
        ImageError("bad_reason", "x")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert_reason("image_unreadable", load_image, path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path, fmt):
    data = io.BytesIO()
    noise().save(data, fmt)
    path = tmp_path / f"half.{fmt.lower()}"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    assert_reason("image_unreadable", load_image, path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_random_bytes(tmp_path):
    path = tmp_path / "random.jpg"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_reason("image_unreadable", load_image, path)


def test_corrupt_pixel_data_is_unreadable(tmp_path):
    """A valid header over garbage data fails at decoding, not at opening."""
    path = tmp_path / "garbage.png"
    path.write_bytes(png_header(8, 8))
    assert_reason("image_unreadable", load_image, path)


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM", "TGA"])
def test_format_not_allowed(tmp_path, fmt):
    path = save(noise(32, 32), tmp_path / "image.png", fmt)  # the extension does not help
    with Image.open(path) as img:
        assert img.format == fmt  # Pillow itself would open it
    assert_reason("image_unreadable", load_image, path)


@pytest.mark.parametrize(
    "size",
    [
        (7000, 7000),  # 49 Mpx: over MAX_PIXELS, under Pillow's own warning limit
        (10000, 10000),  # 100 Mpx: Pillow warns (DecompressionBombWarning)
        (50000, 50000),  # 2.5 Gpx: Pillow raises (DecompressionBombError)
    ],
)
def test_decompression_bomb(tmp_path, size):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(*size))  # garbage data: only a header check can say too large
    limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape as a warning either
        assert_reason("image_too_large", load_image, path)
    assert limit == Image.MAX_IMAGE_PIXELS


def test_real_bomb_png(tmp_path):
    """A real, valid 1-bit PNG of 100 Mpx is only ~12 kB on disk."""
    path = save(Image.new("1", (10000, 10000)), tmp_path / "bomb.png")
    assert path.stat().st_size < 50_000
    assert_reason("image_too_large", load_image, path)


def test_max_pixels_and_max_bytes_are_configurable(tmp_path):
    path = save(noise(100, 100), tmp_path / "small.png")
    assert load_image(path).size == (100, 100)
    assert_reason("image_too_large", load_image, path, max_pixels=100 * 100 - 1)
    assert_reason("image_too_large", load_image, path, max_bytes=100)
    assert MAX_PIXELS == 40_000_000


def test_missing_file(tmp_path):
    assert_reason("image_missing", load_image, tmp_path / "nope.jpg")
    assert_reason("image_missing", resolve_image_path, tmp_path, "nope.jpg")
    assert_reason("image_missing", resolve_image_path, tmp_path, "no/such/dir/x.jpg")


def test_directory_is_not_an_image(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    assert_reason("image_missing", load_image, tmp_path / "folder.jpg")
    assert_reason("image_missing", resolve_image_path, tmp_path, "folder.jpg")
    assert_reason("image_missing", resolve_image_path, tmp_path, "")


@pytest.mark.parametrize(
    "relative",
    ["../x.jpg", "a/../b.jpg", "a/../../x.jpg", "..", "a\\..\\..\\x.jpg"],
)
def test_dotdot_is_outside_root(tmp_path, relative):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    save(noise(8, 8), tmp_path / "x.jpg", "JPEG")
    save(noise(8, 8), root / "b.jpg", "JPEG")
    assert_reason("path_outside_root", resolve_image_path, root, relative)


@pytest.mark.parametrize("relative", ["/etc/passwd", "C:\\Windows\\win.ini", "\\\\host\\share\\x"])
def test_absolute_is_outside_root(tmp_path, relative):
    assert_reason("path_outside_root", resolve_image_path, tmp_path, relative)


def test_symlink_leaving_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = save(noise(8, 8), tmp_path / "secret.png")
    (tmp_path / "elsewhere").mkdir()
    save(noise(8, 8), tmp_path / "elsewhere" / "x.png")
    (root / "link.png").symlink_to(outside)
    (root / "dir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert_reason("path_outside_root", resolve_image_path, root, "link.png")
    assert_reason("path_outside_root", resolve_image_path, root, "dir/x.png")


def test_symlink_loop_is_missing(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert_reason("image_missing", resolve_image_path, tmp_path, "a")


# --- odd but valid images ---------------------------------------------------------------


def test_symlink_inside_root_loads(tmp_path):
    (tmp_path / "images").mkdir()
    real = save(Image.new("RGB", (6, 4), RED), tmp_path / "images" / "real.png")
    (tmp_path / "link.png").symlink_to(real)
    resolved = resolve_image_path(tmp_path, "link.png")
    assert resolved == real.resolve()
    assert load_image(resolved).size == (6, 4)
    assert resolve_image_path(tmp_path, "./images/real.png") == real.resolve()


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    img = load_image(path)
    assert (img.mode, img.size) == ("RGB", (30, 20))
    assert close(img.getpixel((15, 10)), RED)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(tmp_path, mode):
    img = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    img.paste(Image.new("RGBA", (10, 10), (0, 0, 0, 255)), (10, 0))
    path = save(img.convert(mode), tmp_path / "alpha.png")
    out = load_image(path)
    assert (out.mode, out.size) == ("RGB", (20, 10))
    assert out.getpixel((2, 5)) == WHITE  # transparent black became white
    assert out.getpixel((15, 5)) == BLACK


def test_palette_png_with_transparency(tmp_path):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (5, 0, 10, 10))
    path = save(img, tmp_path / "palette.png", transparency=0)
    with Image.open(path) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    out = load_image(path)
    assert (out.mode, out.size) == ("RGB", (10, 10))
    assert out.getpixel((1, 1)) == WHITE
    assert out.getpixel((8, 1)) == BLUE


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 12), colour).convert("P") for colour in (RED, BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with Image.open(path) as raw:
        assert raw.n_frames == 2
    out = load_image(path)
    assert (out.mode, out.size) == ("RGB", (16, 12))
    assert out.getpixel((8, 6)) == RED


def test_16bit_grey_png_is_scaled(tmp_path):
    pixels = np.array([[0, 32896, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(pixels), tmp_path / "deep.png")
    with Image.open(path) as raw:
        assert raw.mode == "I;16"
    out = load_image(path)
    assert (out.mode, out.size) == ("RGB", (3, 1))
    assert [out.getpixel((x, 0)) for x in range(3)] == [BLACK, (128, 128, 128), WHITE]


def test_1bit_bmp(tmp_path):
    img = Image.new("1", (9, 5), 0)
    img.paste(1, (0, 0, 4, 5))
    path = save(img, tmp_path / "mono.bmp")
    out = load_image(path)
    assert (out.mode, out.size) == ("RGB", (9, 5))
    assert out.getpixel((1, 1)) == WHITE and out.getpixel((7, 1)) == BLACK


def test_webp(tmp_path):
    out = load_image(save(Image.new("RGB", (24, 16), BLUE), tmp_path / "x.webp", lossless=True))
    assert (out.mode, out.size) == ("RGB", (24, 16))
    assert out.getpixel((3, 3)) == BLUE


def test_one_pixel(tmp_path):
    out = load_image(save(Image.new("RGB", (1, 1), RED), tmp_path / "dot.png"))
    assert (out.mode, out.size, out.getpixel((0, 0))) == ("RGB", (1, 1), RED)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), BLUE)
    img.paste(Image.new("RGB", (20, 20), RED), (0, 0))  # red on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = save(img, tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (20, 40)
    assert close(out.getpixel((10, 5)), RED)  # the left edge is now at the top
    assert close(out.getpixel((10, 35)), BLUE)


def test_extension_is_ignored(tmp_path):
    path = save(Image.new("RGB", (7, 3), RED), tmp_path / "really_png.jpg", "PNG")
    assert load_image(path).size == (7, 3)


def test_image_is_loaded_and_file_closed(tmp_path):
    path = save(noise(), tmp_path / "x.png")
    fd_dir = Path("/proc/self/fd")
    before = len(os.listdir(fd_dir)) if fd_dir.exists() else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        out = load_image(path)
    if before is not None:
        assert len(os.listdir(fd_dir)) == before
    path.unlink()
    assert out.tobytes() == noise().tobytes()


# --- real photos ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "pattern"),
    [("flickr30k-cn-sample/images", "*.jpg"), ("muge-sample", "*.png")],
)
def test_real_photos(folder, pattern):
    paths = sorted((SHARED_DATA / folder).glob(pattern))
    if not paths:
        pytest.skip(f"no {pattern} in {SHARED_DATA / folder}")
    for path in paths:
        img = load_image(path)
        assert img.mode == "RGB" and min(img.size) > 0, path
