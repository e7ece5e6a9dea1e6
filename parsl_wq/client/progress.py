"""The live progress bar of ``WorkQueueExecutor(progress=True)``: one bar per executor, on stderr.

The bar counts finished apps (done or failed) out of those submitted so far;
beside it: running, waiting, failed, and the workers connected. It is redrawn
when the run's status is (``parsl_wq.client.run_status``), about once a second.

Drawn by tqdm: one small dependency with none of its own, whose ``tqdm.auto``
gives a widget in a Jupyter notebook (with ipywidgets) and text in a terminal.
A bar that only grows, with a few counts beside it, is what a workflow needs;
rich's live tables would redraw more than one line in logs and notebooks.

Shown when stderr is a terminal or the code runs in a notebook; ``progress="always"``
shows it anyway (a batch job's log, for example), and False never.
"""

import sys
from typing import Any, Dict, Union

ALWAYS = "always"


def wanted(setting: Union[bool, str]) -> bool:
    if setting == ALWAYS:
        return True
    if setting is not True:
        return False
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class ProgressBar:
    def __init__(self, label: str):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=0, desc=label, unit="app", file=sys.stderr, dynamic_ncols=True, leave=True,
                        mininterval=0, bar_format="{desc}: {n}/{total} apps |{bar}| {elapsed}{postfix}")

    def show(self, status: Dict[str, Any]) -> None:
        apps = status["apps"].values()
        done, failed = sum(a["done"] for a in apps), sum(a["failed"] for a in apps)
        self.bar.total = sum(a["submitted"] for a in apps)
        self.bar.n = done + failed
        self.bar.set_postfix_str(f"running {sum(a['running'] for a in apps)}, waiting "
                                 f"{sum(a['waiting'] for a in apps)}, failed {failed}, "
                                 f"workers {len(status['workers'])}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
