"""The test worker is a real process on a real broker: a task sent here runs there."""

from tests.conftest import redis_url_for_process, wait_until


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


def test_each_test_process_takes_the_next_redis_database_of_a_given_broker():
    url = "redis://:secret@redis.example:6379/12"
    assert redis_url_for_process(url, "") == url
    assert redis_url_for_process(url, "gw0") == url
    assert redis_url_for_process(url, "gw1") == "redis://:secret@redis.example:6379/13"
    assert redis_url_for_process("redis://127.0.0.1:6379", "gw2") == "redis://127.0.0.1:6379/2"
