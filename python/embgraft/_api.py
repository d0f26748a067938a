"""compare / train / inspect / report: keyword arguments become the command line's flags."""

import base64
import csv
import inspect as _inspect
import json
import logging
import sys
from pathlib import Path

from . import _embgraft, _engine

def settings():
    """Every setting as (keyword, flag, default, help), from the engine's own settings types."""
    return _embgraft.settings()


# Settings given once per value, as the engine declares them; every other list is one
# comma-separated value (``train_tokens=[20_000, 200_000]`` -> ``--train-tokens 20000,200000``).
_REPEATED = set(_embgraft.repeated())


def _argv(command, kwargs):
    """Keyword arguments -> flags: ``max_steps=20`` -> ``--max-steps 20``; a list repeats the
    flag (corpus, donor, lr_group) or is joined with commas (sweeps such as ``train_tokens``,
    ``layers``; ``configs``); True gives a switch, False and None leave the flag out. The
    engine's parser checks them."""
    argv = [command]
    for key, value in kwargs.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
            continue
        if isinstance(value, (list, tuple)) and key not in _REPEATED:
            value = ",".join(str(v) for v in value)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            argv += [flag, str(v)]
    return argv


def _array(donor):
    """A 2-D float32 array (bytes, rows, cols, source dtype) from numpy, torch or DLPack."""
    import numpy as np

    dtype = str(getattr(donor, "dtype", ""))
    if hasattr(donor, "detach") and hasattr(donor, "float"):  # a torch tensor
        t = donor.detach()
        if str(t.device) != "cpu":
            raise _embgraft.InputError(f"donor tensor is on {t.device}; pass donor.cpu()")
        arr = t.float().numpy()  # float16 and bfloat16 widen exactly
    elif hasattr(donor, "__array__"):
        arr = np.asarray(donor)
    elif hasattr(donor, "__dlpack__"):
        arr = np.from_dlpack(donor)
    else:
        raise _embgraft.InputError(
            f"donor= takes gpt2, a path, or a 2-D array (numpy, torch), not {type(donor).__name__}"
        )
    if arr.ndim != 2:
        raise _embgraft.InputError(f"donor array has shape {list(arr.shape)}; pass a 2-D (vocabulary x width) matrix")
    if arr.dtype.kind != "f":
        raise _embgraft.InputError(f"donor array has dtype {arr.dtype}; pass float32, float16 or bfloat16")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise _embgraft.InputError("donor array holds NaN or infinite values")
    return arr.tobytes(), arr.shape[0], arr.shape[1], dtype.replace("torch.", "") or str(arr.dtype)


_log = logging.getLogger("embgraft")


def _say(line):
    """An engine message (the plan, a run done): to the ``embgraft`` logger when logging is set
    up (``logging.basicConfig``), else to ``sys.stderr``, which a notebook shows in the cell."""
    if _log.hasHandlers():
        _log.info(line)
    else:
        print(line, file=sys.stderr, flush=True)


def _checked_callback(callback):
    """``callback=`` as given, once it is known to take one argument (the event dict)."""
    if callback is None:
        return None
    if not callable(callback):
        raise _embgraft.InputError(
            f"callback= takes a function of one argument (the event dict), not {type(callback).__name__}"
        )
    try:
        sig = _inspect.signature(callback)
    except (TypeError, ValueError):  # some builtins have none to read: take them as they are
        return callback
    try:
        sig.bind({})
    except TypeError:
        name = getattr(callback, "__name__", type(callback).__name__)
        raise _embgraft.InputError(
            f"callback={name}{sig} cannot be called with one argument; give a function such as def on_event(e): ..."
        ) from None
    return callback


