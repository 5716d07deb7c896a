"""Typed run configurations: frozen dataclasses loaded from YAML recipes with ``--set`` overrides.

Example::

    from eqtool.config import load_config
    cfg = load_config("recipes/potential/cu-quick.yaml", ["trainer.max_epochs=5"])
    cfg.optim.lr
"""

from eqtool.config.load import apply_overrides, config_from_dict, load_config, save_config, to_dict
from eqtool.config.schema import (
    LOSS_SCHEMAS,
    DataConfig,
    ModelConfig,
    OptimConfig,
    PotentialLossConfig,
    RunConfig,
    TrainerConfig,
)

__all__ = [
    "load_config", "config_from_dict", "apply_overrides", "save_config", "to_dict",
    "RunConfig", "DataConfig", "ModelConfig", "PotentialLossConfig", "OptimConfig", "TrainerConfig",
    "LOSS_SCHEMAS",
]
