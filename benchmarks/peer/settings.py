"""The platform's settings plus the peer view's URL, so one gunicorn serves both endpoints.

Only the URLconf differs, and the peer's path joins the machine paths: middleware (the
intake's lean stack, see syncplatform/wsgi.py), database (persistent connections), logging
and apps are the platform's own, so intake and peer run on exactly the same stack.
"""

from syncplatform.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.peer.urls"
MACHINE_PATH_PREFIXES = (*MACHINE_PATH_PREFIXES, "/bench/")  # noqa: F405
