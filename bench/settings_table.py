"""The table of bench/from_start.sh: one row per run - its last logged ITM accuracy, the exact-ITM
recalls of its eval.json, its training minutes - then per setting the mean +- sd over the seeds.
--text: each test set's text R@1 too (ranking captions for an image), after its image R@1.
usage: settings_table.py [--text] WORK NAME,NAME,... SEED..."""
import json
import statistics
import sys

args = sys.argv[1:]
text = args[:1] == ["--text"]
work, names, seeds = args[text], args[text + 1].split(","), args[text + 2:]
columns = ["ITM acc. at the end"]
for name in ("easy", "binding"):
    columns += [f"{name} image R@1"] + [f"{name} text R@1"] * text + [f"{name} RSUM"]
columns += ["train min"]
digits = [2] + [1] * (len(columns) - 1)
head = "| {} | {} | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 2) + "|"


def values(run):
    rows = [json.loads(line) for line in open(run + "/metrics.jsonl")]
    acc = [r["itm_acc"] for r in rows if "itm_acc" in r]
    sets = json.load(open(run + "/eval.json"))["test_sets"]
    out = [acc[-1]]
    for name in ("easy", "binding"):
        i, t = sets[name]["image_retrieval"], sets[name]["text_retrieval"]
        out += [i["r1"]] + [t["r1"]] * text + [i["rsum"] + t["rsum"]]
    return out + [max(r.get("elapsed_s", 0) for r in rows) / 60]


def line(setting, seed, cells):
    return f"| {setting} | {seed} | " + " | ".join(cells) + " |"


print(head.format("setting", "seed"))
start = values(work + "/start")
print(line("(the start)", "", [""] + [f"{v:.1f}" for v in start[1:]]))
runs = {}
for name in names:
    for seed in seeds:
        runs.setdefault(name, []).append(values(f"{work}/{name}-s{seed}"))
        print(line(name, seed, [f"{v:.{d}f}" for v, d in zip(runs[name][-1], digits)]))
print("\n" + head.format("setting (mean +- sd)", "seeds"))
for name, rows in runs.items():
    cols = list(zip(*rows))
    print(line(name, len(rows), [f"{statistics.mean(c):.{d}f} +- {statistics.stdev(c):.{d}f}" if len(c) > 1 else f"{c[0]:.{d}f}"
                                 for c, d in zip(cols, digits)]))
