"""Derivatives by central finite differences, and symmetry invariances.

Acceptance: central finite differences agree (relative error < 1e-6) for forces, PlusStress,
∂L/∂θ and the force vector–Jacobian products in X and θ at levels 06, 10, 16 with 1 and 3 species, on periodic cells (one smaller than the
cutoff, one skewed), a molecule and a partially periodic slab; the energy is invariant under
rotation, translation and permutation, and forces rotate covariantly.

All configurations are synthetic and seeded. θ is random but not tiny: species and moment
coefficients uniform in [−0.5, 0.5], radial coefficients uniform in [−0.02, 0.02] (with the
basis scaling 1 and ~10–50 neighbours, larger radial coefficients make the higher-level
products explode), which gives energies O(0.1–10) eV and a largest force per configuration
between ~1 and ~75 eV/Å (the 3.2 Å cell, with ~50 neighbours per atom, is the largest); the
test asserts that forces are in a meaningful range so the comparisons are not between zeros.
Finite differences use the fourth-order central stencil (see _central_difference); relative
errors are ‖a − a_fd‖ / ‖a_fd‖ over the whole array (Euclidean / Frobenius), per θ block for
the parameter derivatives.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

import mtpfit
from mtpfit.data.neighbors import neighbor_pairs

LEVELS = (6, 10, 16)
SPECIES_COUNTS = (1, 3)
KINDS = ("small", "skewed", "molecule", "slab")
MIN_DIST, MAX_DIST = 1.8, 5.0
MIN_SEPARATION = 1.8          # Å, between any two atoms including periodic images
RTOL_FD = 1e-6                # acceptance threshold of the finite-difference checks
RTOL_SYMMETRY = 1e-10         # acceptance threshold of the invariance checks

POSITION_STEP = 1e-5          # Å
STRAIN_STEP = 1e-6            # dimensionless
THETA_STEP = 1e-6             # units of the coefficient
N_SAMPLED_PER_BLOCK = 12      # parameters per θ block checked by finite differences

SEED = {"small": 11, "skewed": 12, "molecule": 13, "slab": 14}


# -- fixtures -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _potential(level: int, n_species: int) -> tuple[mtpfit.MTP, np.ndarray]:
    mtp = mtpfit.MTP.from_level(level, species=list(range(n_species)), min_dist=MIN_DIST, max_dist=MAX_DIST)
    theta = mtp.init_params(interval=0.5, seed=100 * level + n_species)
    theta[mtp.blocks["radial"]] *= 0.02 / 0.5
    return mtp, theta


def _lattice_shifts(cell, pbc, reach: int = 2) -> np.ndarray:
    if cell is None:
        return np.zeros((1, 3))
    ranges = [range(-reach, reach + 1) if p else range(1) for p in pbc]
    return np.array([np.asarray(n) @ cell for n in itertools.product(*ranges)])


@functools.lru_cache(maxsize=None)
def _configuration(kind: str, n_species: int) -> mtpfit.Configuration:
    """A random configuration with every pair (images included) at least MIN_SEPARATION apart.

    small    : near-cubic periodic cell with edges ≈ 3.2 Å < cutoff (atoms see their own images)
    skewed   : strongly sheared triclinic periodic cell
    molecule : no cell
    slab     : periodic along the first two cell vectors only (the third row is non-zero but
               pbc is False along it)
    """
    rng = np.random.default_rng(SEED[kind] + 1000 * n_species)
    if kind == "small":
        cell = np.diag([3.2, 3.3, 3.15]) + rng.uniform(-0.15, 0.15, (3, 3))
        pbc, n_atoms = (True, True, True), 3
    elif kind == "skewed":
        cell = np.array([[4.6, 0.0, 0.0], [3.9, 4.1, 0.0], [-2.6, 1.8, 4.4]])
        pbc, n_atoms = (True, True, True), 6
    elif kind == "molecule":
        cell, pbc, n_atoms = None, (False, False, False), 6
    elif kind == "slab":
        cell = np.array([[4.3, 0.2, 0.0], [1.5, 4.0, 0.1], [0.3, 0.2, 6.0]])
        pbc, n_atoms = (True, True, False), 5
    else:
        raise ValueError(kind)
    shifts = _lattice_shifts(cell, pbc)
    # the lattice itself must respect the minimum separation (an atom and its own images)
    lattice_lengths = np.linalg.norm(shifts, axis=1)
    assert np.all(lattice_lengths[lattice_lengths > 0] >= MIN_SEPARATION)
    positions: list[np.ndarray] = []
    for _ in range(100000):
        if len(positions) == n_atoms:
            break
        p = rng.uniform(0.0, 3.6, 3) if cell is None else rng.uniform(0.0, 1.0, 3) @ cell
        if all(np.linalg.norm(q + shifts - p, axis=1).min() >= MIN_SEPARATION for q in positions):
            positions.append(p)
    assert len(positions) == n_atoms, "could not place the atoms"
    species = np.zeros(n_atoms, int) if n_species == 1 else np.arange(n_atoms) % n_species
    rng.shuffle(species)
    return mtpfit.Configuration(np.array(positions), species, cell, pbc, source=f"synthetic {kind}")


def _with(config: mtpfit.Configuration, positions=None, cell=None, species=None) -> mtpfit.Configuration:
    return mtpfit.Configuration(config.positions if positions is None else positions,
                                config.species if species is None else species,
                                config.cell if cell is None else cell, config.pbc)


def _central_difference(f, step: float) -> float:
    """f'(0) by the fourth-order central stencil [f(−2h) − 8f(−h) + 8f(h) − f(2h)] / 12h.

    The loss is a high-degree polynomial in the radial coefficients (whose scale here is only
    ~0.01), so the second-order stencil's O(h²) error reaches ~1e-6 at h = 1e-6 (and round-off
    forbids a much smaller h); the fourth-order stencil removes that without a smaller step.
    """
    return (f(-2 * step) - 8 * f(-step) + 8 * f(step) - f(2 * step)) / (12 * step)


def _energy(mtp, theta, config) -> float:
    return mtp.evaluate(config, theta).energy


def _shifted(theta, k: int, h: float) -> np.ndarray:
    out = theta.copy()
    out[k] += h
    return out


def _relative(a, b) -> float:
    """‖a − b‖ / ‖b‖ (Frobenius / Euclidean over all entries)."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


