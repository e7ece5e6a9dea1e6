"""Submit-side serialization of app functions, arguments and results.

Functions are written in one of two forms that ``parsl_wq/runner.py`` reads:

- ``b"F"`` + a pickled description of a plain function (marshalled code,
  referenced globals, defaults, closure). This covers apps defined in a script
  that use modules and plain data, and lets the worker skip importing
  cloudpickle (~40 ms per task on 2 cores: ``python -X importtime -c "import cloudpickle"``).
- ``b"P"`` + a pickle: plain pickle for functions importable by name,
  cloudpickle for everything else (lambdas, helpers defined in ``__main__``, ...).

Parsl wraps every python_app in ``parsl.app.errors.wrap_error``; that wrapper is
removed here (the runner catches exceptions itself), so unpickling the function
on the worker does not import Parsl.
"""

import hashlib
import io
import marshal
import pickle
import sys
import types
from typing import Any, Callable, Dict, Optional, Tuple

import cloudpickle
import tblib
from parsl.app.errors import wrap_error

from parsl_wq.errors import AppBaseException, RemoteException, ResultUnreadable

_WRAP_ERROR_CODE = wrap_error(len).__code__


class _NotPlain(Exception):
    """The object refers to something only cloudpickle can ship."""


class _PlainPickler(pickle.Pickler):
    """Plain pickle that refuses anything defined in ``__main__``.

    A plain pickle of ``__main__.f`` succeeds here but cannot be loaded on a
    worker, whose ``__main__`` is the runner.
    """

    def reducer_override(self, obj: Any) -> Any:
        owner = obj if isinstance(obj, (type, types.FunctionType)) else type(obj)
        if getattr(owner, "__module__", None) == "__main__":
            raise _NotPlain(owner)
        return NotImplemented


def plain_dumps(obj: Any) -> Optional[bytes]:
    """Pickle ``obj`` with plain pickle if a worker can load it without cloudpickle."""
    buffer = io.BytesIO()
    try:
        _PlainPickler(buffer, protocol=5).dump(obj)
    except (_NotPlain, pickle.PicklingError, TypeError, AttributeError):
        return None
    return buffer.getvalue()


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``: plain pickle when it suffices, cloudpickle otherwise."""
    data = plain_dumps(obj)
    return data if data is not None else cloudpickle.dumps(obj, protocol=5)


def unwrap(function: Callable) -> Callable:
    """Remove Parsl's ``wrap_error`` wrapper, which would import Parsl on the worker."""
    if getattr(function, "__code__", None) is _WRAP_ERROR_CODE:
        return function.__wrapped__
    return function


def serialize_function(function: Callable) -> bytes:
    """The bytes of a function file for ``function`` (``runner.load_function`` reads them)."""
    function = unwrap(function)
    if isinstance(function, types.FunctionType) and function.__module__ == "__main__":
        info = describe_plain_function(function)
        body = plain_dumps(info) if info is not None else None
        if body is not None:
            return b"F" + body
    return b"P" + dumps(function)


def function_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def describe_plain_function(function: types.FunctionType) -> Optional[Dict[str, Any]]:
    """Describe ``function`` for ``runner.build_function``, or None if it certainly needs cloudpickle.

    The caller still pickles the description with ``plain_dumps``, which refuses
    globals, defaults or closure values that only cloudpickle can ship.
    """
    if function.__closure__ is not None:
        try:
            closure = tuple(cell.cell_contents for cell in function.__closure__)
        except ValueError:  # an empty cell
            return None
    else:
        closure = None
    modules: Dict[str, str] = {}
    values: Dict[str, Any] = {}
    self_names = []
    for name in sorted(_global_names(function.__code__)):
        if name not in function.__globals__:
            continue  # a builtin, or an attribute name
        value = function.__globals__[name]
        if value is function:
            self_names.append(name)
        elif isinstance(value, types.ModuleType):
            if sys.modules.get(value.__name__) is not value or value.__name__ == "__main__":
                return None
            modules[name] = value.__name__
        else:
            values[name] = value
    info = {
        "python": tuple(sys.version_info[:2]),
        "code": marshal.dumps(function.__code__),
        "name": function.__name__,
        "qualname": function.__qualname__,
        "module": function.__module__,
        "defaults": function.__defaults__,
        "kwdefaults": function.__kwdefaults__,
        "closure": closure,
        "globals": values,
        "modules": modules,
        "self_names": self_names,
    }
    return info


def _global_names(code: types.CodeType):
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def load_outcome(data: bytes, task_id: int) -> Tuple[bool, Any]:
    """Read a runner's result: ``(True, value)`` or ``(False, exception to raise)``.

    The exception is always an ``Exception``: an app's ``SystemExit``,
    ``KeyboardInterrupt`` or other ``BaseException`` arrives wrapped in
    ``AppBaseException``, which Parsl and ``concurrent.futures`` handle.
    """
    try:
        outcome = pickle.loads(data)
    except BaseException as e:      # unpickling runs the result's own code, which may raise anything
        return False, ResultUnreadable(task_id, e)
    if outcome["ok"]:
        return True, outcome["value"]
    exc = rebuild_exception(outcome)
    if not isinstance(exc, Exception):
        exc = AppBaseException(exc)
    return False, exc


def rebuild_exception(failure: Dict[str, Any]) -> BaseException:
    """The app's exception as its own type, with the remote traceback and cause chain attached.

    An exception that cannot be loaded here (its class is missing on the
    submit side, or it does not unpickle) becomes a ``RemoteException`` that
    carries its type name, message and traceback text.
    """
    exc = _load_exception(failure.get("exception"))
    if exc is None:
        exc = RemoteException(failure["type_name"], failure["message"], failure["traceback_text"])
    elif failure.get("traceback") is not None:
        try:
            exc = exc.with_traceback(tblib.Traceback.from_dict(failure["traceback"]).as_traceback())
        except Exception:
            _add_note(exc, "Remote traceback:\n" + failure["traceback_text"])
    if failure.get("frames_omitted"):
        _add_note(exc, f"{failure['frames_omitted']} frames in the middle of the remote traceback were left out")
    if failure.get("cause") is not None:
        exc.__cause__ = rebuild_exception(failure["cause"])
    return exc


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:       # before Python 3.11: kept, not shown
        exc.__notes__ = getattr(exc, "__notes__", []) + [note]


def _load_exception(data: Optional[bytes]) -> Optional[BaseException]:
    if data is None:
        return None
    try:
        exc = pickle.loads(data)
    except BaseException:
        return None
    return exc if isinstance(exc, BaseException) else None
