"""EDM's training objective and ancestral sampling (Hoogeboom et al., ICML 2022, sec. 3-4).

* :func:`diffusion_loss` -- the simplified objective: ``|eps - eps_hat(z_t, t)|^2`` averaged over the
  ``(3 + F) n`` coordinates of each molecule, ``t`` uniform on ``{0, ..., T}``.
* :func:`sample` -- ancestral sampling ``z_T -> ... -> z_0 -> (x, h)`` with the full chain or a
  respaced chain of ``S`` network evaluations (skip-step sampling: the posterior
  ``p(z_s | z_t)`` is recomputed between the kept timesteps ``s < t``, EDM eq. 7 holds for any
  ``s < t``).

Randomness comes only from the ``torch.Generator`` passed in (no global seeding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from eqtool.data import keys as K
from eqtool.errors import EqtoolError
from eqtool.models.generative.egnn import EPS_FEATURES, EPS_POSITIONS, NODE_FEATURES, remove_mean
from eqtool.nn import scatter_sum

__all__ = ["diffusion_loss", "noisy_inputs", "sample", "sample_n_atoms", "respaced_timesteps",
           "GeneratedMolecule"]

GeneratedMolecule = tuple[np.ndarray, np.ndarray]  # (positions [n, 3] Å float64, atomic_numbers [n] int64)


def _randn(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def _batch_index(n_atoms: torch.Tensor) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(n_atoms.shape[0], device=n_atoms.device), n_atoms)


def noisy_inputs(model, x, h, index, n_atoms, t_int, generator=None):
    """``z_t = alpha_t (x, h) + sigma_t eps`` (EDM eq. 1) and the noise used.

    Args:
        model: :class:`~eqtool.models.generative.edm.EDM`.
        x, h: clean positions ``[N, 3]`` (zero CoM) and features ``[N, F]``.
        index, n_atoms: ``batch`` ``[N]`` and ``n_atoms`` ``[B]``.
        t_int: ``[B]`` integer timesteps in ``0..T``.

    Returns:
        ``(inputs, eps_x, eps_h)``: the denoiser's input dict and the noise (``eps_x`` zero CoM).
    """
    gamma = model.schedule.gamma(t_int).to(x.dtype)[index].unsqueeze(-1)  # [N, 1]
    alpha, sigma = model.schedule.alpha(gamma), model.schedule.sigma(gamma)
    eps_x = remove_mean(_randn(x.shape, x, generator), index, n_atoms)  # [N, 3]
    eps_h = _randn(h.shape, h, generator)  # [N, F]
    inputs = {K.POSITIONS: alpha * x + sigma * eps_x, NODE_FEATURES: alpha * h + sigma * eps_h,
              K.BATCH: index, K.N_ATOMS: n_atoms,
              K.DIFFUSION_TIME: t_int.to(x.dtype) / model.timesteps}
    return inputs, eps_x, eps_h


def diffusion_loss(model, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
                   position_weight: float = 1.0, feature_weight: float = 1.0,
                   t_int: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """EDM's simplified (``l2``) training loss on a data batch.

    Per molecule ``(w_x |eps_x - eps_hat_x|^2 + w_h |eps_h - eps_hat_h|^2) / ((3 + F) n)``, averaged
    over molecules; ``t`` is drawn uniformly from ``{0, ..., T}`` unless ``t_int`` ``[B]`` is given.

    Returns:
        ``(loss, terms)`` with ``terms["positions"]``/``terms["features"]``: the unweighted mean
        squared errors per coordinate (detached).
    """
    index, n_atoms = batch[K.BATCH], batch[K.N_ATOMS]
    x, h = model.encode(batch)
    B = n_atoms.shape[0]
    if t_int is None:
        t_int = torch.randint(0, model.timesteps + 1, (B,), generator=generator, device=x.device)
    inputs, eps_x, eps_h = noisy_inputs(model, x, h, index, n_atoms, t_int, generator)
    out = model(inputs)
    err_x = scatter_sum(((out[EPS_POSITIONS] - eps_x) ** 2).sum(-1), index, B)  # [B]
    err_h = scatter_sum(((out[EPS_FEATURES] - eps_h) ** 2).sum(-1), index, B)  # [B]
    n = n_atoms.to(x.dtype)
    per_molecule = (position_weight * err_x + feature_weight * err_h) / ((3 + h.shape[1]) * n)
    terms = {"positions": (err_x / (3 * n)).mean().detach(),
             "features": (err_h / (h.shape[1] * n)).mean().detach()}
    return per_molecule.mean(), terms


def respaced_timesteps(timesteps: int, steps: int | None) -> list[int]:
    """Kept timesteps ``0 = tau_0 < ... < tau_{S-1} = T`` of a chain with ``S`` network evaluations.

    ``steps=None`` (or ``T + 1``) is the full chain ``0, 1, ..., T``. Otherwise the ``S`` times are
    ``round(linspace(0, T, S))`` (distinct for ``2 <= S <= T + 1``).
    """
    if steps is None:
        return list(range(timesteps + 1))
    if not isinstance(steps, int) or isinstance(steps, bool) or not 2 <= steps <= timesteps + 1:
        raise EqtoolError(f"steps must be an integer in [2, {timesteps + 1}] (network evaluations; "
                          f"{timesteps + 1} = the full chain), got {steps!r}", source="steps")
    taus = np.rint(np.linspace(0, timesteps, steps)).astype(int).tolist()
    assert len(set(taus)) == steps  # linspace spacing >= 1 when steps <= T + 1
    return taus


def sample_n_atoms(model, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[n]`` atom counts drawn from the model's training histogram."""
    if model.n_atoms_hist is None:
        raise EqtoolError("the model has no atom-count histogram; give the atom count explicitly",
                          source="model")
    probs = torch.tensor(model.n_atoms_hist, dtype=torch.float64)
    probs[0] = 0.0
    return torch.multinomial(probs, n, replacement=True, generator=generator)


