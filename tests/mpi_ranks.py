"""Run under ``mpiexec -n R``: evaluates the data-parallel objective and trains, rank 0 writes what it saw to the
JSON file named on the command line (tests/test_mpi.py compares it with a serial run)."""
import json
import sys

import numpy as np

from mtpfit import Loss, Objective
from mtpfit.optim import make_optimizer
from mtpfit.optim.linear import linear_resolve
from mtpfit.parallel import world
from mtpfit.train.full_batch import train_full_batch
from mtpfit.train.minibatch import train_minibatch

from mpi_problem import problem


def main(path: str) -> None:
    comm = world()
    mtp, data, x = problem()
    objective = Objective(mtp, data, Loss(), n_threads=1, comm=comm)
    loss, grad = objective.fun_and_jac(x)
    batch_loss, batch_grad = objective.fun_and_jac(x, np.array([3, 17, 42, 5, 88]))
    gn_loss, H, g = objective.gauss_newton(x, sketch=2, seed=4)
    r, w = objective.residuals(x)
    vjp = objective.residual_vjp(x, np.linspace(-1, 1, len(r)))
    predicted = objective.predict(x)
    R = objective.linear_system(x)
    resolved = linear_resolve(objective, x)
    bfgs = train_full_batch(objective, x, "BFGS", max_iter=20, log_every=0, progress=None)
    lm = train_full_batch(objective, x, "LM", max_iter=5, log_every=0, progress=None, sketch=2)
    adam = train_minibatch(objective, make_optimizer("adam", lr=1e-3), x, epochs=1, batch_size=16, seed=2,
                           progress=None)
    out = {"size": comm.size, "shard": len(objective.shard), "loss": loss, "grad": grad.tolist(),
           "batch_loss": batch_loss, "batch_grad": batch_grad.tolist(), "gn_loss": gn_loss, "H": H.tolist(),
           "g": g.tolist(), "r": r.tolist(), "vjp": vjp.tolist(), "forces": predicted.forces.tolist(),
           "stresses": predicted.stresses.tolist(), "per_config": objective.per_configuration(x).tolist(),
           "bfgs_losses": [h["loss"] for h in bfgs.history], "bfgs_x": bfgs.result.x.tolist(),
           "adam_x": adam.x.tolist(), "gram": (R.T @ R).tolist(), "resolved": resolved.tolist(), "lm_x": lm.result.x.tolist(), "allreduce": comm.n_allreduce, "bytes": comm.bytes_reduced}
    if comm.rank == 0:
        with open(path, "w") as handle:
            json.dump(out, handle)


if __name__ == "__main__":
    main(sys.argv[1])
