"""Checking ``parsl_resource_specification`` and turning it into a Work Queue request.

Accepted keys (all optional; a partial specification is fine):

=================  ==========================  ==================================
key                type                        meaning
=================  ==========================  ==================================
cores              int >= 1                    cores the task needs
memory             int >= 0                    memory in MB
disk               int >= 0                    sandbox disk in MB
gpus               int >= 0                    GPUs
priority           int or float                higher runs first
running_time_min   int or float >= 0           seconds the task needs at least
category           non-empty str               Work Queue category of the task
=================  ==========================  ==================================

What Work Queue does with undeclared resources: a task that declares none of
cores, memory, disk and gpus gets a whole worker. A task that declares some of
them gets, for each undeclared one, the share of the worker in proportion to
the declared ones (2 of 8 cores declared: a quarter of the memory and disk).
"""

from dataclasses import dataclass
from numbers import Real
from typing import Any, Dict, Mapping, Optional

from parsl_wq.errors import ConfigurationError, InvalidResourceSpecification
from parsl_wq.protocol.messages import RESOURCES


@dataclass(frozen=True)
class Resources:
    cores: Optional[int] = None
    memory: Optional[int] = None
    disk: Optional[int] = None
    gpus: Optional[int] = None
    priority: Optional[float] = None
    running_time_min: Optional[float] = None
    category: Optional[str] = None

    def slots(self, cores_per_worker: int) -> int:
        """Cores this task holds while outstanding; a task without cores holds a whole worker."""
        return self.cores if self.cores is not None else cores_per_worker


def _count(minimum: int):
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InvalidResourceSpecification(key, value, f"an int >= {minimum}")
        return value
    return check


def _number(minimum: Optional[float]):
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, Real) or (minimum is not None and value < minimum):
            bound = "" if minimum is None else f" >= {minimum}"
            raise InvalidResourceSpecification(key, value, f"an int or float{bound}")
        return value
    return check


def _category(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidResourceSpecification(key, value, "a non-empty str")
    return value


CHECKS = {
    "cores": _count(1),
    "memory": _count(0),
    "disk": _count(0),
    "gpus": _count(0),
    "priority": _number(None),
    "running_time_min": _number(0),
    "category": _category,
}


def parse_resource_specification(spec: Optional[Mapping[str, Any]]) -> Resources:
    """Check ``spec`` and return the request it makes.

    Raises
    ------
    InvalidResourceSpecification
        For a spec that is not a dict, an unknown key, a value of the wrong
        type or out of range; the message names the key, the value and what
        is accepted.
    """
    if spec is None:
        return Resources()
    if not isinstance(spec, Mapping):
        raise InvalidResourceSpecification("parsl_resource_specification", spec,
                                           "a dict with keys " + ", ".join(CHECKS))
    checked = {}
    for key, value in spec.items():
        check = CHECKS.get(key)
        if check is None:
            raise InvalidResourceSpecification(key, value, "the accepted keys are " + ", ".join(CHECKS))
        checked[key] = check(key, value)
    return Resources(**checked)



def check_category_table(parameter: str, table: Optional[Mapping[str, Mapping[str, int]]]) -> Dict[str, Dict[str, int]]:
    """Check a per-category resource table such as ``{"sim": {"cores": 2, "memory": 4000}}``.

    Keys are category names ("*" for every other category); values map cores,
    memory (MB), disk (MB) or gpus to ints. Raises ConfigurationError naming the bad entry.
    """
    checked: Dict[str, Dict[str, int]] = {}
    for category, resources in (table or {}).items():
        if not isinstance(category, str) or not category:
            raise ConfigurationError(parameter, table, f"category names are non-empty str (got {category!r})")
        if not isinstance(resources, Mapping):
            raise ConfigurationError(parameter, table, f"each category maps to a dict of "
                                     f"{', '.join(RESOURCES)} (got {resources!r} for {category!r})")
        checked[category] = {}
        for key, value in resources.items():
            if key not in RESOURCES:
                raise ConfigurationError(parameter, table, f"resources are {', '.join(RESOURCES)} "
                                         f"(got {key!r} for {category!r})")
            try:
                checked[category][key] = CHECKS[key](key, value)
            except InvalidResourceSpecification as e:
                raise ConfigurationError(parameter, table,
                                         f"{category!r}: {key} must be {e.accepted} (got {value!r})") from None
    return checked
