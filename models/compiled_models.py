r"""Compile a PyMC model for nutpie once per install, not once per call: an in-process and on-disk cache.

What is compiled, and what can be kept
--------------------------------------
``nutpie.compile_pymc_model(model)`` (nutpie's numba backend) takes several seconds on each of this project's
models and is redone on every call (``benchmarks/bench_endpoint_analysis.py`` prints the current figures). On
the day-365 C-peptide model about 0.6 s of it is PyTensor building and rewriting the log-density graph and 0.1 s
the initial-point function; the rest (over 80%) is numba typing and LLVM-compiling the two C callbacks nutpie
hands to its Rust sampler, the log density with its gradient and the "expand" function that maps a draw to the
stored variables. PyTensor's own on-disk caches (C modules, and numba's cache of the functions it generates per graph,
both in its compiledir) do not help with those callbacks: numba caches a ``cfunc`` under a key made from the
pickled values of its closure, and nutpie's closures hold fresh ``uuid4`` names on every call, so numba's
cache never hits (passing ``cache=True`` through ``compile_pymc_model`` only writes a new file each time, next to
nutpie's sources). Neither can the compiled model be pickled: it holds numba ``CFunc`` objects.

The callbacks' machine code can be kept, though, exactly the way numba keeps its own cache entries:
``CompileResult._reduce()`` serialises the finished LLVM library as object code with its function
descriptor and environment, and ``CompileResult._rebuild`` links it back into a new process. numba refuses
this for code that embeds process-specific addresses (``library.has_dynamic_globals``: ctypes pointers, or
constant arrays above 1 MB) and for lifted loops; this module applies the same test and keeps such a model
in memory only. So:

* :func:`compile_nutpie` builds the nutpie model with nutpie's own steps (the same graph, rewrites and numba
  callbacks as ``nutpie.compile_pymc_model``; only the shared-data field names are fixed, ``shared_0`` ...,
  instead of random) and hooks numba's cache protocol (``load_overload`` / ``save_overload``) to capture
  the compile results;
* the result is kept in memory and written to disk under :func:`model_structure_key`; a later call, in this
  process or another, rebuilds the callbacks from the stored object code (a fraction of a second), and
  builds only the cheap per-model parts afresh: the initial-point function (PyTensor, its C code cached by
  PyTensor) and the data, taken from the model's ``pm.Data`` containers.

What the key is
---------------
:func:`model_structure_key` hashes the model's structure, not its data: the log-density graph and the graphs
of the stored variables (every operation with its parameters, every constant with its value, every free
input with its name and type), the names, types and array shapes of the shared variables (``pm.Data``
containers: their values are not in the key, since they are set afresh on every use), the values of integer
scalar shared variables (dimension lengths, which fix array shapes), ``model.check_bounds``, the stored
variable names, the versions of Python, numpy, PyTensor, PyMC, nutpie, numba and llvmlite, the PyTensor
settings that change the compiled code (``floatX``, optimiser flags; ``numba__fastmath`` is always off) and
numba's target machine (triple, CPU and CPU features). Two models built by the same code on data of the same shapes share a
key; a different prior constant, distribution or data shape gives another key. Data passed as plain arrays
(not ``pm.Data``) are constants, so they are in the key: such a model is reused only on the same data.

Safety of the disk cache
------------------------
One file per key, ``<key>.nutpie`` in :func:`default_cache_dir` (``$ISLETBAYES_COMPILE_CACHE``; else
``$XDG_CACHE_HOME/isletbayes/compiled``, else ``~/.cache/isletbayes/compiled``; ``ISLETBAYES_COMPILE_CACHE=off``
keeps the cache in memory only). A file is written to a temporary name in the same folder, flushed, fsynced
and renamed, so a reader sees a whole entry or none, and concurrent writers of one key leave one whole
entry. Processes do not even compile one key twice: a process that needs a model not on disk holds an advisory
lock (``flock`` on ``.<key>.lock`` beside the entry) while it compiles and writes it, and another process that
needs the same model meanwhile waits for that lock and then loads the entry (the operating system releases the
lock however its holder ends; where it cannot be taken, each process compiles). An entry records the cache
format, the key, the package versions and the SHA-256 of its payload. An entry that cannot be read, whose
checksum, key, format or versions do not match, or whose code cannot be rebuilt, is deleted and the model is
compiled again (and the reason is kept in :attr:`CompiledModelCache.last`).
Entries are pickles, as numba's own cache files are: the cache folder must be writable only by its user.

Reproducibility: every model is compiled with PyTensor's ``numba__fastmath`` off (:func:`exact_float_code`).
With it on (PyTensor's default), LLVM may reorder floating-point operations differently when PyTensor's inner
functions are compiled together with the callback (a fresh compile) than when they come from its function cache
(a model loaded from this cache in another process): the joint graft-function model then gave draws that parted
from the fourth significant digit after a few hundred iterations, so the first run after an installation
disagreed with every later one, and the command line with the main job (tests/analyses/test_every_door.py).
With exact IEEE arithmetic a fresh compile, a load from disk and a compile without the cache give the same draws
for the same seed (tested).

API
---
``compile_nutpie(model, var_names=None, cache=None) -> nutpie CompiledPyMCModel``
``sample_nutpie(model, settings, var_names=None, cache=None, label=None) -> DataTree`` (the draws of
``sampling.fit(model, settings)`` with ``nuts_sampler="nutpie"``, compiled through the cache; progress to the
reporter of ``sampling.reporting_progress``)
``model_structure_key(model, var_names=None) -> str``; ``model_structure(model, var_names=None) -> ModelStructure``;
``CompiledModelCache(directory=None, disk=True)`` with ``.compile_nutpie(model, var_names=None)``,
``.compile_in_background(builders, var_names=None)`` (compile other models in another process meanwhile, onto the
disk cache, where a later ``compile_nutpie`` loads them: the compiles of a job's models overlap), ``.last``
(a ``CacheEvent``: key, source "compiled" / "disk" / "disk (compiled in the background)" / "memory", seconds,
path, why a disk entry was rejected),
``.entry_path(key)``, ``.clear_memory()``; ``default_cache()``; ``default_cache_dir()``; ``package_versions()``;
``nutpie_seed(seed, chains)``; ``CACHE_ENV``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import re
import sys
import tempfile
import threading
import time
import warnings
import weakref
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

#: Environment variable naming the cache folder ("off", "none", "0" or "" keep the cache in memory only).
CACHE_ENV = "ISLETBAYES_COMPILE_CACHE"
#: Bumped whenever the layout of a cache entry changes.
CACHE_FORMAT = 1
_SUFFIX = ".nutpie"
_DISABLED = {"", "0", "off", "none", "false", "no"}
# nutpie's internal steps of compile_pymc_model (nutpie 0.16) that this module calls; if a future nutpie lacks
# one, compile_nutpie falls back to nutpie.compile_pymc_model without caching (and says so once).
_NUTPIE_STEPS = ("_make_functions", "make_user_data", "_make_c_logp_func", "_make_c_expand_func",
                 "_prepare_dims_and_coords", "_rv_dict_to_flat_array_wrapper", "_wrap_with_lock",
                 "CompiledPyMCModel")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


# --------------------------------------------------------------------------------------------------------------
# the key
# --------------------------------------------------------------------------------------------------------------
def package_versions() -> dict[str, str]:
    """Everything besides the model that changes the compiled code: versions, PyTensor settings, target CPU."""
    import llvmlite
    import numba
    import nutpie
    import pymc
    import pytensor
    from numba.core.registry import cpu_target

    config = pytensor.config
    triple, cpu, features = cpu_target.target_context.codegen().magic_tuple()
    return {
        "cache_format": str(CACHE_FORMAT), "python": sys.version.split()[0], "machine": platform.machine(),
        "numpy": np.__version__, "pytensor": pytensor.__version__, "pymc": pymc.__version__,
        "nutpie": nutpie.__version__, "numba": numba.__version__, "llvmlite": llvmlite.__version__,
        "floatX": str(config.floatX), "numba__fastmath": "off",  # always, see exact_float_code
        "optimizer": str(config.optimizer), "optimizer_including": str(config.optimizer_including),
        "optimizer_excluding": str(config.optimizer_excluding),
        "optimizer_requiring": str(config.optimizer_requiring),
        "target_triple": str(triple), "target_cpu": str(cpu), "target_features": str(features),
    }


def _compiled_outputs(model) -> list:
    """The graphs nutpie compiles: the joint log density (with Jacobians) and the variables it stores."""
    return [model.logp(), *model.unobserved_value_vars]


def _describe_value(value) -> str:
    from pytensor.graph.op import Op

    if isinstance(value, Op):
        return _describe_op(value)
    if isinstance(value, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return f"array({value.dtype},{value.shape},{digest})"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(_describe_value(v) for v in value) + ")"
    if isinstance(value, dict) or type(value).__name__ == "frozendict":
        return "{" + ",".join(f"{_describe_value(k)}:{_describe_value(v)}" for k, v in sorted(value.items(), key=str)) + "}"
    if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return repr(value)


def _describe_op(op) -> str:
    from pytensor.graph.op import HasInnerGraph

    name = f"{type(op).__module__}.{type(op).__qualname__}"
    props = getattr(op, "__props__", None)
    if props:
        body = ",".join(f"{p}={_describe_value(getattr(op, p))}" for p in props)
    else:
        body = str(op)
    if isinstance(op, HasInnerGraph):
        inner, _ = _describe_graph(list(op.inner_outputs), inputs=list(op.inner_inputs))
        body += "|inner:" + ";".join(inner)
    return f"{name}[{body}]"


def _describe_graph(outputs: list, inputs: list | None = None) -> tuple[list[str], list]:
    """One line per variable and operation, in topological order; returns the lines and the shared variables."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import toposort

    index: dict[Any, int] = {}
    lines: list[str] = []
    shared: list = []
    for i, var in enumerate(inputs or []):
        index[var] = len(index)
        lines.append(f"v{index[var]}=inner_input {i} {var.type}")

    def ref(var) -> int:
        if var not in index:
            if isinstance(var, SharedVariable):
                value = np.asarray(var.get_value(borrow=True))
                text = f"shared {var.name!r} {var.type} shape={value.shape}"
                if value.ndim == 0 and value.dtype.kind in "iub":
                    text += f" value={value.item()!r}"  # dimension lengths fix array shapes
                shared.append(var)
            elif isinstance(var, Constant):
                text = f"const {var.type} {_describe_value(var.data)}"
            else:
                text = f"input {var.name!r} {var.type}"
            index[var] = len(index)
            lines.append(f"v{index[var]}={text}")
        return index[var]

    for node in toposort(outputs, blockers=inputs):
        args = [ref(v) for v in node.inputs]
        first = len(index)
        for out in node.outputs:
            index[out] = len(index)
        lines.append(f"v{first}..v{len(index) - 1}={_describe_op(node.op)}({','.join(map(str, args))})"
                     f"->{','.join(str(o.type) for o in node.outputs)}")
    lines.append("outputs=" + ",".join(str(ref(v)) for v in outputs))
    return lines, shared


