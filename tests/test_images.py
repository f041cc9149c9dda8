import io

import numpy as np
import pytest
from PIL import Image

from illusort import images
from illusort.images import BadImage, find_images, open_image


def encode(image, fmt, **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def test_modes_become_rgb():
    cmyk = encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG")
    sixteen = encode(Image.fromarray(np.full((10, 20), 65535, np.uint16)), "PNG")
    grey = encode(Image.new("L", (20, 10), 128), "PNG")
    for data in (cmyk, sixteen, grey):
        image = open_image(data)
        assert image.mode == "RGB" and image.size == (20, 10)
    assert open_image(sixteen).getpixel((0, 0)) == (255, 255, 255)


def test_transparency_is_flattened_on_white():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert open_image(encode(rgba, "PNG")).getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0] * 256)
    assert open_image(encode(palette, "PNG", transparency=0)).getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r, g, b = open_image(buf.getvalue()).getpixel((0, 0))
    assert r > 200 and b < 50


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (30, 10), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90
    assert open_image(encode(image, "JPEG", exif=exif)).size == (10, 30)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"<html><body>404</body></html>", "not an image"),
])
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(BadImage, match=reason):
        open_image(data)


def test_truncated_file_is_bad():
    data = encode(Image.effect_noise((200, 200), 50).convert("RGB"), "PNG")
    with pytest.raises(BadImage):
        open_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    with pytest.raises(BadImage, match="too large"):
        open_image(encode(Image.new("RGB", (100, 100)), "PNG"))


def test_find_images_recurses_skips_hidden_and_survives_loops(tmp_path):
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / ".illusort").mkdir()
    (tmp_path / ".hidden").mkdir()
    for p in ("x.png", "a/y.JPG", "a/b/z.webp", ".illusort/t.png", ".hidden/h.png", "a/notes.txt", "a/.dot.png"):
        (tmp_path / p).write_bytes(b"x")
    (tmp_path / "a/b/loop").symlink_to(tmp_path / "a")
    found = [p.as_posix() for p in find_images(tmp_path)]
    assert found == ["a/b/z.webp", "a/y.JPG", "x.png"]
