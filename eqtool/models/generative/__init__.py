"""Generative models: EDM (equivariant diffusion over 3D molecules) and its EGNN denoiser.

Example::

    from eqtool.models.files import load_model
    from eqtool.models.generative import sample, sample_n_atoms
    model = load_model("qm9-edm")
    g = torch.Generator().manual_seed(0)
    mols = sample(model, sample_n_atoms(model, 10, g), steps=100, generator=g)  # [(pos, Z), ...]
"""

from eqtool.models.generative.diffusion import (
    GeneratedMolecule,
    diffusion_loss,
    noisy_inputs,
    respaced_timesteps,
    sample,
    sample_n_atoms,
)
from eqtool.models.generative.edm import EDM
from eqtool.models.generative.egnn import (
    EPS_FEATURES,
    EPS_POSITIONS,
    NODE_FEATURES,
    EGNNDenoiser,
    fully_connected_edges,
    remove_mean,
)
from eqtool.models.generative.schedule import NoiseSchedule, polynomial_alphas2

__all__ = [
    "EDM", "EGNNDenoiser", "NoiseSchedule", "polynomial_alphas2", "fully_connected_edges", "remove_mean",
    "diffusion_loss", "noisy_inputs", "sample", "sample_n_atoms", "respaced_timesteps", "GeneratedMolecule",
    "NODE_FEATURES", "EPS_POSITIONS", "EPS_FEATURES",
]
