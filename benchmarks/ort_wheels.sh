#!/usr/bin/env bash
# The two ONNX Runtime wheels side by side: download size, install time (from the downloaded files,
# so the network is not timed), installed size and providers, each in a plain virtual environment.
# Leaves /tmp/venv-ort (CPU wheel) for `python benchmarks/speed_report.py`'s FEN comparison.
#   bash benchmarks/ort_wheels.sh [CPU_VERSION] [GPU_VERSION]
set -euo pipefail
cpu=${1:-1.32.0}
gpu=${2:-1.31.1}
for kind in cpu gpu; do
  venv=/tmp/venv-ort; pkg="onnxruntime==$cpu"
  if [ "$kind" = gpu ]; then venv=/tmp/venv-ortgpu; pkg="onnxruntime-gpu==$gpu"; fi
  rm -rf "$venv" "/tmp/ortwheels-$kind"
  python -m venv "$venv"
  "$venv/bin/pip" download -q numpy "$pkg" -d "/tmp/ortwheels-$kind"
  "$venv/bin/pip" install -q --no-index --find-links "/tmp/ortwheels-$kind" numpy
  start=$(date +%s.%N)
  "$venv/bin/pip" install -q --no-index --find-links "/tmp/ortwheels-$kind" "$pkg"
  end=$(date +%s.%N)
  wheel=$(ls /tmp/ortwheels-$kind/onnxruntime*.whl)
  echo "$pkg: wheel $(du -m "$wheel" | cut -f1) MB, install $(echo "$end - $start" | bc) s," \
       "installed $(du -sm "$venv"/lib/python3*/site-packages/onnxruntime | cut -f1) MiB," \
       "providers $("$venv/bin/python" -c 'import onnxruntime as o; print(",".join(o.get_available_providers()))')"
done