@dataclass(frozen=True)
class ModelStructure:
    """A model's structure key and what the cache needs to know about it."""

    key: str
    shared: dict[str, Any]  # name -> the model's shared variable (pm.Data containers, dimension lengths)
    cacheable: bool  # False when shared variables lack unique names (their data could not be matched on reuse)
    portable: bool  # False when the description holds a memory address (then the key is valid in this process only)
    outputs: list = field(repr=False, default_factory=list)


def model_structure(model, var_names: Sequence[str] | None = None) -> ModelStructure:
    """:func:`model_structure_key` with the shared variables found on the way (see the module docstring)."""
    outputs = _compiled_outputs(model)
    lines, shared = _describe_graph(outputs)
    header = {"versions": package_versions(), "check_bounds": bool(model.check_bounds),
              "free": [model.rvs_to_values[v].name for v in model.free_RVs],
              "var_names": None if var_names is None else sorted(var_names)}
    text = json.dumps(header, sort_keys=True) + "\n" + "\n".join(lines)
    names = [v.name for v in shared]
    unique = all(names) and len(set(names)) == len(names)
    return ModelStructure(key=hashlib.sha256(text.encode()).hexdigest(),
                          shared={v.name: v for v in shared} if unique else {}, cacheable=unique,
                          portable=unique and not _ADDRESS.search(text), outputs=outputs)


