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
