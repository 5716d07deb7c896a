"""Fixed noise schedules of EDM (Hoogeboom et al., ICML 2022, sec. 3 and appendix B).

The forward process is ``z_t = alpha_t x + sigma_t eps`` with ``alpha_t^2 + sigma_t^2 = 1``
(variance preserving). The schedule is stored as ``gamma_t = -log(alpha_t^2 / sigma_t^2)`` on the
integer grid ``t = 0, 1, ..., T`` (time ``t / T`` in [0, 1]), so ``SNR(t) = exp(-gamma_t)``,
``alpha_t^2 = sigmoid(-gamma_t)`` and ``sigma_t^2 = sigmoid(gamma_t)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from eqtool.errors import EqtoolError

__all__ = ["clip_alphas2", "polynomial_alphas2", "schedule_alphas2", "NoiseSchedule", "SCHEDULES"]

SCHEDULES = ("polynomial_1", "polynomial_2", "polynomial_3")


def clip_alphas2(alphas2: np.ndarray, clip_value: float = 1e-3) -> np.ndarray:
    """Clip the per-step ratio ``alpha_t^2 / alpha_{t-1}^2`` to ``[clip_value, 1]`` (EDM, app. B).

    Keeps every step's signal ratio away from 0 so the reverse steps stay numerically stable.
    Returns the re-accumulated ``alpha_t^2`` (same length, starting from ``alpha_{-1}^2 = 1``).
    """
    padded = np.concatenate([np.ones(1), alphas2])
    steps = np.clip(padded[1:] / padded[:-1], clip_value, 1.0)
    return np.cumprod(steps)


def polynomial_alphas2(timesteps: int, power: float = 2.0, precision: float = 1e-5) -> np.ndarray:
    """``alpha_t^2`` of EDM's polynomial schedule on ``t = 0..T`` (``T + 1`` values, float64).

    ``alpha_t^2 = (1 - (t / T)^power)^2``, then step clipping (:func:`clip_alphas2`) and the affine
    squeeze ``(1 - 2 s) alpha^2 + s`` with ``s = precision``, so ``alpha_0^2 = 1 - s`` and
    ``alpha_T^2 >= s`` (EDM's ``polynomial_schedule``, same arithmetic).
    """
    steps = timesteps + 1
    u = np.linspace(0.0, steps, steps) / steps  # = t / T, t = 0..T (EDM's arithmetic)
    alphas2 = (1.0 - np.power(u, power)) ** 2
    alphas2 = clip_alphas2(alphas2, 1e-3)
    return (1.0 - 2.0 * precision) * alphas2 + precision


def schedule_alphas2(name: str, timesteps: int, precision: float) -> np.ndarray:
    """``alpha_t^2`` for schedule ``name`` (``"polynomial_<power>"``)."""
    if name not in SCHEDULES:
        raise EqtoolError(f"unknown noise schedule {name!r}; choose one of: {', '.join(SCHEDULES)}",
                          source="model")
    return polynomial_alphas2(timesteps, power=float(name.split("_")[1]), precision=precision)


class NoiseSchedule(nn.Module):
    """Lookup table of ``gamma_t`` on the integer grid ``t = 0..T`` (a non-persistent buffer).

    Args:
        name: ``"polynomial_2"`` (EDM's QM9 setting) or another power.
        timesteps: ``T``.
        precision: ``s`` of :func:`polynomial_alphas2` (EDM: 1e-5).
    """

    def __init__(self, name: str = "polynomial_2", timesteps: int = 1000, precision: float = 1e-5):
        super().__init__()
        if not isinstance(timesteps, int) or isinstance(timesteps, bool) or timesteps < 1:
            raise EqtoolError(f"'timesteps' must be an integer >= 1, got {timesteps!r}", source="model")
        if not 0 < precision < 0.5:
            raise EqtoolError(f"'noise_precision' must be in (0, 0.5), got {precision!r}", source="model")
        self.name, self.timesteps, self.precision = name, timesteps, float(precision)
        alphas2 = schedule_alphas2(name, timesteps, precision)
        gamma = -(np.log(alphas2) - np.log1p(-alphas2))  # -log(alpha^2 / sigma^2)
        # derived from the config, so not stored in state_dict (files stay small and exact)
        self.register_buffer("gamma_table", torch.from_numpy(gamma), persistent=False)  # [T+1] float64

    def gamma(self, t_int: torch.Tensor) -> torch.Tensor:
        """``gamma_t`` for integer times ``t_int`` (any shape, long), in the table's float64."""
        return self.gamma_table[t_int.long()]

    @staticmethod
    def alpha(gamma: torch.Tensor) -> torch.Tensor:
        """``alpha = sqrt(sigmoid(-gamma))``."""
        return torch.sigmoid(-gamma).sqrt()

    @staticmethod
    def sigma(gamma: torch.Tensor) -> torch.Tensor:
        """``sigma = sqrt(sigmoid(gamma))``."""
        return torch.sigmoid(gamma).sqrt()

    @staticmethod
    def snr(gamma: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ``alpha^2 / sigma^2 = exp(-gamma)``."""
        return torch.exp(-gamma)

    @staticmethod
    def transition(gamma_t: torch.Tensor, gamma_s: torch.Tensor):
        """``(sigma2_t|s, alpha_t|s)`` of ``q(z_t | z_s)`` for ``s < t`` (EDM eq. 3, stable form).

        ``alpha_t|s = alpha_t / alpha_s`` and ``sigma2_t|s = sigma_t^2 - alpha_t|s^2 sigma_s^2
        = -expm1(softplus(gamma_s) - softplus(gamma_t))``. Valid for any ``s < t``, which is what
        skip-step (respaced) sampling needs.
        """
        sigma2 = -torch.expm1(F.softplus(gamma_s) - F.softplus(gamma_t))
        alpha = torch.exp(0.5 * (F.logsigmoid(-gamma_t) - F.logsigmoid(-gamma_s)))
        return sigma2, alpha

    def extra_repr(self) -> str:
        return f"{self.name}, T={self.timesteps}, precision={self.precision:g}, " \
               f"sigma_0={math.sqrt(1 / (1 + math.exp(-float(self.gamma_table[0])))):.2e}"
