"""The installed wheel, as a notebook user calls it: same numbers as the command line, a donor
from memory, errors as exceptions with the command line's messages, Ctrl-C that leaves whole,
resumable files. Everything is generated here: no network, no files outside the test's folder."""

import _thread
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import embgraft
from helpers import DIM, SMALL, VOCAB, write_safetensors


def cli(*args):
    exe = shutil.which("embgraft", path=str(Path(sys.executable).parent))
    assert exe, "the wheel installs the embgraft command"
    return subprocess.run([exe, *args], capture_output=True, text=True)


def test_same_bytes_as_the_command_line(inputs, tmp_path):
    out = tmp_path / "cli"
    p = cli("compare", "--donor", inputs["donor"], "--corpus", inputs["corpus"], "--max-steps", "6",
            "--eval-every", "3", "--seeds", "2", "--batch-size", "16", "--out", str(out))
    assert p.returncode == 0, p.stderr
    r = embgraft.compare(donor=inputs["donor"], corpus=inputs["corpus"], out=tmp_path / "py", **SMALL)
    assert (out / "metrics.csv").read_bytes() == (r.run_dir / "metrics.csv").read_bytes()
    assert r.summary == json.loads((r.run_dir / "summary.json").read_text())
    keys = [v["key"] for v in r.verdicts]
    assert keys == ["freeze_cost", "graft_benefit_trainable", "graft_benefit_frozen"]
    assert all(v["verdict"] and v["p_value"] is not None for v in r.verdicts)
    rows = r.metrics
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    # 4 configs x 2 seeds x 3 points (step 0, 3, 6) x 3 splits
    assert len(rows) == 4 * 2 * 3 * 3 and {"config", "seed", "epoch", "step", "split", "loss"} <= set(rows[0])
    html = r._repr_html_()
    assert "B − C = " in html and "data:image/png;base64," in html


def test_numpy_donor_gives_the_files_numbers(inputs, tmp_path):
    from_file = embgraft.compare(donor=inputs["donor"], corpus=inputs["corpus"], out=tmp_path / "file", **SMALL)
    from_memory = embgraft.compare(donor=inputs["wte"], corpus=inputs["corpus"], out=tmp_path / "mem", **SMALL)
    assert (from_file.run_dir / "metrics.csv").read_bytes() == (from_memory.run_dir / "metrics.csv").read_bytes()
    assert from_memory.summary["inputs"]["donor"] == f"in-memory array [{VOCAB} x {DIM}]"
    report = (from_memory.run_dir / "report.md").read_text()
    assert f"in-memory array [{VOCAB} x {DIM}]" in report
    # The copy check ran against the array passed: every grafted run passed it.
    checks = [run["copy_check"] for run in from_memory.summary["runs"] if run["copied"]]
    assert checks and all(c["max_abs_delta"] == 0 and c["differing_bits"] == 0 for c in checks)
    # Anything that speaks DLPack (a torch or JAX array) gives the same numbers.
    class DLPackOnly:
        def __init__(self, a):
            self._a = a

        def __dlpack__(self, **kw):
            return self._a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self._a.__dlpack_device__()

    via_dlpack = embgraft.compare(donor=DLPackOnly(inputs["wte"]), corpus=inputs["corpus"], out=tmp_path / "dl", **SMALL)
    assert (via_dlpack.run_dir / "metrics.csv").read_bytes() == (from_file.run_dir / "metrics.csv").read_bytes()
    # float16 arrays widen exactly; a 1-D array is refused.
    half = embgraft.train("B", donor=inputs["wte"].astype(np.float16), corpus=inputs["corpus"],
                          out=tmp_path / "half", **SMALL)
    assert half.summary["runs"][0]["copy_check"]["max_abs_delta"] == 0
    with pytest.raises(embgraft.InputError, match="2-D"):
        embgraft.compare(donor=np.zeros(5, dtype=np.float32), corpus=inputs["corpus"], out=tmp_path / "x", **SMALL)


@pytest.mark.parametrize(
    "kwargs, flags, error",
    [
        (dict(seq_len=0), ["--seq-len", "0"], embgraft.InputError),
        (dict(configs="A,Q"), ["--configs", "A,Q"], embgraft.InputError),
        (dict(seed=2**64 - 1, seeds=2), ["--seed", str(2**64 - 1), "--seeds", "2"], embgraft.InputError),
        (dict(corpus="/nonexistent/corpus.txt"), ["--corpus", "/nonexistent/corpus.txt"], embgraft.InputError),
    ],
)
def test_bad_arguments_raise_with_the_command_lines_message(inputs, tmp_path, kwargs, flags, error):
    base = {"donor": inputs["donor"], "corpus": inputs["corpus"], "out": str(tmp_path / "bad"), **kwargs}
    argv = ["compare", "--donor", inputs["donor"], "--out", str(tmp_path / "bad")]
    if "corpus" not in kwargs:
        argv += ["--corpus", inputs["corpus"]]
    p = cli(*argv, *flags)
    assert p.returncode in (1, 2)
    message = p.stderr.strip().splitlines()[-1]
    with pytest.raises(error) as e:
        embgraft.compare(progress=False, **base)
    assert isinstance(e.value, embgraft.Error)
    assert str(e.value) in message, (str(e.value), message)
    assert not (tmp_path / "bad").exists()


