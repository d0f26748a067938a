"""Watching a run where researchers look: TensorBoard event files read back with the real
`tensorboard` package, a callback that logs every point to a real MLflow file store, the
engine's messages through Python logging, and a callback's exception that stops the run like
Ctrl-C. Everything is generated here (test_api's inputs): no network."""

import csv
import json
import logging
from pathlib import Path

import pytest

import embgraft
from helpers import SMALL

RUN = dict(max_steps=30, eval_every=5, seeds=1, batch_size=16, configs="B,C", progress=False)


def metrics(run_dir):
    """metrics.csv as {(config, seed): {split: [(step, loss)]}}."""
    out = {}
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            series = out.setdefault((r["config"], int(r["seed"])), {}).setdefault(r["split"], [])
            series.append((int(r["step"]), float(r["loss"])))
    return out


def raw_events(folder):
    """Every event of every file in a run's folder, as written (no purging)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [e for f in sorted(Path(folder).glob("events.out.tfevents.*")) for e in EventFileLoader(str(f)).Load()]


def accumulated(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def text_of(acc, tag):
    from tensorboard.util import tensor_util

    return [tensor_util.make_ndarray(t.tensor_proto).item().decode() for t in acc.Tensors(tag)]


def assert_tensorboard_holds_metrics(run_dir, cells):
    expected = metrics(run_dir)
    root = Path(run_dir) / "tensorboard"
    for config, seed in cells:
        folder = root / f"{config}-{seed}"
        acc = accumulated(folder)
        for split, tag in (("train", "loss/train"), ("test", "loss/test"), ("train_eval", "loss/train_eval")):
            got = [(s.step, s.value) for s in acc.Scalars(tag)]
            want = expected[(config, seed)][split]
            assert [s for s, _ in got] == [s for s, _ in want], (config, split)
            # float32 in the event file, six decimals in metrics.csv
            assert all(abs(a - b) <= 1e-6 + 1e-6 * abs(b) for (_, a), (_, b) in zip(got, want)), (config, split)
        # Written as read: every (tag, step) once in the files themselves, not only after purging.
        seen = [(v.tag, e.step) for e in raw_events(folder) if e.HasField("summary") for v in e.summary.value]
        assert len(seen) == len(set(seen)), f"{config}-{seed} repeats a step"
        checks = text_of(acc, "checks")
        assert len(checks) == 1 and "bit-identical" in checks[0], checks
        assert len(text_of(acc, "sample")) == 1
    verdicts = accumulated(root / "verdicts")
    assert "verdict/freeze_cost" in verdicts.Tags()["tensors"]
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    want = {c["key"]: c["verdict"] for c in summary["analysis"]["comparisons"]}
    assert text_of(verdicts, "verdict/freeze_cost") == [want["freeze_cost"]]


def test_tensorboard_reads_back_every_point_a_resumed_run_included(inputs, tmp_path):
    pytest.importorskip("tensorboard", reason="pip install tensorboard to read the event files back")
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    opts = dict(RUN, donor=inputs["donor"], corpus=inputs["corpus"], thaw_after="15steps")
    full = embgraft.compare(out=tmp_path / "full", tensorboard=True, **opts)
    assert_tensorboard_holds_metrics(full.run_dir, [("B", 0), ("C", 0)])
    thaws = text_of(accumulated(full.run_dir / "tensorboard" / "B-0"), "thaw")
    assert len(thaws) == 1 and "after 15 steps" in thaws[0] and "`wte`" in thaws[0], thaws

    class Stop(Exception):
        pass

    def stop_in_c(e):
        if e["event"] == "point" and e["config"] == "C" and e["step"] == 20:
            raise Stop("enough")

    part = tmp_path / "part"
    with pytest.raises(Stop, match="enough"):
        embgraft.compare(out=part, tensorboard=True, callback=stop_in_c, **opts)
    # A point written after the last checkpoint (a killed job's), in a file like embgraft's own:
    # the resumed run's series replaces it rather than doubling step 25.
    stray = EventFileWriter(str(part / "tensorboard" / "C-0"), filename_suffix=".embgraft")
    value = summary_pb2.Summary.Value(tag="loss/test", simple_value=99.0)
    stray.add_event(event_pb2.Event(wall_time=1.0, step=25, summary=summary_pb2.Summary(value=[value])))
    stray.close()
    resumed = embgraft.compare(resume=part, progress=False)
    assert (resumed.run_dir / "metrics.csv").read_bytes() == (full.run_dir / "metrics.csv").read_bytes()
    assert_tensorboard_holds_metrics(resumed.run_dir, [("B", 0), ("C", 0)])


def test_tensorboard_folder_that_cannot_be_written_is_refused_before_training(inputs, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "tensorboard").write_text("a file where the folder goes")
    with pytest.raises(embgraft.OutputError, match="--tensorboard: cannot write into"):
        embgraft.compare(out=out, force=True, tensorboard=True, donor=inputs["donor"], corpus=inputs["corpus"], **SMALL)
    assert not (out / "run-B-0.json").exists()
    # Refused before anything was written: the file is all the folder holds.
    assert [p.name for p in out.iterdir()] == ["tensorboard"]


def test_every_point_reaches_a_real_mlflow_store(inputs, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    # MLflow 3 keeps the file store behind this switch (its default is a database); a file store
    # is what a user on a cluster without a tracking server points at.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    events = []

    def to_mlflow(e):
        events.append(e)
        if e["event"] == "point":
            mlflow.log_metric(f"{e['config']}-{e['seed']}.{e['split']}", e["loss"], step=e["step"])

    with mlflow.start_run() as run:
        r = embgraft.compare(out=tmp_path / "r", callback=to_mlflow, donor=inputs["donor"], corpus=inputs["corpus"],
                             **dict(RUN, seeds=2))
    client = MlflowClient()
    for (config, seed), splits in metrics(r.run_dir).items():
        for split, want in splits.items():
            got = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, f"{config}-{seed}.{split}")]
            assert [s for s, _ in got] == [s for s, _ in want]
            assert all(abs(a - b) <= 5e-7 for (_, a), (_, b) in zip(got, want))
    starts = [e for e in events if e["event"] == "start"]
    ends = [e for e in events if e["event"] == "end"]
    assert [(e["config"], e["seed"]) for e in starts] == [("B", 0), ("C", 0), ("B", 1), ("C", 1)]
    assert [(e["config"], e["seed"]) for e in ends] == [(e["config"], e["seed"]) for e in starts]
    assert all(not e["interrupted"] and e["result"]["steps"] == 30 for e in ends)
    assert ends[0]["result"]["copy_check"]["differing_bits"] == 0


def test_callback_errors_and_what_a_raising_callback_leaves(inputs, tmp_path):
    kw = dict(donor=inputs["donor"], corpus=inputs["corpus"], **RUN)
    with pytest.raises(embgraft.InputError, match="callback= takes a function"):
        embgraft.compare(out=tmp_path / "a", callback=42, **kw)
    with pytest.raises(embgraft.InputError, match=r"callback=two\(a, b\) cannot be called with one argument"):
        embgraft.compare(out=tmp_path / "b", callback=lambda_two(), **kw)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    def fail_at_first_end(e):
        if e["event"] == "end":
            raise RuntimeError("my logger is down")

    part = tmp_path / "part"
    with pytest.raises(RuntimeError, match="my logger is down"):
        embgraft.compare(out=part, callback=fail_at_first_end, **kw)
    summary = json.loads((part / "summary.json").read_text())  # whole; C never started
    assert [r["config"] for r in summary["runs"]] == ["B"] and (part / "run-B-0.json").is_file()
    full = embgraft.compare(out=tmp_path / "full", **kw)
    resumed = embgraft.compare(resume=part, progress=False)
    assert (resumed.run_dir / "metrics.csv").read_bytes() == (full.run_dir / "metrics.csv").read_bytes()


def lambda_two():
    def two(a, b):
        return None

    return two


def test_the_engine_s_messages_reach_python_logging(inputs, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="embgraft"):
        embgraft.compare(out=tmp_path / "r", donor=inputs["donor"], corpus=inputs["corpus"], **SMALL)
    lines = [r.getMessage() for r in caplog.records if r.name == "embgraft"]
    assert any(line.startswith("plan: ") for line in lines), lines
    assert sum(" done in " in line for line in lines) == 8, lines
