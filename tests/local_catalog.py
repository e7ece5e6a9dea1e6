"""A catalog_server on 127.0.0.1, for the scripts of test_catalog_and_factory.py that run in a network namespace."""

import contextlib
import subprocess
import time


@contextlib.contextmanager
def running_catalog(port):
    """A catalog server on ``127.0.0.1:port`` while the block runs; stopped (and waited for) after it."""
    catalog = subprocess.Popen(["catalog_server", "-p", str(port), "-I", "127.0.0.1", "-u", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        catalog.terminate()
        try:
            catalog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            catalog.kill()
