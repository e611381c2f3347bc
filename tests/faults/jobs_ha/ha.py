from scheduler import job


@job(every="1s", overlap="allow", catchup="none")
def tick() -> None:
    pass
