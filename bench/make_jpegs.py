#!/usr/bin/python3
"""Typical photos for the JPEG benchmark: N 500 x 375 JPEGs (COCO / Flickr30k's usual size),
quality 90, with smooth structure and texture like real photos. usage: make_jpegs.py DIR [N]"""
import os, sys
import numpy as np
from PIL import Image

d, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200
os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(0)
y, x = np.mgrid[0:375, 0:500].astype(np.float32)
for i in range(n):
    f = rng.uniform(5, 40, 6)
    rgb = np.stack([128 + 90 * np.sin(x / f[0] + i) * np.cos(y / f[1]),
                    128 + 90 * np.sin((x + y) / f[2]) + 20 * np.sin(y / f[3]),
                    128 + 90 * np.cos(x / f[4] - y / f[5])], -1) + rng.normal(0, 12, (375, 500, 3))
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(os.path.join(d, f"{i:04d}.jpg"), quality=90)
