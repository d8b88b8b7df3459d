#!/usr/bin/env bash
# Builds the offline real datasets under OUT (default data/real): OUT/openclipart from Debian's
# openclipart-png (installed if missing, needs root) and OUT/emoji from the npm packages
# emoji-datasource-google and emojibase-data (fetched into a temporary folder, not kept).
# Idempotent: a dataset already built is left alone. usage: scripts/make_real_datasets.sh [OUT]
set -euo pipefail
out=${1:-data/real}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
if [[ ! -f "$out/openclipart/dataset_openclipart.json" ]]; then
  if [[ ! -d /usr/share/openclipart/png ]]; then
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends openclipart-png >/dev/null
  fi
  python3 "$here/make_real_datasets.py" openclipart "$out/openclipart"
fi
if [[ ! -f "$out/emoji/dataset_emoji.json" ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent emoji-datasource-google@16.0.0 emojibase-data@17.0.0 >/dev/null 2>&1) ||
    { echo "make_real_datasets: could not fetch the emoji npm packages" >&2; exit 1; }
  for p in emoji-datasource-google emojibase-data; do
    mkdir -p "$tmp/$p" && tar xzf "$tmp"/$p-*.tgz -C "$tmp/$p" --strip-components=1
  done
  python3 "$here/make_real_datasets.py" emoji "$out/emoji" "$tmp"
fi
