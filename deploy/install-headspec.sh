#!/usr/bin/env bash
# Install headspec from this checkout into a virtual environment, with the right torch.
# One script for every place headspec is installed on a cluster: deploy/Dockerfile runs it
# while building the image, and deploy/ray-cluster-aws.yaml runs it on every node.
#
#   deploy/install-headspec.sh VENV [auto|cpu|cuda|INDEX_URL] [--torch-only]
#
#   auto (default)  cuda when the machine or image has CUDA (nvidia-smi works, or CUDA_VERSION
#                   is set, as in nvidia/cuda images), else cpu
#   cpu             torch's CPU wheel (no multi-GB CUDA libraries)
#   cuda            torch built for CUDA ${TORCH_CUDA}: cu128 by default, or derived from
#                   CUDA_VERSION (12.6.3 -> cu126); set TORCH_CUDA=cu130 etc. to choose
#   INDEX_URL       any PyTorch wheel index
#   --torch-only    stop after torch (the Dockerfile caches that layer apart from the code)
#
# torch's version comes from constraints.txt; Ray's is pinned here (RAY_VERSION overrides) so
# every node, the image and deploy/k8s/raycluster.yaml's rayVersion agree: Ray refuses to join
# nodes of different versions. headspec is installed editable (-e): its Alembic migrations
# live beside the package in the checkout (service/store/schema.py finds them there).
set -euo pipefail

DEFAULT_RAY_VERSION=2.60.0

venv=${1:?usage: install-headspec.sh VENV [auto|cpu|cuda|INDEX_URL] [--torch-only]}
flavour=${2:-auto}
torch_only=${3:-}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
ray_version=${RAY_VERSION:-$DEFAULT_RAY_VERSION}

if [ "$flavour" = auto ]; then
    if [ -n "${CUDA_VERSION:-}" ] || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
        flavour=cuda
    else
        flavour=cpu
    fi
fi
case "$flavour" in
    cpu) index=https://download.pytorch.org/whl/cpu ;;
    cuda)
        if [ -z "${TORCH_CUDA:-}" ] && [ -n "${CUDA_VERSION:-}" ]; then
            TORCH_CUDA=cu$(echo "$CUDA_VERSION" | cut -d. -f1,2 | tr -d .)
        fi
        index=https://download.pytorch.org/whl/${TORCH_CUDA:-cu128} ;;
    http://* | https://*) index=$flavour ;;
    *) echo "install-headspec.sh: unknown torch flavour '$flavour' (auto, cpu, cuda or an index URL)" >&2
       exit 2 ;;
esac

torch_version=$(sed -n 's/^torch==//p' "$repo/constraints.txt")
if [ -z "$torch_version" ]; then
    echo "install-headspec.sh: constraints.txt pins no torch==VERSION" >&2
    exit 2
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/pip" install --no-cache-dir --disable-pip-version-check)
"${pip[@]}" --upgrade pip
# From torch's own index: the CPU build there is small; PyPI's Linux wheel is the CUDA build.
# PyPI stays an extra index for torch's dependencies.
echo "install-headspec.sh: torch==$torch_version from $index"
"${pip[@]}" --index-url "$index" --extra-index-url https://pypi.org/simple "torch==$torch_version"
if [ "$torch_only" = --torch-only ]; then
    exit 0
fi
"${pip[@]}" -c "$repo/constraints.txt" "ray[default]==$ray_version" -e "$repo"
"$venv/bin/headspec" --help >/dev/null
echo "install-headspec.sh: headspec installed in $venv (torch $torch_version/$flavour, ray $ray_version)"
