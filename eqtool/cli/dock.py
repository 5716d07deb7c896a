"""``eqtool dock``: place ligands in a protein pocket with Vina, the docking model, or both.

All the work is in :mod:`eqtool.dock`; this file reads options, draws the progress bar and the table.
"""

from __future__ import annotations

from pathlib import Path

import typer

from eqtool.errors import EqtoolError

__all__ = ["dock", "resolve_box", "summary_table"]

MAX_TABLE_ROWS = 30


def resolve_box(receptor, box_from: Path | None, center, size, blind: bool):
    """The search box from exactly one of ``--box-from``, ``--center``/``--size``, ``--blind`` (or None)."""
    from eqtool.dock import Box, blind_box, box_from_ligand_file

    given = [box_from is not None, center is not None or size is not None, blind]
    if sum(given) > 1:
        raise EqtoolError("give only one of --box-from, --center/--size and --blind", source="box")
    if box_from is not None:
        return box_from_ligand_file(box_from)
    if center is not None or size is not None:
        if center is None or size is None:
            raise EqtoolError("--center and --size go together (3 numbers each, Å)", source="--center/--size")
        return Box(tuple(center), tuple(size))
    if blind:
        return blind_box(receptor.positions)
    return None


def summary_table(results, method: str):
    """A rich table: one row per ligand (the first :data:`MAX_TABLE_ROWS`), best score, poses, time."""
    from rich.table import Table

    table = Table(title=f"eqtool dock ({method})")
    for name, justify in (("#", "right"), ("ligand", "left"), ("status", "left"),
                          ("best vina score (kcal/mol)", "right"), ("poses", "right"), ("time (s)", "right")):
        table.add_column(name, justify=justify)
    for res in results[:MAX_TABLE_ROWS]:
        best = res.poses[0].score if res.ok and res.poses[0].score is not None else None
        table.add_row(str(res.ligand.index), res.ligand.name[:40], "ok" if res.ok else "failed",
                      "–" if best is None else f"{best:.2f}", str(len(res.poses)), f"{res.seconds:.1f}")
    if len(results) > MAX_TABLE_ROWS:
        table.add_row("…", f"{len(results) - MAX_TABLE_ROWS} more", "", "", "", "")
    return table


def _check_out(path: Path, option: str) -> None:
    folder = path.expanduser().resolve().parent
    if not folder.is_dir():
        raise EqtoolError(f"output folder {folder} does not exist", source=option)
    if path.is_dir():
        raise EqtoolError("is a folder, expected a file name", source=str(path))


