"""`python -m scheduler` is the `sched` command."""

from scheduler.cli import main

main()
