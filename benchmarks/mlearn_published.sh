#!/usr/bin/env bash
# Issue 16, acceptance 3, the other side of the comparison: the six published mlearn MTPs (Zuo et al., J. Phys.
# Chem. A 124, 731 (2020); ../shared/data/mlearn/mtp_fitted) evaluated by this package on the test sets the
# campaigns 7a–7f validate on, read with the same conventions (Voigt order of the Cu, Mo and Ni files: xx yy zz xy
# xz yz). Their test EPA MAE should come back as the published figures: then the data are read as the authors
# read them, and the gap between a campaign's run and the published potential is the training's.
set -euo pipefail
cd "$(dirname "$0")/.."
MLEARN=../shared/data/mlearn
for element in Mo Si Cu Ge Li Ni; do
    order=()
    case $element in Cu|Mo|Ni) order=(--stress-order "xx yy zz xy xz yz") ;; esac
    mtpfit evaluate "$MLEARN/mtp_fitted/$element/fitted.mtp" "$MLEARN/json/$element/test.json" \
        --species "$element" "${order[@]}" --threads 1 --json |
        python -c "import json, sys; e = json.load(sys.stdin)['all']; print('$element: test EPA MAE %.3f meV/atom, \
EPA RMSE %.3f meV/atom, force RMSE %.4f eV/Å, stress RMSE %.3f GPa' % (1e3 * e['epa_mae'], 1e3 * e['epa_rmse'], \
e['force_rmse'], e['stress_rmse_gpa']))"
done
