"""Which modules an app needs on the worker, found without importing anything.

Four sources, because each misses something the others see:

- the app's bytecode (``IMPORT_NAME``), nested functions included;
- its source (``import`` statements parsed with ``ast``), when the source is available;
- the modules of the globals, defaults and closure values it references;
  helpers defined in ``__main__`` or inside a function travel by value, so their own
  code is scanned too;
- the function file itself: every module its pickle will import on the worker.
"""

import ast
import dis
import functools
import importlib.util
import inspect
import pickletools
import textwrap
import types
from typing import Any, Iterator, Set


def modules_of_app(function: Any, function_file: bytes) -> Set[str]:
    """Module names (dotted, absolute) that running ``function`` on a worker may import."""
    found: Set[str] = set()
    _Scanner(found).scan(function)
    found |= modules_in_function_file(function_file)
    return {name for name in found if name and name != "__main__"}


def modules_in_source(source: str) -> Set[str]:
    """Absolute imports of a module's source text (relative imports stay inside its package)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return set(_absolute_imports(tree))


class _Scanner:
    def __init__(self, found: Set[str]):
        self.found = found
        self.seen: Set[int] = set()

    def scan(self, obj: Any) -> None:
        if id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        if isinstance(obj, functools.partial):
            self.scan(obj.func)
            for value in list(obj.args) + list(obj.keywords.values()):
                self.value(value)
        elif isinstance(obj, types.MethodType):
            self.scan(obj.__func__)
            self.value(obj.__self__)
        elif isinstance(obj, types.FunctionType):
            self.function(obj)
        else:
            self.value(obj)

    def function(self, function: types.FunctionType) -> None:
        package = _package_of(function)
        self.found.add(function.__module__)
        self.found |= set(_bytecode_imports(function.__code__, package))
        self.found |= _source_imports(function)
        if getattr(function, "__wrapped__", None) is not None:
            self.scan(function.__wrapped__)
        names = _global_names(function.__code__)
        for name in names:
            if name in function.__globals__:
                self.value(function.__globals__[name])
        for cell in function.__closure__ or ():
            try:
                self.value(cell.cell_contents)
            except ValueError:      # an empty cell
                pass
        for value in (function.__defaults__ or ()) + tuple((function.__kwdefaults__ or {}).values()):
            self.value(value)

    def value(self, value: Any) -> None:
        if isinstance(value, types.ModuleType):
            self.found.add(value.__name__)
        elif isinstance(value, (types.FunctionType, functools.partial, types.MethodType)):
            module = getattr(value, "__module__", None)
            if _by_value(value) or isinstance(value, (functools.partial, types.MethodType)):
                self.scan(value)            # shipped by value: its own imports matter
            elif module:
                self.found.add(module)
        elif isinstance(value, type):
            self.found.add(value.__module__)
            if _by_value(value) and id(value) not in self.seen:
                self.seen.add(id(value))
                for member in vars(value).values():
                    if isinstance(member, (types.FunctionType, staticmethod, classmethod)):
                        self.scan(getattr(member, "__func__", member))
        elif isinstance(value, (list, tuple, set, frozenset)) and len(value) < 1000:
            for item in value:
                self.value(item)
        elif isinstance(value, dict) and len(value) < 1000:
            for item in value.values():
                self.value(item)
        else:
            self.value(type(value))


def _by_value(function: Any) -> bool:
    """Whether cloudpickle ships ``function`` by value (its code travels), not by name."""
    return (getattr(function, "__module__", None) == "__main__"
            or "<locals>" in getattr(function, "__qualname__", ""))


def _bytecode_imports(code: types.CodeType, package: str) -> Iterator[str]:
    """``IMPORT_NAME`` targets of ``code`` and of every code object nested in it."""
    level = 0
    for instruction in dis.get_instructions(code):
        if instruction.opname == "LOAD_CONST" and isinstance(instruction.argval, int):
            level = instruction.argval
        elif instruction.opname == "IMPORT_NAME":
            yield _absolute(instruction.argval, level, package)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _bytecode_imports(const, package)


def _source_imports(function: types.FunctionType) -> Set[str]:
    try:
        source = textwrap.dedent(inspect.getsource(function))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return set()    # no source (built at run time, or a REPL): the bytecode still tells
    return set(_absolute_imports(tree, _package_of(function)))


def _absolute_imports(tree: ast.AST, package: str = "") -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level and not package:
                continue
            base = _absolute(node.module or "", node.level, package)
            yield base
            for alias in node.names:    # "from pkg import submodule" imports pkg.submodule
                if alias.name != "*":
                    yield f"{base}.{alias.name}"


def _absolute(name: str, level: int, package: str) -> str:
    if not level:
        return name
    try:
        return importlib.util.resolve_name("." * level + name, package)
    except (ImportError, ValueError):
        return ""


def _package_of(function: types.FunctionType) -> str:
    package = function.__globals__.get("__package__")
    if package is None:
        package = function.__module__.rpartition(".")[0]
    return package or ""


def _global_names(code: types.CodeType) -> Set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_GET_OPS = {"BINGET", "LONG_BINGET", "GET"}
_PUT_OPS = {"BINPUT", "LONG_BINPUT", "PUT"}


def modules_in_function_file(data: bytes) -> Set[str]:
    """Modules a function file's pickle imports when loaded (``GLOBAL``/``STACK_GLOBAL``).

    A function file is a one-byte tag followed by a pickle (see ``parsl_wq.client.serialize``).
    """
    modules: Set[str] = set()
    memo = {}
    recent = [None, None]       # the two values most recently pushed, when they are strings
    try:
        for opcode, arg, _ in pickletools.genops(data[1:]):
            name = opcode.name
            if name in _STRING_OPS:
                recent = [recent[1], arg]
            elif name in _GET_OPS:
                recent = [recent[1], memo.get(arg)]
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[1]
            elif name in _PUT_OPS:
                memo[arg] = recent[1]
            elif name == "GLOBAL":
                modules.add(arg.split(" ")[0])
                recent = [recent[1], None]
            elif name == "STACK_GLOBAL":
                if isinstance(recent[0], str):
                    modules.add(recent[0])
                recent = [recent[1], None]
            else:
                recent = [recent[1], None]
    except Exception:       # a truncated or unusual pickle: the other sources still count
        pass
    return modules
