"""Redis URLs as people may see them: passwords hidden. No I/O, no redis import.

Job files import `scheduler.api`, which needs this too; keeping it here keeps redis out of
every job file's imports.
"""

from __future__ import annotations

import re

# `//user:password@` (user may be empty), up to the last `@` before the path, so a password
# with an unencoded `@` is hidden whole; works for several comma-separated hosts too.
_PASSWORD = re.compile(r"(//[^/@:]*):[^/]*@")
_QUERY_SECRET = re.compile(r"([?&][a-z_]*password=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with its passwords (userinfo and `...password=` query values) as `***`."""
    return _QUERY_SECRET.sub(r"\1***", _PASSWORD.sub(r"\1:***@", url))
