"""The manager process: owns Work Queue's queue (``python -m parsl_wq.manager``, see ``__main__``).

Standard library and Work Queue only: nothing here imports Parsl or ``parsl_wq.client``.
"""
