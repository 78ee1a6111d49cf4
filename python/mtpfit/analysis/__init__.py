"""Loss-landscape analysis: Fisher information and Hessian spectra."""
from .design import fisher_design, pareto_front, prune_basis_functions
from .fisher import FisherAnalysis, analyse_fisher
from .hessian import HessianSpectrum, hessian_spectrum
from .landscape import fisher_study, hessian_study

__all__ = ["FisherAnalysis", "analyse_fisher", "HessianSpectrum", "hessian_spectrum", "fisher_study",
           "hessian_study", "fisher_design", "pareto_front", "prune_basis_functions"]
