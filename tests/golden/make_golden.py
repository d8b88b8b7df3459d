#!/usr/bin/python3
"""Golden files for mmt's parity tests (tests/unit/parity_test.cpp), made with Debian's
python3-torch 1.13 and python3-torchvision 0.14:

    /usr/bin/python3 tests/golden/make_golden.py tests/data/golden

- single_stream_layer.safetensors: torch.nn.TransformerEncoderLayer (post-norm, GELU, eps 1e-12)
  with random weights, a joint [text ; image] input with key padding, and its output.
- bert/: a small random BERT in Hugging Face's key names (model.safetensors + config.json),
  input ids with an attention mask, and outputs of a reference built from torch ops
  (sequence output, pooled output, MLM logits) in bert_golden.safetensors.
- losses.safetensors: every pretraining loss (MLM, ITM, the three MRM variants, dual InfoNCE,
  contrastive ITM over K + 1 scores, all-layer ITM) on fixed inputs, from torch.nn.functional.
- resnet50_features.safetensors: torchvision resnet50 with weights from a formula that the C++
  test reproduces exactly (integer hash, see resnet_weight below; 100 MB of weights need not be
  committed), on a formula input of 1 x 3 x 64 x 64: the layer4 feature map.

safetensors is written by hand (the format is an 8-byte header length, a JSON header, raw
little-endian tensors): Debian has no python3-safetensors. CI does not run this script."""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8"), torch.bool: ("BOOL", "|b1")}


def save_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        code, np_dtype = DTYPES[t.dtype]
        data = t.numpy().astype(np_dtype).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def single_stream_layer(out):
    torch.manual_seed(0)
    d_model, nhead, ffn, b, t, r = 32, 4, 48, 3, 6, 5
    layer = nn.TransformerEncoderLayer(d_model, nhead, ffn, dropout=0.0, activation="gelu", layer_norm_eps=1e-12,
                                       batch_first=True, norm_first=False)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.3)
    layer.eval()
    x = torch.randn(b, t + r, d_model)
    pad = torch.zeros(b, t + r, dtype=torch.bool)
    pad[1, 4:t] = True      # text padding of example 1
    pad[2, t + 3:] = True   # image padding of example 2
    with torch.no_grad():
        y = layer(x, src_key_padding_mask=pad)
    tensors = {k: v for k, v in layer.state_dict().items()}
    tensors.update({"input": x, "padding": pad, "output": y, "text_len": torch.tensor([t])})
    save_safetensors(os.path.join(out, "single_stream_layer.safetensors"), tensors)


BERT = {"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 40, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu", "model_type": "bert", "architectures": ["BertForPreTraining"]}


