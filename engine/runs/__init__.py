"""A run directory: what it holds, how it is made, and what its files say about the run.

layout       file names and where runs live
create       making a run directory; `--overwrite` that never loses a run
registry     runs made outside the runs folder
pid          run.pid: is the run still training
metrics      metrics.jsonl: the event stream, appended and read back
checkpoints  which checkpoints can be resumed from
summary      summary.json: how the run ended
status       listing runs and deriving their status from files + pid

Callers import the submodule they need; nothing is imported here, so that
`runs.events` can import `summary.RunSummary` without a cycle.
"""
