"""The project's settings, plus one line per database connection a process opens.

Workers of ``tests/test_worker_connections.py`` run with these: each line of the file named by
``CONNECTION_LOG`` is the id of the process that opened a connection, so a test can count the
connections a worker's pool process opened over a run.
"""

import os

from django.db.backends.signals import connection_created

from config.settings import *  # noqa: F403


def _log_connection(sender, connection, **kwargs) -> None:
    with open(os.environ["CONNECTION_LOG"], "a") as log:
        log.write(f"{os.getpid()}\n")


connection_created.connect(_log_connection, weak=False, dispatch_uid="tests_connection_log")
