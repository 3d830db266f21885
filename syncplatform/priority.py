"""Make a process's niceness count on Linux kernels that group processes by session.

With autogroup scheduling (CONFIG_SCHED_AUTOGROUP, on by default on Debian and Ubuntu),
the kernel shares the CPU between sessions first and only then between the processes of a
session by their niceness. `make run` (honcho) and Compose-less deployments start every
process in a session of its own, so `nice` alone changes nothing between them: a worker at
niceness 10 gets the same share as the storefront. A session's own niceness is set through
/proc/self/autogroup; no library does this, hence these few lines.
"""

from __future__ import annotations

import os


def session_follows_niceness() -> None:
    """Give this process's session group the niceness the process runs at.

    Only where the session's leader runs at that niceness too, i.e. the whole session was
    started niced (a process under honcho or a supervisor, or one forked from it, like a
    gunicorn worker), so a `nice` command typed in a terminal never lowers the terminal's
    whole session. Without autogroups (cgroup-managed services, containers, other systems)
    there is nothing to do.
    """
    niceness = os.nice(0)
    if niceness <= 0:
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, os.getsid(0)) != niceness:
            return
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(niceness))
    except OSError:
        pass  # no autogroups here, no leader any more, or not allowed: nice alone applies