def _clipped_eps(z_h: torch.Tensor, e_h: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                 bound: float) -> torch.Tensor:
    """Noise estimate whose denoised features ``(z_h - sigma e_h) / alpha`` lie in ``[-bound, bound]``."""
    h0 = ((z_h - sigma * e_h) / alpha).clamp(-bound, bound)
    return (z_h - alpha * h0) / sigma


@torch.no_grad()
def sample(model, n_atoms: Sequence[int] | torch.Tensor, steps: int | None = None,
           generator: torch.Generator | None = None,
           callback: Callable[[int, int], None] | None = None,
           clip_features: bool = True) -> list[GeneratedMolecule]:
    """Generate one molecule per entry of ``n_atoms`` by ancestral sampling.

    Args:
        model: :class:`~eqtool.models.generative.edm.EDM` (its device and dtype are used).
        n_atoms: atom count of each molecule, ``[B]``.
        steps: network evaluations ``S`` (see :func:`respaced_timesteps`); ``None`` = full chain
            (``T + 1`` evaluations).
        generator: a ``torch.Generator`` on the model's device (reproducible samples).
        callback: called as ``callback(done, total)`` after every network evaluation.
        clip_features: clip the denoised estimate of the features, ``h_0 = (z_h - sigma_t eps_hat_h)
            / alpha_t``, to ``[-b, b]`` with ``b`` twice the largest clean feature
            (:attr:`~eqtool.models.generative.edm.EDM.feature_bound`) and use the matching noise
            estimate (DDPM's "clip denoised"). Clean features never leave that range, so the clip is
            inactive on a well-behaved chain; it stops a denoiser that meets an input it never saw
            from feeding a huge noise estimate back into itself (seen with large respaced steps,
            where such a molecule ends with NaN coordinates). Positions are not clipped
            (rotation-equivariant; features are invariant, so clipping them keeps that).

    Returns:
        one ``(positions [n, 3] Å float64, atomic_numbers [n] int64)`` pair per molecule, centred.
    """
    param = next(model.parameters())
    n_atoms = torch.as_tensor(n_atoms, dtype=torch.long).to(param.device)
    if n_atoms.ndim != 1 or n_atoms.numel() == 0 or bool((n_atoms < 1).any()):
        raise EqtoolError("atom counts must be a non-empty list of integers >= 1", source="n_atoms")
    taus = respaced_timesteps(model.timesteps, steps)
    index = _batch_index(n_atoms)
    N, F, B = int(index.shape[0]), model.in_features, int(n_atoms.shape[0])
    sched = model.schedule
    z_x = remove_mean(_randn((N, 3), param, generator), index, n_atoms)  # z_T ~ N(0, I) on the subspace
    z_h = _randn((N, F), param, generator)
    total, done = len(taus), 0
    bound = 2.0 * model.feature_bound

    def eps_hat(t: int):
        time = torch.full((B,), t / model.timesteps, dtype=param.dtype, device=param.device)
        inputs = {K.POSITIONS: z_x, NODE_FEATURES: z_h, K.BATCH: index, K.N_ATOMS: n_atoms,
                  K.DIFFUSION_TIME: time}
        out = model(inputs)
        return out[EPS_POSITIONS], out[EPS_FEATURES]

    for t, s in zip(taus[:0:-1], taus[-2::-1], strict=True):  # (T, tau_{S-2}), ..., (tau_1, 0)
        gamma_t, gamma_s = sched.gamma_table[t].to(param.dtype), sched.gamma_table[s].to(param.dtype)
        sigma2_ts, alpha_ts = sched.transition(gamma_t, gamma_s)
        sigma_t, sigma_s = sched.sigma(gamma_t), sched.sigma(gamma_s)
        e_x, e_h = eps_hat(t)
        if clip_features:
            e_h = _clipped_eps(z_h, e_h, sched.alpha(gamma_t), sigma_t, bound)
        coef = sigma2_ts / alpha_ts / sigma_t  # EDM eq. 7: mu = z_t / alpha_ts - coef * eps_hat
        std = torch.sqrt(sigma2_ts) * sigma_s / sigma_t
        noise_x = remove_mean(_randn((N, 3), param, generator), index, n_atoms)
        z_x = remove_mean(z_x / alpha_ts - coef * e_x + std * noise_x, index, n_atoms)
        z_h = z_h / alpha_ts - coef * e_h + std * _randn((N, F), param, generator)
        done += 1
        if callback is not None:
            callback(done, total)

    # p(x, h | z_0): x ~ N((z_0 - sigma_0 eps_hat) / alpha_0, sigma_0 / alpha_0); types from z_0 (as EDM)
    gamma_0 = sched.gamma_table[0].to(param.dtype)
    e_x, _ = eps_hat(0)
    x = (z_x - sched.sigma(gamma_0) * e_x) / sched.alpha(gamma_0)
    x = x + torch.exp(0.5 * gamma_0) * remove_mean(_randn((N, 3), param, generator), index, n_atoms)
    x = remove_mean(x, index, n_atoms)
    z = model.decode_types(z_h)
    done += 1
    if callback is not None:
        callback(done, total)
    pos = x.detach().cpu().double().numpy()
    zs = z.detach().cpu().numpy().astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(n_atoms.cpu().numpy())])
    return [(pos[a:b].copy(), zs[a:b].copy()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
