#!/usr/bin/env python3
"""Plain PyTorch reference of mmt's demo training step, for side-by-side timing.

The same model (tiny preset: merged two-stream attention, hidden 128, 4 layers, 4 heads x 32,
FFN 512, ITM product pooling, MLM tied to the word embeddings) and the same step (MLM + ITM,
AdamW, gradient clipping), written the way a plain PyTorch implementation usually is:
batches padded to their longest caption and region list without length bucketing, masked full
attention over the joint [text ; image] sequence, MLM logits over every text position,
torch.optim.AdamW. It reads the batches that `mmt_bench_train_step --dump DIR` wrote (drawn
with bucketing off), so both programs see the same examples.

usage: reference_train_step.py DIR [--steps N] [--warmup W] [--threads T]
Runs on Debian's python3-torch (/usr/bin/python3). Prints one JSON line."""
import argparse
import glob
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

H, LAYERS, HEADS, HEAD_DIM, FFN, MAX_LEN = 128, 4, 4, 32, 512, 40


class Stream(nn.Module):
    def __init__(self):
        super().__init__()
        inner = HEADS * HEAD_DIM
        self.query, self.key, self.value = nn.Linear(H, inner), nn.Linear(H, inner), nn.Linear(H, inner)
        self.out = nn.Linear(inner, H)
        self.attn_norm = nn.LayerNorm(H, eps=1e-12)
        self.ffn_in, self.ffn_out = nn.Linear(H, FFN), nn.Linear(FFN, H)
        self.ffn_norm = nn.LayerNorm(H, eps=1e-12)


class MergedLayer(nn.Module):
    """Two streams (text, image weights) attending over the joint sequence."""

    def __init__(self):
        super().__init__()
        self.text, self.image = Stream(), Stream()

    def forward(self, x, t, bias):  # x (B, T+R, H); first t positions are text
        def heads(y):
            return y.view(y.size(0), y.size(1), HEADS, HEAD_DIM).transpose(1, 2)

        xt, xi = x[:, :t], x[:, t:]
        q = heads(torch.cat([self.text.query(xt), self.image.query(xi)], 1))
        k = heads(torch.cat([self.text.key(xt), self.image.key(xi)], 1))
        v = heads(torch.cat([self.text.value(xt), self.image.value(xi)], 1))
        scores = q @ k.transpose(-2, -1) / math.sqrt(HEAD_DIM) + bias
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(x.size(0), x.size(1), -1)
        ct, ci = ctx[:, :t], ctx[:, t:]
        ht = self.text.attn_norm(xt + self.text.out(ct))
        hi = self.image.attn_norm(xi + self.image.out(ci))
        ht = self.text.ffn_norm(ht + self.text.ffn_out(F.gelu(self.text.ffn_in(ht))))
        hi = self.image.ffn_norm(hi + self.image.ffn_out(F.gelu(self.image.ffn_in(hi))))
        return torch.cat([ht, hi], 1)


class Model(nn.Module):
    def __init__(self, vocab, feat):
        super().__init__()
        self.word, self.position, self.segment = nn.Embedding(vocab, H), nn.Embedding(MAX_LEN, H), nn.Embedding(2, H)
        self.text_norm = nn.LayerNorm(H, eps=1e-12)
        self.feature, self.box = nn.Linear(feat, H), nn.Linear(5, H)
        self.feature_norm, self.box_norm, self.image_norm = (nn.LayerNorm(H, eps=1e-12) for _ in range(3))
        self.image_type = nn.Parameter(torch.zeros(H))
        self.layers = nn.ModuleList(MergedLayer() for _ in range(LAYERS))
        self.itm_text_pool, self.itm_image_pool, self.itm_classifier = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, 2)
        self.mlm_transform, self.mlm_norm = nn.Linear(H, H), nn.LayerNorm(H, eps=1e-12)
        self.mlm_bias = nn.Parameter(torch.zeros(vocab))
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.data.normal_(0, 0.02)
            if isinstance(m, nn.Linear):
                m.bias.data.zero_()

    def forward(self, ids, text_mask, feats, boxes, region_mask, mlm_labels, itm_labels):
        t = ids.size(1)
        pos = torch.arange(t)
        xt = self.text_norm(self.word(ids) + self.position(pos) + self.segment(torch.zeros_like(ids)))
        xi = self.image_norm(self.feature_norm(self.feature(feats)) + self.box_norm(self.box(boxes)) + self.image_type)
        x = torch.cat([xt, xi], 1)
        mask = torch.cat([text_mask, region_mask], 1)
        bias = (~mask).float().mul(-1e9)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, t, bias)
        text, image = x[:, :t], x[:, t:]
        pooled = torch.tanh(self.itm_text_pool(text[:, 0])) * torch.tanh(self.itm_image_pool(image[:, 0]))
        itm = F.cross_entropy(self.itm_classifier(pooled), itm_labels)
        h = self.mlm_norm(F.gelu(self.mlm_transform(text)))
        logits = h @ self.word.weight.t() + self.mlm_bias  # (B, T, V): every position
        mlm = F.cross_entropy(logits.view(-1, logits.size(-1)), mlm_labels.view(-1), ignore_index=-100)
        return mlm + itm


def load(dirname):
    batches = []
    for ids_path in sorted(glob.glob(os.path.join(dirname, "batch_*_text_ids.npy"))):
        p = ids_path[: -len("text_ids.npy")]
        b = {k: torch.from_numpy(np.load(p + k + ".npy")) for k in
             ["text_ids", "text_mask", "region_feats", "region_boxes", "region_mask", "mlm_labels", "itm_labels"]}
        b["text_mask"], b["region_mask"] = b["text_mask"].bool(), b["region_mask"].bool()
        batches.append(b)
    return batches


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=0, help="vocabulary size (default: from the dump's vocab.txt)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    batches = load(args.dir)
    vocab = args.vocab or sum(1 for _ in open(os.path.join(args.dir, "vocab.txt")))
    model = Model(vocab, batches[0]["region_feats"].size(-1))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, eps=1e-6)

    def step(b):
        opt.zero_grad()
        loss = model(b["text_ids"], b["text_mask"], b["region_feats"], b["region_boxes"], b["region_mask"],
                     b["mlm_labels"], b["itm_labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for i in range(args.warmup):
        step(batches[i % len(batches)])
    examples, t0 = 0, time.perf_counter()
    for i in range(args.steps):
        b = batches[i % len(batches)]
        step(b)
        examples += b["text_ids"].size(0)
    secs = time.perf_counter() - t0
    print(json.dumps({"impl": "plain PyTorch " + torch.__version__, "threads": args.threads,
                      "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
                      "steps": args.steps, "examples_per_s": examples / secs, "ms_per_step": 1000 * secs / args.steps}))


if __name__ == "__main__":
    main()
