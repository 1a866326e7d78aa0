"""Tests for tutor.intake: every accepted kind of file, every refusal, hashing and storage.

All images are built in memory with Pillow (and pillow-heif for HEIC), so the file runs offline in
a few seconds.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from tutor import intake
from tutor.errors import InputError, TutorError
from tutor.intake import IntakeImage, IntakeLimits, load_image, load_images

CJK = re.compile(r"[\u4e00-\u9fff]")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def halves(w: int = 120, h: int = 80) -> Image.Image:
    """Left half red, right half blue: shows where a rotation moved things."""
    img = Image.new("RGB", (w, h), (255, 0, 0))
    img.paste((0, 0, 255), (w // 2, 0, w, h))
    return img


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` with next to no pixel data (a bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def refusal(data, **kw) -> InputError:
    with pytest.raises(InputError) as info:
        load_image(data, **kw)
    e = info.value
    assert isinstance(e, TutorError)
    assert e.en.strip() and e.zh.strip() and CJK.search(e.zh), e.code
    assert e.message("zh") == e.zh and e.message("en") == e.en
    return e


# --- accepted formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "kw", "expected_format"),
    [
        ("JPEG", {"quality": 95}, "JPEG"),
        ("PNG", {}, "PNG"),
        ("WEBP", {"lossless": True}, "WEBP"),
        ("BMP", {}, "BMP"),
        ("GIF", {}, "GIF"),
        ("HEIF", {"quality": 95}, "HEIF"),
        ("AVIF", {"quality": 95}, "AVIF"),
    ],
)
def test_accepts_each_format(fmt, kw, expected_format):
    src = halves()
    result = load_image(encode(src, fmt, **kw))
    assert result.format == expected_format
    assert result.image.mode == "RGB"
    assert (result.width, result.height) == (120, 80) == result.image.size
    assert not result.downscaled
    r, g, b = result.image.getpixel((10, 40))
    assert r > 200 and b < 60, (fmt, (r, g, b))
    r, g, b = result.image.getpixel((110, 40))
    assert b > 200 and r < 60, (fmt, (r, g, b))
    assert len(result.sha256) == 64 and result.n_bytes > 0


def test_mpo_phone_jpeg_takes_first_picture():
    first, second = halves(), Image.new("RGB", (120, 80), (0, 255, 0))
    result = load_image(encode(first, "MPO", save_all=True, append_images=[second]))
    assert result.format == "MPO"
    assert result.image.getpixel((10, 10))[0] > 200


def test_gif_first_frame_of_animation():
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    result = load_image(data)
    assert result.image.getpixel((5, 5)) == (255, 0, 0)


def test_heic_from_path(tmp_path):
    path = tmp_path / "photo.heic"
    path.write_bytes(encode(halves(), "HEIF", quality=95))
    result = load_image(path)
    assert result.format == "HEIF" and result.image.size == (120, 80)
    assert load_image(str(path)).sha256 == result.sha256


def test_pil_image_input():
    result = load_image(halves().convert("RGBA"))
    assert result.image.mode == "RGB" and result.n_bytes == 0
    assert result.sha256 == load_image(encode(halves(), "PNG")).sha256


# --- orientation and modes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "size", "top_left_is_red"),
    [(1, (120, 80), True), (3, (120, 80), False), (6, (80, 120), True), (8, (80, 120), False)],
)
def test_exif_orientation_applied(orientation, size, top_left_is_red):
    exif = Image.Exif()
    exif[0x0112] = orientation
    result = load_image(encode(halves(), "PNG", exif=exif.tobytes()))
    assert result.image.size == size
    assert (result.original_width, result.original_height) == size
    r, _, b = result.image.getpixel((5, 5))
    assert (r > 200) == top_left_is_red and (b > 200) != top_left_is_red


def test_exif_orientation_in_jpeg_and_same_hash_as_upright_pixels():
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = load_image(encode(halves(), "PNG", exif=exif.tobytes()))
    upright = load_image(encode(halves().rotate(-90, expand=True), "PNG"))
    assert rotated.sha256 == upright.sha256
    jpeg = load_image(encode(halves(), "JPEG", exif=exif.tobytes()))
    assert jpeg.image.size == (80, 120)


def test_palette_and_greyscale_modes():
    pal = halves().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert load_image(encode(pal, "PNG")).image.getpixel((5, 5))[0] > 200
    grey = Image.new("L", (50, 50), 77)
    assert load_image(encode(grey, "PNG")).image.getpixel((1, 1)) == (77, 77, 77)
    bw = Image.new("1", (50, 50), 1)
    assert load_image(encode(bw, "BMP")).image.getpixel((1, 1)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_composited_on_white(mode):
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # fully transparent
    img.paste((0, 0, 0, 255), (0, 0, 32, 64))  # left half opaque black
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("P")  # keeps transparency as a palette index
    data = encode(img, "PNG")
    reopened = Image.open(io.BytesIO(data))
    assert reopened.mode == mode and (mode != "P" or "transparency" in reopened.info)
    result = load_image(data)
    assert result.image.getpixel((50, 10)) == (255, 255, 255)
    assert result.image.getpixel((10, 10)) == (0, 0, 0)


def test_cmyk_jpeg_converted():
    img = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # pure red ink
    result = load_image(encode(img, "JPEG", quality=95))
    r, g, b = result.image.getpixel((10, 10))
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize(("value", "expected"), [(65535, 255), (32896, 128), (0, 0)])
def test_16bit_greyscale_scaled_not_clipped(value, expected):
    img = Image.new("I;16", (40, 40), value)
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert load_image(data).image.getpixel((3, 3)) == (expected,) * 3


def test_32bit_int_and_float_images():
    arr = np.zeros((40, 40), dtype=np.int32)
    arr[:, 20:] = 4000
    res = load_image(Image.fromarray(arr, mode="I"))
    assert res.image.getpixel((1, 1)) == (0, 0, 0) and res.image.getpixel((30, 1)) == (255, 255, 255)
    small = load_image(Image.fromarray(np.full((40, 40), 100, dtype=np.int32), mode="I"))
    assert small.image.getpixel((1, 1)) == (100, 100, 100)
    flt = load_image(Image.fromarray(np.full((40, 40), 0.5, dtype=np.float32), mode="F"))
    assert flt.image.mode == "RGB"


# --- size bounds --------------------------------------------------------------------------------


def test_downscale_keeps_aspect():
    result = load_image(encode(Image.new("RGB", (3000, 1000), (9, 9, 9)), "PNG"))
    assert (result.width, result.height) == (2048, 683)
    assert (result.original_width, result.original_height) == (3000, 1000)
    assert result.downscaled


def test_large_jpeg_draft_decode_still_exact_bound():
    img = Image.new("RGB", (5000, 1200), (30, 60, 90))
    result = load_image(encode(img, "JPEG"), limits=IntakeLimits(max_side=1000))
    assert max(result.image.size) == 1000 and result.width == 1000
    assert (result.original_width, result.original_height) == (5000, 1200)


def test_file_too_large_bytes_and_path(tmp_path):
    data = encode(halves(), "BMP")
    limits = IntakeLimits(max_bytes=len(data) - 1)
    assert refusal(data, limits=limits).code == "image_too_large"
    path = tmp_path / "big.bmp"
    path.write_bytes(data)
    assert refusal(path, limits=limits).code == "image_too_large"
    assert load_image(path, limits=IntakeLimits(max_bytes=len(data))).width == 120


def test_bomb_refused_from_header_before_decoding(monkeypatch):
    data = png_header_only(10_000, 10_000)  # 100 MP claimed, 100 bytes on disk

    def no_decoding(self, *a, **k):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    e = refusal(data)
    assert e.code == "image_too_many_pixels"
    assert "40" in e.en and "40" in e.zh


def test_real_bomb_refused_quickly():
    data = encode(Image.new("1", (8000, 8000)), "PNG")  # 64 MP in a few kB
    assert len(data) < 100_000
    assert refusal(data).code == "image_too_many_pixels"


def test_pillow_bomb_error_and_warning_map_to_our_code(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    huge_limits = IntakeLimits(max_pixels=10**9, min_side=1)
    # 40 x 40 = 1600 px: Pillow warns (between 1x and 2x its limit)
    assert (
        refusal(encode(Image.new("RGB", (40, 40)), "PNG"), limits=huge_limits).code == "image_too_many_pixels"
    )
    # 100 x 100 = 10000 px: Pillow raises DecompressionBombError from Image.open
    assert refusal(png_header_only(100, 100), limits=huge_limits).code == "image_too_many_pixels"


@pytest.mark.parametrize("size", [(20, 200), (200, 31), (1, 1)])
def test_too_small(size):
    e = refusal(encode(Image.new("RGB", size), "PNG"))
    assert e.code == "image_too_small" and "32" in e.en


# --- refusals -----------------------------------------------------------------------------------


def test_empty(tmp_path):
    assert refusal(b"").code == "image_empty"
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert refusal(tmp_path / "empty.jpg").code == "image_empty"


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is text, not a photo",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        bytes(range(256)),
    ],
)
def test_not_an_image(data):
    assert refusal(data).code == "image_not_an_image"


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM", "TGA"])
def test_unsupported_format(fmt):
    e = refusal(encode(Image.new("RGB", (64, 64), (1, 2, 3)), fmt))
    assert e.code == "image_unsupported_format"
    assert "HEIC" in e.en and "HEIC" in e.zh


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "HEIF"])
def test_truncated_file_is_corrupt(fmt):
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8))
    data = encode(noisy, fmt)
    assert refusal(data[: len(data) // 2]).code == "image_corrupt"


@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_damaged_png_is_corrupt(where):
    """Bytes changed in transit: PNG's CRCs are checked, so the damage is found, not decoded."""
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 256, (100, 100, 3), dtype=np.uint8))
    data = bytearray(encode(noisy, "PNG"))
    at = int(len(data) * where)
    data[at : at + 50] = bytes(50)
    assert refusal(bytes(data)).code == "image_corrupt"


