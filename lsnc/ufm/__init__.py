"""The unconstrained feature model (UFM) with label smoothing: claim C6 of the paper.

- :mod:`.problem`: the UFM as a torch function, its closed-form global minimizer (derived in that module's
  docstring), an explicit minimizer and the distances to the minimizer set;
- :mod:`.hessian`: the Hessian at the minimizer and its candidate condition numbers, dense for small problems
  and from its exact block structure at any size (CIFAR-10's K = 10, n = 5000, d = 512 included; the
  class-mean block by the symmetry under permutations of the classes, :mod:`.class_means`);
- :mod:`.descent`: gradient descent, and the CE-vs-LS convergence comparison from the same start.

Everything is float64. The names below are the public API: ``from lsnc import ufm; ufm.closed_form(...)``.
"""

from .descent import (ConvergenceComparison, GDTrajectory, compare_convergence, gradient_descent, ls_against_ce,
                      minimize_lbfgs, random_start, spectrum_against_baseline)
from .hessian import (BLOCK_SPECTRUM_KEYS, BLOCKS, SPECTRUM_KEYS, BlockSpectrum, HessianSpectrum,
                      block_numbers_vs_delta, block_spectrum, condition_numbers_vs_delta, expected_symmetry_dimension,
                      full_hessian, hessian_spectrum, softmax_hessian, symmetry_tangent_basis)
from .problem import (DTYPE, UFMProblem, UFMSolution, closed_form, closed_form_vs_delta, logit_distance,
                      optimal_point, parameter_distance, random_orthonormal_columns, simplex_etf, single_thread,
                      smoothed_ce_of_gap, true_class_target)

__all__ = [
    "BLOCK_SPECTRUM_KEYS", "BLOCKS", "BlockSpectrum", "ConvergenceComparison", "DTYPE", "GDTrajectory",
    "HessianSpectrum",
    "SPECTRUM_KEYS", "UFMProblem", "UFMSolution", "block_numbers_vs_delta", "block_spectrum", "closed_form",
    "closed_form_vs_delta", "compare_convergence", "condition_numbers_vs_delta", "expected_symmetry_dimension",
    "full_hessian", "gradient_descent", "hessian_spectrum", "logit_distance", "ls_against_ce", "minimize_lbfgs",
    "optimal_point", "parameter_distance", "random_orthonormal_columns", "random_start", "simplex_etf",
    "single_thread", "smoothed_ce_of_gap", "softmax_hessian", "spectrum_against_baseline", "symmetry_tangent_basis",
    "true_class_target",
]
