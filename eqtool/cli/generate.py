"""``eqtool generate``: sample molecules from a diffusion model, score them, write SDF (and extxyz).

All the work is in :mod:`eqtool.models.generative` (sampling) and :mod:`eqtool.chem` (metrics, SDF).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import typer

from eqtool.errors import EqtoolError

__all__ = ["generate", "metrics_table", "load_generator", "check_options"]


def _folder_ok(path: Path, option: str) -> None:
    folder = path.expanduser().resolve().parent
    if not folder.is_dir():
        raise EqtoolError(f"output folder {folder} does not exist", source=option)
    if path.is_dir():
        raise EqtoolError("is a folder, expected a file name", source=str(path))


def load_generator(name_or_path: str, device: str = "cpu"):
    """``(model, payload)`` of a diffusion model file or shipped name; anything else is an EqtoolError."""
    from eqtool.models.files import model_from_payload, read_model_file

    payload = read_model_file(name_or_path)
    if payload["config"].get("name") != "edm":
        raise EqtoolError(f"not a generative model (model {payload['config'].get('name')!r}); "
                          "eqtool generate needs a diffusion model such as qm9-edm", source=payload["path"])
    model = model_from_payload(payload, device=device, source=payload["path"])
    return model, payload


def check_options(model, n: int, n_atoms: int | None, steps: int | None, batch_size: int) -> None:
    """Raise :class:`EqtoolError` for options the model cannot honour (before any sampling)."""
    if n < 1:
        raise EqtoolError(f"the number of molecules must be >= 1, got {n}", source="-n")
    if batch_size < 1:
        raise EqtoolError(f"must be >= 1, got {batch_size}", source="--batch-size")
    top = model.max_atoms
    if n_atoms is not None:
        if n_atoms < 1:
            raise EqtoolError(f"a molecule needs at least 1 atom, got {n_atoms}", source="--n-atoms")
        if top is not None and n_atoms > top:
            raise EqtoolError(f"{n_atoms} atoms is above this model's maximum of {top} (the largest "
                              "training molecule)", source="--n-atoms")
    elif top is None:
        raise EqtoolError("the model stores no atom-count histogram; give --n-atoms", source="--n-atoms")
    top_steps = model.timesteps + 1
    if steps is not None and not 2 <= steps <= top_steps:
        raise EqtoolError(f"must be in [2, {top_steps}] network evaluations ({top_steps} = the full chain), "
                          f"got {steps}", source="--steps")


def metrics_table(metrics: dict, title: str, seconds_per_molecule: float | None = None):
    """A rich table of :func:`eqtool.chem.molecule_metrics` (percentages and counts)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("count", justify="right")
    n, atoms = metrics["n_molecules"], metrics["n_atoms"]
    rows = [
        ("atom stability", metrics["atom_stability"], f"{metrics['n_stable_atoms']}/{atoms}"),
        ("molecule stability", metrics["molecule_stability"], f"{metrics['n_stable_molecules']}/{n}"),
        ("validity (RDKit)", metrics["validity"], f"{metrics['n_valid']}/{n}"),
        ("uniqueness", metrics["uniqueness"], f"{metrics['n_unique']}/{metrics['n_valid']}"),
        ("valid and unique", metrics["valid_unique"], f"{metrics['n_unique']}/{n}"),
        ("novelty", metrics["novelty"], f"{metrics['n_novel']}/{metrics['n_unique']}"
         if metrics["novelty"] is not None else "no training SMILES"),
    ]
    for name, value, count in rows:
        table.add_row(name, "–" if value is None else f"{100 * value:.1f} %", count)
    if seconds_per_molecule is not None:
        table.add_row("time per molecule", f"{seconds_per_molecule * 1e3:.1f} ms", "")
    return table


def _write_xyz(path: Path, mols, reports, keep) -> None:
    """Molecules ``keep`` (indices into ``mols``/``reports``) as extxyz, named by their index."""
    from ase import Atoms
    from ase.io import write

    from eqtool.io.atomic import atomic_path

    images = []
    for i in keep:
        (pos, z), rep = mols[i], reports[i]
        atoms = Atoms(numbers=z, positions=pos)
        atoms.info.update(name=f"generated_{i}", smiles=rep.smiles or "", stable=int(rep.stable))
        images.append(atoms)
    with atomic_path(path) as tmp:
        write(str(tmp), images, format="extxyz")


