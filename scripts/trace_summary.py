#!/usr/bin/env python3
"""Summarises a Kineto (Chrome) trace of training steps: where the GPU's time went.

usage: trace_summary.py TRACE.json [STEPS]

Prints the profiled window's wall time, the GPU's busy time (union of kernel and copy
intervals) and idle share, kernel launches per step, time per kernel class (matrix products,
attention, everything else: element-wise ops, norms, reductions, optimizer), the kernels
that took longest, and the kernels' time by the CPU operations that launched them. Written for
bench/train_step_bench.cpp --profile (docs/gpu.md)."""
import json
import sys
from collections import defaultdict


def kernel_class(name):
    n = name.lower()
    if any(k in n for k in ("fmha", "attention", "flash", "attn")):
        return "attention"
    if any(k in n for k in ("gemm", "cutlass", "xmma", "nvjet", "cublas", "matmul")):
        return "matrix products"
    if "adam" in n:
        return "optimizer"
    if any(k in n for k in ("layer_norm", "layernorm")):
        return "layer norm"
    if "dropout" in n or "fused_dropout" in n:
        return "dropout"
    return "other element-wise / reductions"


def main():
    path = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with open(path) as f:
        events = json.load(f)["traceEvents"]
    gpu = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    cpu = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "user_annotation")]
    if not gpu:
        print("no GPU events in the trace")
        return
    start = min(e["ts"] for e in gpu + cpu)
    end = max(e["ts"] + e["dur"] for e in gpu + cpu)
    wall = end - start
    busy, cur_s, cur_e = 0.0, None, None
    for s, e in sorted((e["ts"], e["ts"] + e["dur"]) for e in gpu):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    # The host side: per thread, the union of its op intervals (nested ops counted once).
    cpu_busy = defaultdict(float)
    for tid in {e.get("tid") for e in cpu}:
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in cpu if e.get("tid") == tid)
        end_so_far = None
        for s, e in spans:
            if end_so_far is None or s >= end_so_far:
                cpu_busy[tid] += e - s
                end_so_far = e
            elif e > end_so_far:
                cpu_busy[tid] += e - end_so_far
                end_so_far = e
    kernels = [e for e in gpu if e["cat"] == "kernel"]
    print(f"window {wall / 1e3:.1f} ms for {steps} steps ({wall / 1e3 / steps:.1f} ms/step); GPU busy "
          f"{busy / 1e3:.1f} ms ({100 * busy / wall:.0f} %), idle {100 * (1 - busy / wall):.0f} %")
    print(f"kernels per step: {len(kernels) / steps:.0f}; mean kernel {sum(e['dur'] for e in kernels) / len(kernels):.1f} us")
    if cpu_busy:
        tid, busy_cpu = max(cpu_busy.items(), key=lambda x: x[1])
        print(f"host: the busiest thread spent {busy_cpu / 1e3 / steps:.1f} ms/step in ops (profiler overhead included)")
    by_class, by_name, count = defaultdict(float), defaultdict(float), defaultdict(int)
    for e in gpu:
        c = kernel_class(e["name"]) if e["cat"] == "kernel" else "copies / memsets"
        by_class[c] += e["dur"]
        by_name[e["name"]] += e["dur"]
        count[e["name"]] += 1
    total = sum(by_class.values())
    print("GPU time by class (per step):")
    for c, d in sorted(by_class.items(), key=lambda x: -x[1]):
        print(f"  {c:34s} {d / 1e3 / steps:8.2f} ms  {100 * d / total:5.1f} %")
    print("longest kernels (per step):")
    for n, d in sorted(by_name.items(), key=lambda x: -x[1])[:25]:
        print(f"  {d / 1e3 / steps:7.2f} ms {count[n] / steps:5.0f}x  {n[:110]}")
    by_op = time_by_launching_op(events, kernels)
    if by_op:
        print("GPU time by the operations that launched it (per step; innermost three, outer first):")
        for (ops, kind), (n, d) in sorted(by_op.items(), key=lambda x: -x[1][1])[:25]:
            print(f"  {d / 1e3 / steps:7.2f} ms {n / steps:5.0f}x  {ops[-90:]}  [{kind[:60]}]")


def time_by_launching_op(events, kernels):
    """Kernel time keyed by (the CPU ops around its launch, the kernel's name): the launch is the
    CUDA runtime call with the kernel's correlation id; the ops are those of its thread whose
    interval holds the launch (a sweep over each thread's ops, nested ones inside their parents)."""
    launches = {}
    for e in events:
        if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {}):
            launches[e["args"]["correlation"]] = e
    ops_by_tid = defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and e.get("cat") == "cpu_op":
            ops_by_tid[e["tid"]].append(e)
    wanted = defaultdict(list)  # tid -> (launch time, kernel)
    for k in kernels:
        launch = launches.get(k.get("args", {}).get("correlation"))
        if launch is not None:
            wanted[launch["tid"]].append((launch["ts"], k))
    out = defaultdict(lambda: [0, 0.0])
    for tid, items in wanted.items():
        ops = sorted(ops_by_tid[tid], key=lambda o: (o["ts"], -o["dur"]))
        stack, i = [], 0
        for ts, k in sorted(items, key=lambda x: x[0]):
            while i < len(ops) and ops[i]["ts"] <= ts:
                while stack and stack[-1]["ts"] + stack[-1]["dur"] < ops[i]["ts"]:
                    stack.pop()
                stack.append(ops[i])
                i += 1
            while stack and stack[-1]["ts"] + stack[-1]["dur"] < ts:
                stack.pop()
            names = [o["name"] for o in stack if o["ts"] + o["dur"] >= ts][-3:]
            entry = out[(" > ".join(names) or "?", k["name"])]
            entry[0] += 1
            entry[1] += k["dur"]
    return out


if __name__ == "__main__":
    main()
