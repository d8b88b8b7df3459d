#!/usr/bin/python3
"""Pillow's rate on the same task as `mmt_bench_data jpeg`: decode, resize the shorter side to 224
(bilinear, antialiased) and centre-crop 224 x 224, one thread, files read into memory first.
`--draft` lets Pillow use libjpeg's DCT scaling too (Image.draft). Prints one JSON line."""
import io, json, os, sys, time
from PIL import Image

d, draft = sys.argv[1], "--draft" in sys.argv
files = sorted(f for f in os.listdir(d) if f.endswith(".jpg"))
data = [open(os.path.join(d, f), "rb").read() for f in files]

def load(b):
    im = Image.open(io.BytesIO(b))
    if draft:
        im.draft("RGB", (224, 224))
    im = im.convert("RGB")
    w, h = im.size
    s = 224 / min(w, h)
    nw, nh = max(224, round(w * s)), max(224, round(h * s))
    im = im.resize((nw, nh), Image.BILINEAR)
    x, y = (nw - 224) // 2, (nh - 224) // 2
    return im.crop((x, y, x + 224, y + 224)).tobytes()

best = 1e30
for _ in range(3):
    t0 = time.perf_counter()
    for b in data:
        load(b)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"bench": "pillow" + ("-draft" if draft else ""), "images": len(data), "images_per_s": len(data) / best}))
