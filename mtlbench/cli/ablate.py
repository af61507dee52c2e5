"""``mtlbench ablate``: a sweep spec → its plan → runs (here, in workers or on Slurm) → its table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mtlbench.cli.common import EXIT_FAILED, app, console, one_line_errors, one_line_warnings


@app.command()
def ablate(
    spec: Annotated[Path, typer.Argument(help="a sweep spec (TOML; see benchmarks/ablations/)")],
    out: Annotated[Path | None, typer.Option(help="the sweep's folder: plan, tables, figure "
                                                  "(default runs/ablations/NAME-PRESET)")] = None,
    preset: Annotated[str | None, typer.Option(help="another preset than the spec names (beneath: the protocol "
                                                    "of Beneath the Surface, for a GPU)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE laid over the spec's base, e.g. "
                                                                 "data.name=nyuv2 (repeatable)")] = None,
    seeds: Annotated[str | None, typer.Option(help="seeds in place of the spec's, e.g. 0,1,2,3,4")] = None,
    store: Annotated[Path | None, typer.Option(help="where the runs go (default OUT/runs); sweeps sharing a store "
                                                    "share the runs they have in common")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check and print the plan, run nothing")] = False,
    shard: Annotated[str | None, typer.Option(help="run only part I of N of the runs (I/N): shards are disjoint "
                                                   "and together complete")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="runs at once in worker processes (one GPU each where "
                                                           "there are GPUs)")] = 1,
    executor: Annotated[str, typer.Option(help="local, slurm (a job array through submitit), or submitit-local "
                                               "(the same path on this machine)")] = "local",
    report_only: Annotated[bool, typer.Option("--report-only", help="tabulate the finished runs, train "
                                                                    "nothing")] = False,
) -> None:
    """Run an ablation sweep (cells × seeds, each an ordinary run directory, resumable) and write
    its table (mean ± std, Δm, significance) and figure."""
    from mtlbench.ablation import sweep as S  # lazy: imports the config machinery
    from mtlbench.settings import parse_sets

    one_line_warnings()
    stdout = console()
    err = console(stderr=True)
    with one_line_errors():
        index, count = S.parse_shard(shard)
        S.check_run_options(jobs, executor)
        plan = S.prepare(spec, out, store, preset, parse_sets(set_ or []), S.parse_seeds(seeds))
        columns = S.columns_of(plan)
        mine = plan.shard(index, count)
        counts = S.summary(plan, mine)
        todo = [j for j in mine if S.state(j) not in ("done", "running")]  # a running one is another's
        part = f" (shard {index}/{count}: {len(mine)} of {len(plan.jobs)} runs)" if count > 1 else ""
        err.print(f"[bold]mtlbench ablate[/] {escape(plan.spec.name)}: {len(plan.spec.cells)} cells × "
                  f"{len(plan.spec.seeds)} seeds + {plan.reference_runs} reference runs = {len(plan.jobs)} runs{part}",
                  highlight=False)
        err.print("; ".join(f"{n} {s}" for s, n in counts.items() if n) + f" | runs in {plan.store}", highlight=False,
                  markup=False)
        if dry_run:
            names = S.describe(plan)
            for job in mine:
                err.print(f"  {S.state(job):8} {names[job.run_dir]}: {job.run_dir}", highlight=False, markup=False,
                          soft_wrap=True)
            return
        S.write_manifest(plan)
        progress = S.Progress(S.describe(plan), len(todo), lambda line: err.print(line, highlight=False,
                                                                                  markup=False, soft_wrap=True))
        if not report_only:
            try:
                S.execute(plan, todo, jobs, executor, progress)
            except KeyboardInterrupt:
                then = ("the submitted jobs go on; --report-only tabulates them" if executor != "local"
                        else "the same command resumes the sweep")
                err.print(f"interrupted: {progress.done} of {len(todo)} runs finished and are kept; {then}",
                          highlight=False, markup=False)
                raise typer.Exit(130) from None
        from mtlbench.ablation.report import sweep_table, write_outputs  # lazy: not needed for --help
        from mtlbench.report.tables import to_rich_fitted  # lazy: not needed for --help

        table = sweep_table(plan, columns, " ".join(["mtlbench ablate", str(spec)]
                                                    + ([f"--preset {plan.spec.preset}"] if preset else [])
                                                    + [f"--set {x}" for x in set_ or []]
                                                    + ([f"--seeds {seeds}"] if seeds else [])))
        for t in to_rich_fitted(table, stdout.width):
            stdout.print(t)
        for path in write_outputs(plan, table, columns):
            err.print(f"written: {path}", highlight=False, markup=False)
    if progress.failed:
        raise typer.Exit(EXIT_FAILED)
