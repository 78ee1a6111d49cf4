"""Active learning: the MaxVol extrapolation grade of an MTP and the active set behind it (configuration and
neighbourhood mode; Podryabinkin and Shapeev, Comput. Mater. Sci. 140, 171 (2017)).

:mod:`.maxvol` holds the linear algebra (maxvol, select-add), :mod:`.grade` the rows of a potential, the
:class:`ActiveSet` and its file, :mod:`.learn` the loop (train, explore with MD, select, label, retrain).
"""
from .grade import (MODES, ActiveSet, active_set_path, atom_grades, build_active_set, configuration_rows, grade,
                    independent_columns, neighbourhood_rows, potential_digest, select)
from .learn import LearningConfig, LearningResult, learn
from .maxvol import grow, maxvol

__all__ = ["ActiveSet", "active_set_path", "build_active_set", "configuration_rows", "grade", "potential_digest",
           "select", "grow", "maxvol", "independent_columns", "neighbourhood_rows", "atom_grades", "MODES",
           "LearningConfig", "LearningResult", "learn"]
