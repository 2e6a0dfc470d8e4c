"""The test worker is a real process on a real broker: a task sent here runs there."""

from tests.conftest import wait_until


def test_a_real_worker_process_answers_ping_and_dies_on_sigkill(worker_factory, celery_app):
    worker = worker_factory()  # its own process: the one tests share is not to be killed
    assert worker.process.pid != 0
    assert celery_app.control.ping(destination=[worker.hostname], timeout=2)
    worker.kill()
    assert worker.process.returncode == -9
    wait_until(
        lambda: not celery_app.control.ping(destination=[worker.hostname], timeout=0.5),
        timeout=10,
        message="the killed worker to stop answering",
    )
