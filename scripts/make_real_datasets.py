#!/usr/bin/env python3
"""Real image-text datasets that can be had offline, written in the Karpathy split format
(dataset_<name>.json + images), with a deterministic held-out test split (10% by a hash of the
image name), so `mmt train` can pretrain on their train split and evaluation can use the rest.

  openclipart OUT [ROOT]   Debian's openclipart-png (/usr/share/openclipart/png, ~8.1k PNGs). Captions: the
                    PNG's Title text chunk, and "title, category words" from its folder (noisy,
                    web-like: Italian titles, author-style names, terse). Images are symlinked.
  emoji OUT PKGDIR  the npm packages emoji-datasource-google (64 x 64 PNGs) and emojibase-data
                    (labels, tags, groups) unpacked under PKGDIR (scripts/make_real_datasets.sh
                    fetches them). Captions: the label, "label: tags", and "a <subgroup> emoji:
                    label". ~1.9k images (skin-tone variants left out), copied.
Standard library only.
"""
import hashlib, json, os, struct, sys, zlib

def split_of(name):
    return "test" if int(hashlib.md5(name.encode()).hexdigest(), 16) % 10 == 0 else "train"

def png_text(path):
    """tEXt / zTXt / iTXt chunks of a PNG as a dict (Title, Author, Keywords, ...)."""
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return out
    i = 8
    while i + 8 <= len(data):
        n, kind = struct.unpack(">I", data[i:i + 4])[0], data[i + 4:i + 8]
        body = data[i + 8:i + 8 + n]
        try:
            if kind == b"tEXt":
                k, v = body.split(b"\0", 1)
                out[k.decode("latin-1")] = v.decode("latin-1")
            elif kind == b"zTXt":
                k, v = body.split(b"\0", 1)
                out[k.decode("latin-1")] = zlib.decompress(v[1:]).decode("latin-1")
            elif kind == b"iTXt":
                k, rest = body.split(b"\0", 1)
                comp, _method, rest = rest[0], rest[1], rest[2:]
                _lang, rest = rest.split(b"\0", 1)
                _tk, text = rest.split(b"\0", 1)
                out[k.decode("latin-1")] = (zlib.decompress(text) if comp else text).decode("utf-8", "replace")
        except (ValueError, zlib.error):
            pass
        if kind == b"IEND":
            break
        i += 12 + n
    return out

def write(out, name, images):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"dataset_{name}.json"), "w", encoding="utf-8") as f:
        json.dump({"dataset": name, "images": images}, f, ensure_ascii=False)
    n_test = sum(1 for im in images if im["split"] == "test")
    print(f"{name}: {len(images)} images ({len(images) - n_test} train, {n_test} test), "
          f"{sum(len(im['sentences']) for im in images)} captions -> {out}", file=sys.stderr)

def entry(imgid, filepath, filename, captions):
    return {"imgid": imgid, "filepath": filepath, "filename": filename, "split": split_of(filename),
            "sentences": [{"raw": c, "tokens": c.lower().split()} for c in captions]}

def openclipart(out, root="/usr/share/openclipart/png"):
    if not os.path.isdir(root):
        sys.exit(f"{root} not found: install Debian's openclipart-png")
    images = []
    for dirpath, _dirs, files in sorted(os.walk(root)):
        for f in sorted(files):
            if not f.endswith(".png"):
                continue
            src = os.path.join(dirpath, f)
            rel = os.path.relpath(dirpath, root)
            title = " ".join(png_text(src).get("Title", "").split())
            if not title:  # no title chunk: the file name's leading words
                title = f.rsplit(".", 1)[0].split("_")[0].replace("-", " ")
            category = " ".join(rel.replace("_", " ").split("/")) if rel != "." else ""
            captions = [title] + ([f"{title}, {category}"] if category else [])
            keywords = png_text(src).get("Keywords")
            if keywords:
                captions.append(f"{title}: {keywords}")
            os.makedirs(os.path.join(out, "images", rel), exist_ok=True)
            dst = os.path.join(out, "images", rel, f)
            if not os.path.lexists(dst):
                os.symlink(src, dst)
            images.append(entry(len(images), os.path.join("images", rel), f, captions))
    write(out, "openclipart", images)

def emoji(out, pkgdir):
    data = json.load(open(os.path.join(pkgdir, "emojibase-data/en/data.json"), encoding="utf-8"))
    messages = json.load(open(os.path.join(pkgdir, "emojibase-data/en/messages.json"), encoding="utf-8"))
    subgroups = {g["order"]: g["message"] for g in messages["subgroups"]}
    imgdir = os.path.join(pkgdir, "emoji-datasource-google/img/google/64")
    available = {f[:-4]: f for f in os.listdir(imgdir) if f.endswith(".png")}
    bare = {k.replace("-fe0f", ""): v for k, v in available.items()}
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    images, missing = [], 0
    for e in data:
        code = e["hexcode"].lower()
        f = available.get(code) or bare.get(code.replace("-fe0f", ""))
        if not f or e.get("group") is None or e.get("group") == 2:  # 2 = component (skin tones, hair)
            missing += not f
            continue
        label = e["label"]
        captions = [label]
        if e.get("tags"):
            captions.append(f"{label}: {', '.join(e['tags'])}")
        if e.get("subgroup") in subgroups:
            captions.append(f"a {subgroups[e['subgroup']]} emoji: {label}")
        dst = os.path.join(out, "images", f)
        with open(os.path.join(imgdir, f), "rb") as a, open(dst, "wb") as b:
            b.write(a.read())
        images.append(entry(len(images), "images", f, captions))
    write(out, "emoji", images)
    if missing:
        print(f"emoji: {missing} emojibase entries have no Google image (left out)", file=sys.stderr)

if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "openclipart":
        openclipart(*sys.argv[2:4])
    elif len(sys.argv) >= 4 and sys.argv[1] == "emoji":
        emoji(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
