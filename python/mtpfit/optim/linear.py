"""Exact least-squares re-solve of the coefficients an MTP's predictions are linear in, and the reduced loss.

With the radial coefficients fixed, the site energy V_i = ξ_{t_i} + Σ_α c_α B_α(i) is linear in the species
coefficients ξ and the moment coefficients c, and so are the energy, the forces and the PlusStress (MTP_SPEC §5).
The training loss is then a weighted linear least-squares problem in (ξ, c); MLIP-2 solves it exactly at intervals
during training (Novikov et al., Mach. Learn.: Sci. Technol. 2, 025002 (2021)), and minimising over (ξ, c) at every
evaluation leaves the reduced loss of the radial coefficients alone, the variable projection of Golub & Pereyra
(SIAM J. Numer. Anal. 10, 413 (1973)).

The core accumulates the system in one pass over the training set without storing its design matrix
(:meth:`mtpfit.Objective.linear_system`): the R factor of the √w-scaled design with the labels as a last column.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from ..objective.blas import single_threaded_blas
from ..objective.objective import Objective

__all__ = ["LinearSolution", "ReducedLoss", "linear_resolve", "radial_gauge", "radial_scale", "solve_linear",
           "require_linear_model"]


def require_linear_model(objective: Objective, trainer: str) -> None:
    """Refuse a model whose predictions are not linear in one coefficient block at fixed radial coefficients.

    Raises
    ------
    TypeError
        For such a model (an :class:`~mtpfit.potential.etn.ETN`, multilinear in its cores), naming ``trainer``
        and what to use instead.
    """
    if not objective.model.linear_in_coefficients:
        raise TypeError(f"{trainer} needs a model linear in its coefficients at fixed radial ones (an MTP: variable "
                        f"projection, the exact linear re-solve); {type(objective.model).__name__} is multilinear in "
                        "its cores: train it with 'als' (one exact linear solve per core), LM, GN, scipy's methods "
                        "or the mini-batch optimizers, from the 'species' start")


def _linear_slice(objective: Objective) -> slice:
    blocks = objective.mtp.blocks
    species, moment = blocks["species"], blocks["moment"]
    if species.stop != moment.start:
        raise ValueError("the species and moment blocks of θ are expected to be adjacent")
    return slice(species.start, moment.stop)


def radial_scale(mtp, x) -> float:
    """σ: the RMS over the radial functions μ of the norm of their coefficients (all species pairs), 1 if zero.

    MLIP-2 keeps its radial functions at unit norm (their size is in the basis' ``scaling``); dividing the radial
    block by σ does the same. Every basis function is homogeneous in the radial coefficients, so after a re-solve
    of the linear coefficients the model does not depend on σ (the orthonormality penalty aside), but the size of
    the re-solved moment coefficients and the conditioning of an optimizer's variables do.
    """
    radial = np.asarray(x, dtype=float)[mtp.blocks["radial"]]
    sigma = float(np.sqrt(np.sum(radial ** 2) / mtp.basis.radial_funcs_count))
    return sigma if sigma > 0 and np.isfinite(sigma) else 1.0


class LinearSolution:
    """The solution of the linear least-squares problem of one R factor.

    Attributes
    ----------
    coefficients : ndarray, shape (S + M,)
        ξ then c.
    data_loss : float
        Σ_r w_r (prediction_r − label_r)² at ``coefficients`` (the data part of the loss; the radial
        orthonormality penalty and the ridge term are not in it).
    column_norms : ndarray, shape (S + M,)
        ‖√w a_j‖ of each design column a_j.
    """

    def __init__(self, coefficients, data_loss, column_norms):
        self.coefficients = coefficients
        self.data_loss = data_loss
        self.column_norms = column_norms


def _determined_species_directions(rows: np.ndarray, k: int, rcond: float) -> np.ndarray:
    """Orthonormal basis, shape (k, r), of the directions of the k leading (species) columns the data determine.

    ``rows`` are the first S rows of the column-equilibrated system (S species). The species columns are the
    first columns of the factorisation, so these rows of them are the R factor of the species columns alone, and its SVD separates the combinations of ξ that no composition in the
    data fixes to working precision. Solving only along the determined ones makes the undetermined ξ
    combinations keep their values exactly; left to the SVD of the whole system, they would move by round-off
    times the condition number of the rest of it.
    """
    if k < 2:
        return np.eye(k)
    _, s, vt = np.linalg.svd(rows[:, :k])
    return vt[s > rcond * s[0]].T


def solve_linear(R: np.ndarray, current: np.ndarray, rcond: float = 1e-12, ridge: float = 0.0,
                 n_species: int = 0) -> LinearSolution:
    """Minimise ‖W^½(A x − y)‖² (+ ridge·‖x_moment‖²) from the R factor of W^½ [A | y].

    Parameters
    ----------
    R : ndarray, shape (n + 1, n + 1)
        Upper triangular, as :meth:`mtpfit.Objective.linear_system` returns it: RᵀR = [A | y]ᵀ W [A | y].
    current : ndarray, shape (n,)
        The coefficients now; the solve is for the change from them (see *Rank deficiency*).
    rcond : float
        Singular values of the column-equilibrated system below ``rcond`` times the largest are treated as zero.
    ridge : float
        λ ≥ 0 of a ridge term λ Σ_α c_α² on the moment coefficients (columns ``n_species`` … n − 1), in the
        loss's units; 0 solves the plain least-squares problem.
    n_species : int
        Number of leading columns (the species coefficients) the ridge term leaves alone.

    Returns
    -------
    LinearSolution

    Notes
    -----
    *Method.* R₁₁ has the singular values of W^½A, so solving R₁₁ x ≈ R₁ₙ by SVD (LAPACK ``gelsd``, via
    :func:`scipy.linalg.lstsq`) makes the same rank decisions as an SVD of the whole weighted design matrix, not
    those of the normal equations (which square the condition number). Columns are first scaled to unit norm
    (‖R₁₁ e_j‖ = ‖√w a_j‖) so that the rank decision does not depend on their units: MTP columns range from species
    counts ~N to products of moments orders of magnitude smaller or larger. The residual norm at the minimum is
    ‖R₁₁ x − R₁ₙ‖² + R_nn².

    *Rank deficiency.* Directions the data do not determine — the ξ of a species absent from the data, a
    combination of ξ when every configuration has the same composition, a basis function that vanishes on
    every neighbourhood — give singular values below ``rcond``. The solve is for the *change* of the
    coefficients, and ``gelsd`` returns the minimum-norm change (in the column-equilibrated units): what the data
    do not determine keeps its current value instead of jumping to zero. An absent species' ξ (a zero column) is
    left exactly as it was, and so is a combination of ξ that no composition in the data fixes: the species
    columns are solved only along the directions their own R block determines.
    """
    R = np.asarray(R, dtype=float)
    n = R.shape[0] - 1
    A, z = np.triu(R[:n, :n]), R[:n, n]
    current = np.asarray(current, dtype=float)
    rhs = z - A @ current
    norms = np.linalg.norm(A, axis=0)
    active = np.flatnonzero(norms > 0)
    delta = np.zeros(n)
    if len(active):
        system, target = A[:, active] / norms[active], rhs
        if ridge:
            # rows √λ e_j for the moment columns: λ (c_j + δ_j)² with δ_j = δ'_j / norm_j
            moments = active[active >= n_species]
            rows = np.zeros((len(moments), len(active)))
            rows[np.arange(len(moments)), np.searchsorted(active, moments)] = np.sqrt(ridge) / norms[moments]
            system = np.vstack([system, rows])
            target = np.concatenate([rhs, -np.sqrt(ridge) * current[moments]])
        determined = _determined_species_directions(system[:n_species], int(np.sum(active < n_species)), rcond)
        (k, r) = determined.shape
        system = np.hstack([system[:, :k] @ determined, system[:, k:]])
        with single_threaded_blas():
            scaled, *_ = scipy.linalg.lstsq(system, target, cond=rcond, lapack_driver="gelsd")
        scaled = np.concatenate([determined @ scaled[:r], scaled[r:]])
        delta[active] = scaled / norms[active]
    x = current + delta
    data_loss = float(np.sum((A @ x - z) ** 2) + R[n, n] ** 2)
    return LinearSolution(x, data_loss, norms)


def linear_resolve(objective: Objective, x, rcond: float = 1e-12, ridge: float = 0.0) -> np.ndarray:
    """θ with the species and moment coefficients replaced by the exact weighted least-squares solution.

    Minimises Σ_r w_r (prediction_r − label_r)² over (ξ, c) with the radial coefficients of ``x`` held fixed,
    w_r the residual weights of ``objective.loss`` (zero for missing labels or masked forces). The orthonormality
    penalty depends on the radial coefficients only, so the result also minimises the full loss over (ξ, c):
    afterwards ∂L/∂ξ = ∂L/∂c = 0 up to round-off (with ``ridge`` = 0).

    Parameters
    ----------
    objective : Objective
    x : ndarray, shape (n_params,)
    rcond : float
        Rank threshold of :func:`solve_linear`.
    ridge : float
        λ of an optional ridge term λ Σ_α c_α² on the moment coefficients (loss units).

    Returns
    -------
    ndarray, shape (n_params,)
        A new θ; ``x`` is not modified.

    Notes
    -----
    Cost: one pass over the training set (:meth:`mtpfit.Objective.linear_system`, about 2 loss+gradient passes
    at level 16, 4–6 at level 20) and an SVD of an (S + M) × (S + M) matrix.
    """
    require_linear_model(objective, "the linear re-solve")
    x = np.array(x, dtype=float)
    lin = _linear_slice(objective)
    solution = solve_linear(objective.linear_system(x), x[lin], rcond, ridge, objective.mtp.basis.species_count)
    x[lin] = solution.coefficients
    return x


def radial_gauge(objective: Objective, x, R: np.ndarray | None = None) -> float:
    """The factor λ for the radial block that best balances the linear least-squares system.

    Multiplying every radial coefficient by λ multiplies the design-matrix column of a basis function of
    degree d (the number of basic moments in its product) by λᵈ and leaves the species columns (d = 0) alone;
    after a re-solve of the linear coefficients the loss is unchanged (only the orthonormality penalty, 1e-9
    per configuration, notices). λ is chosen to minimise the spread max_j log‖a_j λ^{d_j}‖ − min_j … of the
    √w-weighted column norms (a piecewise-linear convex function of log λ, minimised exactly at a crossing),
    in the spirit of MLIP-2's search of the basis' ``scaling`` by a condition number.

    Parameters
    ----------
    objective : Objective
    x : ndarray, shape (n_params,)
    R : ndarray, optional
        The linear system at ``x`` if already built (:meth:`mtpfit.Objective.linear_system`).

    Returns
    -------
    float
        λ > 0 (1 when the spread does not depend on it). Costs one linear-system pass unless ``R`` is given.
    """
    if R is None:
        R = objective.linear_system(x)
    n = R.shape[0] - 1
    norms = np.linalg.norm(np.triu(R[:n, :n]), axis=0)
    degrees = linear_degrees(objective.mtp.basis)
    used = norms > 0
    logs, degrees = np.log(norms[used]), degrees[used]
    if len(set(degrees.tolist())) < 2:
        return 1.0

    def spread(t):
        values = logs + degrees * t
        return values.max() - values.min()

    candidates = [0.0]
    for i in range(len(logs)):
        for j in range(i + 1, len(logs)):
            if degrees[i] != degrees[j]:
                candidates.append((logs[i] - logs[j]) / (degrees[j] - degrees[i]))
    candidates = np.unique(candidates)
    best = min(candidates, key=spread)
    return float(np.exp(best))


def scale_system(R: np.ndarray, degrees: np.ndarray, factor: float) -> np.ndarray:
    """The R factor after every radial coefficient is multiplied by ``factor``: column j scales by factorᵈʲ
    (the basis functions are homogeneous in the radial coefficients), the label column stays."""
    return R * np.concatenate([float(factor) ** degrees, [1.0]])[None, :]


def linear_degrees(basis) -> np.ndarray:
    """Polynomial degree in the radial coefficients of each species (0) and moment coefficient's column."""
    degree = np.zeros(basis.alpha_moments_count, dtype=int)
    degree[: len(basis.alpha_index_basic)] = 1
    for i0, i1, _, t in basis.alpha_index_times:
        degree[t] = degree[i0] + degree[i1]
    return np.concatenate([np.zeros(basis.species_count, dtype=int), degree[basis.alpha_moment_mapping]])


class ReducedLoss:
    """The variable-projection loss L̃(u) = min over (ξ, c) of L(θ(u, ξ, c)), θ's radial block = σ·u.

    Golub & Pereyra (1973): the species and moment coefficients enter the predictions linearly, so for every
    radial point they are solved exactly (:func:`solve_linear` on :meth:`mtpfit.Objective.linear_system`) and only
    the radial coefficients are left to a non-linear optimizer. By the envelope theorem (∂L/∂(ξ, c) = 0 at the
    solution) the gradient is ∇L̃(u) = σ ∂L/∂r at the re-solved θ, the exact gradient of L̃ (Golub & Pereyra's
    full derivative, not an approximation, when the minimiser is unique; with rank deficiency, on the determined
    subspace).

    :meth:`fun` costs one linear-system pass (the data loss at the minimum comes with the solve); :meth:`jac`
    adds one loss+gradient pass at the re-solved θ. A line search that rejects a trial point never pays for
    its gradient.

    Parameters
    ----------
    objective : Objective
    x : ndarray, shape (n_params,)
        Supplies the starting linear coefficients (the first re-solve is a change from them; later ones start
        from the last solution).
    sigma : float
        Scale of the radial variables: θ_radial = σ·u.
    rcond, ridge : float
        Passed to :func:`solve_linear`.

    Attributes
    ----------
    n_solves : int
        Linear systems built and solved.
    """

    def __init__(self, objective: Objective, x, sigma: float = 1.0, rcond: float = 1e-12, ridge: float = 0.0):
        self.objective = objective
        self.sigma = float(sigma)
        self.rcond, self.ridge = rcond, ridge
        self.radial = objective.mtp.blocks["radial"]
        self.linear = _linear_slice(objective)
        self._template = np.array(x, dtype=float)
        self._point = None          # (u bytes, θ, L̃)
        self.n_solves = 0

    def _solve(self, u):
        u = np.asarray(u, dtype=float)
        key = u.tobytes()
        if self._point is None or self._point[0] != key:
            theta = self._template.copy()
            theta[self.radial] = self.sigma * u
            solution = solve_linear(self.objective.linear_system(theta), theta[self.linear], self.rcond,
                                    self.ridge, self.objective.mtp.basis.species_count)
            theta[self.linear] = solution.coefficients
            value = solution.data_loss
            if self.ridge:
                value += self.ridge * float(np.sum(theta[self.objective.mtp.blocks["moment"]] ** 2))
            if self.objective.penalty_coefficient:
                value += self.objective.penalty_coefficient * self.objective.mtp.penalty(theta)[0]
            self._template = theta
            self._point = (key, theta, float(value))
            self.n_solves += 1
        return self._point

    def state(self) -> dict:
        """What the next solves depend on: the reference θ of the next re-solve and the cached last point."""
        point = self._point
        return {"reference": self._template,
                "point": None if point is None else {"u": np.frombuffer(point[0]), "theta": point[1],
                                                     "value": point[2]}}

    def restore(self, state: dict) -> None:
        """Continue from :meth:`state` (for a resumed run: the same solves as an uninterrupted one)."""
        self._template = np.array(state["reference"], dtype=float)
        point = state["point"]
        self._point = None if point is None else (np.asarray(point["u"], dtype=float).tobytes(),
                                                  np.array(point["theta"], dtype=float), float(point["value"]))

    def theta(self, u) -> np.ndarray:
        """The full θ at u: radial σ·u, species and moment coefficients re-solved (a copy)."""
        return self._solve(u)[1].copy()

    def fun(self, u) -> float:
        """L̃(u)."""
        return self._solve(u)[2]

    def jac(self, u) -> np.ndarray:
        """∇L̃(u) = σ ∂L/∂r at the re-solved θ, shape (n_radial,)."""
        # the ridge term depends on c only, so it adds nothing to ∂/∂r at the solution
        return self.sigma * self.objective.jac(self._solve(u)[1])[self.radial]
