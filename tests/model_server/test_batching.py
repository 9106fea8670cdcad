"""The real Batcher's choice of where a batch runs: on the event loop or a worker thread."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from service.model_server.batching import INLINE_CALL_SECONDS, Batcher
from service.model_server.config import BatchingOptions


def options(threads: int) -> BatchingOptions:
    return BatchingOptions(
        max_batch_size=8, batch_timeout_micros=0, max_enqueued_batches=2, num_batch_threads=threads
    )


async def run_calls(xs: list[float], holds_gil: bool, threads: int = 1) -> list[str]:
    """Submit one request per x, one after another; the thread each model call ran in.
    A positive x is a slow call (several times ``INLINE_CALL_SECONDS``)."""
    ran_in: list[str] = []

    def run(columns):
        ran_in.append(threading.current_thread().name)
        if columns["x"][0] > 0:
            time.sleep(10 * INLINE_CALL_SECONDS)
        return {"y": columns["x"] * 2}

    with ThreadPoolExecutor(threads, thread_name_prefix="model") as executor:
        batcher = Batcher(
            run, options(threads), executor, lambda *_: None, lambda _: None, holds_gil
        )
        try:
            for x in xs:
                result = await batcher.submit({"x": np.array([x])}, 1)
                assert result["y"].tolist() == [2 * x]
        finally:
            await batcher.close()
    return ran_in


async def test_short_calls_that_hold_the_gil_run_on_the_loop_until_one_is_slow():
    loop_thread = threading.current_thread().name
    ran_in = await run_calls([0.0, 0.0, 1.0, 0.0] + [0.0] * 20, holds_gil=True)
    assert ran_in[:3] == [loop_thread] * 3  # fast so far (the slow one is known afterwards)
    assert ran_in[3].startswith("model")  # after a slow call: back to the worker thread
    assert ran_in[-1] == loop_thread  # fast again for long enough: on the loop again


async def test_calls_that_release_the_gil_or_have_several_threads_stay_in_threads():
    for holds_gil, threads in ((False, 1), (True, 2)):
        ran_in = await run_calls([0.0] * 5, holds_gil=holds_gil, threads=threads)
        assert all(name.startswith("model") for name in ran_in), (holds_gil, threads)
