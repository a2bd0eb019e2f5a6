"""The compile cache: structure keys, identical draws from a fresh and a cached compile (in this process and in a
new one), corrupted and out-of-date entries rebuilt, the off switch, and ``sample_nutpie`` equal to ``fit``."""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pymc as pm
import pytest

from isletbayes.models import compiled_models as cm
from isletbayes.models import cpeptide_endpoint as ce
from isletbayes.models.map_prior import meta_analysis_model
from isletbayes.models.sampling import SamplerSettings

nutpie = pytest.importorskip("nutpie")


def _endpoint_data(rng, n=30, levels=(13.0,)):
    y = np.exp(rng.normal(6.5, 1.2, n))
    lod = np.asarray(levels)[np.arange(n) % len(levels)]
    return ce.Day365Data(np.maximum(y, lod), lod, y <= lod)


def _tiny_model(sigma=1.0, observed=(0.3, -0.2, 1.1)):
    with pm.Model() as model:
        x = pm.Normal("x", 0.0, sigma)
        pm.Normal("y", x, 1.0, observed=np.array(observed))  # a constant, not pm.Data
    return model


def _data_model(values):
    """Small but complete: pm.Data, a transformed variable, a Deterministic (compiles in a few seconds)."""
    with pm.Model() as model:
        y = pm.Data("y_obs", np.asarray(values, dtype=float))
        mu = pm.Normal("mu", 0.0, 10.0)
        sd = pm.HalfNormal("sd", 2.0)
        pm.Deterministic("cv", sd / pm.math.abs(mu))
        pm.Normal("y", mu, sd, observed=y)
    return model


def _draws(compiled, seed=7, draws=200):
    trace = nutpie.sample(compiled, draws=draws, tune=200, chains=2, cores=1, seed=seed, progress_bar=False)
    return {name: trace.posterior[name].values.copy() for name in trace.posterior.data_vars}


def _digest(draws: dict) -> str:
    return hashlib.sha256(b"".join(draws[k].tobytes() for k in sorted(draws))).hexdigest()


def test_keys_follow_the_structure_not_the_data(seed):
    rng = np.random.default_rng(seed(11))
    a, b = _endpoint_data(rng), _endpoint_data(rng)
    key = cm.model_structure_key(ce.build_day365_model(a))
    assert cm.model_structure_key(ce.build_day365_model(b)) == key  # other pm.Data values, same shapes
    assert cm.model_structure_key(ce.build_day365_model(a, ce.Day365Priors(log_median_sd=1.5))) != key  # a prior
    assert cm.model_structure_key(ce.build_day365_model(_endpoint_data(rng, levels=(13.0, 20.0)))) != key  # shape
    assert cm.model_structure_key(ce.build_day365_model(a), var_names=["sd_log"]) != key
    assert len(key) == 64 and cm.model_structure(ce.build_day365_model(a)).portable
    # a different distribution with the same names and shapes
    assert cm.model_structure_key(_tiny_model()) != cm.model_structure_key(_tiny_model(sigma=2.0))
    # data held as constants are part of the structure: other values, another key
    assert cm.model_structure_key(_tiny_model(observed=(0.3, -0.2, 1.2))) != cm.model_structure_key(_tiny_model())
    # two builds of the MAP meta-analysis on the same studies share a key
    r, n = [16, 20, 9], [36, 50, 30]
    assert cm.model_structure_key(meta_analysis_model(r, n)) == cm.model_structure_key(meta_analysis_model(r, n))


@pytest.fixture(scope="module")
def fresh_compile(tmp_path_factory):
    """One compile into a fresh cache folder: (folder, two data sets of one shape, the compiled model)."""
    rng = np.random.default_rng(20250620)
    data = [rng.normal(3.0, 1.5, 20), rng.normal(-1.0, 0.5, 20)]
    folder = tmp_path_factory.mktemp("compiled")
    cache = cm.CompiledModelCache(folder)
    compiled = cache.compile_nutpie(_data_model(data[0]))
    assert cache.last.source == "compiled" and cache.last.path.is_file()
    return folder, data, compiled


def test_cached_model_gives_the_draws_of_the_fresh_compile(fresh_compile):
    folder, data, fresh = fresh_compile
    expected = [_draws(fresh), _draws(fresh.with_data(y_obs=data[1]))]
    cache = cm.CompiledModelCache(folder)  # empty memory: the entry comes from disk
    loaded = cache.compile_nutpie(_data_model(data[0]))
    assert cache.last.source == "disk" and cache.last.rejected is None
    assert _digest(_draws(loaded)) == _digest(expected[0])
    assert set(expected[0]) == {"mu", "sd", "cv"}
    # another model of the same structure: the compiled code from memory, its own data
    second = cache.compile_nutpie(_data_model(data[1]))
    assert cache.last.source == "memory"
    assert _digest(_draws(second)) == _digest(expected[1])
    assert not np.array_equal(expected[0]["mu"], expected[1]["mu"])
    # and refits with with_data as before
    assert _digest(_draws(loaded.with_data(y_obs=data[1]))) == _digest(expected[1])
    # the same model object after pm.set_data: its new values are used
    model = _data_model(data[0])
    cache.compile_nutpie(model)
    pm.set_data({"y_obs": data[1]}, model=model)
    assert _digest(_draws(cache.compile_nutpie(model))) == _digest(expected[1])


