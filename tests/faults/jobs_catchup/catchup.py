from scheduler import job


@job(every="1s", overlap="allow", catchup="none")
def none() -> None:
    pass


@job(every="1s", overlap="allow", catchup="latest")
def latest() -> None:
    pass


@job(every="1s", overlap="allow", catchup="all")
def all() -> None:
    pass
