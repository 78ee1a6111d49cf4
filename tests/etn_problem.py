"""A tiny 2-species training problem for the ETN trainers: periodic configurations labelled by a larger ETN
(teacher) with a Lennard-Jones-like pair term, so that the student ETN cannot fit it exactly."""
from __future__ import annotations

import numpy as np

import mtpfit
from mtpfit.potential import ETN

SPECIES = ["Mo", "Nb"]
CELL = np.array([[4.4, 0.0, 0.0], [0.6, 4.2, 0.0], [0.3, -0.4, 4.6]])


def configurations(n_configs: int = 8, n_atoms: int = 6, seed: int = 0, min_sep: float = 1.9):
    """Random periodic configurations in (randomly strained) CELL, atoms at least ``min_sep`` Å apart."""
    rng = np.random.default_rng(seed)
    images = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
    out = []
    for _ in range(n_configs):
        cell = CELL @ (np.eye(3) + rng.uniform(-0.04, 0.04, (3, 3)))
        shifts = images @ cell
        positions = []
        while len(positions) < n_atoms:
            x = rng.uniform(size=3) @ cell
            if all(np.linalg.norm(x - p + s) >= min_sep for p in positions for s in shifts):
                positions.append(x)
        species = np.array([SPECIES[k] for k in rng.integers(0, 2, n_atoms)], dtype=object)
        out.append(mtpfit.Configuration(positions=np.array(positions), species=species, cell=cell))
    return out


def teacher() -> ETN:
    etn = ETN(SPECIES, radial_basis_size=5, max_l=2, channels=3, copies=3, ranks=[3, 3], min_dist=1.5, max_dist=4.0)
    theta = etn.init_params(seed=11)
    theta[etn.blocks["species"]] = [-10.5, -9.7]
    theta[etn.blocks["core_3"]] *= 10.0        # interactions of a few eV, forces of order 1 eV/Å
    return etn.copy(theta)


def student(seed: int = 3) -> ETN:
    etn = ETN(SPECIES, radial_basis_size=4, max_l=1, channels=2, copies=3, ranks=[2, 2], min_dist=1.5, max_dist=4.0)
    return etn.copy(etn.init_params(seed=seed))


def dataset(n_configs: int = 8, seed: int = 0) -> mtpfit.Dataset:
    """Configurations labelled by :func:`teacher` (energy, forces, PlusStress)."""
    t = teacher()
    labelled = []
    for c in configurations(n_configs, seed=seed):
        p = t.evaluate(c)
        labelled.append(mtpfit.Configuration(positions=c.positions, species=c.species, cell=c.cell,
                                             energy=p.energy, forces=p.forces, plus_stress=p.plus_stress,
                                             source=f"etn-teacher-{len(labelled)}"))
    return mtpfit.Dataset(labelled, name="etn-teacher")
