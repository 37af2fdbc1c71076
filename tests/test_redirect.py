"""adapters.stdout_to_stderr from several threads at once (Dask's in-process workers call black
boxes concurrently): when every block has ended, sys.stdout is what it was before -- a
save-and-restore per block could restore another block's redirection and send numstab's own
output (the JSON record) to stderr."""

import sys
import threading
import time

from numstab.adapters import stdout_to_stderr


def test_concurrent_redirections_restore_stdout():
    before = sys.stdout
    start = threading.Barrier(8)

    def call(k):
        start.wait()
        for i in range(50):
            with stdout_to_stderr():
                assert sys.stdout is sys.stderr
                time.sleep(0.0002 * ((k + i) % 3))

    threads = [threading.Thread(target=call, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sys.stdout is before


def test_nested_redirection_restores_at_the_outer_end():
    before = sys.stdout
    with stdout_to_stderr():
        with stdout_to_stderr():
            assert sys.stdout is sys.stderr
        assert sys.stdout is sys.stderr
    assert sys.stdout is before


def test_a_forked_callable_while_another_thread_sets_up_its_redirect():
    """A black box isolated in a forked child while another thread is setting up or ending its
    stdout_to_stderr block (two Dask worker threads, each calling a --callable; the lock is held
    around a flush and two dup2 calls): the child inherited the lock held, no thread of the child
    could ever release it, and the child's own redirect waited for ever -- a hung test suite,
    caught with gdb in a Dask test. The child now starts with a fresh lock: the call returns."""
    import numpy as np

    from numstab import adapters

    inside, release = threading.Event(), threading.Event()

    def hold():
        with adapters._REDIRECT["lock"]:  # as in the middle of a block's set-up
            inside.set()
            release.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert inside.wait(10)
        double = adapters.isolate(lambda x: x * 2, "double", timeout=10)
        assert np.array_equal(double(np.arange(3.0)), [0.0, 2.0, 4.0])
    finally:
        release.set()
        t.join()
