"""The executor's parameters, checked before anything starts.

Each check raises ``ConfigurationError`` naming the parameter, its value and
what would be accepted. Checks that depend on the engine (TLS, coprocesses)
take its ``Features``.
"""

import os
import shlex
import shutil
from dataclasses import dataclass
from typing import Dict

from parsl_wq.engine import Features
from parsl_wq.errors import ConfigurationError
from parsl_wq.protocol.messages import ALLOCATION_MODES
from parsl_wq.client.resources import check_category_table


@dataclass(frozen=True)
class Checked:
    """What the checks derive from the parameters."""
    mode: str                           # the allocation mode in effect
    max: Dict[str, Dict[str, int]]      # category_max_resources, checked
    first: Dict[str, Dict[str, int]]    # category_first_allocation, checked


def check_options(options, engine: Features) -> Checked:
    """Check the executor's parameters (``options``: anything with their names as attributes) against ``engine``.

    Raises ConfigurationError naming the first bad value and what would be accepted.
    """
    _check_tls(options, engine)
    if (options.extra_pkgs or options.pack_cache_dir) and not options.pack:
        raise ConfigurationError("pack", False, "pack=True: extra_pkgs and pack_cache_dir only "
                                 "apply to packed environments")
    if options.factory is not None and len(shlex.split(options.worker_executable)) != 1:
        raise ConfigurationError("worker_executable", options.worker_executable,
                                 "with a factory, one program (a name on the PATH or a path), which the factory "
                                 "copies and ships with each worker; put options in worker_options")
    if options.project_password_file is not None and not os.path.isfile(options.project_password_file):
        raise ConfigurationError("project_password_file", options.project_password_file,
                                 "the path of an existing password file")
    if options.env is not None:
        for key, value in options.env.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ConfigurationError("env", options.env, f"a dict of str to str (entry {key!r}: {value!r})")
    if not 0 <= options.port <= 65535:
        raise ConfigurationError("port", options.port, "0 (any free port) or a port number up to 65535")
    if options.monitor_interval is not None and options.monitor_interval < 1:
        raise ConfigurationError("monitor_interval", options.monitor_interval,
                                 "None (Work Queue's own, 5 s) or an int >= 1 (seconds)")
    if options.autolabel_window < 1:
        raise ConfigurationError("autolabel_window", options.autolabel_window, "an int >= 1")
    if options.allocation_mode is not None and options.allocation_mode not in ALLOCATION_MODES:
        raise ConfigurationError("allocation_mode", options.allocation_mode,
                                 "one of " + ", ".join(repr(m) for m in ALLOCATION_MODES))
    if options.allocation_mode not in (None, "fixed") and not options.autolabel:
        raise ConfigurationError("allocation_mode", options.allocation_mode,
                                 "learning allocations needs measurements: set autolabel=True as well")
    mode = options.allocation_mode or ("max-seen" if options.autolabel else "fixed")
    category_max = check_category_table("category_max_resources", options.category_max_resources)
    category_first = check_category_table("category_first_allocation", options.category_first_allocation)
    if options.catalog is not None and not is_host_port(options.catalog):
        raise ConfigurationError("catalog", options.catalog, 'a "host:port" string, for example "127.0.0.1:9097"')
    for name in ("keepalive_interval", "keepalive_timeout"):
        if getattr(options, name) is not None and getattr(options, name) < 1:
            raise ConfigurationError(name, getattr(options, name), "None (Work Queue's default) or an int >= 1")
    if options.max_retries is not None and options.max_retries < 0:
        raise ConfigurationError("max_retries", options.max_retries, "None (no limit) or an int >= 0")
    if options.max_bundle < 1:
        raise ConfigurationError("max_bundle", options.max_bundle,
                                 "an int >= 1: the most apps in one Work Queue task (1 turns bundling off)")
    _check_extra_files(options)
    if options.fast_abort is not None and not options.fast_abort >= 1:
        raise ConfigurationError("fast_abort", options.fast_abort, "None (off) or a number >= 1: how many times "
                                 "what its apps should take a task may run before it is run again")
    if options.progress not in (True, False, "always"):
        raise ConfigurationError("progress", options.progress, 'True, False or "always"')
    if options.scaling_cores_per_worker < 1:
        raise ConfigurationError("scaling_cores_per_worker", options.scaling_cores_per_worker, "an int >= 1")
    return Checked(mode, category_max, category_first)


def _check_extra_files(options) -> None:
    names: Dict[str, str] = {}
    for path in options.extra_input_files:
        if not isinstance(path, str) or not os.path.isfile(path):
            raise ConfigurationError("extra_input_files", options.extra_input_files,
                                     f"a list of paths of existing files ({path!r} is not one)")
        name = os.path.basename(path)
        if name.startswith("pwq_") or name in names:
            raise ConfigurationError("extra_input_files", options.extra_input_files,
                                     f"files with distinct names that do not start with pwq_ ({path!r} "
                                     f"is sent as {name!r}" + (f", as is {names[name]!r})" if name in names else ")"))
        names[name] = path
    if isinstance(options.x509_proxy, str) and not os.path.isfile(options.x509_proxy):
        raise ConfigurationError("x509_proxy", options.x509_proxy, "the path of an existing proxy file, False "
                                 "(no proxy) or None ($X509_USER_PROXY if set)")
    if options.x509_proxy is True:
        raise ConfigurationError("x509_proxy", True, "a path, False (no proxy) or None ($X509_USER_PROXY if set)")


def _check_tls(options, engine: Features) -> None:
    if options.ssl in (None, False):
        return
    if not engine.tls:
        raise ConfigurationError("ssl", options.ssl, "TLS needs a Work Queue with TLS support (cctools 7.x, as "
                                 "conda-forge's ndcctools ships it); the one found is "
                                 f"{engine.description}. Use ssl=None or False")
    if options.ssl is True and shutil.which("openssl") is None:
        raise ConfigurationError("ssl", True, "openssl is needed to make the run's certificate: install it, "
                                 "or give ssl=(key file, certificate file)")
    if isinstance(options.ssl, tuple):
        for path in options.ssl:
            if not os.path.isfile(path):
                raise ConfigurationError("ssl", options.ssl, f"(key file, certificate file), both existing PEM "
                                         f"files; {path!r} is not a file")


def is_host_port(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536