def dock(
    receptor: Path = typer.Option(..., "--receptor", "-r", help="Protein: PDB or mmCIF (prepared here with "
                                  "meeko) or a ready PDBQT."),
    ligand: list[str] = typer.Option(..., "--ligand", "-l", help="SDF (many records), .smi file or a SMILES "
                                     "string; repeat for more."),
    out: Path = typer.Option(..., "--out", "-o", help="Output SDF: one record per pose, scores as "
                             "properties."),
    box_from: Path | None = typer.Option(None, "--box-from", help="Box around this reference ligand SDF "
                                         "(+4 Å per side)."),
    center: tuple[float, float, float] | None = typer.Option(None, "--center", metavar="X Y Z",
                                                             help="Box centre, Å (with --size)."),
    size: tuple[float, float, float] | None = typer.Option(None, "--size", metavar="SX SY SZ",
                                                           help="Box edge lengths, Å (with --center)."),
    blind: bool = typer.Option(False, "--blind", help="Box around the whole receptor."),
    method: str = typer.Option("vina", "--method", help="vina (global search), model, or model+vina "
                               "(model poses + Vina local optimisation)."),
    num_poses: int = typer.Option(9, "--num-poses", "-n", help="Poses kept per ligand."),
    seed: int = typer.Option(0, "--seed", help="Seed for conformers, Vina's search and the model."),
    model: str = typer.Option("dock-demo", "--model", "-m", help="Docking model file or shipped name "
                              "(model methods only)."),
    exhaustiveness: int = typer.Option(8, "--exhaustiveness", help="Vina search effort (method vina)."),
    cpu: int = typer.Option(0, "--cpu", help="Vina threads (0: all cores)."),
    drop_unmatched: bool = typer.Option(False, "--drop-unmatched", help="Drop receptor residues without a "
                                        "built-in template (cofactors, ions meeko cannot type) or with "
                                        "missing atoms, instead of stopping."),
    keep_hetero: bool = typer.Option(False, "--keep-hetero", help="Keep receptor residues without a "
                                     "template (cofactors, ions) as rigid element-typed atoms."),
    new_conformer: bool = typer.Option(False, "--new-conformer", help="Start from a fresh RDKit conformer "
                                       "even for 3D SDF input."),
    failures: Path | None = typer.Option(None, "--failures", help="Where to list failed ligands (TSV; "
                                         "default OUT with suffix .failures.tsv)."),
) -> None:
    """Dock ligands into a protein pocket; write ranked poses with Vina scores (kcal/mol).

    One receptor, many ligands (virtual screening): ligands that fail (unreadable, RDKit rejects them)
    are reported on one line each and listed in the failures file; the others go on. The box comes
    from a reference ligand, numbers, or the whole receptor (--blind); method vina needs one.

    Example: eqtool dock --receptor protein.pdb --ligand ligands.sdf --box-from ref.sdf --out poses.sdf
    """
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from eqtool.dock import check_box_has_receptor, dock_ligands, prepare_receptor, read_ligands
    from eqtool.dock.pipeline import check_dock_options, write_failures, write_poses

    # every check before any work, so bad input leaves nothing behind
    check_dock_options(method, num_poses, exhaustiveness)
    failures = failures if failures is not None else out.with_suffix(".failures.tsv")
    _check_out(out, "--out")
    _check_out(failures, "--failures")
    ligands = read_ligands(ligand)
    err = Console(stderr=True)
    chatty = err.is_terminal  # status lines only for people; scripts get the one-line error or the summary
    if chatty:
        err.print(f"preparing receptor {receptor}", markup=False, highlight=False)
    rec = prepare_receptor(receptor, drop_unmatched=drop_unmatched, keep_hetero=keep_hetero)
    if rec.removed:
        typer.echo(f"note: {receptor}: dropped {len(rec.removed)} residues: {', '.join(rec.removed[:10])}"
                   + (" ..." if len(rec.removed) > 10 else ""), err=True)
    box = resolve_box(rec, box_from, center, size, blind)
    if box is not None:
        check_box_has_receptor(box, rec.positions, source="box")
    if method == "vina" and box is None:
        raise EqtoolError("Vina needs a search box: give --box-from, --center with --size, or --blind",
                          source="--method vina")
    net = None
    if method != "vina":
        from eqtool.models.files import load_model

        net = load_model(model, kind="docking")
    if chatty:
        where = box if box is not None else "none (the model finds the pocket)"
        err.print(f"{len(ligands)} ligands, method {method}, box {where}", markup=False, highlight=False)

    quiet_single = len(ligands) == 1
    start = time.perf_counter()
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True, disable=not chatty) as bar:
        task = bar.add_task("docking", total=len(ligands))

        def progress(result):
            bar.advance(task)
            if not result.ok and not quiet_single:
                bar.console.print(f"warning: ligand {result.ligand.index} ({result.ligand.source}, "
                                  f"{result.ligand.name}): {result.error}", markup=False, highlight=False,
                                  soft_wrap=True)

        results = dock_ligands(rec, ligands, box, method, num_poses=num_poses, seed=seed,
                               exhaustiveness=exhaustiveness, cpu=cpu, model=net,
                               new_conformer=new_conformer, progress=progress)
    seconds = time.perf_counter() - start
    if quiet_single and not results[0].ok:  # the error line says it all; write nothing
        lig = results[0].ligand
        raise EqtoolError(results[0].error, source=lig.source, where=lig.name)
    n_failed = write_failures(failures, results)
    if n_failed == len(results):
        raise EqtoolError(f"all {len(results)} ligands failed; reasons in {failures}", source="--ligand")
    n_records = write_poses(out, results, method)
    Console().print(summary_table(results, method))
    tail = f"; {n_failed} failed, listed in {failures}" if n_failed else ""
    err.print(f"docked {len(results) - n_failed}/{len(results)} ligands in {seconds:.1f} s; wrote "
              f"{n_records} poses to {out}{tail}", markup=False, highlight=False, soft_wrap=True)
