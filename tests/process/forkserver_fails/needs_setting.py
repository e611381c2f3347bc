"""Job code that reads a sched setting at import: the CLI loads it, the fork server cannot.

A fork server holds no SCHED_* variable (so no horse can read the store's credentials), so
every worker's fork server fails to load this folder, every time.
"""

import os

from scheduler import job

TOKEN = os.environ["SCHED_TEST_TOKEN"]


@job("@yearly")
def uses_token() -> None:
    print(len(TOKEN))
