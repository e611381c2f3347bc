from scheduler import job


@job(every="1s", overlap="allow", catchup="latest")
def tick() -> None:
    pass


# Hourly on the hour (UTC): a two-hour jump of the clock passes at least one of its fires.
@job(every="1h", overlap="allow", catchup="all")
def hourly() -> None:
    pass
