"""Random access into an eqtool HDF5 dataset: write ~1M atoms, then time reading single systems.

Writes a synthetic dataset (systems of 50-200 atoms, random positions in a periodic box, random
energy/forces/stress) with :meth:`eqtool.io.hdf5.H5Writer.append_arrays` in blocks (streaming: one
block in memory at a time) into a temporary folder, then reads ``--reads`` random systems through
:class:`eqtool.io.hdf5.H5Dataset` and prints the median and p95 time per system and the file size.
Target: < 5 ms per system. Runs in well under 2 minutes.

    python benchmarks/hdf5_random_access.py [--atoms 1000000] [--reads 1000] [--compression gzip]

The file was just written, so it is in the OS page cache: the figures measure decompression and
HDF5/h5py overhead, not disk latency.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from eqtool.io.hdf5 import H5Dataset, H5Writer


def write_synthetic(path: str, n_atoms_total: int, seed: int = 0, compression: str = "gzip",
                    block_systems: int = 500) -> tuple[int, int]:
    """Write a synthetic dataset of about ``n_atoms_total`` atoms; returns (systems, atoms)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(50, 201, size=n_atoms_total // 50 + 1)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n_atoms_total)) + 1]
    with H5Writer(path, source="synthetic (benchmarks/hdf5_random_access.py)",
                  level_of_theory="random", compression=compression) as w:
        for b0 in range(0, len(sizes), block_systems):
            n = sizes[b0: b0 + block_systems]
            b, N = len(n), int(n.sum())
            box = np.cbrt(n * 12.0)  # ~12 Å^3 per atom
            cell = box[:, None, None] * np.eye(3)
            pos = rng.random((N, 3)) * np.repeat(box, n)[:, None]
            w.append_arrays(
                n, pos, rng.integers(1, 90, size=N), cell=cell, pbc=np.ones((b, 3), bool),
                labels={"energy": rng.normal(-4.0, 0.5, b) * n,
                        "forces": rng.normal(0.0, 1.0, (N, 3)),
                        "stress": rng.normal(0.0, 0.01, (b, 3, 3))})
    return len(sizes), int(sizes.sum())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, default=1_000_000)
    ap.add_argument("--reads", type=int, default=1000)
    ap.add_argument("--compression", default="gzip", choices=["gzip", "lzf"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "synthetic.h5")
        t0 = time.perf_counter()
        n_sys, n_atoms = write_synthetic(path, args.atoms, args.seed, args.compression)
        t_write = time.perf_counter() - t0
        size = os.path.getsize(path)
        print(f"wrote {n_sys} systems, {n_atoms} atoms ({args.compression}) in {t_write:.1f} s "
              f"({n_atoms / t_write / 1e3:.0f} k atoms/s); file {size / 2**20:.1f} MiB "
              f"({size / n_atoms:.1f} bytes/atom)")

        t0 = time.perf_counter()
        ds = H5Dataset(path)
        t_open = time.perf_counter() - t0
        rng = np.random.default_rng(args.seed + 1)
        idx = rng.integers(0, len(ds), size=args.reads)
        ds[0]  # first touch opens the datasets
        times = np.empty(len(idx))
        atoms_read = 0
        for k, i in enumerate(idx):
            t = time.perf_counter()
            g = ds[int(i)]
            times[k] = time.perf_counter() - t
            atoms_read += g.n_atoms
        ms = times * 1e3
        print(f"open {t_open * 1e3:.1f} ms; random access over {len(idx)} systems "
              f"(mean {atoms_read / len(idx):.0f} atoms): median {np.median(ms):.2f} ms, "
              f"p95 {np.percentile(ms, 95):.2f} ms, max {ms.max():.2f} ms per system "
              f"(target < 5 ms)")
        t0 = time.perf_counter()
        for i in range(min(len(ds), args.reads)):
            ds[i]
        t_seq = (time.perf_counter() - t0) / min(len(ds), args.reads) * 1e3
        print(f"sequential access: {t_seq:.2f} ms per system")
        ds.close()


if __name__ == "__main__":
    main()
