#!/usr/bin/python3
"""Writes the small dataset fixtures under tests/data/datasets/, one per reader, each in the real
schema of its format (values modelled on the public files, images tiny and generated here).
Run with Debian's python3 (needs python3-pil): /usr/bin/python3 tests/data/datasets/make_fixtures.py
"""
import io, json, os, tarfile, time
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def jpeg(color, size=(32, 24)):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write(path, data):
    path = os.path.join(HERE, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


# COCO captions (captions_train2017.json): 3 images, 5 + 5 + 4 captions.
coco_images = [(9, "000000000009.jpg", (200, 30, 30)), (25, "000000000025.jpg", (30, 200, 30)), (30, "000000000030.jpg", (30, 30, 200))]
coco = {"info": {"description": "COCO 2017 Dataset (fixture)"}, "licenses": [],
        "images": [{"license": 1, "file_name": f, "coco_url": "http://images.cocodataset.org/train2017/" + f,
                    "height": 24, "width": 32, "date_captured": "2013-11-14 16:28:13", "id": i} for i, f, _ in coco_images],
        "annotations": []}
ann = 1
for i, f, c in coco_images:
    write("coco/train2017/" + f, jpeg(c))
    for k in range(5 if i != 30 else 4):
        coco["annotations"].append({"image_id": i, "id": ann, "caption": f"A photo of object {i}, caption {k}."})
        ann += 1
write("coco/annotations/captions_train2017.json", json.dumps(coco))

# Karpathy split (dataset_flickr30k.json): 4 images, 5 sentences each, train / val / test / test.
kar = {"dataset": "flickr30k", "images": []}
for n, (name, split) in enumerate([("1000092795.jpg", "train"), ("10002456.jpg", "val"), ("1000268201.jpg", "test"), ("1000344755.jpg", "test")]):
    write("flickr30k/flickr30k-images/" + name, jpeg((50 * n, 100, 150)))
    kar["images"].append({"sentids": list(range(5 * n, 5 * n + 5)), "imgid": n, "split": split, "filename": name,
                          "sentences": [{"tokens": ["two", "young", "guys"], "raw": f"Two young guys near image {n}, sentence {s}.",
                                         "imgid": n, "sentid": 5 * n + s} for s in range(5)]})
write("flickr30k/dataset_flickr30k.json", json.dumps(kar))

# Conceptual Captions TSV (caption<TAB>url) with img2dataset-named downloads (row 2 missing).
cc_rows = [("actor attends the premiere of the film", "http://example.com/a/123.jpg"),
           ("a view of the city from the river", "https://example.com/b/view.jpg?size=large"),
           ("this picture was not downloaded", "http://example.com/c/gone.jpg"),
           ("sunset over the hills", "http://example.com/d/sun.jpg")]
write("cc/Train_GCC-training.tsv", "".join(f"{c}\t{u}\n" for c, u in cc_rows))
for row in (0, 1, 3):
    write(f"cc/images/00000/{row:09d}.jpg", jpeg((row * 60, 10, 10)))

# img2dataset webdataset shard: 000000000-000000002 (img2dataset writes only successes to shards).
def tar_add(t, name, data):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime = len(data), 1700000000.5  # float mtime -> pax headers, as webdataset writes
    t.addfile(ti, io.BytesIO(data))

os.makedirs(os.path.join(HERE, "wds"), exist_ok=True)
with tarfile.open(os.path.join(HERE, "wds/00000.tar"), "w", format=tarfile.PAX_FORMAT) as t:
    for k in range(3):
        key = f"{k:09d}"
        tar_add(t, key + ".jpg", jpeg((10, 80 * k, 10)))
        tar_add(t, key + ".txt", f"a web caption number {k}".encode())
        tar_add(t, key + ".json", json.dumps({"url": f"http://example.com/{k}.jpg", "key": key, "status": "success",
                                              "caption": f"a web caption number {k}", "width": 32, "height": 24}).encode())

# img2dataset files layout.
for k in range(2):
    key = f"{k:09d}"
    write(f"files/00000/{key}.jpg", jpeg((200, 200, 40 * k)))
    write(f"files/00000/{key}.txt", f"a downloaded picture {k}")
    write(f"files/00000/{key}.json", json.dumps({"url": f"http://example.com/f{k}.jpg", "key": key, "status": "success"}))

# Generic folder with sidecar captions (two captions for the cat, a PNG with alpha).
buf = io.BytesIO()
Image.new("RGBA", (20, 20), (255, 0, 0, 128)).save(buf, "PNG")
write("folder/cat.png", buf.getvalue())
write("folder/cat.txt", "a cat on a mat\na red cat\n")
write("folder/sub/dog.jpg", jpeg((90, 60, 30)))
write("folder/sub/dog.txt", "a brown dog\n")

# Localized Narratives JSONL (COCO subset): two annotators for image 9, one for 25.
ln = [{"dataset_id": "mscoco_train2017", "image_id": "9", "annotator_id": 93,
       "caption": "In this image we can see a plate with food items.", "timed_caption": [], "traces": [],
       "voice_recording": "coco_train/coco_train_9_93.ogg"},
      {"dataset_id": "mscoco_train2017", "image_id": "9", "annotator_id": 12,
       "caption": "This picture shows bowls of fruit and bread on a table.", "timed_caption": [], "traces": [],
       "voice_recording": "coco_train/coco_train_9_12.ogg"},
      {"dataset_id": "mscoco_train2017", "image_id": "25", "annotator_id": 93,
       "caption": "In the center of the image there is a giraffe.", "timed_caption": [], "traces": [],
       "voice_recording": "coco_train/coco_train_25_93.ogg"}]
write("narratives/coco_train_localized_narratives.jsonl", "".join(json.dumps(x) + "\n" for x in ln))

# Visual Genome region_descriptions.json: 2 images, 3 + 2 regions.
vg = [{"id": 1, "regions": [
          {"region_id": 1382, "width": 82, "height": 139, "image_id": 1, "phrase": "the clock is green in colour", "y": 57, "x": 421},
          {"region_id": 1383, "width": 182, "height": 109, "image_id": 1, "phrase": "shade is along the street ", "y": 372, "x": 194},
          {"region_id": 1384, "width": 61, "height": 30, "image_id": 1, "phrase": "man is wearing sneakers", "y": 491, "x": 241}]},
      {"id": 2, "regions": [
          {"region_id": 2000, "width": 10, "height": 20, "image_id": 2, "phrase": "a white car", "y": 5, "x": 7},
          {"region_id": 2001, "width": 30, "height": 40, "image_id": 2, "phrase": "tree near the road", "y": 1, "x": 2}]}]
write("vg/region_descriptions.json", json.dumps(vg))
# Its image_data.json: image 1 is a Flickr30k test photo (of the flickr30k fixture), image 2 COCO
# image 9 (of the coco fixture) - what tells them apart from the test sets under other file names.
write("vg/image_data.json", json.dumps([
    {"image_id": 1, "width": 800, "height": 600, "url": "https://cs.stanford.edu/people/rak248/VG_100K/1.jpg", "coco_id": None, "flickr_id": 1000344755},
    {"image_id": 2, "width": 800, "height": 600, "url": "https://cs.stanford.edu/people/rak248/VG_100K/2.jpg", "coco_id": 9, "flickr_id": None}]))
for i in (1, 2):
    write(f"vg/VG_100K/{i}.jpg", jpeg((i * 100, 50, 50)))
