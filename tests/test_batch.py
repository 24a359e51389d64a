"""Batch runs on dask.distributed: same result as single-process detection, resume, a killed
worker, bad inputs, input expansion, the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _synth_helpers import make_small
from napari_hrs.batch import expand_inputs, run_batch
from napari_hrs.engine.results import read_detection_result

pytest.importorskip("distributed")
torch = pytest.importorskip("torch")

#: small tiles so a 512 x 576 image makes many tasks (overlap is the model's 104 px)
TILE = dict(tile=192, batch=2)


@pytest.fixture(scope="module")
def acq_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("batch_inputs")
    make_small(d, "a.ome.zarr", seed=3)
    make_small(d, "b.ome.zarr", seed=4, size=(384, 448))
    return d


@pytest.fixture(scope="module")
def single(acq_dir, tmp_path_factory) -> dict[str, Path]:
    """Single-process detection of each input (the reference)."""
    from napari_hrs.engine.detect import detect

    out = tmp_path_factory.mktemp("single")
    refs = {}
    for name in ("a", "b"):
        refs[name] = Path(
            detect(
                acq_dir / f"{name}.ome.zarr",
                "compact",
                out=out / f"{name}.zarr",
                device="cpu",
                **TILE,
            ).path  # fmt: skip
        )
    return refs


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40)  # fmt: skip
    cl = Client(cluster)
    yield cl
    cl.close()
    cluster.close()


def assert_same_result(batch_path: Path, ref_path: Path) -> None:
    a, b = read_detection_result(batch_path), read_detection_result(ref_path)
    assert a.complete and b.complete
    assert len(a.table) == len(b.table) > 0
    np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
    assert a.table.drop(columns="score").equals(b.table.drop(columns="score"))
    np.testing.assert_allclose(a.table["score"], b.table["score"], atol=1e-5)


def test_cluster_run_equals_single_process(acq_dir, single, client, tmp_path):
    seen = []
    res = run_batch([acq_dir / "a.ome.zarr", acq_dir / "b.ome.zarr"], tmp_path, client=client,
                    progress=lambda d, t: seen.append((d, t)), **TILE)  # fmt: skip
    assert res.ok and [f.status for f in res.files] == ["done", "done"]
    for f in res.files:
        assert f.tiles_computed == f.tiles_total > 4 and f.tiles_reused == 0
        assert_same_result(Path(f.result), single[f.name])
        assert (Path(f.result) / "cells.csv").exists() and (
            Path(f.result) / "summary.json"
        ).exists()
    assert seen[-1][0] == seen[-1][1] == sum(f.tiles_total for f in res.files)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [f["status"] for f in summary["files"]] == ["done", "done"]
    assert not (tmp_path / ".tiles" / "a").exists()  # spool removed when a file is done
    # a second run skips everything
    again = run_batch([acq_dir / "a.ome.zarr", acq_dir / "b.ome.zarr"], tmp_path, client=client,
                      **TILE)  # fmt: skip
    assert [f.status for f in again.files] == ["skipped", "skipped"] and again.ok


def test_resume_notices_a_replaced_input(acq_dir, single, client, tmp_path):
    """Resume once trusted an earlier result whatever the input file held now."""
    import shutil

    from napari_hrs.batch.run import input_stamp

    src = tmp_path / "in" / "x.ome.zarr"
    shutil.copytree(acq_dir / "b.ome.zarr", src)
    out = tmp_path / "out"
    assert run_batch([src], out, client=client, **TILE).files[0].status == "done"
    stamp = input_stamp(src)
    assert run_batch([src], out, client=client, **TILE).files[0].status == "skipped"
    shutil.rmtree(src)
    shutil.copytree(acq_dir / "a.ome.zarr", src)  # same path, other acquisition
    assert input_stamp(src) != stamp
    f = run_batch([src], out, client=client, **TILE).files[0]
    assert f.status == "done" and f.tiles_reused == 0
    assert_same_result(Path(f.result), single["a"])


def test_resume_skips_finished_tiles(acq_dir, single, client, tmp_path):
    calls = {"n": 0}

    def cancel() -> bool:  # stop after two tasks came back
        calls["n"] += 1
        return calls["n"] > 2

    first = run_batch([acq_dir / "a.ome.zarr"], tmp_path, client=client, cancel=cancel, **TILE)
    assert first.cancelled and not first.ok
    spooled = len(list((tmp_path / ".tiles" / "a").glob("*.pkl")))
    assert 0 < spooled < first.files[0].tiles_total
    assert not (tmp_path / "a.zarr").exists()  # no half result that could look complete
    second = run_batch([acq_dir / "a.ome.zarr"], tmp_path, client=client, **TILE)
    f = second.files[0]
    assert f.status == "done" and f.tiles_reused == spooled
    assert f.tiles_computed == f.tiles_total - spooled
    assert_same_result(Path(f.result), single["a"])


def test_bad_inputs_are_reported_and_the_rest_finish(acq_dir, client, tmp_path):
    bad = tmp_path / "in" / "broken.tif"
    bad.parent.mkdir()
    bad.write_bytes(b"this is not a TIFF file")
    out = tmp_path / "out"
    res = run_batch([bad, tmp_path / "missing.ome.zarr", acq_dir / "b.ome.zarr"], out,
                    client=client, **TILE)  # fmt: skip
    status = {f.name: (f.status, f.reason) for f in res.files}
    assert status["b"][0] == "done"
    assert status["broken"][0] == "failed" and "broken.tif" in status["broken"][1]
    assert status["missing"][0] == "failed" and "missing.ome.zarr" in status["missing"][1]
    assert not res.ok and len(res.failed) == 2
    table = (out / "summary.csv").read_text()
    assert "broken" in table and "failed" in table
    rows = pd.read_csv(out / "summary.csv", keep_default_na=False).set_index("name")
    assert rows.loc["broken", "result"] == "" and not (out / "broken.zarr").exists()
    assert Path(rows.loc["b", "result"]).is_dir()  # only real result folders are named
    assert bad.read_bytes() == b"this is not a TIFF file"  # input untouched


def test_corrupt_chunk_fails_only_that_file(acq_dir, client, tmp_path):
    import shutil

    src = tmp_path / "c.ome.zarr"
    shutil.copytree(acq_dir / "a.ome.zarr", src)
    chunk = next(p for p in sorted((src / "0").rglob("*")) if p.is_file() and p.name[0] != ".")
    chunk.write_bytes(b"garbage")
    res = run_batch([src, acq_dir / "b.ome.zarr"], tmp_path / "out", client=client, **TILE)
    st = {f.name: f for f in res.files}
    assert st["b"].status == "done"
    assert st["c"].status == "failed" and st["c"].reason
    assert not (tmp_path / "out" / "c.zarr").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_workers(address: str, n: int, timeout: float = 60.0) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as c:
        c.wait_for_workers(n, timeout=timeout)


def test_killed_worker_loses_and_duplicates_nothing(acq_dir, single, tmp_path):
    """A scheduler and two workers on loopback; one worker is SIGKILLed after the first tiles
    came back. The run still finishes with exactly the single-process result."""
    exe = Path(sys.executable).parent / "dask"
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([str(exe), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        time.sleep(1.0)
        for _ in range(2):
            procs.append(subprocess.Popen([str(exe), "worker", address, "--nthreads", "1",
                                           "--no-nanny", "--no-dashboard"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        _wait_for_workers(address, 2)
        victim = procs[1]
        killed = []

        def progress(done: int, total: int) -> None:
            if done > 0 and not killed:
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=30)
                killed.append(done)

        res = run_batch([acq_dir / "a.ome.zarr"], tmp_path, scheduler=address, progress=progress,
                        **TILE)  # fmt: skip
        f = res.files[0]
        assert killed and killed[0] < f.tiles_total  # killed mid-run
        assert f.status == "done", f.reason
        assert f.tiles_computed == f.tiles_total
        assert_same_result(Path(f.result), single["a"])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)


def test_expand_inputs(tmp_path, acq_dir):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x.tif").write_bytes(b"")
    (folder / "notes.txt").write_text("ignored")
    (folder / "cam.JPG").write_bytes(b"")  # camera pictures are acquisitions too
    sub = folder / "run1"
    sub.mkdir()
    (sub / "x.tif").write_bytes(b"")
    (folder / ".hidden.tif").write_bytes(b"")
    items = expand_inputs(
        [str(acq_dir / "*.ome.zarr"), folder, sub / "x.tif", acq_dir / "a.ome.zarr"]
    )
    names = [i.name for i in items]
    assert names == ["a", "b", "cam", "x", "x-2"]  # glob sorted, duplicates dropped, unique
    with pytest.raises(FileNotFoundError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.nothing")])
    assert expand_inputs([tmp_path / "missing.tif"])[0].name == "missing"


def test_expand_plate(tmp_path):
    import zarr

    plate = tmp_path / "plate.ome.zarr"
    root = zarr.open_group(str(plate), mode="w", zarr_format=2)
    root.attrs["plate"] = {"wells": [{"path": "A/1"}, {"path": "B/2"}], "version": "0.4"}
    for well in ("A/1", "B/2"):
        g = root.require_group(well)
        g.attrs["well"] = {"images": [{"path": "0"}, {"path": "1"}], "version": "0.4"}
        for f in ("0", "1"):
            g.require_group(f).attrs["multiscales"] = []
    items = expand_inputs([plate])
    assert [i.name for i in items] == ["plate_A_1_0", "plate_A_1_1", "plate_B_2_0", "plate_B_2_1"]
    assert items[0].path == plate / "A" / "1" / "0"


def test_cli_batch(acq_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "napari_hrs.cli", "batch", str(acq_dir / "b.ome.zarr"),
           str(tmp_path / "nope.ome.zarr"), "--out", str(out), "--local-workers", "1",
           "--tile", "192", "--batch", "2", "--quiet"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr  # one input failed
    assert "done" in r.stdout and "failed" in r.stdout and "nope.ome.zarr" in r.stdout
    assert "dask scheduler" in r.stderr
    assert (out / "b.zarr" / "cells.csv").exists()
    bad = subprocess.run([*cmd[:5], "--out", str(out), "--tile", "8"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "--tile must be >= 32" in bad.stderr


@pytest.mark.parametrize("address", ["nope://x", "tcp://127.0.0.1:1"])
def test_unreachable_scheduler_is_a_clear_error(address):
    """An unreachable scheduler once gave distributed's OSError traceback after 30 s."""
    import dask.array as da
    from distributed import default_client

    from napari_hrs.batch.run import cluster_client
    from napari_hrs.errors import ClusterError

    with pytest.raises(ClusterError, match=rf"dask scheduler '{address}'.*tcp://host:port"):
        with cluster_client(address, connect_timeout_s=1.0):
            pass
    # the failed client did not become the process's default scheduler: it once stayed the
    # default (status "connecting") and every later .compute() in the process hung
    try:
        status = default_client().status
    except ValueError:  # no default client at all
        status = None
    assert status in (None, "running"), status
    assert int(da.ones(8, chunks=4).sum().compute()) == 8


def test_cli_unreachable_scheduler_is_one_line(acq_dir, tmp_path, capsys):
    from napari_hrs.cli import main

    rc = main(["batch", str(acq_dir / "b.ome.zarr"), "--out", str(tmp_path / "o"),
               "--scheduler", "nope://x", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "cannot connect to the dask scheduler 'nope://x'" in err, err


def test_resume_key_follows_the_model_weights(tmp_path):
    """A retrained model keeps its config (same config hash): the resume key must still change,
    or a resumed batch would stitch tiles of the old weights with tiles of the new."""
    import shutil

    from napari_hrs.batch.run import _weights_stamp
    from napari_hrs.engine.checkpoint import bundled_model_path

    copy = tmp_path / "m.pt"
    shutil.copy(bundled_model_path(), copy)
    assert _weights_stamp("compact") == _weights_stamp(str(copy))
    with open(copy, "r+b") as f:  # one changed byte near the end (the weights)
        f.seek(-100, 2)
        b = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([b[0] ^ 1]))
    assert _weights_stamp(str(copy)) != _weights_stamp("compact")