def bert(out):
    torch.manual_seed(1)
    c = BERT
    h, heads = c["hidden_size"], c["num_attention_heads"]
    sd = {}

    def lin(name, i, o):
        sd[name + ".weight"] = torch.randn(o, i) * 0.2
        sd[name + ".bias"] = torch.randn(o) * 0.1

    def ln(name):
        sd[name + ".weight"] = 1 + 0.1 * torch.randn(h)
        sd[name + ".bias"] = 0.1 * torch.randn(h)

    sd["bert.embeddings.word_embeddings.weight"] = torch.randn(c["vocab_size"], h) * 0.5
    sd["bert.embeddings.position_embeddings.weight"] = torch.randn(c["max_position_embeddings"], h) * 0.5
    sd["bert.embeddings.token_type_embeddings.weight"] = torch.randn(c["type_vocab_size"], h) * 0.5
    ln("bert.embeddings.LayerNorm")
    for n in range(c["num_hidden_layers"]):
        p = f"bert.encoder.layer.{n}."
        for k in ("query", "key", "value"):
            lin(p + "attention.self." + k, h, h)
        lin(p + "attention.output.dense", h, h)
        ln(p + "attention.output.LayerNorm")
        lin(p + "intermediate.dense", h, c["intermediate_size"])
        lin(p + "output.dense", c["intermediate_size"], h)
        ln(p + "output.LayerNorm")
    lin("bert.pooler.dense", h, h)
    lin("cls.predictions.transform.dense", h, h)
    ln("cls.predictions.transform.LayerNorm")
    sd["cls.predictions.bias"] = torch.randn(c["vocab_size"]) * 0.1
    sd["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"]
    lin("cls.seq_relationship", h, 2)

    # Reference forward, written from BERT's definition with torch ops.
    b, t = 2, 9
    ids = torch.randint(5, c["vocab_size"], (b, t))
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, 6:] = False
    eps = c["layer_norm_eps"]

    def layer_norm(x, name):
        return F.layer_norm(x, (h,), sd[name + ".weight"], sd[name + ".bias"], eps)

    def linear(x, name):
        return F.linear(x, sd[name + ".weight"], sd[name + ".bias"])

    x = sd["bert.embeddings.word_embeddings.weight"][ids] + sd["bert.embeddings.position_embeddings.weight"][:t] \
        + sd["bert.embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, "bert.embeddings.LayerNorm")
    bias = (~mask).float().mul(-1e9)[:, None, None, :]
    for n in range(c["num_hidden_layers"]):
        p = f"bert.encoder.layer.{n}."

        def split(y):
            return y.view(b, t, heads, h // heads).transpose(1, 2)

        q, k, v = (split(linear(x, p + "attention.self." + s)) for s in ("query", "key", "value"))
        a = ((q @ k.transpose(-1, -2)) / math.sqrt(h // heads) + bias).softmax(-1) @ v
        a = a.transpose(1, 2).reshape(b, t, h)
        x = layer_norm(x + linear(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        f = linear(F.gelu(linear(x, p + "intermediate.dense")), p + "output.dense")
        x = layer_norm(x + f, p + "output.LayerNorm")
    pooled = torch.tanh(linear(x[:, 0], "bert.pooler.dense"))
    tr = layer_norm(F.gelu(linear(x, "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
    mlm = tr @ sd["bert.embeddings.word_embeddings.weight"].t() + sd["cls.predictions.bias"]

    d = os.path.join(out, "bert")
    os.makedirs(d, exist_ok=True)
    save_safetensors(os.path.join(d, "model.safetensors"), sd)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    save_safetensors(os.path.join(out, "bert_golden.safetensors"),
                     {"input_ids": ids, "attention_mask": mask, "sequence_output": x, "pooled_output": pooled,
                      "mlm_logits": mlm})


def hash_uniform(name, n):
    """Uniform in [-0.5, 0.5) from an integer hash of (tensor name, index): reproducible in C++."""
    seed = 2166136261
    for ch in name.encode():
        seed = ((seed ^ ch) * 16777619) & 0xFFFFFFFF
    i = np.arange(n, dtype=np.uint64)
    x = (i * np.uint64(2654435761) + np.uint64(seed)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(2246822519)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(13)
    return x.astype(np.float64) / 4294967296.0 - 0.5


def resnet_weight(name, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    u = hash_uniform(name, n)
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if name.endswith("running_var"):
        v = 0.5 + (u + 0.5)
    elif name.endswith("running_mean") or name.endswith(".bias"):
        v = 0.1 * u
    elif len(shape) == 1:  # BatchNorm weight
        v = 0.5 + 0.5 * (u + 0.5)
    else:  # conv / fc weight: std sqrt(2 / fan_in)
        fan_in = int(np.prod(shape[1:]))
        v = u * math.sqrt(24.0 / fan_in)
    return torch.from_numpy(v.astype(np.float32)).reshape(shape)


def resnet(out):
    from torchvision.models import resnet50
    m = resnet50()
    m.load_state_dict({k: resnet_weight(k, tuple(v.shape)) for k, v in m.state_dict().items()})
    m.eval()
    x = torch.from_numpy((2.0 * hash_uniform("input", 3 * 64 * 64)).astype(np.float32)).reshape(1, 3, 64, 64)
    with torch.no_grad():
        y = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
    save_safetensors(os.path.join(out, "resnet50_features.safetensors"), {"input": x, "features": y})


def losses(out):
    """Each pretraining loss of mmt on fixed random inputs, computed with torch.nn.functional."""
    torch.manual_seed(3)
    t = {}
    t["mlm_logits"], t["mlm_targets"] = torch.randn(12, 30), torch.randint(0, 30, (12,))
    t["mlm_loss"] = F.cross_entropy(t["mlm_logits"], t["mlm_targets"]).reshape(1)
    t["itm_logits"], t["itm_labels"] = torch.randn(10, 2), torch.randint(0, 2, (10,))
    t["itm_loss"] = F.cross_entropy(t["itm_logits"], t["itm_labels"]).reshape(1)
    t["mrm_pred"], t["mrm_target"] = torch.randn(7, 16), torch.randn(7, 16)
    t["mrm_regression_loss"] = F.mse_loss(t["mrm_pred"], t["mrm_target"]).reshape(1)
    t["mrm_logits"] = torch.randn(7, 8)
    p = torch.softmax(2 * torch.randn(7, 8), -1)
    p[0] = 0.0
    p[0, 3] = 1.0  # a one-hot row: 0 log 0 terms
    t["mrm_p"] = p
    t["mrm_kl_loss"] = F.kl_div(F.log_softmax(t["mrm_logits"], -1), p, reduction="batchmean").reshape(1)
    t["mrm_class_loss"] = F.cross_entropy(t["mrm_logits"], p.argmax(-1)).reshape(1)
    te, ve = F.normalize(torch.randn(6, 8), dim=-1), F.normalize(torch.randn(6, 8), dim=-1)
    t["dual_text"], t["dual_image"], t["dual_scale"] = te, ve, torch.tensor([12.3])
    logits = 12.3 * te @ ve.t()
    target = torch.arange(6)
    t["dual_loss"] = (0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))).reshape(1)
    scores = torch.randn(5, 33)
    excluded = torch.zeros(5, 33, dtype=torch.bool)
    excluded[1, 7] = excluded[3, 30] = True
    t["contrastive_scores"], t["contrastive_excluded"] = scores, excluded
    t["contrastive_loss"] = F.cross_entropy(scores.masked_fill(excluded, float("-inf")),
                                            torch.zeros(5, dtype=torch.long)).reshape(1)
    layer_logits = torch.randn(3, 6, 2)
    layer_labels = torch.randint(0, 2, (6,))
    t["hitm_logits"], t["hitm_labels"] = layer_logits, layer_labels
    t["hitm_loss"] = torch.stack([F.cross_entropy(layer_logits[i], layer_labels) for i in range(3)]).mean().reshape(1)
    save_safetensors(os.path.join(out, "losses.safetensors"), t)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/golden"
    os.makedirs(out, exist_ok=True)
    single_stream_layer(out)
    bert(out)
    resnet(out)
    losses(out)
    print("wrote", out)
