"""Command line: parses options, calls the runner, hands results to the renderers.

Every command body is a thin call into plain functions (runner, render) that the
tests call directly. Errors: a :class:`numstab.errors.UsageError` or a click
usage error prints one line on stderr and exits 2; findings exit 1.
"""

from __future__ import annotations

import os
import sys

import click

from . import __version__
from .errors import NumstabError, Terminated, UsageError

HELP = dict(help_option_names=["-h", "--help"], max_content_width=100)


def _choices(names) -> str:
    """A metavar listing the choices, as click.Choice shows them (the values are still checked
    by numstab's own validation, for its one-line errors with a suggestion)."""
    return "[" + "|".join(names) + "]"


def _dtypes() -> str:
    from .formats import FORMATS

    return _choices(FORMATS)


def _functions() -> str:
    from .functions import FUNCTIONS

    return _choices(FUNCTIONS)


def _acc_models() -> str:
    from .steps import ACC_MODELS

    return _choices(ACC_MODELS)


def _emit(text: str, output, atomic=None) -> None:
    if atomic is not None:
        atomic.commit(text)
    else:
        click.echo(text, nl=False)


def _open_output(output):
    if not output or output == "-":
        return None
    from .outputs import AtomicFile

    return AtomicFile(output)


class _PipeGone(BaseException):
    """stdout's reader left. Not an OSError: click turns an EPIPE OSError into sys.exit(1)."""


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (BrokenPipeError, _PipeGone):
            raise _PipeGone from None


@click.group(cls=_Group, context_settings=HELP)
@click.version_option(__version__, prog_name="numstab")
def cli():
    """numstab: where softmax, log-softmax, log-sum-exp and cross-entropy break, with numbers."""


def grid_options(f):
    for opt in reversed([
        click.option("--offsets", metavar="SPEC",
                     help="Offsets: start:stop:count or a comma list.  [default: 17 offsets from -1.6 T "
                          "to 1.6 T, T = ln(max) of each format]"),
        click.option("--spreads", metavar="SPEC",
                     help="Spreads (standard deviation of x): spec as --offsets.  [default: 1]"),
        click.option("--sizes", metavar="SPEC",
                     help="Vector lengths n: comma list or start:stop:count.  [default: 2,10,1000]"),
        click.option("--trials", type=int, help="Random vectors per grid cell.  [default: 3]"),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the random z of x = offset + spread * z (drawn per n) and of the "
                          "cross_entropy targets."),
    ]):
        f = opt(f)
    return f


def input_options(f):
    """How input files and non-finite inputs are read (inspect, audit)."""
    for opt in reversed([
        click.option("--key", help="The array of a .npz or .safetensors file holding several."),
        click.option("--axis", type=int, help="Axis of the vectors in an N-D input (default the last)."),
        click.option("--nonfinite", default="ieee", show_default=True, metavar="[ieee|limit]",
                     help="+inf inputs: ieee (the row's outputs are NaN; logsumexp +inf) or limit "
                          "(softmax([inf, 0]) = [1, 0]). NaN inputs give NaN under both."),
        click.option("--temperature", metavar="T[,T...]",
                     help="Divide the inputs by T (held in the format) in the format first (a sampler's "
                          "logits / T), each T its own results; the exact value is the function at the "
                          "exact quotients x / T.  [default: 1, not divided]"),
        click.option("--masked-rows", "masked_rows", default="nan", show_default=True,
                     metavar="[nan|zeros|uniform]",
                     help="Correct output of a fully masked (all -inf) row: nan, zeros or uniform."),
    ]):
        f = opt(f)
    return f


