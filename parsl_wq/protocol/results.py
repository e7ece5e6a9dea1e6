"""The names of a task's results, as ``TaskDone.result_name`` carries them.

Work Queue's own results are named as its ``WORK_QUEUE_RESULT_<NAME>``
constants (``SUCCESS``, ``INPUT_MISSING``, ...); the manager reads those names
from the engine. These are the ones the code looks for by name, and those
that parsl_wq adds for what Work Queue has no result of its own.
"""

# Work Queue's
SUCCESS = "SUCCESS"
INPUT_MISSING = "INPUT_MISSING"
OUTPUT_MISSING = "OUTPUT_MISSING"
SIGNAL = "SIGNAL"
RESOURCE_EXHAUSTION = "RESOURCE_EXHAUSTION"
MAX_RETRIES = "MAX_RETRIES"

# parsl_wq's
NOT_SUBMITTED = "NOT_SUBMITTED"           # Work Queue refused the task at submit
NOT_STARTED = "NOT_STARTED"               # the worker could not set up the task's sandbox, on every try
WARM_PROCESS_LOST = "WARM_PROCESS_LOST"   # a warm task's warm host gave no answer

# Results for which the task's command itself ran to its end; the others say what Work Queue did.
RAN_TO_END = (SUCCESS, OUTPUT_MISSING, SIGNAL)
