"""The column-by-column construction of the linear least-squares system: the test oracle of the core's one-pass
accumulation (mtpfit.Objective.linear_system)."""
import numpy as np

from mtpfit.objective.training_set import residual_weights


def linear_design(objective, x):
    """(A, labels, weights): column j of A is the prediction (energies, forces, PlusStress, flattened) of the
    potential whose j-th species/moment coefficient is 1 and every other one 0, radial block of x; one
    energy+forces pass per column. The data part of the loss is Σ weights · (A θ_lin − labels)²."""
    x = np.asarray(x, dtype=float)
    blocks = objective.mtp.blocks
    lin = slice(blocks["species"].start, blocks["moment"].stop)
    unit = x.copy()
    columns = []
    for j in range(lin.start, lin.stop):
        unit[lin] = 0.0
        unit[j] = 1.0
        p = objective.predict(unit)
        columns.append(np.concatenate([np.ravel(p.energies), np.ravel(p.forces), np.ravel(p.stresses)]))
    e_label, e_weight, f_label, f_weight, s_label, s_weight = [], [], [], [], [], []
    for config, w in zip(objective.dataset, residual_weights(objective.dataset, objective.loss)):
        n = config.n_atoms
        e_label.append(config.energy if config.energy is not None else 0.0)
        e_weight.append(w.energy)
        f_label.append(np.zeros((n, 3)) if config.forces is None else np.asarray(config.forces, dtype=float))
        f_weight.append(np.broadcast_to(np.asarray(w.forces, dtype=float), (n, 3)))
        s_label.append(np.zeros((3, 3)) if config.plus_stress is None
                       else np.asarray(config.plus_stress, dtype=float))
        s_weight.append(np.broadcast_to(np.asarray(w.stress, dtype=float), (3, 3)))
    labels = np.concatenate([np.array(e_label), np.concatenate(f_label).ravel(), np.ravel(s_label)])
    weights = np.concatenate([np.array(e_weight), np.concatenate(f_weight).ravel(), np.ravel(s_weight)])
    labels = np.where(weights > 0, labels, 0.0)
    return np.column_stack(columns), labels, weights


def weighted_gram(objective, x):
    """[A | y]ᵀ W [A | y] from the oracle."""
    A, y, w = linear_design(objective, x)
    keep = w > 0
    M = np.column_stack([A, y])[keep] * np.sqrt(w[keep])[:, None]
    return M.T @ M
