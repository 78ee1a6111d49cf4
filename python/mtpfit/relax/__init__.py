"""Relaxation with an MTP and fine-tuning through unrolled relaxations (backpropagation through time)."""
from .displacement import atomic_mass, displacement_rmsd
from .dynamics import FIRE, GradientDescent
from .relaxation import Relaxation, relax, unrolled_relaxation

__all__ = ["FIRE", "GradientDescent", "Relaxation", "atomic_mass", "displacement_rmsd", "relax",
           "unrolled_relaxation"]
