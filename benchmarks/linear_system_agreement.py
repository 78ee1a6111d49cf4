"""Figures of issue 13, acceptance 1: the one-pass linear system against the column-by-column construction, the
reduced gradient against central differences, and 1 vs 2 threads (the tests assert the limits; this prints the
measured values). Run from the repository root: PYTHONPATH=python:tests python benchmarks/linear_system_agreement.py
"""
import numpy as np

from linear_oracle import weighted_gram
from mtpfit import Loss, Objective
from mtpfit.optim.linear import ReducedLoss, linear_resolve
from test_linear_system import LOSSES, _case, _frames
from mtpfit import MTP

worst = 0.0
for level in (6, 10, 16):
    for species in (1, 3):
        for name, loss in LOSSES.items():
            objective, x = _case(species, level, holes=name == "mlip", loss=loss)
            R = objective.linear_system(x)
            G = weighted_gram(objective, x)
            scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
            used = scale > 0
            err = float(np.max(np.abs(R.T @ R - G)[used] / scale[used]))
            worst = max(worst, err)
        print(f"level {level:02d}, {species} species: worst entry-wise relative deviation of RᵀR so far {worst:.1e}")
for level, species in ((6, 3), (10, 3), (10, 1)):
    objective, x = _case(species, level, holes=False, loss=Loss())
    objective.penalty_coefficient = 1e-3
    reduced = ReducedLoss(objective, x, sigma=0.7)
    u = x[objective.mtp.blocks["radial"]] / 0.7
    g = reduced.jac(u)
    errs = []
    for v in np.random.default_rng(1).standard_normal((4, len(u))):
        v /= np.linalg.norm(v)
        h = 1e-4 * np.linalg.norm(u)
        fd = (reduced.fun(u + h * v) - reduced.fun(u - h * v)) / (2 * h)
        errs.append(abs(g @ v - fd) / abs(fd))
    print(f"reduced gradient, level {level:02d}, {species} species: relative error vs central differences "
          f"max {max(errs):.1e}")
for level in (10, 16):
    mtp = MTP.from_level(level, species=[0, 1, 2], min_dist=2.0, max_dist=5.0)
    x = mtp.init_params(0.1, 5)
    one = linear_resolve(Objective(mtp, _frames(), Loss(), n_threads=1), x)
    two = linear_resolve(Objective(mtp, _frames(), Loss(), n_threads=2), x)
    print(f"level {level:02d}: 1 vs 2 threads, re-solved θ identical: {np.array_equal(one, two)}")