def test_keyboard_interrupt_leaves_whole_files_and_resumes(inputs, tmp_path):
    opts = dict(donor=inputs["donor"], corpus=inputs["corpus"], max_steps=30, eval_every=5, seeds=1,
                batch_size=16, configs="B,C")
    full = embgraft.compare(out=tmp_path / "full", progress=False, **opts)

    def stop_midway(kind, *args):
        # The notebook's stop button: SIGINT while the second run trains.
        if kind == "step" and args[0] == 12 and stop_midway.runs == 2:
            _thread.interrupt_main()
        if kind == "start":
            stop_midway.runs += 1

    stop_midway.runs = 0
    part = tmp_path / "part"
    # A process started with SIGINT ignored (a background job of a script) has no Python
    # handler, and interrupt_main() then does nothing; a notebook kernel always has one.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt, match="resume"):
            embgraft.compare(out=part, progress=stop_midway, **opts)
    finally:
        signal.signal(signal.SIGINT, previous)
    summary = json.loads((part / "summary.json").read_text())  # whole, parseable
    assert [r["interrupted"] for r in summary["runs"]] == [False, True]
    assert (part / "report.md").is_file() and (part / "run-B-0.json").is_file()
    resumed = embgraft.compare(resume=part, progress=False)
    assert (resumed.run_dir / "metrics.csv").read_bytes() == (full.run_dir / "metrics.csv").read_bytes()


def test_inspect_report_and_settings(inputs, tmp_path):
    info = embgraft.inspect(inputs["donor"])
    assert info["embedding"] == "wte.weight" and info["tensors"][0]["shape"] == [VOCAB, DIM]
    r = embgraft.compare(donor=inputs["donor"], corpus=inputs["corpus"], out=tmp_path / "r", **SMALL)
    again = embgraft.report(r.run_dir)
    assert again.verdicts == r.verdicts
    names = [s[0] for s in embgraft.settings()]
    assert {"max_steps", "seeds", "lr_group", "corpus", "donor"} <= set(names)
    with pytest.raises(embgraft.InputError, match="summary.json"):
        embgraft.report(tmp_path)


def test_several_donors_and_shards_merge(inputs, tmp_path):
    """donor= as a list runs every pair; shards of the same grid into one folder, merged by the
    report command, give the one-call run's metrics."""
    other = tmp_path / "other-donor"
    other.mkdir()
    write_safetensors(other / "model.safetensors", {"wte.weight": inputs["wte"] * 0.5})
    kw = dict(SMALL, donor=[inputs["donor"], str(other)], corpus=inputs["corpus"], configs="B,C")
    one = embgraft.compare(out=str(tmp_path / "one"), **kw)
    assert [name for name, _ in one._analyses()] == ["donor", "other-donor"]
    for k in (1, 2):
        assert embgraft.compare(out=str(tmp_path / "sharded"), shard=f"{k}/2", **kw) == tmp_path / "sharded"
    p = cli("report", str(tmp_path / "sharded"), "--complete")
    assert p.returncode == 0, p.stderr
    for pair in ("donor", "other-donor"):
        a = (tmp_path / "one" / pair / "metrics.csv").read_bytes()
        assert a == (tmp_path / "sharded" / pair / "metrics.csv").read_bytes()
    with pytest.raises(embgraft.InputError, match="is not K/N"):
        embgraft.compare(out=str(tmp_path / "bad"), shard="3/2", **kw)


def test_a_sweep_from_python(inputs, tmp_path):
    """train_tokens= as a list sweeps the data size: one group per size, the trends in
    Result.trends; a size past the training part raises the command line's message."""
    kw = dict(SMALL, donor=inputs["donor"], corpus=inputs["corpus"], configs=["A", "B", "C"], split="contiguous")
    r = embgraft.compare(out=str(tmp_path / "sweep"), train_tokens=["1k", 2000, "3k"], **kw)
    assert [name for name, _ in r._analyses()] == ["tokens-1k", "tokens-2k", "tokens-3k"]
    rows = [t for t in r.trends if t["key"] == "freeze_cost"]
    assert [t["value"] for t in rows] == [1000, 2000, 3000]
    assert all(t["trend"] in ("grows", "shrinks", "no trend") and t["slope_low"] <= t["slope_high"] for t in rows)
    assert (tmp_path / "sweep" / "sweep-tokens.png").is_file()
    with pytest.raises(embgraft.InputError, match="--train-tokens 1M: the training part"):
        embgraft.compare(out=str(tmp_path / "bad"), train_tokens=["1k", "1M"], **kw)


def test_compare_and_train_show_every_setting_as_a_keyword():
    """help(embgraft.compare) names every setting, with its default, from the engine's table."""
    import inspect

    names = [row[0] for row in embgraft.settings()]
    params = inspect.signature(embgraft.compare).parameters
    assert [p for p in params if p != "kwargs"] == names
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in names)
    assert list(inspect.signature(embgraft.train).parameters)[0] == "config"
    for keyword, flag, default, _ in embgraft.settings():
        assert f"{keyword} (``{flag}``, default " in embgraft.compare.__doc__
    assert "max_steps" in embgraft.train.__doc__
    assert embgraft.__version__ == "0.1.0"
