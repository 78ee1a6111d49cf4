"""Relaxation with an MTP and fine-tuning through unrolled relaxations (backpropagation through time)."""
from .displacement import atomic_mass, displacement_rmsd
from .dynamics import FIRE, GradientDescent
from .finetune import RelaxationObjective, finetune_relax
from .minima import RelaxationPair, dft_minima, displaced_starts
from .relaxation import Relaxation, relax, unrolled_relaxation
from .study import PAPER_REDUCTION, finetune_relax_study

__all__ = ["FIRE", "GradientDescent", "PAPER_REDUCTION", "Relaxation", "RelaxationObjective", "RelaxationPair",
           "atomic_mass", "dft_minima", "displaced_starts", "displacement_rmsd", "finetune_relax",
           "finetune_relax_study", "relax", "unrolled_relaxation"]
