from scheduler import job


@job(every="1s", timeout="5s", overlap="allow")
def fails() -> None:
    raise RuntimeError("for the webhook")


@job(every="1s", timeout="5s", overlap="allow")
def works() -> None:
    print("fine")
