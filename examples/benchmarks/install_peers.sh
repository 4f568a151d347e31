#!/usr/bin/env bash
# Install the peer SNN libraries that the benchmarks compare against (SpikingJelly 2.0.0,
# snnTorch 1.0.0, NIR 1.0.8, nirtorch 2.6) into the environment of ${PIP:-pip}, without
# changing its torch. Install torch first (`pip install torch==2.13.0`, a CPU wheel here).
#
#   PIP=/path/to/venv/bin/pip bash examples/benchmarks/install_peers.sh
#   PIP="python3 -m pip" bash examples/benchmarks/install_peers.sh
#
# Why --no-deps for SpikingJelly: spikingjelly 2.0.0 declares torchvision, torchaudio,
# tensorboard and SciencePlots as requirements. Resolving them makes pip fetch torch 2.14
# (a CUDA build) with a matching torchvision/torchaudio, and PyPI's torchvision does not
# import beside torch 2.13. The parts the benchmarks use (activation_based.ann2snn,
# .functional, .neuron, .layer, .nir_exchange) import none of them: only loguru, tqdm,
# requests and numpy, installed below by name. What still needs torchvision is
# spikingjelly.datasets, activation_based.model.{spiking_vgg,spiking_resnet,sew_resnet} and
# the examples; activation_based.monitor needs tensorboard; spikingjelly.visualizing needs
# matplotlib. `pip check` will therefore list spikingjelly's missing torchvision, torchaudio,
# tensorboard and SciencePlots: that is expected.
#
# snnTorch 1.0.0 declares no requirements; it needs torch and numpy, and nir/nirtorch for
# snntorch.import_nir / snntorch.export_nir (1.0.0 no longer re-exports them from the
# package). nir and nirtorch install normally (numpy, h5py; torch is already satisfied).
#
# Every pip call runs with a constraints file that pins the torch already installed, so a
# resolver that wanted another torch fails instead of replacing it. numpy stays < 2.4
# because brian2 (a project dependency) calls ndarray.ptp, removed in numpy 2.4.
set -euo pipefail

read -r -a PIP_CMD <<< "${PIP:-pip}"
if ! "${PIP_CMD[@]}" --version > /dev/null 2>&1; then
    echo "install_peers.sh: '${PIP_CMD[*]}' does not run; set PIP to the target environment's pip" >&2
    exit 1
fi

TORCH_VERSION="$("${PIP_CMD[@]}" show torch 2>/dev/null | sed -n 's/^Version: //p')"
if [[ -z "$TORCH_VERSION" ]]; then
    echo "install_peers.sh: torch is not installed for '${PIP_CMD[*]}'; install it first" \
         "(pip install torch==2.13.0)" >&2
    exit 1
fi
echo "install_peers.sh: keeping torch $TORCH_VERSION"

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"

pip_install() { "${PIP_CMD[@]}" install --constraint "$CONSTRAINTS" "$@"; }

# What SpikingJelly's ann2snn/functional/neuron import at run time, and NIR's h5py.
pip_install "numpy<2.4" h5py "loguru>=0.7,<1" tqdm requests packaging
# --no-deps: see above; its real import-time needs are the line before.
pip_install --no-deps "spikingjelly==2.0.0"
# snntorch has no declared requirements, so --no-deps changes nothing; kept for clarity.
pip_install --no-deps "snntorch==1.0.0"
pip_install "nir==1.0.8" "nirtorch==2.6"

AFTER="$("${PIP_CMD[@]}" show torch 2>/dev/null | sed -n 's/^Version: //p')"
if [[ "$AFTER" != "$TORCH_VERSION" ]]; then
    echo "install_peers.sh: torch changed from $TORCH_VERSION to $AFTER" >&2
    exit 1
fi
# Import check with the python behind $PIP: $PYTHON, the python of "python -m pip", or the
# python next to a pip executable; skipped when none is found.
PY="${PYTHON:-}"
if [[ -z "$PY" && "${PIP_CMD[1]:-}" == "-m" ]]; then
    PY="${PIP_CMD[0]}"
elif [[ -z "$PY" ]]; then
    PIP_PATH="$(command -v "${PIP_CMD[0]}" || true)"
    if [[ -n "$PIP_PATH" && -x "$(dirname "$PIP_PATH")/python" ]]; then
        PY="$(dirname "$PIP_PATH")/python"
    fi
fi
if [[ -n "$PY" ]]; then
    "$PY" -c '
from spikingjelly.activation_based import ann2snn, functional, neuron
import snntorch, nir, nirtorch
from snntorch.import_nir import import_from_nir
from snntorch.export_nir import export_to_nir
print("install_peers.sh: peers import")'
else
    echo "install_peers.sh: no python found for '${PIP_CMD[*]}'; set PYTHON to check imports" >&2
fi
echo "install_peers.sh: done (torch $AFTER)"
