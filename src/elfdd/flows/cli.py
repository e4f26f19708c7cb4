"""The ``elfdd`` command line (docs/design.md): exit 0 success, 2 bad input with one line on stderr, 3 finished with
diverged student runs (listed on stderr), 1 internal error."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import warnings
from pathlib import Path

from .. import __version__
from ..core.errors import BadInput, write_errors_refused
from ..pipeline.run.lock import claimed_run
from ..store import location
from .settings import quiet_prefect_env
from .signals import supervised

STAGES = ("run", "distill", "teacher", "extract", "students", "report")
# Exit codes: 0 success, 1 internal error, 2 bad input (nothing half-written), 3 the study finished and its report is
# written, but some student runs diverged (students.on_diverge: record; they are listed on stderr).
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


def _registered() -> str:
    """The registries' names (what config values may name), for --help."""
    from ..models import list_models
    from ..pipeline.data import list_datasets
    from ..pipeline.distill import list_methods
    from ..pipeline.losses import list_feature_losses

    return "\n".join(
        [
            "registered:",
            f"  datasets (data.name): {', '.join(list_datasets())}",
            f"  distillation methods (distill.method): {', '.join(list_methods())}",
            f"  architectures (teacher.arch, students.archs): {', '.join(list_models())}",
            f"  feature losses (students.feature_losses): {', '.join(list_feature_losses())}",
        ]
    )


def _parser() -> argparse.ArgumentParser:
    from ..pipeline.distill import list_methods

    parser = argparse.ArgumentParser(
        prog="elfdd",
        description="Dataset distillation with cached teacher features (ELF).",
        epilog=_registered(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"elfdd {__version__}")
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "plain"),
        default="auto",
        help="live progress bars (bar), plain lines (plain), or bars on a terminal only (auto, the default)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "run": "whole pipeline (distill, teacher, extract, students, report) as one Prefect flow",
        "distill": "distill the synthetic set (DM, DSA or MTT; MetaDD with --set distill.metadd.enabled=true)",
        "teacher": "train the teacher and save its checkpoints",
        "extract": "extract teacher features of the synthetic set into the store",
        "students": "train the students from the store, then report",
        "report": "write results.json, report.md and plots from finished student runs",
    }
    for name in STAGES:
        p = sub.add_parser(name, help=helps[name])
        p.add_argument(
            "--config",
            help="YAML config, or a packaged one by name: default, smoke, study (default: the run's config.yaml, "
            "else the built-in defaults)",
        )
        p.add_argument("dir", nargs="?", help="run directory (the same as --out)")
        p.add_argument("--out", default="runs/default", help="run directory (default: runs/default)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. distill.ipc=1",
        )
        p.add_argument("--force", action="store_true", help="recompute even where the inputs are unchanged")
        if name in ("run", "distill"):
            p.add_argument("--method", choices=list_methods(), help="distillation method (distill.method)")
        if name in ("run", "extract", "students"):
            p.add_argument(
                "--dask-address",
                default=os.environ.get("ELFDD_DASK_ADDRESS"),
                metavar="URL",
                help="dask.distributed scheduler (tcp://host:port) for the student grid and per-epoch extraction "
                "(default: $ELFDD_DASK_ADDRESS; none: in this process)",
            )
    _add_import_export(sub)
    p = sub.add_parser("inspect", help="dask-computed feature statistics of a store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plots", metavar="DIR", help="also write PNG plots (channel statistics, CKA) into DIR")
    p = sub.add_parser(
        "verify",
        help="check a store (layout, completeness, checksums, provenance) or a whole run directory (also its "
        "synthetic set, checkpoints and student records)",
    )
    p.add_argument("store", metavar="STORE_OR_DIR")
    p = sub.add_parser(
        "serve", help="serve every flow as a deployment on the Prefect server of PREFECT_API_URL"
    )
    p.add_argument("--limit", type=int, default=1, help="flow runs at a time (default 1)")
    return parser


