#!/usr/bin/env bash
# Create .venv and install singer-ssl into it.
#   bash scripts/setup.sh          # runtime deps
#   bash scripts/setup.sh --dev    # + pytest, ruff, librosa (tests, benchmarks)
# Torch: installs the CPU build torch==${TORCH_VERSION:-2.13.0} first so that the `torch>=2.2` requirement
# never pulls the multi-GB CUDA wheels. GPU users: install your CUDA build of torch into .venv first
# (see README) or set SINGER_SSL_SKIP_TORCH=1 when a suitable torch is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip's exit status is kept; only the noise of this machine's local package mirror is filtered out.
quiet_pip() { .venv/bin/pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
if [ -z "${SINGER_SSL_SKIP_TORCH:-}" ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
  quiet_pip "torch==${TORCH_VERSION:-2.13.0}"
fi
quiet_pip -e ".${extras}"
.venv/bin/python -c "import singer_ssl, torch; print('singer-ssl', singer_ssl.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