def model_structure_key(model, var_names: Sequence[str] | None = None) -> str:
    """SHA-256 of the model's compiled structure and of the package versions; independent of ``pm.Data`` values."""
    return model_structure(model, var_names).key


# --------------------------------------------------------------------------------------------------------------
# numba: capture a C callback's compile result, or rebuild one from it
# --------------------------------------------------------------------------------------------------------------
class _CompileResultStore:
    """numba's cache protocol for one ``CFunc``: hand back a stored compile result, or keep the fresh one."""

    def __init__(self, reduced: tuple | None = None):
        self.reduced = reduced
        self.portable = False

    def load_overload(self, sig, target_context):
        # as numba.core.caching.Cache.load_overload: initialise the runtime (NRT) before linking stored code
        target_context.refresh()
        if self.reduced is None:
            return None
        from numba.core.compiler import CompileResult

        return CompileResult._rebuild(target_context, *self.reduced)

    def save_overload(self, sig, cres) -> None:
        # numba's own criterion (CompileResultCacheImpl.check_cachable): no lifted loops, no dynamic globals
        self.portable = not cres.library.has_dynamic_globals and all(x.can_cache for x in cres.lifted)
        self.reduced = cres._reduce() if self.portable else None


def _cfunc(pyfunc, signature, reduced: tuple | None = None):
    """A numba ``CFunc``: compiled from ``pyfunc``, or rebuilt from ``reduced`` (then ``pyfunc`` is not compiled)."""
    from numba.core import sigutils
    from numba.core.ccallback import CFunc

    func = CFunc(pyfunc, sigutils.normalize_signature(signature), locals={}, options={})
    func._cache = _CompileResultStore(reduced)
    func.compile()
    if reduced is not None and func.cache_hits != 1:
        raise RuntimeError("numba compiled the callback instead of rebuilding the stored one")
    return func


