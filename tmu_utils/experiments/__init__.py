"""The top layer: one run (`runs`), sweeps, populations, streams of deletion requests, gold-free
tuning on the twin problem, the executors (local, SLURM) and running the notebooks with papermill.
Everything here composes the layers below; the command line (`__main__`) calls it."""