class _Events:
    """What the engine reports while it runs, shown and handed on: a tqdm bar (it renders in
    Jupyter and in a terminal) when ``progress`` and tqdm is importable, else a line per curve
    point; each curve point, run start and run end to ``callback`` as a dict; the engine's
    messages to :func:`_say`. Called on the thread that called ``compare``, between steps."""

    def __init__(self, progress, callback):
        self._tqdm = None
        if progress:
            try:
                from tqdm.auto import tqdm

                self._tqdm = tqdm
            except ImportError:
                pass
        self._progress = progress
        self._callback = callback
        self._bar = None

    def _line(self, text):
        if self._bar is not None:
            self._bar.write(text)
        else:
            _say(text)

    def __call__(self, kind, *args):
        cb = self._callback
        if kind == "log":
            self._line(args[0])
        elif kind == "start":
            run, config, seed, done, steps = args
            if self._tqdm is not None:
                self._bar = self._tqdm(total=steps, initial=done, desc=run, leave=False)
            if cb is not None:
                cb({"event": "start", "config": config, "seed": seed, "run": run, "done": done, "steps": steps})
        elif kind == "step" and self._bar is not None:
            step, loss = args
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        elif kind == "point":
            run, config, seed, epoch, step, train, test, train_eval = args
            if self._progress:
                self._line(f"{run} epoch {epoch} step {step}: train {train:.4f}, test {test:.4f}")
            if cb is not None:
                losses = [("train", train), ("test", test)]
                if train_eval is not None:
                    losses.append(("train_eval", train_eval))
                for split, loss in losses:
                    cb({"event": "point", "config": config, "seed": seed, "epoch": epoch, "step": step,
                        "split": split, "loss": loss})
        elif kind == "end":
            run, config, seed, result = args
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if cb is not None:
                result = json.loads(result)
                cb({"event": "end", "config": config, "seed": seed, "run": run,
                    "interrupted": bool(result.get("interrupted")), "result": result})


def _run(command, kwargs):
    kwargs = dict(kwargs)
    donor = kwargs.get("donor")
    memory = None
    several = isinstance(donor, (list, tuple)) and all(isinstance(d, (str, Path)) for d in donor)
    if donor is not None and not isinstance(donor, (str, Path)) and not several:
        memory = _array(donor)
        kwargs["donor"] = None
    progress = kwargs.pop("progress", True)
    callback = _checked_callback(kwargs.pop("callback", None))
    if progress is True or progress is False:
        events = _Events(progress, callback)
    else:  # a callable of its own, given the engine's tuples as they come
        events = progress
    engine, kwargs["device"], line = _engine.for_device(kwargs.get("device"))
    if line is not None:
        _say(line)
    out = engine.run(_argv(command, kwargs), memory, events)
    if kwargs.get("shard"):
        # A shard writes its cells only; `embgraft report DIR` merges the shards' folder.
        return Path(out)
    return Result(out)


def compare(**kwargs):
    """Runs configurations A-D (or ``configs=``) over ``seeds=`` seeds and returns a :class:`Result`.

    Keywords are the command line's flags in snake_case (see ``embgraft.settings()``);
    ``donor=`` may be a 2-D array, or a list of donors (and ``corpus=`` a list of corpora) to run
    each pair and compare them side by side; ``train_tokens=["20k", "200k", "1M"]`` (and, for
    ``model="model5"``, ``layers=[1, 2, 4]``) sweeps a size and reports the answers against it
    (see :attr:`Result.trends`); ``shard="2/4"`` runs one slice of the grid and
    returns the shared folder (merge the shards with ``embgraft report DIR``); ``resume=run_dir``
    continues an interrupted run;
    ``progress=False`` shows no bar; ``callback=fn`` calls ``fn(event)`` with a dict for each
    curve point (``{"event": "point", "config", "seed", "epoch", "step", "split", "loss"}``), and
    at each run's ``"start"`` and ``"end"`` (with its ``"result"``), on this thread between
    steps (W&B: ``wandb.log``; MLflow: ``mlflow.log_metric``); an exception it raises stops the
    run as Ctrl-C does (files whole, ``resume=`` continues) and is raised again here.
    ``tensorboard=True`` writes TensorBoard event files under the run folder's ``tensorboard/``.
    The engine's messages go to the ``embgraft`` logger when logging is configured, else to
    ``sys.stderr`` (shown in the notebook cell). Errors raise ``embgraft.Error`` subclasses.
    """
    return _run("compare", kwargs)


def train(config, **kwargs):
    """One configuration (``config="C"``), with the same keywords and files as :func:`compare`."""
    return _run("train", {"config": config, **kwargs})