def _stored_callback(*args):  # stands in for the Python source of a callback rebuilt from its object code
    raise RuntimeError("a stored callback has no Python source")


# --------------------------------------------------------------------------------------------------------------
# the cache
# --------------------------------------------------------------------------------------------------------------
@dataclass
class _Compiled:
    """What a compile leaves that any model of the same structure can reuse."""

    logp: Any  # numba CFunc
    expand: Any  # numba CFunc
    meta: dict  # n_dim, n_expanded, shape_info, reparameterized_names, shared (name, dtype, ndim) in field order
    payload: bytes | None  # pickled stored code (None: not portable)


@dataclass(frozen=True)
class CacheEvent:
    """How the last :meth:`CompiledModelCache.compile_nutpie` call got its model."""

    key: str
    source: str  # "memory", "disk", "disk (compiled in the background)", "compiled" or "compiled (not cached: <why>)"
    seconds: float
    path: Path | None = None
    rejected: str | None = None  # why a disk entry was not used (corrupted, version mismatch, ...)


class CompiledModelCache:
    """Compiled nutpie models by structure key: in memory for this process, and (``disk=True``) in ``directory``."""

    def __init__(self, directory: str | Path | None = None, disk: bool = True):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.disk = bool(disk) and self.directory is not None  # no folder (ISLETBAYES_COMPILE_CACHE=off): memory only
        self._memory: dict[str, _Compiled] = {}
        self._per_model: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.RLock()
        self._background: dict[str, Any] = {}  # structure key -> the process compiling it onto disk
        self._claimed: dict[str, int] = {}  # structure key -> descriptor of its held lock file (_claim)
        self.last: CacheEvent | None = None

    def entry_path(self, key: str) -> Path | None:
        return self.directory / f"{key}{_SUFFIX}" if self.directory is not None else None

    def clear_memory(self) -> None:
        """Forget what this process compiled or loaded (the disk entries stay)."""
        with self._lock:
            self._memory.clear()
            self._per_model = weakref.WeakKeyDictionary()

    # ---------------------------------------------------------------------------------------------- public
    def compile_nutpie(self, model, var_names: Sequence[str] | None = None):
        """The nutpie compiled model of ``model`` with its current data (same as ``nutpie.compile_pymc_model``,
        without fastmath: :func:`exact_float_code`)."""
        with exact_float_code():
            return self._compile_nutpie(model, var_names)

    def _compile_nutpie(self, model, var_names: Sequence[str] | None = None):
        import nutpie.compile_pymc as ncp

        start = time.perf_counter()
        missing = [name for name in _NUTPIE_STEPS if not hasattr(ncp, name)]
        if missing:
            _warn_once(f"nutpie {_nutpie_version()} lacks {', '.join(missing)}: compiling without the cache")
            import nutpie

            compiled = nutpie.compile_pymc_model(model, var_names=var_names)
            self.last = CacheEvent("", "compiled (not cached: unsupported nutpie)", time.perf_counter() - start)
            return compiled
        with self._lock:
            structure = model_structure(model, var_names)
            if not structure.cacheable:
                import nutpie

                compiled = nutpie.compile_pymc_model(model, var_names=var_names)
                self.last = CacheEvent(structure.key, "compiled (not cached: shared variables without unique names)",
                                       time.perf_counter() - start)
                return compiled
            key, rejected = structure.key, None
            if key in self._memory:
                source, entry = "memory", self._memory[key]
            else:
                entry = None
                background = self._wait_for_background(key)
                shared = self.disk and structure.portable
                with self._entry_lock(key) if shared else nullcontext():
                    if shared:
                        entry, rejected = self._load(key, structure)
                        source = "disk (compiled in the background)" if background and entry is not None else "disk"
                    if entry is None:
                        entry = self._compile(model, structure, var_names)
                        source = "compiled"
                        if entry.payload is None:
                            source = "compiled (not cached on disk: the code holds process addresses)"
                        elif not structure.portable:
                            source = "compiled (not cached on disk: the graph description is process-specific)"
                        elif self.disk:
                            self._write(key, entry.payload)
                self._memory[key] = entry
            compiled = self._assemble(model, structure, entry)
            self.last = CacheEvent(key, source, time.perf_counter() - start,
                                   self.entry_path(key) if self.disk else None, rejected)
            return compiled

    def compile_in_background(self, builders: Sequence[Callable[[], Any]], var_names: Sequence[str] | None = None,
                              skip: Sequence[Any] = ()) -> list[str]:
        """Start compiling the models that ``builders`` build, in one other process, onto this cache's disk
        folder, while this process goes on; returns the structure keys it compiles.

        A later :meth:`compile_nutpie` of one of those structures waits for its entry (or for the process to end)
        and loads it from disk, instead of compiling it a second time: on two cores, the compiles of a job's
        other models overlap with the first model's compile and sampling, which run here. Same draws as
        compiling here (a model loaded from disk is the model compiled here: module docstring). Each builder
        is called here once, to know its structure key (cheap: no compile), and again in the other process,
        so it must be picklable (a module-level function or a bound method of a picklable object; builders that
        are not start nothing). ``skip``: models this process compiles itself; their structures are not sent.
        Structures already in memory or on disk, or not portable, and a cache without a disk folder, start
        nothing. The process is terminated when this one exits (where this one is killed, it finishes its
        compiles and exits); what it writes is a whole entry or none. A compile that fails there is made here
        when it is needed, with this process's error reporting."""
        if not self.disk:
            return []
        with self._lock:
            here = {model_structure(model, var_names).key for model in skip}
            todo: dict[str, Callable[[], Any]] = {}
            for build in builders:
                structure = model_structure(build(), var_names)
                key = structure.key
                if (not structure.cacheable or not structure.portable or key in here or key in todo
                        or key in self._memory or key in self._background or self.entry_path(key).exists()
                        or self._being_compiled_elsewhere(key)):
                    continue
                todo[key] = build
            if not todo:
                return []
            try:
                job = pickle.dumps((list(todo.values()), str(self.directory), var_names),
                                   protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - pickle raises several types for what it cannot pickle
                return []
            process = _start_background_compile(job)
            for key in todo:
                self._background[key] = process
            return list(todo)

    def _wait_for_background(self, key: str) -> bool:
        """If a background process (:meth:`compile_in_background`) compiles ``key``, wait until its entry is on
        disk or the process has ended; whether one did."""
        process = self._background.pop(key, None)
        if process is None:
            return False
        path = self.entry_path(key)
        while process.poll() is None and not path.exists():
            time.sleep(0.05)
        return True

    # ---------------------------------------------------------------------------------------------- steps
    def _compile(self, model, structure: ModelStructure, var_names) -> _Compiled:
        """nutpie's ``_compile_pymc_model_numba`` with fixed shared-data field names and captured numba results."""
        import nutpie.compile_pymc as ncp

        point_fn = _initial_point_fn(model)
        n_dim, n_expanded, logp_fn_pt, expand_fn_pt, _, shape_info, reparameterized = ncp._make_functions(
            model, mode="NUMBA", compute_grad=True, join_expanded=True, pymc_initial_point_fn=point_fn,
            var_names=var_names)
        variables = list(dict.fromkeys([*logp_fn_pt.get_shared(), *expand_fn_pt.get_shared()]))
        keys = {var: f"shared_{i}" for i, var in enumerate(variables)}
        data = {keys[var]: _frozen(var.get_value()) for var in variables}
        user_data = ncp.make_user_data(keys, data)
        logp_raw, logp_sig = ncp._make_c_logp_func(n_dim, logp_fn_pt.vm.jit_fn, user_data,
                                                   [keys[v] for v in logp_fn_pt.get_shared()], data)
        expand_raw, expand_sig = ncp._make_c_expand_func(n_dim, n_expanded, expand_fn_pt.vm.jit_fn, user_data,
                                                         [keys[v] for v in expand_fn_pt.get_shared()], data)
        logp, expand = _cfunc(logp_raw, logp_sig), _cfunc(expand_raw, expand_sig)
        meta = {"n_dim": int(n_dim), "n_expanded": int(n_expanded), "shape_info": shape_info,
                "reparameterized_names": list(reparameterized),
                "shared": [(var.name, str(data[keys[var]].dtype), int(data[keys[var]].ndim)) for var in variables],
                "logp_signature": logp_sig, "expand_signature": expand_sig}
        payload = None
        if logp._cache.portable and expand._cache.portable and structure.portable:
            payload = pickle.dumps({"logp": logp._cache.reduced, "expand": expand._cache.reduced, "meta": meta},
                                   protocol=pickle.HIGHEST_PROTOCOL)
        return _Compiled(logp, expand, meta, payload)

    def _assemble(self, model, structure: ModelStructure, entry: _Compiled):
        """A nutpie ``CompiledPyMCModel`` around the (shared) callbacks, with this model's data and initial points."""
        import nutpie.compile_pymc as ncp

        cached = self._per_model.get(model)
        if cached is not None and cached.logp_func is entry.logp:
            compiled = cached
        else:
            meta = entry.meta
            names, _, shapes = meta["shape_info"]
            n_free = len(model.free_RVs)
            shared = structure.shared
            keys = {shared[name]: f"shared_{i}" for i, (name, _, _) in enumerate(meta["shared"])}
            data = {keys[shared[name]]: _frozen(shared[name].get_value(), dtype)
                    for name, dtype, _ in meta["shared"]}
            point_fn = ncp._wrap_with_lock(ncp._rv_dict_to_flat_array_wrapper(
                _initial_point_fn(model), names=names[:n_free], shapes=shapes[:n_free]))
            dims, coords = ncp._prepare_dims_and_coords(model, meta["shape_info"], meta["reparameterized_names"])
            compiled = ncp.CompiledPyMCModel(
                _n_dim=meta["n_dim"], dims=dims, _coords=coords,
                _shapes={name: tuple(shape) for name, _, shape in zip(*meta["shape_info"])},
                compiled_logp_func=entry.logp, compiled_expand_func=entry.expand, initial_point_func=point_fn,
                shared_data=data, shared_var_keys=keys, user_data=ncp.make_user_data(keys, data),
                n_expanded=meta["n_expanded"], shape_info=meta["shape_info"],
                # nutpie keeps its PyTensor functions here but never calls them after compiling; the callbacks
                # stand in, so that a model built on other callbacks is never taken for this one
                logp_func=entry.logp, expand_func=entry.expand,
                reparameterized_names=meta["reparameterized_names"])
            self._per_model[model] = compiled
            return compiled
        # the same model object: its pm.Data values may have been changed since (pm.set_data)
        updates = {name: var.get_value() for name, var in structure.shared.items()
                   if name in {n for n, _, _ in entry.meta["shared"]}}
        return compiled.with_data(**updates) if updates else compiled

    def _load(self, key: str, structure: ModelStructure) -> tuple[_Compiled | None, str | None]:
        path = self.entry_path(key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as err:
            return None, f"unreadable ({err})"
        try:
            entry = self._rebuild(key, blob, structure)
        except _Rejected as why:
            self._discard(path)
            return None, str(why)
        except Exception as err:  # noqa: BLE001 - any failure to read or relink an entry means: compile again
            self._discard(path)
            return None, f"corrupted ({type(err).__name__}: {err})"
        return entry, None

    def _rebuild(self, key: str, blob: bytes, structure: ModelStructure) -> _Compiled:
        envelope = pickle.loads(blob)
        if not isinstance(envelope, dict) or envelope.get("format") != CACHE_FORMAT:
            raise _Rejected("written by another cache format")
        if envelope.get("key") != key:
            raise _Rejected("written for another key")
        versions = package_versions()
        if envelope.get("versions") != versions:
            changed = sorted(k for k in versions if (envelope.get("versions") or {}).get(k) != versions[k])
            raise _Rejected(f"version mismatch ({', '.join(changed)})")
        payload = envelope.get("payload")
        if not isinstance(payload, bytes) or hashlib.sha256(payload).hexdigest() != envelope.get("sha256"):
            raise _Rejected("corrupted (checksum mismatch)")
        stored = pickle.loads(payload)
        meta = stored["meta"]
        if any(name not in structure.shared for name, _, _ in meta["shared"]):
            raise _Rejected("its shared variables are not the model's")
        logp = _cfunc(_stored_callback, meta["logp_signature"], stored["logp"])
        expand = _cfunc(_stored_callback, meta["expand_signature"], stored["expand"])
        return _Compiled(logp, expand, meta, payload)

    def _lock_path(self, key: str) -> Path:
        """The (empty) file whose ``flock`` guards ``key``'s entry: beside it, hidden."""
        return self.directory / f".{key}.lock"

    @contextmanager
    def _entry_lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on ``key``'s disk entry while it is looked up and, if missing, compiled and
        written: two processes that need one model at once (the main job's background compile of a section's
        models and the section's own process; two jobs; parallel tests) compile it once, the second loads what
        the first wrote. An advisory ``flock`` on a file beside the entry, released by the operating system when
        the holder ends however it ends. Where it cannot be taken (no ``fcntl``, a folder that cannot be
        written), nothing waits: each process compiles, as without the lock, and the entry is written whole.
        A key this cache claimed beforehand (:meth:`_claim`) is already held."""
        if key in self._claimed:
            yield
            return
        fd = self._lock_file(key)
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the lock

    def _lock_file(self, key: str, wait: bool = True) -> int | None:
        """An open descriptor of ``key``'s lock file, locked exclusively; None where no lock can be taken (no
        ``fcntl``, a folder that cannot be written, a file system without locks). ``wait=False``: raise
        ``BlockingIOError`` at once if another holds it."""
        try:
            import fcntl
        except ImportError:  # not a POSIX system
            return None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path(key), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise
        except OSError:
            os.close(fd)
            return None
        except BaseException:  # interrupted while waiting
            os.close(fd)
            raise
        return fd

    def _being_compiled_elsewhere(self, key: str) -> bool:
        """Whether another process (or another cache object) holds ``key``'s lock now: it is compiling that
        model, or has claimed it to compile next (:func:`_compile_from_stdin`)."""
        if key in self._claimed or self.directory is None or not self._lock_path(key).exists():
            return False
        try:
            fd = self._lock_file(key, wait=False)
        except BlockingIOError:
            return True
        if fd is not None:
            os.close(fd)
        return False

    def _claim(self, keys: Sequence[str]) -> None:
        """Lock each of ``keys`` now, in sorted order (so that two claimers cannot wait for each other), and
        hold them until :meth:`_release`: a process that then needs one of those models waits for its entry
        instead of compiling it too, and does not start a background compile of it."""
        for key in sorted(set(keys)):
            if key not in self._claimed:
                fd = self._lock_file(key)
                if fd is not None:
                    self._claimed[key] = fd

    def _release(self, key: str) -> None:
        fd = self._claimed.pop(key, None)
        if fd is not None:
            os.close(fd)

    def _write(self, key: str, payload: bytes) -> None:
        envelope = {"format": CACHE_FORMAT, "key": key, "versions": package_versions(),
                    "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}
        try:
            _write_atomic(self.entry_path(key), pickle.dumps(envelope, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError as err:  # a read-only or full cache folder must not stop a fit
            _warn_once(f"cannot write the compile cache in {self.directory}: {err}")

    @staticmethod
    def _discard(path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass


_BACKGROUND: list = []  # the background compile processes this process started (ended at exit)


def _start_background_compile(job: bytes):
    """A Python process (this interpreter, this environment) running :func:`_compile_from_stdin` on ``job``, the
    pickled ``(builders, directory, var_names)``. A fresh interpreter, not ``multiprocessing``: a spawned child
    would import the caller's main script again (and run it, where the script has no ``__main__`` guard). Its
    output is discarded; it is terminated when this process exits."""
    import atexit
    import subprocess

    process = subprocess.Popen(
        [sys.executable, "-c", "from isletbayes.models.compiled_models import _compile_from_stdin; "
                               "_compile_from_stdin()"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.stdin.write(job)
        process.stdin.close()
    except OSError:  # it could not start reading: whatever it would compile is compiled where needed
        process.kill()
    if not _BACKGROUND:
        atexit.register(_end_background_compiles)
    _BACKGROUND[:] = [p for p in _BACKGROUND if p.poll() is None] + [process]
    return process


def _end_background_compiles() -> None:
    for process in _BACKGROUND:
        if process.poll() is None:
            process.terminate()


def _compile_from_stdin() -> None:
    """The background process of :meth:`CompiledModelCache.compile_in_background`: build each model, claim the
    disk entries of all (their locks), then compile each into the disk cache, in order, releasing each entry when it
    is written. A model that fails here is compiled by the process that needs it, which
    reports the failure (this one's output is discarded)."""
    builders, directory, var_names = pickle.load(sys.stdin.buffer)
    warnings.simplefilter("ignore")
    cache = CompiledModelCache(directory)
    models: list[tuple[Any, str]] = []
    for build in builders:
        try:
            model = build()
            models.append((model, model_structure(model, var_names).key))
        except Exception:  # noqa: BLE001 - reported by the process that builds it again (docstring)
            continue
    cache._claim([key for _, key in models])  # all of them first: their users wait here instead of compiling
    for model, key in models:
        try:
            cache.compile_nutpie(model, var_names)
        except Exception:  # noqa: BLE001 - reported by the process that compiles it again (docstring)
            continue
        finally:
            cache._release(key)


class _Rejected(Exception):
    """A disk entry that is whole but not for this model, these versions or this cache format."""


def _frozen(value, dtype=None) -> np.ndarray:
    out = np.array(value, dtype=dtype, order="C", copy=True)
    out.flags.writeable = False
    return out


def _initial_point_fn(model):
    """nutpie's default: support points, jittered uniformly in (-1, 1) on the unconstrained scale."""
    from pymc.initial_point import make_initial_point_fn

    return make_initial_point_fn(model=model, overrides=None, default_strategy="support_point",
                                 jitter_rvs=set(model.free_RVs), return_transformed=True)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _nutpie_version() -> str:
    import nutpie

    return nutpie.__version__


# --------------------------------------------------------------------------------------------------------------
# defaults and one-call helpers
# --------------------------------------------------------------------------------------------------------------
def user_cache_root() -> Path:
    """isletbayes' folder in the user's cache: ``$XDG_CACHE_HOME/isletbayes``, else ``~/.cache/isletbayes``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "isletbayes"


def default_cache_dir() -> Path | None:
    """``$ISLETBAYES_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/isletbayes/compiled``, else ``~/.cache/...``; None: off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in _DISABLED else Path(value).expanduser()
    return user_cache_root() / "compiled"


_DEFAULT: CompiledModelCache | None = None


def default_cache() -> CompiledModelCache:
    """The process-wide cache in :func:`default_cache_dir` (made anew if the environment variable changed)."""
    global _DEFAULT
    directory = default_cache_dir()
    if _DEFAULT is None or _DEFAULT.directory != directory:
        _DEFAULT = CompiledModelCache(directory)
    return _DEFAULT


def compile_nutpie(model, var_names: Sequence[str] | None = None, cache: CompiledModelCache | None = None):
    """``nutpie.compile_pymc_model(model)``, compiled once per structure (see the module docstring)."""
    return (cache or default_cache()).compile_nutpie(model, var_names)


def exact_float_code():
    """Context in which PyTensor's numba backend compiles without ``fastmath`` (module docstring,
    "Reproducibility"): every compile of a model for nutpie runs in it, cached or not."""
    import pytensor

    return pytensor.config.change_flags(numba__fastmath=False)


def nutpie_seed(seed: int, chains: int) -> int:
    """The seed ``pm.sample(random_seed=seed, nuts_sampler="nutpie")`` hands nutpie (PyMC 6: first of the spawned
    per-chain seeds), so that :func:`sample_nutpie` and ``sampling.fit`` give the same draws."""
    return int(np.random.default_rng(seed).spawn(chains)[0].integers(2**30))


def sample_nutpie(model, settings, var_names: Sequence[str] | None = None, cache: CompiledModelCache | None = None,
                  label: str | None = None):
    """``sampling.fit(model, settings)`` for ``settings.nuts_sampler == "nutpie"``, compiled through the cache.

    Same seed handling, draws and DataTree groups (``posterior``, ``sample_stats``, ``constant_data``,
    ``observed_data``) as ``pm.sample(..., nuts_sampler="nutpie")``. Progress (the chains' finished draws, from
    nutpie's ``progress_callback``) goes to the reporter of ``sampling.reporting_progress``, if one is set,
    under ``label`` (see ``sampling.fit_description``); it does not change the draws.
    """
    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata

    from isletbayes.models.sampling import fit_description, nutpie_progress_callback, progress_reporter, reported_steps

    tune = max(int(settings.tune), 1)
    steps = (reported_steps(fit_description(model, settings, label), settings.chains * (tune + settings.draws))
             if progress_reporter() is not None else nullcontext(None))
    with steps as advance:  # the task opens before compiling: a first compile takes seconds
        compiled = compile_nutpie(model, var_names, cache)
        progress = {} if advance is None else {"progress_callback": nutpie_progress_callback(advance)}
        start = time.time()
        idata = nutpie.sample(compiled, draws=settings.draws, tune=tune, chains=settings.chains, cores=settings.cores,
                              seed=nutpie_seed(settings.seed, settings.chains), save_warmup=False,
                              store_unconstrained=False, progress_bar=False, **settings.nutpie_options(),
                              **progress)
    patch_nutpie_idata(idata, model, sampling_time=time.time() - start)
    return idata
