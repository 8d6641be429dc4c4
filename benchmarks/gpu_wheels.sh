#!/usr/bin/env bash
# Wheels the GPU machine's image lacks, for its Python 3.12, into .whl/ (git-ignored), at the versions
# CI tests. The image has torch, typer, rich, pandas, scikit-learn, matplotlib, safetensors and an
# older transformers, but not pydantic or datasets. vptbench itself is built here too, so the machine
# needs no build backend. Run here, then carry .whl (see RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    transformers==5.24.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
python3 -m pip wheel -q --no-deps -w .whl .
ls .whl