def test_cached_model_in_a_new_process(fresh_compile):
    folder, data, fresh = fresh_compile
    expected = _digest(_draws(fresh))
    script = textwrap.dedent(f"""
        import hashlib, pickle, sys
        import nutpie
        import numpy as np
        import pymc as pm
        from isletbayes.models import compiled_models as cm
        with pm.Model() as model:  # the same code as _data_model
            y = pm.Data("y_obs", np.asarray(pickle.loads({pickle.dumps(data[0])!r}), dtype=float))
            mu = pm.Normal("mu", 0.0, 10.0)
            sd = pm.HalfNormal("sd", 2.0)
            pm.Deterministic("cv", sd / pm.math.abs(mu))
            pm.Normal("y", mu, sd, observed=y)
        compiled = cm.compile_nutpie(model)
        assert cm.default_cache().last.source == "disk", cm.default_cache().last
        trace = nutpie.sample(compiled, draws=200, tune=200, chains=2, cores=1, seed=7, progress_bar=False)
        draws = {{k: trace.posterior[k].values for k in trace.posterior.data_vars}}
        print(hashlib.sha256(b"".join(draws[k].tobytes() for k in sorted(draws))).hexdigest())
    """)
    env = {**os.environ, cm.CACHE_ENV: str(folder)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == expected


def test_corrupted_and_outdated_entries_are_rebuilt(tmp_path):
    model = _tiny_model()
    cache = cm.CompiledModelCache(tmp_path)
    first = cache.compile_nutpie(model)
    path, key = cache.last.path, cache.last.key
    draws = _digest(_draws(first))

    # written under other package versions: rejected, compiled again, rewritten
    envelope = pickle.loads(path.read_bytes())
    envelope["versions"] = {**envelope["versions"], "nutpie": "0.0.1"}
    path.write_bytes(pickle.dumps(envelope))
    cache = cm.CompiledModelCache(tmp_path)
    cache.compile_nutpie(model)
    assert cache.last.source == "compiled" and "version mismatch (nutpie)" in cache.last.rejected
    assert pickle.loads(path.read_bytes())["versions"] == cm.package_versions()

    # a flipped byte in the stored code: the checksum catches it
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    cache = cm.CompiledModelCache(tmp_path)
    cache.compile_nutpie(model)
    assert cache.last.source == "compiled" and cache.last.rejected.startswith("corrupted")

    # a truncated file (a crash while writing by other means than this module)
    path.write_bytes(path.read_bytes()[:1000])
    cache = cm.CompiledModelCache(tmp_path)
    rebuilt = cache.compile_nutpie(model)
    assert cache.last.source == "compiled" and cache.last.rejected.startswith("corrupted")
    assert _draws(rebuilt)["x"].shape == (2, 200)

    # the rewritten entry is whole again
    cache = cm.CompiledModelCache(tmp_path)
    cache.compile_nutpie(model)
    assert cache.last.source == "disk" and cache.last.key == key
    # no temporary files left behind: the entry and the (empty) file whose lock a compile holds
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, f".{key}.lock"])
    assert len(draws) == 64


def test_sample_nutpie_gives_the_draws_of_fit(tmp_path):
    from isletbayes.models.sampling import fit

    model = _tiny_model()
    settings = SamplerSettings(draws=200, tune=200, chains=2, seed=5)
    via_fit = fit(model, settings)
    via_cache = cm.sample_nutpie(model, settings, cache=cm.CompiledModelCache(tmp_path))
    np.testing.assert_array_equal(via_fit["posterior"]["x"].values, via_cache["posterior"]["x"].values)
    assert set(via_cache.children) >= {"posterior", "sample_stats", "observed_data"}


def test_a_model_compiled_in_the_background_is_loaded_not_compiled_again(seed, tmp_path):
    data = _endpoint_data(np.random.default_rng(seed(5)))
    build = functools.partial(ce.build_day365_model, data)  # picklable: the other process builds it too
    cache = cm.CompiledModelCache(tmp_path)
    key = cm.model_structure_key(build())
    assert cache.compile_in_background([build, build]) == [key]  # one process, each structure once
    assert cache.compile_in_background([build]) == []  # already being compiled
    compiled = cache.compile_nutpie(build())  # waits for the entry, then loads it
    assert cache.last.source == "disk (compiled in the background)" and cache.last.path.is_file()
    fresh = cm.CompiledModelCache(disk=False).compile_nutpie(build())
    assert _digest(_draws(compiled)) == _digest(_draws(fresh))
    # nothing is started for a structure on disk, for a cache without a folder, or for a builder the other process
    # could not receive
    assert cm.CompiledModelCache(tmp_path).compile_in_background([build]) == []
    assert cm.CompiledModelCache(disk=False).compile_in_background([build]) == []
    assert cm.CompiledModelCache(tmp_path / "other").compile_in_background([lambda: build()]) == []


