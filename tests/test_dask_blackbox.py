"""--scheduler with black boxes (issue 16, item 5): a --callable given by reference
(module:function, file.py:function) and a --library adapter are built again on each Dask worker;
the merged results are the local run's. A callable passed as an object is refused in one line."""

import json

import numpy as np
import pytest

from numstab.cli import main

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed "
                                  "(pip install 'numstab[dask]')")

SOFTMAX = ("import numpy as np\n"
           "def softmax(x):\n"
           "    e = np.exp(x)\n"
           "    return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)\n")


def run(capsys, monkeypatch, *argv, block=80):
    monkeypatch.setenv("NUMSTAB_BLOCK", str(block))
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def results(out: str) -> list:
    return json.loads(out)["results"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(11)
    x = rng.normal(0, 3, (21, 40)).astype(np.float32)
    x[4, :] += 11.0  # exp overflows float16 in this row
    x[15, 3] = 25.0
    np.save(d / "s0.npy", x[:10])
    np.save(d / "s1.npy", x[10:])
    return d, x


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as c:
        yield c


def test_callable_by_reference_on_a_cluster(capsys, monkeypatch, shards, cluster, tmp_path):
    d, x = shards
    (tmp_path / "mysm.py").write_text(SOFTMAX)
    (tmp_path / "mysm_mod.py").write_text(SOFTMAX)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["audit", "--function", "softmax", "--callable", f"{tmp_path / 'mysm.py'}:softmax",
            "--callable", "mysm_mod:softmax", "--input", str(d / "s*.npy"), "--dtype", "float16",
            "--format", "json", "--top", "3"]
    code, local, err = run(capsys, monkeypatch, *argv, "--jobs", "1")
    assert code == 1, err
    code2, remote, err2 = run(capsys, monkeypatch, *argv, "--scheduler", cluster.scheduler_address)
    assert code2 == 1, err2
    want, got = results(local), results(remote)
    assert got == want
    # independently: the callable's own NaN outputs on the float16 rows (exp overflows from 11.09)
    x16 = x.astype(np.float16)
    with np.errstate(all="ignore"):
        e = np.exp(x16)
        y = (e / e.sum(axis=-1, keepdims=True)).astype(np.float16)
    nan = int(np.isnan(y).sum())
    assert nan > 0
    for r in got:
        assert r["counts"]["nan"] == nan and r["cause_inferred"] is True


def test_library_adapter_on_a_cluster(capsys, monkeypatch, shards, cluster):
    pytest.importorskip("scipy")
    d, x = shards
    argv = ["audit", "--function", "log_softmax", "--library", "scipy", "--input", str(d / "s*.npy"),
            "--dtype", "float32", "--format", "json", "--top", "2"]
    code, local, err = run(capsys, monkeypatch, *argv, "--jobs", "1")
    code2, remote, err2 = run(capsys, monkeypatch, *argv, "--scheduler", cluster.scheduler_address)
    assert code == code2, err + err2
    want, got = results(local), results(remote)
    assert got == want and got[0]["impl"].startswith("scipy")
    assert sum(got[0]["counts"].values()) == x.size


def test_a_callable_object_is_refused_on_a_cluster(cluster):
    from numstab.adapters import user_impl
    from numstab.errors import UsageError
    from numstab.stream import impl_refs

    impl = user_impl("softmax", lambda v: v, "an_object")
    with pytest.raises(UsageError, match="cannot be rebuilt on a Dask worker"):
        impl_refs([impl], remote=True)
    assert impl_refs([impl])[0][0] == "local"