def test_garbage_in_gif_stream_is_corrupt():
    noisy = Image.fromarray(np.random.default_rng(2).integers(0, 256, (100, 100, 3), dtype=np.uint8))
    data = bytearray(encode(noisy, "GIF"))
    n = len(data)
    data[n // 3 : n // 3 + 200] = np.random.default_rng(3).integers(0, 256, 200, dtype=np.uint8).tobytes()
    assert refusal(bytes(data)).code == "image_corrupt"


def test_missing_path_and_directory(tmp_path):
    assert refusal(tmp_path / "nope.png").code == "image_not_found"
    assert refusal(str(tmp_path / "nope.png")).code == "image_not_found"
    assert refusal(tmp_path).code == "image_not_found"


def test_bad_input_type():
    assert refusal(12345).code == "image_bad_input"


def test_data_url_input():
    img = load_image(encode(halves(), "PNG"))
    again = load_image(img.data_url())
    assert again.sha256 == img.sha256 and again.format == "PNG"
    assert refusal("data:image/png;base64,!!!notbase64").code == "image_bad_input"
    assert refusal("data:text/plain,hello").code == "image_bad_input"
    assert refusal("data:image/png;base64,").code == "image_empty"
    big = "data:image/png;base64," + "A" * 4000
    assert refusal(big, limits=IntakeLimits(max_bytes=1000)).code == "image_too_large"


def test_too_many_images():
    one = encode(halves(), "PNG")
    assert len(load_images([one] * 4)) == 4
    with pytest.raises(InputError) as info:
        load_images([one] * 5)
    assert info.value.code == "too_many_images"
    assert "4" in info.value.en and "4" in info.value.zh and CJK.search(info.value.zh)
    assert load_images([]) == []


def test_load_images_stops_at_first_bad_one():
    with pytest.raises(InputError) as info:
        load_images([encode(halves(), "PNG"), b""], lang="zh")
    assert info.value.code == "image_empty"


def test_every_refusal_has_its_own_code_and_messages():
    codes = [
        "image_not_found", "image_empty", "image_too_large", "image_not_an_image",
        "image_unsupported_format", "image_too_many_pixels", "image_corrupt", "image_too_small",
        "too_many_images", "image_bad_input",
    ]  # fmt: skip
    errors = [intake._err(c) for c in codes]
    assert len({e.en for e in errors}) == len(codes)
    assert len({e.zh for e in errors}) == len(codes)
    assert all(CJK.search(e.zh) and e.en.isascii() for e in errors)


# --- hashing and storage ------------------------------------------------------------------------


def test_same_file_same_hash_different_picture_different_hash():
    data = encode(halves(), "JPEG")
    assert load_image(data).sha256 == load_image(bytes(data)).sha256
    assert load_image(data).sha256 != load_image(encode(halves().transpose(0), "JPEG")).sha256


def test_save_is_content_addressed_and_stored_once(tmp_path):
    a = load_image(encode(halves(), "PNG"))
    b = load_image(encode(halves(), "BMP"))
    pa = a.save(tmp_path)
    assert pa == tmp_path / a.sha256[:2] / f"{a.sha256}.png"
    mtime = pa.stat().st_mtime_ns
    assert b.save(tmp_path) == pa and pa.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [pa.name]
    with Image.open(pa) as back:
        assert back.mode == "RGB" and back.tobytes() == a.image.tobytes()


def test_encodings_and_data_url():
    img = load_image(encode(halves(), "PNG"))
    assert Image.open(io.BytesIO(img.png_bytes())).format == "PNG"
    assert Image.open(io.BytesIO(img.jpeg_bytes())).format == "JPEG"
    assert img.data_url().startswith("data:image/png;base64,")
    assert img.data_url("jpeg").startswith("data:image/jpeg;base64,")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    w=st.integers(32, 90),
    h=st.integers(32, 90),
    seed=st.integers(0, 2**32 - 1),
)
def test_lossless_containers_hash_alike(w, h, seed):
    """Property: the same pixels in PNG, BMP and lossless WebP give the same image and hash."""
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    src = Image.fromarray(arr)
    results: list[IntakeImage] = [
        load_image(encode(src, "PNG")),
        load_image(encode(src, "BMP")),
        load_image(encode(src, "WEBP", lossless=True, exact=True)),
    ]
    assert {r.sha256 for r in results} == {results[0].sha256}
    assert np.array_equal(np.asarray(results[0].image), arr)
    back = load_image(results[0].png_bytes())
    assert back.sha256 == results[0].sha256


