"""Batch jobs: sharded, resumable runs of relax/predict/md, merging their outputs, SLURM job scripts.

- :mod:`eqtool.jobs.shard`: ``--shard I/N`` and SLURM array detection, atom-balanced assignment.
- :mod:`eqtool.jobs.manifest`: per-shard manifests (done indices + hashes), append-and-flush writer.
- :mod:`eqtool.jobs.merge`: one file in input order from the shard outputs.
- :mod:`eqtool.jobs.sbatch`: array job scripts from a template, submission.
"""

from eqtool.jobs.manifest import fingerprint, manifest_path, plan_shard, read_manifest
from eqtool.jobs.merge import find_shard_outputs, merge_shards
from eqtool.jobs.run import check_shard_output, prepare_shard
from eqtool.jobs.sbatch import JobSpec, render_script, submit
from eqtool.jobs.shard import Shard, assign_shards, parse_shard, resolve_shard, shard_from_env, shard_path

__all__ = ["Shard", "parse_shard", "shard_from_env", "resolve_shard", "assign_shards", "shard_path",
           "fingerprint", "manifest_path", "plan_shard", "read_manifest", "find_shard_outputs",
           "merge_shards", "check_shard_output", "prepare_shard", "JobSpec", "render_script", "submit"]
