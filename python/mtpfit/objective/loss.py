"""Loss settings: how residuals of energies, forces and stresses are weighted."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.configuration import Configuration

__all__ = ["Loss", "ResidualWeights"]

_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
# w_E, w_F, w_S when not given: MLIP-2's defaults, and 1 for the weights stored in a file.
_MLIP_MULTIPLIERS = (1.0, 0.01, 0.001)
_FILE_MULTIPLIERS = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ResidualWeights:
    """Weights of one configuration's squared residuals; zero where a label is missing."""

    energy: float            #: weight of (E − E*)², 1/eV²
    forces: np.ndarray       #: (N, 3), weights of (F − F*)² per component
    stress: np.ndarray       #: (3, 3), weights of (S − S*)² per PlusStress entry


@dataclass(frozen=True)
class Loss:
    """The training loss  L(θ) = s Σ_k [ a_k ΔE_k² + Σ_i b_ki·ΔF_ki² + Σ c_k ΔS_k² ] + λ·P(θ),
    s = 1/K with ``average`` (the default), else 1.

    Parameters
    ----------
    kind : {"mlip", "plain", "file"}
        ``"mlip"``: the reference trainer's default "vibrations" weighting (MTP_SPEC §7):
        a = w_E/N_k, b = w_F, c = w_S/N_k on every entry of the 3×3 PlusStress (Frobenius norm).
        ``"plain"``: the optimizer study's plain sums a = w_E, b = w_F, c = w_S.
        ``"file"``: the per-residual weights a configuration carries (the study JSON's
        ``weights``, :func:`~mtpfit.io.read_study_json`), each multiplied by w_E, w_F, w_S —
        which are 1 unless given, so that the stored weights are used as they are:
        a = w_E·e_k, b_kia = w_F·f_kia, and the six Voigt stress weights v_k (xx yy zz yz xz xy)
        give Σ_v w_S·v_kv·Δs_kv² (see Notes).
    energy, forces, stress : float, optional
        w_E, w_F, w_S. ``None`` (the default) means 1, 0.01, 0.001 (MLIP-2's, stress in eV) for
        ``"mlip"`` and ``"plain"`` and 1, 1, 1 for ``"file"``; after construction the attributes
        hold these numbers.
    average : bool
        Divide the sum over configurations by their number K (the reference trainer does). This
        applies to every kind, ``"file"`` included: the study JSON's weights are MLIP-2's default
        loss *without* the 1/K average, so ``Loss(kind="file")`` (average on) is MLIP-2's default
        loss on the Ag–Pd set, and ``Loss(kind="file", average=False, penalty=False)`` the
        study's summed loss Σ_k Σ w r².
    penalty : bool
        Add the reference trainer's radial orthonormality penalty, 1e-9·P(θ) per configuration
        (MTP_SPEC §6), i.e. λ = 1e-9·K, or 1e-9 with ``average``.
    force_fraction : float
        Partial force supervision (Harari et al. 2026): only a seeded fraction s of the configurations keeps
        its force labels (chosen once, by :meth:`force_labelled`); the force weights are scaled by
        (all force components)/(kept components), so the force term is normalised over the labelled
        components only. s = 0 trains on energies (and stresses) alone.
    force_seed : int
        Seed of that choice.

    Notes
    -----
    A configuration without an energy, forces or stress label contributes no such term; a
    force mask removes the unlabelled atoms' force terms.

    The core sums the stress term over all nine entries of the 3×3 PlusStress residual,
    Σ_ab c_ab ΔS_ab². For ``"file"`` a Voigt weight v of an off-diagonal component (a, b) is
    therefore put half on (a, b) and half on (b, a): the nine-entry sum equals
    Σ_v v_v Δs_v² over the six Voigt residuals exactly (the residual is symmetric), so every
    stored weight multiplies its residual once. On the study's Ag–Pd weights (0.001/N diagonal,
    2·0.001/N off-diagonal) this gives 0.001/N on every one of the nine entries, MLIP-2's
    w_S ‖ΔS‖²_F / N.
    """

    kind: str = "mlip"
    energy: float | None = None
    forces: float | None = None
    stress: float | None = None
    average: bool = True
    penalty: bool = True
    force_fraction: float = 1.0
    force_seed: int = 0

    def __post_init__(self):
        if self.kind not in ("mlip", "plain", "file"):
            raise ValueError(f"unknown loss kind {self.kind!r}; use 'mlip', 'plain' or 'file'")
        if not 0.0 <= self.force_fraction <= 1.0:
            raise ValueError(f"force_fraction must be in [0, 1], got {self.force_fraction}")
        defaults = _FILE_MULTIPLIERS if self.kind == "file" else _MLIP_MULTIPLIERS
        for name, default in zip(("energy", "forces", "stress"), defaults):
            value = getattr(self, name)
            if value is None:
                value = default
                object.__setattr__(self, name, value)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"loss weight {name} must be finite and non-negative, got {value}")

    @classmethod
    def study(cls, energy: float = 1.0, forces: float = 0.01) -> "Loss":
        """The optimizer study's loss w_E Σ ΔE² + w_F Σ |ΔF|², no penalty."""
        return cls(kind="plain", energy=energy, forces=forces, stress=0.0, average=False, penalty=False)

    def weights(self, config: Configuration, n_configurations: int) -> ResidualWeights:
        """The residual weights of ``config`` in a set of ``n_configurations``, as the core uses them
        (the 1/K of ``average`` included; partial force supervision is applied afterwards, by
        :func:`~mtpfit.objective.training_set.residual_weights`).

        Returns
        -------
        ResidualWeights
            For ``kind="file"``: w_E·e, w_F·f (N, 3) and the 3×3 stress weights built from the six Voigt
            weights, a diagonal one on its entry and an off-diagonal one halved onto (a, b) and (b, a)
            (class Notes), times w_S.

        Raises
        ------
        ValueError
            For ``kind="file"`` when the configuration carries no weights.
        """
        n = config.n_atoms
        scale = 1.0 / n_configurations if self.average else 1.0
        if self.kind == "file":
            if config.weights is None:
                raise ValueError(f"{config.source}: the 'file' loss needs per-residual weights in the data")
            e = self.energy * config.weights["energy"]
            f = self.forces * config.weights["forces"]
            s = np.zeros((3, 3))
            for w, (a, b) in zip(config.weights["stress"], _VOIGT):
                # a Voigt residual is one off-diagonal pair of the symmetric matrix: split its weight
                s[a, b] += w / (1 if a == b else 2)
                if a != b:
                    s[b, a] += w / 2
            s = self.stress * s
        else:
            per_atom = 1.0 / n if self.kind == "mlip" else 1.0
            e = self.energy * per_atom
            f = np.full((n, 3), self.forces)
            s = np.full((3, 3), self.stress * per_atom)
        f = f * config.labelled_forces[:, None]
        return ResidualWeights(
            energy=scale * e if config.energy is not None else 0.0,
            forces=scale * f,
            stress=scale * s if config.plus_stress is not None else np.zeros((3, 3)))

    def force_labelled(self, n_configurations: int) -> np.ndarray:
        """Boolean mask (K,) of the configurations that keep their force labels: round(s·K) of them, drawn
        without replacement with ``numpy.random.default_rng(force_seed)``."""
        keep = np.zeros(n_configurations, bool)
        count = int(round(self.force_fraction * n_configurations))
        keep[np.random.default_rng(self.force_seed).permutation(n_configurations)[:count]] = True
        return keep

    def penalty_coefficient(self, n_configurations: int) -> float:
        """λ of the orthonormality penalty term λ·P(θ)."""
        if not self.penalty:
            return 0.0
        return 1e-9 if self.average else 1e-9 * n_configurations
