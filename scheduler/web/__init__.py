"""The web dashboard (`sched web`, and `sched run` on loopback): pages, actions, JSON API.

Imported only by the commands that serve it, so the CLI's start-up does not pay for
Starlette, uvicorn and Jinja2.
"""
