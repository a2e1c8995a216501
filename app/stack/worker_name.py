"""The host name an Airflow task instance records, as Airflow's ``[core] hostname_callable``
(set by the local stack's cluster topology).

Triggered in every task process a Celery worker of the local stack starts. Its workers share one
machine, so the machine's name would not tell them apart: each worker's environment names it
(``STREAMFIT_STACK_CELERY_WORKER``), and a task instance's tries then show which worker ran each.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    worker = os.environ.get("STREAMFIT_STACK_CELERY_WORKER")
    return f"{worker}@{socket.getfqdn()}" if worker else socket.getfqdn()