def _sampled_indices(mtp: mtpfit.MTP, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, block in mtp.blocks.items():
        idx = np.arange(mtp.n_params)[block]
        out[name] = np.sort(rng.choice(idx, size=min(N_SAMPLED_PER_BLOCK, len(idx)), replace=False))
    return out


def _random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


levels = pytest.mark.parametrize("level", LEVELS)
species_counts = pytest.mark.parametrize("n_species", SPECIES_COUNTS)
kinds = pytest.mark.parametrize("kind", KINDS)


# -- sanity of the synthetic set-up -----------------------------------------------------------
def test_small_cell_sees_own_images():
    config = _configuration("small", 1)
    assert np.all(np.linalg.norm(config.cell, axis=1) < MAX_DIST)
    i, j, _ = neighbor_pairs(config, MAX_DIST)
    assert np.any(i == j), "the small cell must make atoms neighbours of their own images"


@levels
@species_counts
@kinds
def test_values_are_meaningful(level, n_species, kind):
    mtp, theta = _potential(level, n_species)
    config = _configuration(kind, n_species)
    prediction = mtp.evaluate(config, theta)
    assert np.all(np.isfinite(prediction.forces))
    assert 0.1 < np.abs(prediction.forces).max() < 100.0
    assert np.abs(prediction.plus_stress).max() > 0.1
    assert prediction.energy == pytest.approx(prediction.site_energies.sum(), rel=1e-12, abs=1e-12)


# -- forces and PlusStress ----------------------------------------------------------------------
@levels
@species_counts
@kinds
def test_forces_are_minus_energy_gradient(level, n_species, kind):
    mtp, theta = _potential(level, n_species)
    config = _configuration(kind, n_species)
    forces = mtp.evaluate(config, theta).forces
    fd = np.zeros_like(forces)
    for i, a in itertools.product(range(config.n_atoms), range(3)):
        def energy(h):
            positions = config.positions.copy()
            positions[i, a] += h
            return _energy(mtp, theta, _with(config, positions=positions))

        fd[i, a] = -_central_difference(energy, POSITION_STEP)
    assert _relative(forces, fd) < RTOL_FD


@levels
@species_counts
@kinds
def test_plus_stress_is_minus_strain_derivative(level, n_species, kind):
    """PlusStress against the energy under a homogeneous deformation.

    Deform every position and every cell row by x → (I + ε) x (ε a general 3×3 matrix). Each
    neighbour vector then maps to r_ij → (I + ε) r_ij, so with g_ij = ∂V_i/∂r_ij
        ∂E/∂ε_ab |_{ε=0} = Σ_ij g_ij,a r_ij,b,
    and MTP_SPEC §5's S = −Σ_ij g_ij ⊗ r_ij is S_ab = −∂E/∂ε_ab. (Positive in compression:
    compressing, ε = −δ·I, raises E when S > 0.) For a molecule the same deformation of the
    positions alone applies; there is no cell to deform.
    """
    mtp, theta = _potential(level, n_species)
    config = _configuration(kind, n_species)
    stress = mtp.evaluate(config, theta).plus_stress
    fd = np.zeros((3, 3))
    for a, b in itertools.product(range(3), range(3)):
        def energy(h):
            deformation = np.eye(3)
            deformation[a, b] += h
            cell = None if config.cell is None else config.cell @ deformation.T
            return _energy(mtp, theta, _with(config, positions=config.positions @ deformation.T, cell=cell))

        fd[a, b] = -_central_difference(energy, STRAIN_STEP)
    assert _relative(stress, fd) < RTOL_FD


@levels
@species_counts
def test_molecule_plus_stress_is_the_virial(level, n_species):
    """Without periodic images the virial is a sum over atoms: F_i = Σ_j g_ij − Σ_j g_ji gives
    Σ_i F_i ⊗ r_i = Σ_ij g_ij ⊗ (r_i − r_j) = −Σ_ij g_ij ⊗ r_ij = S. Exact, up to round-off."""
    mtp, theta = _potential(level, n_species)
    config = _configuration("molecule", n_species)
    prediction = mtp.evaluate(config, theta)
    virial = np.einsum("ia,ib->ab", prediction.forces, config.positions)
    assert _relative(prediction.plus_stress, virial) < 1e-12


# -- parameter derivatives ----------------------------------------------------------------------
@levels
@species_counts
@kinds
def test_energy_gradient_by_finite_differences(level, n_species, kind):
    mtp, theta = _potential(level, n_species)
    config = _configuration(kind, n_species)
    gradient = mtp.energy_gradient(config, theta)
    # the species block is exact: dE/dξ_t counts the atoms of type t
    counts = np.bincount(mtp.types_of(config), minlength=n_species)
    np.testing.assert_array_equal(gradient[mtp.blocks["species"]], counts)
    for name, indices in _sampled_indices(mtp, seed=level + n_species).items():
        fd = np.empty(len(indices))
        for n, k in enumerate(indices):
            fd[n] = _central_difference(lambda h: _energy(mtp, _shifted(theta, k, h), config), THETA_STEP)
        assert np.linalg.norm(fd) > 0, name
        assert _relative(gradient[indices], fd) < RTOL_FD, name


@levels
@species_counts
@kinds
def test_force_vjp_by_finite_differences(level, n_species, kind):
    """a·∂F/∂X (the exact Hessian–vector product of the energy) and a·∂F/∂θ against differences of a·F."""
    mtp, theta = _potential(level, n_species)
    config = _configuration(kind, n_species)
    a = np.random.default_rng(level + n_species).normal(size=(config.n_atoms, 3))
    grad_theta, grad_x = mtp.force_vjp(config, a, theta)

    def projected(positions=config.positions, th=theta):
        return float(np.sum(a * mtp.evaluate(_with(config, positions=positions), th).forces))

    fd = np.zeros_like(grad_x)
    for i, c in itertools.product(range(config.n_atoms), range(3)):
        def along(h):
            positions = config.positions.copy()
            positions[i, c] += h
            return projected(positions)

        fd[i, c] = _central_difference(along, POSITION_STEP)
    assert _relative(grad_x, fd) < RTOL_FD
    # −∇²E is symmetric: b·(∂F/∂X a) = a·(∂F/∂X b)
    b = np.random.default_rng(7).normal(size=a.shape)
    assert np.sum(b * grad_x) == pytest.approx(np.sum(a * mtp.force_vjp(config, b, theta)[1]), rel=1e-10)
    # forces do not depend on the species energies
    assert np.all(grad_theta[mtp.blocks["species"]] == 0.0)
    for name, indices in _sampled_indices(mtp, seed=level + n_species).items():
        if name == "species":
            continue
        fd = np.array([_central_difference(lambda h: projected(th=_shifted(theta, k, h)), THETA_STEP)
                       for k in indices])
        assert _relative(grad_theta[indices], fd) < RTOL_FD, name


def _labelled_dataset(mtp, theta, n_species) -> mtpfit.Dataset:
    """All four geometries with labels = perturbed predictions, so that no residual is zero.
    Only the fully periodic ones carry a stress label (the others drop that term)."""
    rng = np.random.default_rng(7 + n_species)
    configs = []
    for kind in KINDS:
        base = _configuration(kind, n_species)
        p = mtp.evaluate(base, theta)
        stress = None
        if base.pbc.all():
            noise = rng.normal(scale=0.5, size=(3, 3))
            stress = p.plus_stress + noise + noise.T
        configs.append(mtpfit.Configuration(
            base.positions, base.species, base.cell, base.pbc,
            energy=p.energy + rng.normal(scale=0.3 * base.n_atoms),
            forces=p.forces + rng.normal(scale=0.2, size=p.forces.shape),
            plus_stress=stress, source=f"synthetic {kind}"))
    return mtpfit.Dataset(configs, "synthetic")


@levels
@species_counts
@pytest.mark.parametrize("loss", [mtpfit.Loss(), mtpfit.Loss.study()], ids=["mlip", "study"])
def test_loss_gradient_by_finite_differences(level, n_species, loss):
    mtp, theta = _potential(level, n_species)
    objective = mtpfit.Objective(mtp, _labelled_dataset(mtp, theta, n_species), loss)
    value, gradient = objective.fun_and_jac(theta)
    assert value > 0
    for name, indices in _sampled_indices(mtp, seed=3 * level + n_species).items():
        fd = np.empty(len(indices))
        for n, k in enumerate(indices):
            fd[n] = _central_difference(lambda h: objective.fun(_shifted(theta, k, h)), THETA_STEP)
        assert np.linalg.norm(fd) > 0, name
        assert _relative(gradient[indices], fd) < RTOL_FD, name


# -- invariances ----------------------------------------------------------------------------------
def _energy_scale(prediction) -> float:
    """Σ|V_i|: a relative measure that does not blow up when E happens to be near zero."""
    return float(np.abs(prediction.site_energies).sum())


@levels
@species_counts
@kinds
def test_rotation_invariance(level, n_species, kind):
    mtp, theta = _potential(level, n_species)
    config = _configuration(kind, n_species)
    rotation = _random_rotation(level * 10 + n_species)
    before = mtp.evaluate(config, theta)
    rotated = _with(config, positions=config.positions @ rotation.T,
                    cell=None if config.cell is None else config.cell @ rotation.T)
    after = mtp.evaluate(rotated, theta)
    assert abs(after.energy - before.energy) < RTOL_SYMMETRY * _energy_scale(before)
    assert _relative(after.forces, before.forces @ rotation.T) < RTOL_SYMMETRY
    assert _relative(after.plus_stress, rotation @ before.plus_stress @ rotation.T) < RTOL_SYMMETRY


@levels
@species_counts
@kinds
def test_translation_invariance(level, n_species, kind):
    mtp, theta = _potential(level, n_species)
    config = _configuration(kind, n_species)
    before = mtp.evaluate(config, theta)
    # large enough to move atoms out of the cell they were generated in
    after = mtp.evaluate(_with(config, positions=config.positions + np.array([1.7, -2.9, 4.3])), theta)
    assert abs(after.energy - before.energy) < RTOL_SYMMETRY * _energy_scale(before)
    assert _relative(after.forces, before.forces) < RTOL_SYMMETRY
    assert _relative(after.plus_stress, before.plus_stress) < RTOL_SYMMETRY


@levels
@species_counts
@kinds
def test_permutation_invariance(level, n_species, kind):
    mtp, theta = _potential(level, n_species)
    config = _configuration(kind, n_species)
    rng = np.random.default_rng(level + n_species)
    order = np.arange(config.n_atoms)
    while np.any(order == np.arange(config.n_atoms)):   # a derangement: every atom moves
        order = rng.permutation(config.n_atoms)
    before = mtp.evaluate(config, theta)
    after = mtp.evaluate(_with(config, positions=config.positions[order], species=config.species[order]), theta)
    assert abs(after.energy - before.energy) < RTOL_SYMMETRY * _energy_scale(before)
    assert _relative(after.site_energies, before.site_energies[order]) < RTOL_SYMMETRY
    assert _relative(after.forces, before.forces[order]) < RTOL_SYMMETRY
    assert _relative(after.plus_stress, before.plus_stress) < RTOL_SYMMETRY


@species_counts
def test_non_periodic_cell_vector_is_ignored(n_species):
    """The slab's third cell row has pbc False: changing it must not change anything, while
    making it periodic must (so the check is not vacuous)."""
    mtp, theta = _potential(10, n_species)
    config = _configuration("slab", n_species)
    before = mtp.evaluate(config, theta)
    cell = config.cell.copy()
    cell[2] = [1.0, -0.5, 3.0]
    after = mtp.evaluate(_with(config, cell=cell), theta)
    assert after.energy == pytest.approx(before.energy, rel=1e-12)
    np.testing.assert_allclose(after.forces, before.forces, rtol=0, atol=1e-12 * np.abs(before.forces).max())
    periodic = mtpfit.Configuration(config.positions, config.species, config.cell, (True, True, True))
    assert abs(mtp.evaluate(periodic, theta).energy - before.energy) > 1e-6
