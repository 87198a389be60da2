"""The master's hot key routes on the front (front.py): GET and HEAD of a key answered whole
(a small value, from the cache or read through; a HEAD; a 404 or 304) and DELETE of a key.

Everything else (a large value's redirect or stream, a range, a listing, a link's query, a
worker's signed request, every other route) is left to aiohttp's handlers, which answer the
same routes the same way: both call the same operations (read_path.answer_whole,
Store.delete) under the same access rules.
"""

from ..errors import StoreError
from ..front import Head
from ..httputil import HTTPProblem, Reply, problem_for, range_asked
from ..keys import InvalidKey, key_from_raw_path
from ..signing import HEADER
from . import read_path
from .handlers import is_key_path, key_need
from .state import MasterState

#: Methods answered here.
METHODS = ("GET", "HEAD", "DELETE")


async def answer(state: MasterState, head: Head) -> Reply | None:
    """Answer ``head`` if it is one of the hot key routes, else return None."""
    if head.method not in METHODS or not is_key_path(head.raw_path):
        return None
    if HEADER in head.headers or "X-Kfs-Direct" in head.headers:
        return None  # a worker's signed request, or a read streamed through: aiohttp's
    try:
        key = key_from_raw_path(head.raw_path)
    except InvalidKey:
        return None  # aiohttp answers the 400
    try:
        caller = await state.access.authorize(head, key_need(head.method), key)
        if head.method == "DELETE":
            await state.store.delete(key)
            return Reply(204)
        answered = await read_path.answer_whole(
            state,
            head.method,
            key,
            caller,
            head.headers.get("If-None-Match"),
            range_asked(head.headers) is not None,
        )
    except HTTPProblem as problem:
        return problem.reply()
    except StoreError as error:
        return problem_for(error).reply()
    return answered if isinstance(answered, Reply) else None
