"""The labelling job (Ray Data). ``IMPORTED_AT``: when this process began importing the job's code,
the start of an actor's import stage in ``_run.json`` (see ``worker.ActorStartup``)."""

import time

IMPORTED_AT = time.time()
