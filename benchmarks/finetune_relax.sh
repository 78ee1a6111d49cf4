#!/usr/bin/env bash
# Issue 7: fine-tuning through unrolled relaxations on the mlearn Si and Ge sets (reads ../shared). For each
# element: train a level-16 MTP with the core trainer (SciPy BFGS, 400 iterations, the published potentials'
# cutoffs), then `mtpfit finetune-relax` over k ∈ {10, 20, 50} unrolled gradient-descent steps and η ∈ {0.02, 0.05}
# Å²/eV. The minima of training.json are fine-tuned on (one start each), those of test.json test (four starts
# each); starts are displaced by σ = 0.05 Å per coordinate. Results: benchmarks/results/finetune_relax_<El>/.
# Each (k, η) is checkpointed: an interrupted run resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=../shared/data/mlearn/json
THREADS=${THREADS:-1}
declare -A CUTOFFS=([Si]="--min-dist 1.8287 --max-dist 4.7" [Ge]="--min-dist 2.0730 --max-dist 5.1")
for el in ${ELEMENTS:-Si Ge}; do
  out=benchmarks/results/finetune_relax_$el
  if [[ ! -f $out/base/trained.mtp ]]; then
    # shellcheck disable=SC2086
    python -m mtpfit train --train $SHARED/$el/training.json --validation $SHARED/$el/test.json --species "$el" \
        --level 16 ${CUTOFFS[$el]} --optimizer BFGS --max-iter 400 --threads "$THREADS" --quiet --output "$out/base"
  fi
  python -m mtpfit finetune-relax --potential "$out/base/trained.mtp" --train $SHARED/$el/training.json \
      --test $SHARED/$el/test.json --species "$el" --k 10 20 50 --eta 0.02 0.05 --optimizer adam --lr 2e-4 \
      --mix 0.1 --max-iter 40 --threads "$THREADS" --output "$out"
done
# The same on Si with the energy/force loss weighted as much as the relaxation error (--mix 1), η = 0.05 only.
if [[ " ${ELEMENTS:-Si Ge} " == *" Si "* ]]; then
  python -m mtpfit finetune-relax --potential benchmarks/results/finetune_relax_Si/base/trained.mtp \
      --train $SHARED/Si/training.json --test $SHARED/Si/test.json --species Si --k 10 20 50 --eta 0.05 \
      --optimizer adam --lr 2e-4 --mix 1 --max-iter 40 --threads "$THREADS" --output benchmarks/results/finetune_relax_Si_mix1
fi