def _add_import_export(sub) -> None:
    from ..pipeline.formats import FORMATS, list_formats

    p = sub.add_parser(
        "import-synthetic",
        help="import a synthetic set made elsewhere (MTT, DC/DSA/DM, .npz, PNG folder) as a run's distill stage",
    )
    p.add_argument("files", nargs="+", help="the set's files, or the folder holding them")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument(
        "--format", default="auto", choices=["auto", *list_formats()], help="default: from the files"
    )
    p.add_argument(
        "--space",
        default="auto",
        choices=["auto", "pixel", "normalized", "zca"],
        help="the space the images live in (default: the format's convention; .npz must say)",
    )
    p.add_argument("--zca", help="space zca: the ZCA statistics file the images were whitened with")
    p.add_argument(
        "--experiment", type=int, default=0, help="dc: which experiment of the result file (default 0)"
    )
    p.add_argument(
        "--config", help="YAML config of the run (dataset, teachers, students), or a packaged one's name"
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--force", action="store_true", help="import again even where the files are unchanged")
    p = sub.add_parser(
        "export-synthetic", help="write a run's synthetic set as MTT files, an .npz or PNG folders"
    )
    p.add_argument("run_dir", metavar="DIR", help="run directory")
    p.add_argument("--format", required=True, choices=[n for n, f in FORMATS.items() if f.write is not None])
    p.add_argument("--out", required=True, help="folder (mtt, png) or file (npz) to write")


def _import_overrides(args: argparse.Namespace) -> list[str]:
    """The import's options as config overrides of ``distill`` (paths made absolute, so the run's config.yaml
    still names the files from anywhere)."""
    paths = [str(Path(f).resolve()) for f in args.files]
    sets = ["distill.method=file", f"distill.source.paths={json.dumps(paths)}"]
    sets += [f"distill.source.format={args.format}", f"distill.source.space={args.space}"]
    sets += [f"distill.source.experiment={args.experiment}"]
    if args.zca:
        sets.append(f"distill.source.zca={json.dumps(str(Path(args.zca).resolve()))}")
    return sets


def _export(args: argparse.Namespace) -> int:
    from ..pipeline.formats import FORMATS
    from ..pipeline.stages import RunDir
    from ..pipeline.synthetic import load_synthetic

    synthetic = load_synthetic(RunDir(location.local_dir(args.run_dir)).synthetic)
    write = FORMATS[args.format].write
    assert write is not None  # the parser offers only the formats that write
    with write_errors_refused():  # e.g. --out naming a file where the format writes a folder
        written = write(synthetic, Path(args.out))
    print(f"export-synthetic: {len(written)} files ({args.format}) in {args.out}")
    return 0


def _config_for(args: argparse.Namespace):
    from ..pipeline.config import load_config

    if getattr(args, "method", None):
        args.set = [*args.set, f"distill.method={args.method}"]

    existing = location.local_dir(args.out) / "config.yaml"
    if args.config:
        return load_config(args.config, args.set)
    if existing.exists():
        return load_config(existing, args.set)
    if args.command not in ("run", "distill", "teacher", "students", "import-synthetic"):
        raise BadInput(f"{args.out} has no config.yaml; run an earlier stage first or pass --config")
    return load_config(None, args.set)


def _prefect_installed(command: str) -> None:
    """The stage commands run as Prefect flows, an extra (pyproject.toml): without it, one line saying so."""
    import importlib.util

    try:
        found = importlib.util.find_spec("prefect") is not None
    except ValueError:  # a module entry set to None (no import possible)
        found = False
    if not found:
        raise BadInput(
            f"`elfdd {command}` runs its stages as Prefect flows: pip install 'elfdd[prefect]' "
            "(the Python API, elfdd.api, needs no Prefect)"
        )


def _run_stage(args: argparse.Namespace) -> int:
    from ..pipeline import stages

    _prefect_installed(args.command)
    config = _config_for(args)
    out = location.local_dir(args.out)
    if args.command == "run":
        stages.data_for(config)  # refuse missing or malformed data before anything is written
    # The first line, within seconds, on stdout with the final summary: stderr carries the progress, and for bad
    # input found later (a missing store) one `error:` line and nothing else.
    print(f"elfdd {args.command} {out}: config and data read; the stages run as Prefect flows", flush=True)
    from .flows import DASK_STAGES, FLOWS, no_heartbeat

    extra = {"dask_address": args.dask_address} if args.command in DASK_STAGES else {}
    # Claimed before Prefect starts: a second command on the directory is refused at once; a refusal leaves the
    # directory as it was found.
    from prefect import tags

    from ..core.io import json_sha256

    labels = (f"run-dir:{out}", f"config:{json_sha256(config.model_dump(mode='json'))[:12]}")
    with claimed_run(out), no_heartbeat(), tags(*labels):
        result = FLOWS[args.command](str(out), config, args.force, **extra)
    run = stages.RunDir(out)
    print(f"{args.command}: {result}")
    if args.command not in ("run", "students", "report"):
        return 0
    _close_console()  # the bars end before the summary
    print(f"report: {run.report}")
    print(stages.summary_table(run))
    diverged = stages.diverged_runs(run)
    for record in diverged:
        fault = record.get("diverged") or {}
        print(
            f"diverged: {record['cell']}: loss term {fault.get('term')} is {fault.get('value')} at epoch "
            f"{fault.get('epoch')}",
            file=sys.stderr,
        )
    if diverged:
        print(
            f"warning: {len(diverged)} of {len(json.loads(run.results.read_text())['runs'])} student runs "
            f"diverged (recorded in {run.results}; the report shows them)",
            file=sys.stderr,
        )
        return EXIT_DIVERGED
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from ..store.inspect import feature_stats, format_stats, plot_stats

    stats = feature_stats(args.store)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    if args.plots:
        for path in plot_stats(stats, Path(args.plots)):
            print(f"plot: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _verify(args: argparse.Namespace) -> int:
    """A store, or a run directory: everything it holds (synthetic set, checkpoints, store, student records)."""
    from ..pipeline.stages import RunDir, recorded_checkpoints
    from ..pipeline.stages.integrity import run_problems
    from ..store.verify import verify_store

    target = args.store
    is_run = not location.is_url(target) and not (Path(target) / "zarr.json").exists()
    if is_run:
        problems = run_problems(RunDir(location.local_dir(target)))
    else:
        problems = verify_store(target, recorded_checkpoints(target))
    for problem in problems:
        print(f"damaged: {problem}")
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        what = "run directory" if is_run else "store"
        raise BadInput(f"{what} {target} failed verification: {problems[0]}{more}")
    print(f"ok: {target}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    _prefect_installed("serve")
    from .deployments import serve

    serve(args.limit)
    return 0


class _HideBadInput(logging.Filter):
    """Drop Prefect's traceback and its "Finished in state Failed(... BadInput: ...)" line for a BadInput: the CLI
    reports it as one line and exits 2."""

    FAILED = re.compile(r"encountered an exception:? (\w+):")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], BadInput):
            return False
        named = self.FAILED.search(record.getMessage())
        return not (named and named.group(1) in _bad_input_names())


def _bad_input_names(kind: type[BaseException] = BadInput) -> set[str]:
    return {kind.__name__}.union(*(_bad_input_names(sub) for sub in kind.__subclasses__()))


def _configure_logging(progress: str) -> None:
    from ..core.console import console_handler

    logging.basicConfig(level=logging.WARNING, handlers=[console_handler(progress)])
    logging.getLogger("elfdd").setLevel(logging.INFO)
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_HideBadInput())
    for handler in logging.getLogger().handlers:  # Prefect's log and event queues draining at exit
        handler.addFilter(lambda record: not record.getMessage().startswith("Still processing items"))
    # zarr's warnings (a node it does not recognise, numcodecs codecs outside the v3 spec) are not the user's to
    # read: a damaged store is named by verify and refused by the readers in one line.
    warnings.filterwarnings("ignore", module=r"zarr(\.|$)")


def _close_console() -> None:
    from ..core.console import BarHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, BarHandler):
            handler.close()


def main(argv: list[str] | None = None) -> int:
    # The program itself (not a caller's main([...]), e.g. the tests'): run in a child it can stop at once.
    if argv is None:
        code = supervised(sys.argv[1:])
        if code is not None:
            return code
    quiet_prefect_env()  # before Prefect is imported (the flows import it lazily, below)
    try:
        parser = _parser()  # reads the registries: an installed plug-in that fails to load is bad input
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args = parser.parse_args(argv)
    if getattr(args, "dir", None):
        args.out = args.dir
    _configure_logging(args.progress)
    try:
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "export-synthetic":
            return _export(args)
        if args.command == "import-synthetic":
            args.set = [*_import_overrides(args), *args.set]
        return _run_stage(args)
    except BadInput as exc:
        _close_console()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        _close_console()


if __name__ == "__main__":
    sys.exit(main())
