#!/usr/bin/env bash
# Installs, from Debian's archive, the build and run dependencies of mmt that are missing.
# Idempotent and quiet: when everything is present it prints nothing and returns at once.
# Called by `make demo` and `make test`; needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread libblas-dev libgloo-dev
  nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
  libjpeg62-turbo-dev libpng-dev libarchive-dev libsentencepiece-dev libicu-dev
  python3-torch python3-numpy
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$status" == ii* ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "mmt setup: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "mmt setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/mmt-setup.log 2>&1; then
  # A fresh machine may have no package lists yet: refresh once and retry.
  $sudo apt-get update -q >>/tmp/mmt-setup.log 2>&1
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/mmt-setup.log 2>&1 \
    || { echo "mmt setup: apt-get failed, see /tmp/mmt-setup.log" >&2; tail -20 /tmp/mmt-setup.log >&2; exit 1; }
fi
echo "mmt setup: done" >&2
