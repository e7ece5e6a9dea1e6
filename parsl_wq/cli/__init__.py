"""The ``parsl-wq`` command (``main``): status, report, plot, workers, doctor, from another terminal."""