def test_a_model_another_process_is_compiling_is_waited_for_and_loaded(seed, tmp_path):
    """Two caches on one folder that know nothing of each other (as two processes: the main job's background
    compile and a section's worker) compile one model once: the second waits for the first's entry and loads it,
    and does not send it to a background compile meanwhile."""
    import threading

    import pytensor

    data = _endpoint_data(np.random.default_rng(seed(6)))
    key = cm.model_structure_key(ce.build_day365_model(data))
    first, second = cm.CompiledModelCache(tmp_path), cm.CompiledModelCache(tmp_path)
    compiling, release = threading.Event(), threading.Event()
    compile_here = first._compile

    def held_compile(*args):  # hold the entry's lock until the second cache is asking for the model
        compiling.set()
        if not release.wait(120):  # fails the test (the owner's compile never happens) instead of passing slowly
            raise RuntimeError("the test never released the first cache's compile")
        return compile_here(*args)

    first._compile = held_compile
    fastmath = pytensor.config.numba__fastmath
    try:
        owner = threading.Thread(target=first.compile_nutpie, args=(ce.build_day365_model(data),))
        owner.start()
        assert compiling.wait(120)
        got = {}
        waiter = threading.Thread(target=lambda: got.update(model=second.compile_nutpie(ce.build_day365_model(data))))
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive() and not first.entry_path(key).exists()  # waiting, with nothing on disk yet
        # nor does a third cache start compiling in the background what another is compiling (not ``second``: its
        # own lock is held by the waiting thread, as any cache's is while it waits)
        third = cm.CompiledModelCache(tmp_path)
        assert third.compile_in_background([functools.partial(ce.build_day365_model, data)]) == []
        release.set()
        owner.join(300)
        waiter.join(300)
    finally:
        release.set()
        pytensor.config.numba__fastmath = fastmath  # both threads changed and restored the flag, interleaved
    assert first.last.source == "compiled" and second.last.source == "disk"
    assert first.last.key == second.last.key == key
    fresh = cm.CompiledModelCache(disk=False).compile_nutpie(ce.build_day365_model(data))
    assert _digest(_draws(got["model"])) == _digest(_draws(fresh))


def test_cache_folder_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(cm.CACHE_ENV, str(tmp_path / "here"))
    assert cm.default_cache_dir() == tmp_path / "here" and cm.default_cache().directory == tmp_path / "here"
    for off in ("off", "0", ""):
        monkeypatch.setenv(cm.CACHE_ENV, off)
        assert cm.default_cache_dir() is None and not cm.default_cache().disk
    monkeypatch.delenv(cm.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cm.default_cache_dir() == tmp_path / "xdg" / "isletbayes" / "compiled"


def test_memory_only_cache_compiles_once(monkeypatch):
    monkeypatch.setenv(cm.CACHE_ENV, "off")
    cache = cm.CompiledModelCache()
    model = _tiny_model()
    cache.compile_nutpie(model)
    assert cache.last.source == "compiled" and cache.last.path is None
    cache.compile_nutpie(_tiny_model())
    assert cache.last.source == "memory"


def test_joint_model_draws_agree_between_a_fresh_compile_and_a_load_in_a_new_process(tmp_path):
    """The joint graft-function model is where fastmath code once parted: a fresh compile (PyTensor's inner
    functions compiled with the callback) and a load in another process (inner functions from PyTensor's cache)
    gave draws differing from the fourth significant digit. Compiled without fastmath, they agree to the bit."""
    script = textwrap.dedent("""
        import hashlib, sys
        from isletbayes.analyses.config import DataConfig
        from isletbayes.analyses.inputs import load_inputs
        from isletbayes.models import compiled_models as cm
        from isletbayes.models import graft_function as gfm
        from isletbayes.models.sampling import SamplerSettings, fit
        inputs = load_inputs(DataConfig())
        data = gfm.graft_function_data_from_tables(inputs.cpeptide_means, inputs.continuous, inputs.counts)
        model = gfm.build_graft_function_model(data)
        idata = fit(model, SamplerSettings(draws=300, tune=300, chains=2, cores=1, seed=5, target_accept=0.99))
        print(cm.default_cache().last.source.split(" ")[0])
        post = idata["posterior"]
        print(hashlib.sha256(b"".join(post[k].values.tobytes() for k in sorted(post.data_vars))).hexdigest())
    """)
    env = {**os.environ, cm.CACHE_ENV: str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-3000:] for r in runs]
    (first_source, first), (second_source, second) = (r.stdout.strip().splitlines()[-2:] for r in runs)
    assert (first_source, second_source) == ("compiled", "disk")
    assert first == second