def generate(
    model: str = typer.Option(..., "--model", "-m", help="Model file or shipped name (e.g. qm9-edm)."),
    n: int = typer.Option(..., "-n", "--num", help="Number of molecules to generate."),
    out: Path = typer.Option(..., "--out", "-o", help="Output SDF file (molecules with perceived bonds)."),
    n_atoms: int | None = typer.Option(None, "--n-atoms", help="Atoms per molecule (default: drawn from "
                                       "the training histogram stored in the model)."),
    steps: int | None = typer.Option(None, "--steps", help="Network evaluations of a respaced chain "
                                     "(2..T+1; default: the full chain, T+1)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed and batch size: same molecules)."),
    batch_size: int = typer.Option(100, "--batch-size", help="Molecules sampled together."),
    xyz: Path | None = typer.Option(None, "--xyz", help="Also write the molecules as extxyz."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
) -> None:
    """Generate 3D molecules with a diffusion model; print their metrics and write SDF.

    Example: eqtool generate --model qm9-edm -n 100 --steps 100 --out mols.sdf
    """
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from eqtool.chem import analyze_sample, summarize, write_sdf
    from eqtool.models.generative import respaced_timesteps, sample, sample_n_atoms
    from eqtool.tasks.generative import read_train_smiles

    if n < 1:
        raise EqtoolError(f"the number of molecules must be >= 1, got {n}", source="-n")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    _folder_ok(out, "--out")
    if xyz is not None:
        _folder_ok(xyz, "--xyz")
    net, payload = load_generator(model, device=device)
    check_options(net, n, n_atoms, steps, batch_size)
    train_smiles = read_train_smiles(payload, payload["path"])

    gen = torch.Generator(device=device).manual_seed(seed)
    counts = (torch.full((n,), n_atoms, dtype=torch.long) if n_atoms is not None
              else sample_n_atoms(net, n, torch.Generator().manual_seed(seed)))
    evals = len(respaced_timesteps(net.timesteps, steps))
    chunks = [counts[i: i + batch_size] for i in range(0, n, batch_size)]
    err = Console(stderr=True)
    chain = "full chain" if steps is None else "respaced chain"
    err.print(f"{payload['path']}: {n} molecules, {chain} of {evals} network evaluations, seed {seed}, "
              f"{device}", markup=False, highlight=False)
    mols = []
    start = time.perf_counter()
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("molecules {task.fields[done]}/" + str(n)), TimeRemainingColumn(),
                  console=err, transient=False) as bar:
        task = bar.add_task("sampling", total=evals * len(chunks), done=0)
        for chunk in chunks:
            mols += sample(net, chunk, steps=steps, generator=gen,
                           callback=lambda *_: bar.advance(task))
            bar.update(task, done=len(mols))
    per_mol = (time.perf_counter() - start) / n

    reports = [analyze_sample(m) for m in mols]
    metrics = summarize(reports, train_smiles)
    keep = [i for i, r in enumerate(reports) if r.finite]  # a diverged chain has NaN coordinates
    named = [SimpleNamespace(positions=mols[i][0], atomic_numbers=mols[i][1], info={"name": f"generated_{i}"},
                             source=None) for i in keep]
    write_sdf(out, named, bonds=[reports[i].bonds for i in keep])
    if xyz is not None:
        _write_xyz(xyz, mols, reports, keep)
    if metrics["n_nonfinite"]:
        err.print(f"warning: {metrics['n_nonfinite']} of {n} molecules diverged (non-finite coordinates); "
                  "they count as unstable and invalid and are not written", markup=False, highlight=False)
    Console().print(metrics_table(metrics, f"{n} generated molecules ({chain}, {evals} evaluations)",
                                  per_mol))
    err.print(f"wrote {out}" + (f" and {xyz}" if xyz is not None else ""), markup=False, highlight=False)
