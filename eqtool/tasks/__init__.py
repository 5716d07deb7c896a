"""Training tasks: Lightning modules pairing a model with its loss terms and metrics.

:data:`TASKS` maps a recipe's ``task`` to its module class; a new task (``"hamiltonian"``,
``"generative"``) adds one entry here and its loss schema in
:data:`eqtool.config.schema.LOSS_SCHEMAS`.
"""

from __future__ import annotations

from eqtool.tasks.generative import GenerativeTask
from eqtool.tasks.potential import PotentialTask

__all__ = ["TASKS", "PotentialTask"]

TASKS: dict[str, type] = {
    "potential": PotentialTask,
    "generative": GenerativeTask,
}
