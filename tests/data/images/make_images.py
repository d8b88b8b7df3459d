#!/usr/bin/python3
"""Reference images and arrays for the image / npy tests, made with Pillow and NumPy (Debian's
python3-pil, python3-numpy): /usr/bin/python3 tests/data/images/make_images.py"""
import io, os
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
p = lambda name: os.path.join(HERE, name)
rng = np.random.default_rng(0)

# A photo-like JPEG: smooth gradients, a sinusoidal texture and a little noise, 240 x 160.
y, x = np.mgrid[0:160, 0:240].astype(np.float64)
rgb = np.stack([120 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0),
                60 + 0.6 * x + 20 * np.sin(y / 5.0),
                200 - 0.8 * y + 30 * np.cos((x + y) / 9.0)], axis=-1) + rng.normal(0, 6, (160, 240, 3))
Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(p("photo.jpg"), quality=90)
im = Image.open(p("photo.jpg")).convert("RGB")
np.save(p("photo_full.npy"), np.asarray(im))
np.save(p("photo_bilinear_61x43.npy"), np.asarray(im.resize((61, 43), Image.BILINEAR)))
np.save(p("photo_bilinear_300x200.npy"), np.asarray(im.resize((300, 200), Image.BILINEAR)))
d = Image.open(p("photo.jpg"))
d.draft("RGB", (60, 40))  # libjpeg DCT scaling to 1/4
np.save(p("photo_draft_60x40.npy"), np.asarray(d.convert("RGB")))

# PNGs of other kinds: 8-bit grey, palette, grey + alpha, RGBA.
grey = Image.fromarray(rng.integers(0, 256, (9, 13), dtype=np.uint8), "L")
grey.save(p("grey.png"))
np.save(p("grey_rgb.npy"), np.asarray(grey.convert("RGB")))
pal = grey.convert("RGB").quantize(colors=7)
pal.save(p("palette.png"))
np.save(p("palette_rgb.npy"), np.asarray(pal.convert("RGB")))
rgba = Image.fromarray(rng.integers(0, 256, (11, 7, 4), dtype=np.uint8), "RGBA")
rgba.save(p("rgba.png"))
white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
np.save(p("rgba_on_white.npy"), np.asarray(Image.alpha_composite(white, rgba).convert("RGB")))

# Arrays in the dtypes feature files come in.
feats = rng.normal(size=(4, 6)).astype(np.float32)
np.savez_compressed(p("features.npz"), features=feats, boxes=rng.random((4, 5)).astype(np.float16),
                    cls_prob=rng.random((4, 3)).astype(np.float64))
np.save(p("features_f32.npy"), feats)
np.save(p("values_f16_be.npy"), np.array([0.0, 1.5, -2.25, 65504.0, 6e-8], dtype=">f2"))
