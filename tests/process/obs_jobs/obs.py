from scheduler import job


@job(every="1s", timeout="5s", overlap="allow")
def fails() -> None:
    raise RuntimeError("for the webhook")


@job(every="1s", timeout="5s", overlap="allow")
def works() -> None:
    print("fine")


@job(every="1s", timeout="10s", expected_duration="0.3s")
def lingers() -> None:
    import time

    time.sleep(2)
