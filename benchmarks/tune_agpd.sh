#!/usr/bin/env bash
# Issue 16, acceptance 4: `mtpfit tune` on the study's Ag–Pd set in campaign 1's protocol (level 16, R = 8,
# 1.9–5.0 Å, the file's weights as they are, θ₀ ±0.1 seeded 43, one thread like the campaign's runs), under a total
# budget of a third of campaign 1's training time (30 runs × 300 s = 9000 s → 3000 s). Compare the winner's
# validation errors with the best cell of campaign 1 (benchmarks/results/REPORT.md, agpd_full_batch).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data/AgPd
exec mtpfit tune --train "$DATA/train.json" --validation "$DATA/validation.json" --species 0 1 \
    --level 16 --min-dist 1.9 --max-dist 5.0 --loss file --no-average --no-penalty \
    --init-interval 0.1 --seed 43 --threads 1 --budget "${BUDGET:-3000}" \
    --output "${OUTPUT:-benchmarks/results/tune_agpd}" "$@"
