"""Running tasks on a Dask cluster (``--scheduler ADDRESS``; the optional extra ``numstab[dask]``).

The tasks and their function are the very ones a local run uses (stream.run_chunk on
stream.Chunk records): they are pickled to the cluster's workers, which must see the input
files at the same paths (a shared file system) and have numstab installed. Results come back
to this process and are merged here exactly as locally.
"""

from __future__ import annotations

from .errors import UsageError


def check_available() -> None:
    """Refuse, in one line and before any work, --scheduler without the extra."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError("--scheduler needs dask and distributed, which are not installed "
                         "(pip install 'numstab[dask]')") from None


def run_on_dask(fn, tasks, address, on_result) -> None:
    """fn over the tasks on the scheduler at ``address`` (a string such as tcp://host:8786, or a
    distributed.Client / LocalCluster object, as the tests pass); on_result(task, result) here."""
    check_available()
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"--scheduler {address}: cannot connect ({type(exc).__name__}: {exc})") from None
    try:
        futs = client.map(fn, tasks, pure=False)
        index = {f.key: i for i, f in enumerate(futs)}
        for fut in as_completed(futs, with_results=False):
            result = client.gather(fut)
            fut.release()  # the cluster drops it; here it is merged and dropped
            on_result(tasks[index[fut.key]], result)
            del result
    finally:
        client.close()
