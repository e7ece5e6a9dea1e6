"""An analysis in the Coffea style: many chunks processed into partial histograms, merged as they come.

Each ``process`` app reads one chunk of events (here generated from its seed,
standing in for a file range), selects events and fills a histogram; ``merge``
apps add partial histograms pairwise into a tree, so merging runs on the
workers while other chunks are still processed. A shared corrections file goes
with every task (``extra_input_files``, cached on each worker), and
``progress=True`` draws a bar in the terminal.

    python examples/coffea_style.py [--chunks 200]
"""

import argparse
import json
import os
import tempfile

import parsl
from parsl import python_app
from parsl.config import Config

from parsl_wq import WorkQueueExecutor

BINS = 40
LOW, HIGH = 0.0, 200.0


@python_app
def process(chunk, events, parsl_resource_specification={"cores": 1, "memory": 300}):
    """One chunk: events with a mass-like variable; keep those that pass a cut; histogram them."""
    import json
    import random
    with open("corrections.json") as f:         # shipped with every task
        scale = json.load(f)["energy_scale"]
    rng = random.Random(chunk)
    counts = [0] * BINS
    for _ in range(events):
        mass = scale * (rng.gauss(91.2, 2.5) if rng.random() < 0.3 else rng.expovariate(1 / 40.0))
        if LOW <= mass < HIGH and rng.random() < 0.8:      # the selection
            counts[int((mass - LOW) / (HIGH - LOW) * BINS)] += 1
    return counts


@python_app
def merge(a, b):
    return [x + y for x, y in zip(a, b)]


def tree_merge(histograms):
    """Add partial histograms pairwise: a tree of merge apps that run as soon as their inputs are done."""
    while len(histograms) > 1:
        paired = [merge(histograms[i], histograms[i + 1]) for i in range(0, len(histograms) - 1, 2)]
        histograms = paired + ([histograms[-1]] if len(histograms) % 2 else [])
    return histograms[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--events", type=int, default=5000, help="events per chunk")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="coffea-style-")
    corrections = os.path.join(folder, "corrections.json")
    with open(corrections, "w") as f:
        json.dump({"energy_scale": 1.01}, f)
    executor = WorkQueueExecutor(port=0, extra_input_files=[corrections], progress=True,
                                 worker_options="--cores 2")
    with parsl.load(Config(executors=[executor], run_dir="runinfo")):
        total = tree_merge([process(chunk, args.events) for chunk in range(args.chunks)]).result()
    peak = max(range(BINS), key=lambda i: total[i])
    width = (HIGH - LOW) / BINS
    print(f"{sum(total)} events selected from {args.chunks} chunks; "
          f"the peak bin is {LOW + peak * width:.0f}-{LOW + (peak + 1) * width:.0f}")
    for i in range(max(0, peak - 3), min(BINS, peak + 4)):
        print(f"  {LOW + i * width:5.0f}  {'#' * (60 * total[i] // total[peak])}")


if __name__ == "__main__":
    main()