def parallel_options(f):
    """Where inspect and audit evaluate their blocks of rows: --jobs, --scheduler, --quiet."""
    for opt in reversed([
        click.option("--jobs", "-j", type=int,
                     help="Worker processes for the blocks of rows of an input (or grid).  [default: the "
                          "machine's cores, used only when there is more than one block]"),
        click.option("--scheduler", metavar="ADDRESS",
                     help="Run the blocks on a Dask cluster (e.g. tcp://host:8786; needs numstab[dask] and "
                          "the input files at the same paths on the workers)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]):
        f = opt(f)
    return f


def common_options(f):
    for opt in reversed([
        click.option("--accumulate", default="sequential", show_default=True, metavar=_acc_models(),
                     help="Accumulation model of sums (README: Accumulation model)."),
        click.option("--compute", default="float32", show_default=True, metavar="[float32|format]",
                     help="Precision model of the built-in kernels for float16/bfloat16/float8: float32 "
                          "intermediates, only the output rounded to the format, or every operation in "
                          "the format (textbook, Blanchard-Higham-Higham; README: Precision model)."),
        click.option("--tolerance", type=float, default=4.0, show_default=True,
                     help="ULP error above which an element is 'inaccurate'."),
    ]):
        f = opt(f)
    return f


def run_options(f):
    """The options of a compare run, shared by compare and report."""
    for opt in reversed([
        click.option("--dtype", "dtypes", multiple=True, metavar=_dtypes(),
                     help="Number format (repeatable).  [default: float16, bfloat16, float32, float64]"),
        click.option("--function", "functions", multiple=True, metavar=_functions(),
                     help="Function (repeatable).  [default: all]"),
        click.option("--impl", "impls", multiple=True, metavar="NAME",
                     help="Implementation name (repeatable; README: Implementations).  [default: all]"),
        grid_options,
        common_options,
        click.option("--reference", "reference_mode", default="auto", show_default=True,
                     metavar="[auto|mpmath]",
                     help="auto: proven fast path with mpmath fallback; mpmath: mpmath everywhere."),
        click.option("--jobs", "-j", type=int,
                     help="Worker processes.  [default: the machine's cores]"),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
        click.option("--target", "label", metavar="Z",
                     help="binary_cross_entropy's label z in [0, 1] for every element (default: labels "
                          "0 or 1 at random; cross_entropy's target indices are always drawn at random)."),
        click.option("--cotangent", help="Cotangent of the backward passes: normal (seeded standard normal, "
                     "the default), onehot (1 at each vector's argmax) or v1,v2,... (one per element)."),
        click.option("--label-smoothing", "label_smoothing", type=float, default=0.1, show_default=True,
                     help="Epsilon of smoothed_cross_entropy, in [0, 1]."),
        click.option("--verify", type=int, default=0, metavar="K", show_default=True,
                     help="Self-check: recompute K random vectors of every piece at twice the "
                          "precision; exit 1 on any disagreement."),
        click.option("--mask", default="none", show_default=True, metavar="[none|-inf|min|min2],...",
                     help="Additive attention masks on the second half of every vector, in the format: "
                          "-inf, finfo.min once (min) or twice (min2); a comma list, each its own cells."),
        click.option("--temperature", metavar="T[,T...]",
                     help="Temperatures: every implementation divides x by T (held in the format) in the "
                          "format first; a comma list, each its own cells; the exact value is the "
                          "function at the exact x / T.  [default: 1, not divided]"),
        click.option("--target-at", "target_at", default="argmax,argmin,random", show_default=True,
                     metavar="[argmax|argmin|random],...",
                     help="Where cross_entropy's target sits in each vector; each reported separately."),
    ]):
        f = opt(f)
    return f


def _run_compare(label: str, opts: dict, materialized: bool = False):
    """run_compare with the CLI's options and a progress bar on stderr."""
    from .commands.compare import run_compare
    from .exporters.terminal import ProgressBar

    bar = ProgressBar(label, enabled=not opts.pop("quiet"))
    try:
        return run_compare(**{k: (v or None) if k in ("dtypes", "functions", "impls") else v
                              for k, v in opts.items()}, argv=_argv_now(), progress=bar,
                           materialized=materialized)
    finally:
        bar.close()


@cli.command(context_settings=HELP)
@run_options
@click.option("--format", "exporter", default=None, metavar="[table|markdown|json|csv|html]",
              help="Output.  [default: table; with -o, from the file's suffix: .md, .json, .csv, .html, "
                   ".txt]")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE (atomically) instead of stdout.")
@click.option("--details", is_flag=True,
              help="Table output: the table of every grid cell after the summary lines.")
def compare(exporter, output, details, **opts):
    """Evaluate implementations over a grid of inputs against the exact reference."""

    exp = _exporter(exporter, output)
    atomic = _open_output(output)
    run = None
    try:
        run = _run_compare("compare", opts, materialized=details and exp.name == "terminal")
        if exp.name == "terminal":
            from .exporters.terminal import compare, compare_table

            if atomic is None:
                compare_table(run, details=details)
                return
            _emit(compare(run, details=details), output, atomic)
            return
        if atomic is not None:
            atomic.commit(exp.stream(run))
        else:
            for piece in exp.stream(run):
                click.echo(piece, nl=False)
    except BaseException:
        if atomic is not None:
            atomic.abort()
        raise
    finally:
        if run is not None:
            run.close()


def _exporter(exporter, output):
    """The exporter of --format, else the one -o's suffix names, else the terminal tables."""
    from . import exporters

    if exporter is not None:
        exp = exporters.get(exporter)
    else:
        exp = (exporters.by_suffix(output) if output and output != "-" else None) or exporters.get("terminal")
    if exp.binary:
        raise UsageError(f"--format {exp.name} writes report files: use numstab report --formats {exp.name}")
    return exp


@cli.command(context_settings=HELP)
@run_options
@click.option("--out", "out_dir", help="Report directory (default reports/<timestamp>).")
@click.option("--formats", "formats", default="md,json,csv,html,png", show_default=True,
              help="Files to write: md,json,csv,html,png.")
@click.option("--force", is_flag=True, help="Overwrite an existing, non-empty report directory.")
@click.option("--from", "from_file", help="Re-render a saved results.json without recomputing.")
def report(out_dir, formats, force, from_file, **opts):
    """Write report files (Markdown, JSON, CSV, HTML, PNG plots) for a compare run."""
    from .commands.report import ReportWriter, default_dir, load_run, parse_formats

    fmts = parse_formats(formats)
    saved = load_run(from_file) if from_file else None
    writer = ReportWriter(out_dir or default_dir(), fmts, force)
    run = None
    try:
        run = saved or _run_compare("report", opts, materialized=bool({"html", "png"} & set(fmts)))
        try:
            files = writer.render(run)
        except UsageError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as exc:
            if saved is None:
                raise  # a bug in numstab: the internal-error line
            raise UsageError(f"{from_file}: cannot render this result file ({type(exc).__name__}: "
                             f"{exc})") from None
        written = writer.write(run, files)
    except BaseException:
        writer.abort()
        raise
    finally:
        if run is not None:
            run.close()
    click.echo(f"wrote {len(written)} files to {writer.dir}")


@cli.command(context_settings=HELP)
@click.option("--dtype", "dtypes", multiple=True, metavar=_dtypes(),
              help="Number format (repeatable).  [default: all]")
@click.option("--n", "n", type=int, default=1000, show_default=True,
              help="Vector length for the naive-sum overflow offset.")
@click.option("--format", "exporter", default="table", show_default=True, metavar="[table|json]",
              help="Output.")
def thresholds(dtypes, n, exporter):
    """Exact limits of exp in each format (computed with mpmath)."""
    from .commands.thresholds import run_thresholds
    from .exporters.jsonfile import record
    from .exporters.terminal import thresholds_table
    from .validate import choice

    choice("output format", exporter, ("table", "json"))
    data = run_thresholds(dtypes or None, n)
    if exporter == "json":
        click.echo(record(data), nl=False)
    else:
        thresholds_table(data)


@cli.command(context_settings=HELP)
@click.argument("function")
@click.argument("values", nargs=-1)
@click.option("--input", "input_file",
              help="File of inputs: .npy, .npz, .safetensors, .csv or .txt (any rank; vectors along --axis).")
@input_options
@click.option("--target", help="Target index (cross_entropy, smoothed_cross_entropy, "
              "cross_entropy_backward) or label z in [0, 1] (binary_cross_entropy).")
@click.option("--targets", "targets_file", help="File of targets (or labels), one per vector, for a batch.")
@click.option("--cotangent", help="Cotangent of softmax_backward/log_softmax_backward: v1,v2,... "
              "(one per element), onehot (1 at the argmax; the default) or normal (seeded standard normal).")
@click.option("--label-smoothing", "label_smoothing", default=0.1, show_default=True,
              help="Epsilon of smoothed_cross_entropy, in [0, 1].")
@click.option("--dtype", "dtypes", multiple=True, metavar=_dtypes(),
              help="Number format (repeatable).  [default: float32]")
@click.option("--impl", "impls", multiple=True, metavar="NAME",
              help="Implementation (repeatable).  [default: all of the function]")
@common_options
@click.option("--top", type=int, default=5, show_default=True, metavar="K",
              help="For a batch: name the K worst rows (index, input, output, exact, ULP, cause).")
@click.option("--format", "exporter", default="table", show_default=True, metavar="[table|json]",
              help="Output.")
@parallel_options
def inspect(function, values, input_file, key, axis, nonfinite, temperature, masked_rows, target,
            targets_file, cotangent, label_smoothing, dtypes, impls, accumulate, compute, tolerance, top,
            exporter, jobs, scheduler, quiet):
    """One input, every implementation: each element's output, exact value and error.

    Give VALUES after -- so negative numbers parse: numstab inspect log_softmax -- 1000 1
    """
    from . import validate
    from .commands.inspect import run_inspect
    from .exporters.jsonfile import record
    from .exporters.terminal import inspect_table
    from .validate import choice

    choice("output format", exporter, ("table", "json"))
    tolerance = validate.tolerance(tolerance)
    from .exporters.terminal import ProgressBar
    from .masks import Specials

    bar = ProgressBar("inspect", enabled=not quiet)
    try:
        data = run_inspect(function, values, input_file, target, targets_file,
                           validate.dedupe(dtypes) or None, validate.dedupe(impls) or None, accumulate,
                           tolerance, key=key, axis=axis, specials=Specials(nonfinite, masked_rows), top=top,
                           temperature=temperature, cotangent=cotangent, label_smoothing=label_smoothing,
                           jobs=jobs, progress=bar, scheduler=scheduler, compute=compute)
    finally:
        bar.close()
    if exporter == "json":
        click.echo(record(data), nl=False)
    else:
        inspect_table(data)


@cli.command(context_settings=HELP)
@click.option("--config", "config", help="Audit file (default: numstab.toml, else [tool.numstab] "
              "in pyproject.toml) -- used when no --function is given.")
@click.option("--function", metavar=_functions(), help="Function to audit.")
@click.option("--dtype", "dtypes", multiple=True, metavar=_dtypes(),
              help="Number format (repeatable).  [default: float16, bfloat16, float32, float64]")
@click.option("--impl", "impls", multiple=True, help="Built-in implementation (repeatable).")
@click.option("--callable", "callables", multiple=True,
              help="User implementation: module:function or path/to/file.py:function (repeatable).")
@click.option("--library", "libraries", multiple=True, metavar="[scipy|torch|jax|keras|onnxruntime]",
              help="Library implementation (repeatable; each an optional extra).")
@click.option("--device", default="cpu", show_default=True,
              help="Where --library implementations run: cpu, or cuda (torch, jax; needs a GPU).")
@click.option("--input", "input_file",
              help="Real inputs instead of the grid (.npy/.npz/.safetensors/.csv/.txt, any rank).")
@input_options
@click.option("--top", type=int, default=5, show_default=True, metavar="K",
              help="With --input: name the K worst rows (index, input, output, exact, ULP, cause).")
@click.option("--targets", "targets_file", help="Targets (or labels) file with --input.")
@click.option("--target", help="One target index for every vector, or binary_cross_entropy's label "
              "z in [0, 1] for every element (default on the grid: labels 0 or 1 at random).")
@click.option("--cotangent", help="Backward passes' cotangent: normal (default), onehot or v1,v2,...")
@click.option("--label-smoothing", "label_smoothing", default=0.1, show_default=True,
              help="Epsilon of smoothed_cross_entropy, in [0, 1].")
@grid_options
@click.option("--mask", metavar="[none|-inf|min|min2],...",
              help="Grid only: additive attention masks on the second half of every vector (comma list, "
                   "each its own results).  [default: none]")
@common_options
@click.option("--max-ulp", "max_ulp", multiple=True, help="Largest finite ULP error allowed: X or dtype=X.")
@click.option("--fail-on", "fail_on", multiple=True, metavar="[overflow|underflow|nan|zero|inaccurate]",
              help="What fails the audit (repeatable or comma list; zero: 0 or the log of 0 where the "
                   "exact value is not).  [default: overflow, underflow, nan, zero]")
@click.option("--timeout", type=float, metavar="SECONDS",
              help="Seconds each implementation may take (a callable still running is a finding).")
@click.option("--format", "exporter", default="table", show_default=True, metavar="[table|json]",
              help="Output.")
@parallel_options
def audit(config, function, dtypes, impls, callables, libraries, device, input_file, key, axis, nonfinite,
          temperature, masked_rows, top, targets_file, target, cotangent, label_smoothing,
          offsets, spreads, sizes, trials, seed, mask, accumulate, compute, tolerance, max_ulp, fail_on,
          timeout, exporter, jobs, scheduler, quiet):
    """Check implementations against limits; exit 0 pass, 1 finding, 2 bad usage or input."""
    from . import validate
    from .commands.audit import run_audit
    from .commands.audit_config import grid_items, load_config, make_spec
    from .exporters.jsonfile import record
    from .exporters.terminal import audit_table
    from .validate import choice

    choice("output format", exporter, ("table", "json"))
    tolerance = validate.tolerance(tolerance)
    timeout = validate.timeout(timeout)
    if fail_on:
        validate.fail_on(fail_on)
    if function is None:
        if impls or callables or libraries or input_file:
            raise UsageError("--function is required with --impl/--callable/--library/--input")
        specs = load_config(config)
        if timeout is not None:  # the command line's --timeout overrides the config's
            import dataclasses

            specs = [dataclasses.replace(s, timeout=timeout) for s in specs]
    else:
        grid = grid_items(offsets, spreads, sizes, trials, seed)
        specs = [make_spec(function, impls, callables, libraries, dtypes or None, max_ulp,
                           fail_on or None, accumulate, tolerance, input_file, targets_file, target,
                           grid, timeout=timeout, device=device, key=key, axis=axis, nonfinite=nonfinite,
                           masked_rows=masked_rows, top=top, temperature=temperature, cotangent=cotangent,
                           label_smoothing=label_smoothing, mask=mask, compute=compute)]
    from .exporters.terminal import ProgressBar

    bar = ProgressBar("audit", enabled=not quiet)
    try:
        report = run_audit(specs, argv=_argv_now(), jobs=jobs, progress=bar, scheduler=scheduler)
    finally:
        bar.close()
    if exporter == "json":
        click.echo(record(report.to_dict()), nl=False)
    else:
        audit_table(report)
    return 0 if report.passed else 1


_argv = None


def _argv_now() -> list:
    """The command line for the record; arguments that are not valid UTF-8 are shown with U+FFFD."""
    args = sys.argv[1:] if _argv is None else _argv
    return [a.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if isinstance(a, str) else a
            for a in args]


def _on_signal(signum, _frame):
    raise Terminated(signum)


def _install_signals() -> dict:
    import signal
    import threading

    old = {}
    if threading.current_thread() is not threading.main_thread():
        return old
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                old[sig] = signal.signal(sig, _on_signal)
            except (OSError, ValueError):
                pass
    return old


def _restore_signals(old: dict) -> None:
    import signal

    for sig, handler in old.items():
        try:
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        except (OSError, ValueError, TypeError):
            pass


def _cleanup() -> None:
    """Temp files and staging directories this process still holds."""
    from .outputs import cleanup_live

    cleanup_live()
    if "numstab.commands.report" in sys.modules:
        sys.modules["numstab.commands.report"].cleanup_live()


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 pass, 1 finding, 2 bad usage or input)."""
    global _argv
    import warnings

    _argv = list(argv) if argv is not None else None
    args = list(argv) if argv is not None else sys.argv[1:]
    old_signals = _install_signals()
    try:
        import faulthandler

        if not faulthandler.is_enabled() and sys.stderr is not None:
            faulthandler.enable(all_threads=False)  # a crash says where, never a silent -11
    except (OSError, ValueError, AttributeError, RuntimeError):
        pass
    try:
        with warnings.catch_warnings():
            # numpy's RuntimeWarnings on overflow are expected here (numstab records IEEE flags
            # itself); they must not reach the user's terminal
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="numpy")
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="numstab")
            rv = cli.main(args=args, prog_name="numstab", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except UsageError as exc:
        click.echo(f"numstab: error: {exc}", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"numstab: error: {exc.format_message()}", err=True)
        return 2
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt
        _cleanup()
        click.echo("numstab: interrupted", err=True)
        return 2
    except NumstabError as exc:  # e.g. a failed --verify self-check: a finding about numstab itself
        click.echo(f"numstab: {exc}", err=True)
        return 1
    except Terminated as exc:
        import signal

        _cleanup()
        name = signal.Signals(exc.signum).name
        click.echo(f"numstab: interrupted by {name}; stopped the workers and removed temp files", err=True)
        return 2
    except KeyboardInterrupt:
        _cleanup()
        click.echo("numstab: interrupted", err=True)
        return 2
    except SystemExit as exc:  # something called sys.exit inside numstab: never a silent pass
        click.echo(f"numstab: error: unexpected exit request (sys.exit({exc.code!r}))", err=True)
        return 2
    except MemoryError:
        click.echo("numstab: error: out of memory; use a smaller grid or input", err=True)
        return 2
    except (BrokenPipeError, _PipeGone):
        # `numstab compare | head`: the reader left; say nothing more
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except Exception as exc:  # a bug in numstab: still one line, never a traceback
        if os.environ.get("NUMSTAB_DEBUG"):
            raise
        click.echo(f"numstab: internal error: {type(exc).__name__}: {exc} (set NUMSTAB_DEBUG=1 for "
                   "the traceback, and please report it)", err=True)
        return 2
    finally:
        _argv = None
        _restore_signals(old_signals)


def entry() -> None:  # pragma: no cover - console script
    sys.exit(main())


if __name__ == "__main__":  # python -m numstab.cli
    entry()