def test_save_path_is_under_given_dir(tmp_path: Path):
    img = load_image(encode(halves(), "PNG"))
    assert img.storage_path(tmp_path).parent.name == img.sha256[:2]


# --- check_header: the checks before decoding, alone --------------------------------------------


def test_check_header_reads_the_header_only(monkeypatch):
    """check_header gives format and declared size without decoding (a decode would fail here), and
    refuses what load_image refuses before decoding, with the same code."""
    hdr = intake.check_header(encode(halves(300, 200), "PNG"))
    assert (hdr.format, hdr.width, hdr.height) == ("PNG", 300, 200) and hdr.n_bytes > 0
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("check_header decoded pixels"))
    assert intake.check_header(encode(halves(), "JPEG")).format == "JPEG"
    for data, code in ((png_header_only(12_000, 12_000), "image_too_many_pixels"),
                       (png_header_only(20, 400), "image_too_small"),
                       (b"these are my notes\n", "image_not_an_image"),
                       (b"", "image_empty"),
                       (encode(halves(), "TIFF"), "image_unsupported_format")):
        with pytest.raises(InputError) as e:
            intake.check_header(data)
        assert e.value.code == code
        with pytest.raises(InputError) as full:
            load_image(data)
        assert full.value.code == code  # the same refusal as the full intake


def test_check_header_of_a_12000px_png_is_fast_and_warns_nothing(tmp_path):
    import time
    import warnings

    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(12_000, 12_000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        with pytest.raises(InputError) as e:
            intake.check_header(path, lang="zh")
        secs = time.perf_counter() - t0
    assert e.value.code == "image_too_many_pixels" and secs < 0.2
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
