"""Label Studio round trip: push the job's labels as pre-annotations, pull the reviewers' verdicts back.

:mod:`.client` speaks Label Studio's REST API (stdlib only), :mod:`.project` holds the labelling
config and the task/region conventions, :mod:`.push` and :mod:`.pull` are the two commands. The job
output is read only through :mod:`m2fp_batch.labels`; masks use :mod:`m2fp_batch.annotate.ls_rle`.
"""
