"""Levenberg–Marquardt's initial damping μ₀ = τ·max diag(JᵀWJ): exact LM on Ag–Pd's first 400 training
configurations at level 10 from ±0.1 (seed 43), 12 iterations; prints the loss after each. Reads ../shared.

    python benchmarks/lm_damping.py 1e-3
    python benchmarks/lm_damping.py 1e-6
"""
import sys
import time

from mtpfit import MTP, Dataset, Loss, Objective
from mtpfit.io import read_configurations
from mtpfit.optim.least_squares import levenberg_marquardt
from mtpfit.train.initial import fit_species_energies

tau = float(sys.argv[1])
data = Dataset(read_configurations("../shared/data/AgPd/train.json"), "agpd")[:400]
mtp = MTP.from_level(10, species=[0, 1], min_dist=1.9, max_dist=5.0)
objective = Objective(mtp, data, Loss(kind="file"), n_threads=1)
x0 = fit_species_energies(objective, mtp.init_params(0.1, 43))
start = time.perf_counter()
result = levenberg_marquardt(objective, x0, max_iter=12, tau=tau)
print(f"tau {tau:g}: losses " + " ".join(f"{h['loss']:.4g}" for h in result.history)
      + f"  ({time.perf_counter() - start:.0f} s)")
