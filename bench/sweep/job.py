"""The jobs a sweep submits: picklable callables that submitit runs on a node.

Both are ``submitit.helpers.Checkpointable``: when Slurm preempts a job or its time limit nears, submitit's signal
handler calls ``checkpoint()``, which hands back the same job to be requeued. Nothing else needs saving, because the
store is the checkpoint: every finished batch is already a file, and the requeued job's runner finds those batches and
computes only the rest (training resumes from its periodic ``last.pt`` the same way).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

from submitit.helpers import Checkpointable, DelayedSubmission

from bench.encoders.resolve import resolve_encoder
from bench.runner import RunRequest, resolve_device, run, suite_options
from bench.suites import get_suite


class EvalJob(Checkpointable):
    """Evaluates units (encoder, task, dataset) one after another, each as one ``runner.run``: identity, resume and
    locking are exactly those of ``bench run``. Never trains (a missing encoder is a training job's work)."""

    def __init__(self, request: RunRequest, units: list[tuple[str, str, str]], nproc: int = 1):
        self.request = request
        self.units = [tuple(u) for u in units]
        self.nproc = nproc

    def unit_request(self, unit: tuple[str, str, str]) -> RunRequest:
        encoder, task, dataset = unit
        return replace(self.request, encoders=(encoder,), tasks=(task,), datasets=(dataset,), allow_training=False,
                       progress=False, plan_only=False)

    def __call__(self) -> list[str]:
        finished = []
        for unit in self.units:
            req = self.unit_request(unit)
            if self.nproc > 1:  # this job's GPUs share each cell's samples (bench.sharding under torchrun)
                code = subprocess.call([sys.executable, "-m", "bench", *run_argv(req), "--nproc", str(self.nproc)])
                if code != 0:
                    raise RuntimeError(f"bench run --nproc {self.nproc} of {unit} exited with status {code}")
            else:
                run(req)
            finished.append(":".join(unit))
            print(f"unit done: {':'.join(unit)}", file=sys.stderr, flush=True)
        return finished

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        """Requeue the same job: the store's saved batches are its state (see the module's docstring)."""
        print("preempted or timing out: requeueing; finished batches are in the store", file=sys.stderr, flush=True)
        return DelayedSubmission(self, *args, **kwargs)


class TrainJob(Checkpointable):
    """Trains one missing encoder into the training cache, as ``bench run`` would on demand (the suite's recipe, the
    same cache entry; its file lock keeps two trainers of one recipe from both training)."""

    def __init__(self, request: RunRequest, encoder: str):
        self.request = request
        self.encoder = encoder

    def __call__(self) -> str:
        suite = get_suite(self.request.suite, **suite_options(self.request))
        spec = resolve_encoder(self.encoder, self.request.base)
        device = str(resolve_device(self.request.device))
        encoder = suite.load_encoder(spec, device, allow_training=True, progress=False)
        return str(encoder.meta.checkpoint_sha256)

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        return DelayedSubmission(self, *args, **kwargs)


def run_argv(req: RunRequest) -> list[str]:
    """``bench run`` arguments that make ``req`` (one unit: every selection is explicit)."""
    argv = ["run", "--suite", req.suite, "--attack", req.attack, "--seed", str(req.seed), "--out", str(req.out),
            "--device", req.device, "--precision", req.precision, "--attack-backend", req.backend, "--no-progress"]
    for flag, values in (("--encoder", req.encoders), ("--task", req.tasks), ("--dataset", req.datasets),
                         ("--eps", [e.label for e in req.eps]), ("--encoder-weights", req.encoder_weights)):
        for value in values:
            argv += [flag, str(value)]
    for flag, value in (("--n-samples", req.n_samples), ("--batch-size", req.batch_size),
                        ("--data-root", req.data_root), ("--base", req.base)):
        if value is not None:
            argv += [flag, str(value)]
    if req.force:
        argv.append("--force")
    if not req.allow_training:
        argv.append("--no-train")
    return argv


