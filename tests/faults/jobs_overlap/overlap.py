import time

from scheduler import job


def outlive() -> None:
    time.sleep(2.5)


for policy in ("skip", "allow", "queue", "replace"):
    job(every="1s", name=f"overlap-{policy}", overlap=policy, catchup="none", timeout="10s")(
        outlive
    )
