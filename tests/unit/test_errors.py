"""The server's error tree (kittenfs/errors.py) and its one map to HTTP (httputil.STATUS)."""

import pytest

from kittenfs import errors
from kittenfs.httputil import problem_for


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.NotFound("no key 'a'"), 404, "not_found"),
        (errors.NotFound("no job 'x'", "no_such_job"), 404, "no_such_job"),
        (errors.StateConflict("running", "job_running"), 409, "job_running"),
        (errors.PreconditionFailed("matches"), 412, "key_exists"),
        (errors.InvalidRequest("short", "short_body"), 400, "short_body"),
        (errors.TooLarge(10), 413, "value_too_large"),
        (errors.NoGoodReplica("none"), 502, "no_good_replica"),
        (errors.ReplicaUnavailable("stalled", "replica_stalled"), 503, "replica_stalled"),
        (errors.NotEnoughWorkers(3, 1), 503, "not_enough_workers"),
        (errors.StoreError("?"), 500, "store_error"),
    ],
)
def test_each_error_maps_to_its_status(error: errors.StoreError, status: int, code: str) -> None:
    problem = problem_for(error)
    assert (problem.status, problem.error, problem.detail) == (status, code, error.detail)


def test_the_tree_is_drawn_in_the_docstring() -> None:
    doc = errors.__doc__ or ""
    for cls in (errors.StoreError, errors.NotFound, errors.NotEnoughWorkers, errors.TooLarge):
        assert cls.__name__ in doc
