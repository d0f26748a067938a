"""device="auto" and device="cuda" from Python: the engine that runs, and the one line saying why
the GPU is not used. In CI's CPU wheel venv the CUDA engine is not installed; in the CUDA wheel's
venv (EMBGRAFT_EXPECT_CUDA_ENGINE=no-driver, no GPU driver there) it is installed and cannot load
its driver. Both must still train on the CPU under auto and refuse cuda with the reason."""

import logging
import os

import pytest

import embgraft
from embgraft import _engine
from helpers import SMALL


def test_auto_runs_on_the_cpu_and_cuda_is_refused_naming_what_is_missing(inputs, tmp_path, capsys, caplog):
    engine, why = _engine.cuda()
    expect = os.environ.get("EMBGRAFT_EXPECT_CUDA_ENGINE")
    if expect == "no-driver":
        assert engine is None and why == "no CUDA driver found (libcuda.so.1)", why
    elif engine is None:
        assert why.startswith("embgraft's CUDA engine is not installed") and "embgraft[cuda13]" in why, why
    else:
        pytest.skip("a CUDA engine loaded here: the GPU path is tested on the GPU machine (bench/gpu.sh)")
    caplog.set_level(logging.INFO, logger="embgraft")
    r = embgraft.compare(donor=inputs["donor"], corpus=inputs["corpus"], configs=["B"], out=tmp_path / "auto",
                         **dict(SMALL, seeds=1))
    # The engine's lines go to the embgraft logger when logging has handlers (pytest's), else stderr.
    said = capsys.readouterr().err + caplog.text
    assert f"{why}: running on the CPU" in said, said
    assert r.summary["runs"][0]["matmul"] and not r.summary["runs"][0]["matmul"].startswith("Cuda")
    for device in ["cuda", "cuda:1"]:
        with pytest.raises(embgraft.InputError) as e:
            embgraft.compare(donor=inputs["donor"], corpus=inputs["corpus"], device=device,
                             out=tmp_path / "cuda", **SMALL)
        assert str(e.value) == f"device={device!r}: {why}; use device='auto' or 'cpu'"
        assert "\n" not in str(e.value)
    assert not (tmp_path / "cuda").exists()


def test_the_command_says_why_the_gpu_is_not_used(inputs, tmp_path):
    """The pip-installed `embgraft` command: --device auto (the default) trains on the CPU with the
    Python package's reason, and --device cuda is one line naming it, with nothing written."""
    import subprocess
    import sys

    engine, why = _engine.cuda()
    if engine is not None:
        pytest.skip("a CUDA engine loaded here: the GPU path is tested on the GPU machine (bench/gpu.sh)")
    cli = [sys.executable, "-m", "embgraft._cli", "compare", "--donor", inputs["donor"], "--corpus", inputs["corpus"],
           "--configs", "B", "--seeds", "1", "--max-steps", "2", "--sample-tokens", "0"]
    env = {k: v for k, v in os.environ.items() if k != "EMBGRAFT_NO_CUDA_ENGINE"}
    ok = subprocess.run(cli + ["--out", str(tmp_path / "auto")], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert f"{why}: running on the CPU" in ok.stderr, ok.stderr
    bad = subprocess.run(cli + ["--device", "cuda", "--out", str(tmp_path / "cuda")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert bad.returncode != 0 and bad.stdout == ""
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--device cuda: {why}; use --device auto or cpu" in lines[0], bad.stderr
    assert not (tmp_path / "cuda").exists()
