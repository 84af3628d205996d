"""``bench sweep`` and ``bench status``: a whole grid of cells spread over many jobs (Slurm or this machine) through
submitit, all writing one results store.

    grid.py     the request expanded into cells, what the store already holds, what each still costs
    packing.py  cells packed into jobs, balanced by cost (longest processing time first)
    job.py      the picklable jobs: evaluation (through the normal runner) and on-demand training
    launch.py   submitit executors and submission (training first, evaluation depending on it)
    record.py   the sweep's record: which cell went to which job, when
    status.py   per cell and per sweep: done, running, failed, missing; done / total and an ETA
    command.py  the two subcommands' arguments and their glue
"""