def _settings_signature(fn, leading=()):
    """Gives ``fn`` (which takes ``**kwargs``) a signature that names every setting as a keyword,
    and a docstring section listing each with its default and meaning, both from the engine's one
    settings table, so ``help()``, Jupyter's ``?`` and editors show them and they cannot drift.
    Other run keywords (``out``, ``resume``, ``shard``, ``progress``, ``callback``, presets) still
    pass through ``**kwargs``. A setting left at ``None`` takes the engine's default."""
    kw = _inspect.Parameter.KEYWORD_ONLY
    rows = _embgraft.settings()
    params = list(leading) + [_inspect.Parameter(k, kw, default=None) for k, _, _, _ in rows]
    params.append(_inspect.Parameter("kwargs", _inspect.Parameter.VAR_KEYWORD))
    fn.__signature__ = _inspect.Signature(params)
    lines = [f"    {k} (``{flag}``, default {d or 'none'}): {' '.join(h.split())}" for k, flag, d, h in rows]
    fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n\n    Settings (the engine's, with their defaults):\n\n" + "\n".join(lines) + "\n"
    return fn


_settings_signature(compare)
_settings_signature(train, leading=[_inspect.Parameter("config", _inspect.Parameter.POSITIONAL_OR_KEYWORD)])


def inspect(path):
    """A donor's tensors, the embedding that would be grafted, its tokenizer and config, as a dict."""
    return json.loads(_embgraft.inspect(str(path)))


def report(run_dir):
    """The :class:`Result` of a run folder already written."""
    return Result(run_dir)


class Result:
    """A run folder: the report's answers, every number, the metrics and the curves."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        path = self.run_dir / "summary.json"
        if not path.is_file():
            raise _embgraft.InputError(f"{self.run_dir} has no summary.json; give the folder of a finished run")
        self.summary = json.loads(path.read_text())

    def _analyses(self):
        """(pair name or None, analysis) for one donor/corpus pair or each of several."""
        if "pairs" in self.summary:
            return [(c["name"], c["analysis"]) for c in self.summary["pairs"]]
        return [(None, self.summary["analysis"])]

    @property
    def verdicts(self):
        """The report's answers: key, difference, 95 % interval, p-values, verdict sentence."""
        out = []
        for corpus, analysis in self._analyses():
            for c in analysis["comparisons"]:
                d = c.get("difference") or {}
                half = d.get("ci95")
                row = {
                    "key": c["key"],
                    "difference": d.get("mean"),
                    "low": None if half is None else d["mean"] - half,
                    "high": None if half is None else d["mean"] + half,
                    "p_value": c.get("p_value"),
                    "p_adjusted": c.get("p_adjusted"),
                    "outcome": c["outcome"],
                    "verdict": c["verdict"],
                }
                if corpus is not None:
                    row["corpus"] = corpus
                out.append(row)
        return out

    @property
    def trends(self):
        """A sweep's answers against size: one row per question, series line and swept value
        (paired difference and 95 % interval), with the series' trend (slope per tenfold of
        tokens or per doubling of layers, its interval and verdict). Empty without a sweep."""
        sweep = self.summary.get("sweep") or {}
        rows = []
        for s in sweep.get("series", []):
            t = s.get("trend") or {}
            slope = t.get("slope") or {}
            half = slope.get("ci95")
            for p in s["points"]:
                d = p.get("difference") or {}
                h = d.get("ci95")
                rows.append({
                    "key": s["key"], "axis": s["axis"], "line": s["line"], "value": p["value"],
                    "difference": d.get("mean"),
                    "low": None if h is None else d["mean"] - h,
                    "high": None if h is None else d["mean"] + h,
                    "slope": slope.get("mean"),
                    "slope_low": None if half is None else slope["mean"] - half,
                    "slope_high": None if half is None else slope["mean"] + half,
                    "per": t.get("per"),
                    "trend": t.get("outcome"),
                })
        return rows

    @property
    def metrics(self):
        """Every curve point (config, seed, epoch, step, split, loss): a pandas DataFrame when
        pandas is importable, else a list of dicts."""
        files = [self.run_dir / "metrics.csv"]
        if not files[0].is_file():
            files = sorted(self.run_dir.glob("*/metrics.csv"))
        rows = []
        for f in files:
            with open(f, newline="") as fh:
                for r in csv.DictReader(fh):
                    r = {"config": r["config"], "seed": int(r["seed"]), "epoch": int(r["epoch"]),
                         "step": int(r["step"]), "split": r["split"], "loss": float(r["loss"])}
                    if len(files) > 1:
                        r["corpus"] = f.parent.name
                    rows.append(r)
        try:
            import pandas as pd

            return pd.DataFrame(rows)
        except ImportError:
            return rows

    def _cell_dir(self, pair):
        if pair is None:
            return self.run_dir
        return self.run_dir / pair

    def weights(self, config, seed=0, pair=None, donor=None):
        """A finished run's trained parameters (the run made with ``save_weights=True``), by
        name, as read-only numpy arrays mapped from the run folder (frozen tensors equal to the
        donor's are mapped from the donor file, checked against the hash the run saved). Names
        and layouts are the model's: ``wte``, ``lm_head`` for Model 1; GPT-2's names for Model 5
        with every projection (out, in), as ``nn.Linear`` holds it. ``pair=`` picks a group of a
        run of several donors, corpora or sizes; ``donor=`` the donor file's new place if it moved."""
        import numpy as np

        _, located = _embgraft.weights(str(self._cell_dir(pair)), str(config), int(seed),
                                       None if donor is None else str(donor))
        return {name: np.memmap(path, dtype="<f4", mode="r", offset=offset, shape=tuple(shape))
                for name, shape, path, offset in located}

    def logits(self, config, ids, seed=0, pair=None, donor=None):
        """The logits of a finished run's saved weights (``save_weights=True``) for token ids of
        shape (windows, length), computed by the engine: a float32 array (windows, length, vocab)."""
        import numpy as np

        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[None, :]
        if ids.ndim != 2 or ids.size == 0 or ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= 2**32:
            raise _embgraft.InputError("ids= takes non-negative token ids of shape (windows, length)")
        raw = _embgraft.logits(str(self._cell_dir(pair)), str(config), int(seed),
                               np.ascontiguousarray(ids, dtype="<u4").tobytes(), ids.shape[0],
                               None if donor is None else str(donor))
        z = np.frombuffer(raw, dtype="<f4")
        return z.reshape(ids.shape[0], ids.shape[1], -1)

    def export(self, config, seed=0, out=None, force=False, pair=None, donor=None):
        """Writes a finished run's saved weights as a folder PyTorch loads (``embgraft export``):
        Model 5 for ``transformers.GPT2LMHeadModel.from_pretrained(out)``, Model 1 for
        :func:`embgraft.torch_model1`; with the run's test windows (``test-windows.safetensors``)
        and ``embgraft.json`` (its final test loss and the files it wrote). ``out`` must be new or
        empty; ``force=True`` replaces an earlier export's own files there and nothing else (a
        folder of other files, such as a donor's, is refused). Returns the folder."""
        if out is None:
            raise _embgraft.InputError("export needs out=, the folder to write")
        files, notes = _embgraft.export(str(self._cell_dir(pair)), str(config), int(seed), str(out), bool(force),
                                        None if donor is None else str(donor))
        for n in notes:
            _say(f"note: {n}")
        return Path(out)

    def _png(self):
        """The picture that sums the run up: a sweep's answers against size, else the loss curves."""
        p = self.run_dir / "loss-curves.png"
        if p.is_file():
            return p
        found = sorted(self.run_dir.glob("sweep-*.png")) or sorted(self.run_dir.glob("*/loss-curves.png"))
        return found[0] if found else None

    def plot(self, ax=None):
        """Mean test (dashed) and train (solid) loss per configuration with matplotlib (returns the
        axes); without matplotlib, the path of the report's PNG."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            return self._png()
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 5))
        rows = self.metrics
        rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
        curves = {}
        for r in rows:
            if r["split"] in ("train", "test"):
                curves.setdefault((r["config"], r["split"]), {}).setdefault(r["step"], []).append(r["loss"])
        for (config, split), pts in sorted(curves.items()):
            steps = sorted(pts)
            ax.plot(steps, [sum(pts[s]) / len(pts[s]) for s in steps], "--" if split == "test" else "-",
                    label=f"{config} {split}")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(ncol=2, fontsize="small")
        return ax

    def _repr_html_(self):
        import html

        parts = [f"<h4>embgraft: {html.escape(str(self.run_dir))}</h4><ul>"]
        for v in self.verdicts:
            prefix = f"[{html.escape(v['corpus'])}] " if "corpus" in v else ""
            parts.append(f"<li>{prefix}{html.escape(v['verdict'])}</li>")
        parts.append("</ul>")
        for corpus, analysis in self._analyses():
            title = f" ({html.escape(corpus)})" if corpus else ""
            parts.append(f"<table><tr><th>config{title}</th><th>final test loss</th><th>best test loss</th></tr>")
            for c in analysis["configs"]:
                def show(e):
                    if not e:
                        return "–"
                    return f"{e['mean']:.4f}" + (f" ± {e['ci95']:.4f}" if e.get("ci95") is not None else "")
                mark = " (still improving)" if c.get("still_improving") else ""
                parts.append(f"<tr><td>{c['config']}{mark}</td><td>{show(c.get('final_test'))}</td>"
                             f"<td>{show(c.get('best_test'))}</td></tr>")
            parts.append("</table>")
        png = self._png()
        if png is not None:
            data = base64.b64encode(png.read_bytes()).decode()
            parts.append(f'<img src="data:image/png;base64,{data}" style="max-width:100%"/>')
        return "".join(parts)

    def __repr__(self):
        lines = [f"embgraft.Result({str(self.run_dir)!r})"] + [f"  {v['verdict']}" for v in self.verdicts]
        return "\n".join(lines)
