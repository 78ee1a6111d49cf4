#!/bin/bash
# Time-to-accuracy runs of issue 13 (benchmarks/RESULTS.md §7): the published-level mlearn fits and the study's
# Ag–Pd protocol with $TRAINER (varpro-lm unless set; varpro for the earlier figures) on 2 threads, then every
# trainer for 300 s on one thread each (two at a time) on mlearn Mo and Ag–Pd at level 16. Needs ../shared.
# Results: benchmarks/results/time_to_accuracy/*.json
set -e
cd "$(dirname "$0")/.."
out=benchmarks/results/time_to_accuracy
mkdir -p "$out"
tta="python benchmarks/time_to_accuracy.py"
t=${TRAINER:-varpro-lm}
if [ "$1" != "--trainers-only" ]; then
  $tta --dataset agpd --level 16 --trainer $t --seconds 900 --every 20 --out $out/agpd16_$t.json
  $tta --dataset mlearn-Si --level 24 --min-dist 1.82866 --max-dist 4.7 --trainer $t --seconds 600 --every 20 \
       --out $out/si24_$t.json
  $tta --dataset mlearn-Mo --level 20 --min-dist 1.8829 --max-dist 5.2 --trainer $t --seconds 900 --every 10 \
       --out $out/mo20_$t.json
fi
for trainer in varpro-lm varpro native-bfgs lm bfgs adam; do
  $tta --dataset mlearn-Mo --level 16 --max-dist 5.2 --trainer $trainer --seconds 300 --every 10 --threads 1 \
       --out $out/mo16_${trainer}_1t.json &
  $tta --dataset agpd --level 16 --trainer $trainer --seconds 300 --every 15 --threads 1 \
       --out $out/agpd16_${trainer}_1t.json
  wait
done
plot="python benchmarks/plot_time_to_accuracy.py"
$plot $out/mo16.png $out/mo16_{varpro-lm,varpro,native-bfgs,lm,bfgs,adam}_1t.json --title "mlearn Mo, level 16, 300 s on one core"
$plot $out/agpd16.png $out/agpd16_{varpro-lm,varpro,native-bfgs,lm,bfgs,adam}_1t.json \
      --title "Ag–Pd (study protocol), level 16, 300 s on one core"
