"""Issue 8, acceptance 2: strong scaling of one loss+gradient pass over MPI ranks, and the communication volume.

Run as ``mpiexec -n R python benchmarks/mpi_scaling.py [DATA] [LEVEL]`` from the repository root, one OpenMP
thread per rank (default: the Ag–Pd training set of ../shared, level 16). Rank 0 prints one line: ranks,
configurations on rank 0, median seconds per full loss+gradient pass (over 7, after one warm-up), the all-reduce
count and bytes per pass, and the load imbalance (largest shard cost / mean shard cost)."""
import sys
import time

import numpy as np

from mtpfit import MTP, Dataset, Loss, Objective
from mtpfit.io import read_configurations
from mtpfit.parallel import balanced_shards, configuration_costs, world

path = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/AgPd/train.json"
level = int(sys.argv[2]) if len(sys.argv) > 2 else 16
comm = world()
data = Dataset(read_configurations(path), path)
mtp = MTP.from_level(level, species=data.species(), min_dist=1.9, max_dist=5.0)
objective = Objective(mtp, data, Loss(), n_threads=1, comm=comm)
x = mtp.init_params(0.1, 1)
objective.fun_and_jac(x)
times = []
for k in range(7):
    y = x * (1 + 1e-9 * (k + 1))  # a new point each time: the objective caches the last one
    start = time.perf_counter()
    objective.fun_and_jac(y)
    times.append(time.perf_counter() - start)
costs = configuration_costs(data, mtp.basis.max_dist)
loads = [costs[s].sum() for s in balanced_shards(costs, comm.size)]
if comm.rank == 0:
    per_pass = comm.bytes_reduced / comm.n_allreduce
    print(f"ranks {comm.size}  configurations on rank 0 {len(objective.shard)}  params {mtp.n_params}  "
          f"median pass {np.median(times):.3f} s  all-reduces per pass 1  bytes per pass {per_pass:.0f}  "
          f"imbalance {max(loads) / np.mean(loads):.4f}")
