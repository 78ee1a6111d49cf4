"""The scipy bridge: loss and gradient of a potential (an MTP or an ETN) over a dataset as functions of θ."""
from __future__ import annotations

import numpy as np
import scipy.linalg

from ..data.dataset import Dataset
from ..parallel import SerialCommunicator, balanced_shards, configuration_costs
from .loss import Loss
from .training_set import build_training_set

__all__ = ["Objective", "Predictions"]


class Predictions:
    """Predicted energies (K,) eV, forces (n_atoms, 3) eV/Å and PlusStress (K, 3, 3) eV of a dataset,
    with the forces split per configuration by :meth:`forces_of`."""

    def __init__(self, energies, forces, stresses, atom_counts):
        self.energies = energies
        self.forces = forces
        self.stresses = stresses
        self.offsets = np.concatenate([[0], np.cumsum(atom_counts)])

    def forces_of(self, k: int) -> np.ndarray:
        """Forces of configuration k, shape (N_k, 3)."""
        return self.forces[self.offsets[k]:self.offsets[k + 1]]


class Objective:
    """Loss L(θ) of a potential (an MTP or an ETN) on a dataset, for :func:`scipy.optimize.minimize` and the
    optimizers.

    The seed study's ``MlipWrapper``: ``fun(x)`` and ``jac(x)`` share one C++ pass per point
    (the pass at the last x is cached), so
    ``minimize(obj.fun, x0, jac=obj.jac, method="BFGS")`` costs one loss+gradient pass per point.
    The neighbour geometry is built once, in the constructor.

    Mini-batches: ``fun_and_jac(x, batch=indices)`` evaluates the data term over those configurations only,
    scaled by K/B so that it estimates the full loss without bias (the penalty term is not scaled).

    Overflow: at a finite x where the loss overflows (θ near 1e308, say), ``fun`` is +inf, never NaN, and the
    gradient there is not meaningful. +inf is what a line search steps back from: scipy's strong-Wolfe search
    (the BFGS trainers') bisects back from it, whereas a NaN compares as neither worse nor better and was
    accepted as a step (α = 1024 with L = NaN; ``tests/test_boundaries.py``). The trainers refuse a non-finite
    loss at their start and at an accepted step (``FloatingPointError``), the mini-batch loop at every step;
    Levenberg–Marquardt and Gauss–Newton reject non-finite trial points through :meth:`residuals`. A
    non-finite x is refused (``ValueError``).

    The model protocol. The potential is used only through what :class:`~mtpfit.potential.MTP` and
    :class:`~mtpfit.potential.etn.ETN` both provide: ``core`` (the compiled model the core's passes take),
    ``max_dist``, ``min_dist``, ``species``, ``species_count``, ``types_of(config)``, ``structure(config)``,
    ``theta``, ``n_params``, ``blocks``, ``penalty(θ)``, ``penalty_residuals(θ)``, ``copy(θ)``, and
    ``linear_in_coefficients`` (whether :meth:`linear_system` applies).

    Parameters
    ----------
    model : MTP or ETN
        Supplies the compiled model, species and cutoff; its θ is not changed. Also available as
        :attr:`mtp`, the name older code uses.
    dataset : Dataset
    loss : Loss, optional
        Default: MLIP-2's weighting (1, 0.01, 0.001), averaged, with penalty.
    n_threads : int, optional
        OpenMP threads; default all. The same θ and thread count give bit-identical results.
    comm : communicator, optional
        :func:`mtpfit.parallel.world` (MPI) or the serial stand-in (default). With several ranks each loads only
        its shard of the configurations (:func:`~mtpfit.parallel.balanced_shards`, balanced by atoms ×
        neighbours) with the weights they have in the whole dataset; every evaluation sums the shards' loss and
        gradient with one all-reduce of a single buffer, so every rank sees the same numbers and runs the same
        deterministic optimizer. Predictions and residuals are gathered in dataset order.

    Attributes
    ----------
    n_evaluations : int
        Loss+gradient evaluations made (full or mini-batch).
    configurations_evaluated : int
        Configurations those evaluations covered; divided by K it gives the equivalent number of full passes.
    n_fun, n_jac : int
        Calls of :meth:`fun` and :meth:`jac` (``fun_and_jac`` counts as both).
    n_linear_systems : int
        Passes of :meth:`linear_system`.

    Raises
    ------
    ValueError
        Unknown species, overlapping atoms or a geometry the neighbour list refuses (naming the configuration),
        an empty dataset.
    """

    def __init__(self, model, dataset: Dataset, loss: Loss | None = None, n_threads: int | None = None,
                 comm=None):
        self.model = model
        self.dataset = dataset
        self.loss = loss or Loss()
        self.n_threads = n_threads or 0
        self.comm = comm if comm is not None else SerialCommunicator()
        self.shards = (balanced_shards(configuration_costs(dataset, model.max_dist), self.comm.size)
                       if self.comm.size > 1 else [np.arange(len(dataset))])
        self.shard = self.shards[self.comm.rank]
        self.training_set = build_training_set(model, dataset, self.loss, self.shard)
        self._atoms = np.array([c.n_atoms for c in dataset], dtype=np.int64)
        self._local = np.full(len(dataset), -1, dtype=np.int64)
        self._local[self.shard] = np.arange(len(self.shard))
        self.penalty_coefficient = self.loss.penalty_coefficient(len(dataset))
        self.n_evaluations = self.n_fun = self.n_jac = self.configurations_evaluated = 0
        self.n_gauss_newton = self.n_residual_passes = self.n_linear_systems = 0
        self._key = None
        self._value = None
        self._hessp_base = None

    @property
    def mtp(self):
        """The potential (:attr:`model`), by the name of the code written before the ETN."""
        return self.model

    @property
    def x0(self) -> np.ndarray:
        """The potential's current θ (a copy)."""
        return self.model.theta.copy()

    @property
    def n_params(self) -> int:
        return self.model.n_params

    @property
    def passes(self) -> float:
        """Equivalent full loss+gradient passes: configurations evaluated / K."""
        return self.configurations_evaluated / len(self.dataset)

    def _checked_batch(self, batch) -> np.ndarray:
        """``batch`` as int32 configuration indices, refusing what is not a non-empty 1-D array of integers in
        [0, K) (a negative index would silently take configurations from the end)."""
        array = np.asarray(batch)
        if array.ndim != 1 or len(array) == 0 or array.dtype.kind not in "iu":
            raise ValueError(f"a mini-batch is a non-empty 1-D array of integer configuration indices, got {batch!r}")
        K = len(self.dataset)
        outside = (array < 0) | (array >= K)
        if outside.any():
            raise IndexError(f"mini-batch index {array[outside][0]} is outside the {K} configurations of "
                             f"{self.dataset.name} (valid: 0 … {K - 1})")
        return array.astype(np.int32)

    def _evaluate(self, x, batch=None) -> tuple[float, np.ndarray]:
        x = np.asarray(x, dtype=float)
        if batch is not None:
            batch = self._checked_batch(batch)
        key = self._key
        if key is None or not np.array_equal(x, key[0]) or not (
                (batch is None and key[1] is None) or (batch is not None and key[1] is not None
                                                      and np.array_equal(batch, key[1]))):
            local = None if batch is None else self._local[batch]
            local = None if local is None else local[local >= 0].astype(np.int32)
            if local is not None and len(local) == 0:  # no configuration of this mini-batch is in this shard
                loss, grad, per_config = 0.0, np.zeros(self.n_params), np.zeros(0)
            else:
                loss, grad, per_config = self.training_set.loss_and_gradient(self.model.core, x,
                                                                             self.n_threads, local)
            summed = self.comm.allreduce(np.concatenate([[loss], grad]))
            loss, grad = summed[0], summed[1:]
            if batch is not None:
                scale = len(self.dataset) / len(batch)
                loss, grad = loss * scale, grad * scale
            if self.penalty_coefficient:
                with np.errstate(over="ignore", invalid="ignore"):    # an overflow is reported as L = +inf
                    p, dp = self.model.penalty(x)
                    loss += self.penalty_coefficient * p
                    grad += self.penalty_coefficient * dp
            self._key = (x.copy(), None if batch is None else batch.copy())
            # a sum of squares that overflows is +inf, never NaN (inf − inf, 0·inf inside the core): line
            # searches and trust regions then reject the point instead of comparing NaN as neither worse nor better
            self._value = (float(loss) if np.isfinite(loss) else np.inf, grad, per_config)
            self.n_evaluations += 1
            self.configurations_evaluated += len(self.dataset) if batch is None else len(batch)
        return self._value[0], self._value[1]

    def fun(self, x) -> float:
        """L(x); +inf where it overflows (see the class notes).

        Raises
        ------
        ValueError
            If x is not finite.
        """
        self.n_fun += 1
        return self._evaluate(x)[0]

    def jac(self, x) -> np.ndarray:
        """∂L/∂θ at x, shape (n_params,) (a copy; the cache keeps its own)."""
        self.n_jac += 1
        return self._evaluate(x)[1].copy()

    def fun_and_jac(self, x, batch=None) -> tuple[float, np.ndarray]:
        """(L(x), ∂L/∂θ(x)) from one pass, for ``minimize(..., jac=True)``; over a mini-batch of
        configuration indices when ``batch`` is given (see the class notes).

        Raises
        ------
        ValueError
            If x is not finite, or ``batch`` is not a non-empty 1-D array of integers.
        IndexError
            If an index of ``batch`` is outside 0 … K − 1 (negative ones included), naming the valid range.
        """
        self.n_fun += 1
        self.n_jac += 1
        value, grad = self._evaluate(x, batch)
        return value, grad.copy()

    def hessp(self, x, p) -> np.ndarray:
        """Hessian–vector product ∇²L(x)·p by a forward difference of the analytic gradient,
        (∇L(x + εp) − ∇L(x))/ε with ε = √(machine ε)·(1 + ‖x‖)/‖p‖ (Nocedal & Wright 2006, §8.1).

        One extra loss+gradient pass per call (∇L(x) is kept between calls at the same x). The truncation
        error is O(ε‖p‖²·‖∇³L‖), a relative error near 1e-8 for well-scaled problems; scipy's Newton-CG and
        trust-krylov need only an approximate product.
        """
        x = np.asarray(x, dtype=float)
        p = np.asarray(p, dtype=float)
        norm = float(np.linalg.norm(p))
        if norm == 0.0:
            return np.zeros_like(x)
        if self._hessp_base is None or not np.array_equal(self._hessp_base[0], x):
            self._hessp_base = (x.copy(), self._evaluate(x)[1].copy())
        eps = np.sqrt(np.finfo(float).eps) * (1.0 + np.linalg.norm(x)) / norm
        return (self._evaluate(x + eps * p)[1] - self._hessp_base[1]) / eps

    def gauss_newton(self, x, sketch: int = 0, seed: int = 0) -> tuple[float, np.ndarray, np.ndarray]:
        """The loss as a weighted sum of squares L = Σ w r² (+ κ Σ ρ² of the penalty) and its Gauss–Newton
        quantities, accumulated in the core without storing the Jacobian J = dr/dθ.

        Cost: one reverse pass per weighted residual (energy, force components, PlusStress components) of every
        configuration, i.e. about (3N + 10) loss+gradient passes for N-atom configurations. With ``sketch`` = k > 0,
        JᵀWJ is replaced by the unbiased random sketch Σ_t (JᵀW^½ξ_t)(JᵀW^½ξ_t)ᵀ over k Rademacher vectors ξ_t/√k
        per configuration, drawn from ``seed`` (Pilanci & Wainwright 2017, "Newton sketch"): k + 1 reverse passes
        per configuration; the loss and JᵀWr stay exact.

        Returns
        -------
        loss : float
            L(x), equal to :meth:`fun` (over the whole training set).
        JtWJ : ndarray, shape (n_params, n_params)
            JᵀWJ; ∇²L ≈ 2 JᵀWJ (the Gauss–Newton matrix; the Fisher information of the Gaussian noise model
            with variances 1/(2w), Transtrum et al. 2011).
        JtWr : ndarray, shape (n_params,)
            JᵀWr = ∇L / 2.
        """
        x = np.asarray(x, dtype=float)
        loss, H, g = self.training_set.gauss_newton(self.model.core, x, self.n_threads, int(sketch), int(seed))
        n = self.n_params
        summed = self.comm.allreduce(np.concatenate([[loss], H.ravel(), g]))
        loss, H, g = summed[0], summed[1:1 + n * n].reshape(n, n), summed[1 + n * n:]
        if self.penalty_coefficient:
            rho, J = self.model.penalty_residuals(x)
            loss += self.penalty_coefficient * float(rho @ rho)
            H += self.penalty_coefficient * (J.T @ J)
            g += self.penalty_coefficient * (J.T @ rho)
        self.n_gauss_newton += 1
        return float(loss), H, g

    def linear_system(self, x) -> np.ndarray:
        """The weighted linear least-squares system of the species and moment coefficients at x's radial block.

        With the radial coefficients fixed, every prediction is linear in θ_lin = (ξ, c): prediction = A θ_lin
        (MTP_SPEC §5). The core accumulates, in one pass over the training set and without storing A, the R factor
        of W^½ [A | y] (y the labels, W the loss's residual weights; rows of zero weight left out) by blocked
        Householder QR updates (sequential TSQR: Demmel et al., SIAM J. Sci. Comput. 34, A206 (2012)): RᵀR =
        [A | y]ᵀ W [A | y], and R₁₁ has the singular values of W^½A. The data part of the loss at any θ with this
        radial block is ‖R₁₁ θ_lin − R₁ₙ‖² + R_nn². Under MPI each rank factors its shard and the ranks' factors
        are stacked and factored again.

        Cost: per atom one forward pass and a forward-mode pass — along its neighbours' displacements, or, where
        fewer (small periodic cells, whose neighbourhoods hold several images of one atom), along the displacements
        of the distinct atoms among them and six strains: the basic moments' tangents, then one multiply-add per
        tangent direction for each derivative of a basis function by a basic moment it depends on (these sparse
        derivatives come from the moment products once per atom) — plus QR updates of about 2.7 (S + M + 1)² flops
        per weighted residual: about 1.2–1.6 loss+gradient passes at level 16 and 2.3–3 at level 20
        (benchmarks/RESULTS.md §7). Memory: a few (S + M + 1)² per block of configurations,
        whatever the number of residuals. Bit-identical for any thread count; under MPI it agrees with one
        process to round-off.

        Parameters
        ----------
        x : ndarray, shape (n_params,)
            Only the radial block matters.

        Returns
        -------
        ndarray, shape (S + M + 1, S + M + 1)
            Upper triangular; columns: the S species coefficients, the M moment coefficients, the labels.

        Raises
        ------
        TypeError
            For a model that is not linear in its coefficients at fixed radial ones (an ETN: multilinear in its
            cores, see :func:`mtpfit.optim.als.als` for its block-wise linear solves).
        """
        if not self.model.linear_in_coefficients:
            raise TypeError(f"linear_system: variable projection and the exact linear re-solve need a model linear "
                            f"in its coefficients at fixed radial ones (an MTP); {type(self.model).__name__} is not")
        x = np.asarray(x, dtype=float)
        R = self.training_set.linear_system(self.model.core, x, self.n_threads)
        if self.comm.size > 1:
            R = scipy.linalg.qr(np.vstack(self.comm.allgather(R)), mode="r", check_finite=False)[0]
            R = self.comm.bcast(R[:R.shape[1]])
        self.n_linear_systems += 1
        return R

    def residuals(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Every weighted residual at x and its weight, so that L = Σ w r² (penalty residuals last, weight κ).

        One energy+forces pass. Order: per configuration its energy, its 3N force components (atom-major), its
        9 PlusStress components.

        Returns
        -------
        r, w : ndarray, shape (n_residuals,)
            Residuals (eV, eV/Å, eV) and weights.
        """
        x = np.asarray(x, dtype=float)
        r, w = self.training_set.residuals(self.model.core, x, self.n_threads)
        sizes = self._residual_counts()
        r, w = self._gather(r, sizes), self._gather(w, sizes)
        self.n_residual_passes += 1
        if self.penalty_coefficient:
            rho = self.model.penalty_residuals(x)[0]
            r = np.concatenate([r, rho])
            w = np.concatenate([w, np.full(len(rho), self.penalty_coefficient)])
        return r, w

    def residual_vjp(self, x, c) -> np.ndarray:
        """Jᵀc for a cotangent c over :meth:`residuals` (same length and order), one reverse pass.

        Returns
        -------
        ndarray, shape (n_params,)
        """
        x = np.asarray(x, dtype=float)
        c = np.asarray(c, dtype=float)
        sizes = self._residual_counts()
        n_core = int(sizes.sum())
        if self.comm.size == 1:
            local = c[:n_core]
        else:
            offsets = np.concatenate([[0], np.cumsum(sizes)])
            local = np.concatenate([c[offsets[k]:offsets[k + 1]] for k in self.shard]) if len(self.shard) else c[:0]
        out = self.comm.allreduce(self.training_set.residual_vjp(self.model.core, x, local, self.n_threads))
        if self.penalty_coefficient:
            out += self.model.penalty_residuals(x)[1].T @ c[n_core:]
        return out

    def per_configuration(self, x) -> np.ndarray:
        """Each configuration's weighted loss term at x, shape (K,)."""
        self._evaluate(x)
        values = np.zeros(len(self.dataset))
        values[self.shard] = self._value[2]
        return self.comm.allreduce(values) if self.comm.size > 1 else values

    def predict(self, x=None) -> Predictions:
        """Energies, forces and PlusStress of every configuration at x (default: the potential's θ).

        Raises
        ------
        FloatingPointError
            If a prediction is not finite, naming the first such configuration.
        """
        x = self.model.theta if x is None else np.asarray(x, dtype=float)
        e, f, s = self.training_set.predict(self.model.core, x, self.n_threads)
        ones = np.ones(len(self.dataset), dtype=np.int64)
        out = Predictions(self._gather(e, ones), self._gather(f.reshape(-1, 3), self._atoms),
                          self._gather(s.reshape(-1, 3, 3), ones), self._atoms)
        finite = (np.isfinite(out.energies) & np.isfinite(out.stresses).all(axis=(1, 2))
                  & np.logical_and.reduceat(np.isfinite(out.forces).all(axis=1), out.offsets[:-1]))
        if not finite.all():
            k = int(np.argmin(finite))
            raise FloatingPointError(f"{self.dataset[k].source}: the prediction is not finite (energy "
                                     f"{out.energies[k]}); the potential's coefficients or scaling overflow")
        return out

    def energy_gradients(self, x=None) -> np.ndarray:
        """dE_k/dθ for every configuration, shape (K, n_params)."""
        x = self.model.theta if x is None else np.asarray(x, dtype=float)
        local = self.training_set.energy_gradients(self.model.core, x, self.n_threads)
        return self._gather(local, np.ones(len(self.dataset), dtype=np.int64))

    def _residual_counts(self) -> np.ndarray:
        """Residuals per configuration (energy, 3N force components, 9 PlusStress components)."""
        return 10 + 3 * self._atoms

    def _gather(self, local: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """The whole-dataset array from each rank's ``local`` (its shard's blocks of ``sizes[k]`` rows, in shard
        order), in dataset order."""
        if self.comm.size == 1:
            return local
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        out = np.empty((int(offsets[-1]),) + local.shape[1:])
        for piece, shard in zip(self.comm.allgather(local), self.shards):
            position = 0
            for k in shard:
                out[offsets[k]:offsets[k + 1]] = piece[position:position + sizes[k]]
                position += sizes[k]
        return out
