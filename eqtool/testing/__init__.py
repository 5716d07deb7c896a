"""Shipped model checks: equivariance, invariances, batching and finite-difference derivatives."""

from eqtool.testing.checks import (
    FD_TOL,
    INVARIANCE_TOL,
    CheckResult,
    check_batch_consistency,
    check_forces_finite_difference,
    check_periodic_images,
    check_permutation_equivariance,
    check_rotation_equivariance,
    check_stress_finite_difference,
    check_translation_invariance,
    predict,
    run_all_checks,
)
from eqtool.testing.systems import example_graphs

__all__ = [
    "CheckResult", "INVARIANCE_TOL", "FD_TOL", "predict", "check_rotation_equivariance",
    "check_translation_invariance", "check_permutation_equivariance", "check_periodic_images",
    "check_batch_consistency", "check_forces_finite_difference", "check_stress_finite_difference",
    "run_all_checks", "example_graphs",
]
