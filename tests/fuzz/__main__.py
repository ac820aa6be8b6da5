"""``python -m tests.fuzz TARGET|all [--seconds N | --runs N] [--corpus DIR] [libFuzzer args...]``

Run from the repository root. The driver writes the target's seeds (and libFuzzer dictionary)
into a temporary directory, runs the target in a worker process (so that the scaler modules
are imported under instrumentation, and libFuzzer may exit or re-run itself as it likes),
echoes its output, and prints per target how many inputs ran in how much time.

* ``TARGET --seconds N`` / ``--runs N``: one target, a fresh corpus unless ``--corpus DIR``.
* ``all --seconds N``: every target in turn, corpus kept in ``--corpus-root/TARGET``
  (``.fuzz-corpus/``). A kept corpus is minimised (``-merge=1``) after each run.
* Crashes, timeouts and OOMs are written to ``--artifacts`` (``.fuzz-artifacts/``) as
  ``TARGET-crash-<sha1>``. Replay one: ``python -m tests.fuzz TARGET FILE``; minimise it:
  ``python -m tests.fuzz TARGET -minimize_crash=1 -runs=10000 -exact_artifact_path=OUT FILE``.
* Anything else starting with ``-`` goes to libFuzzer (``-seed=1``, ``-only_ascii=1``, ...).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("otlp_protobuf", "otlp_json", "promql", "compat")
MAX_LEN = {"otlp_protobuf": 8192, "otlp_json": 16384, "promql": 12288, "compat": 2048}
DEFAULT_TIMEOUT_S = 10
DEFAULT_RSS_LIMIT_MB = 2048
_TAIL_LINES = 60


@dataclass
class Outcome:
    target: str
    returncode: int = 0
    wall_s: float = 0.0
    executions: int | None = None
    fuzz_seconds: int | None = None
    corpus_size: str = "-"
    live_corpus: str = "?"
    seed: str = "?"
    new_units: int | None = None
    artifacts: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _corpus_size(corpus: Path) -> str:
    files = [p for p in corpus.iterdir() if p.is_file()]
    return f"{len(files)} files, {sum(p.stat().st_size for p in files)} B"


def _parse_stats(outcome: Outcome, line: str) -> None:
    if m := re.match(r"stat::number_of_executed_units: (\d+)", line):
        outcome.executions = int(m.group(1))
    elif m := re.match(r"Done (\d+) runs in (\d+) second", line):
        outcome.executions = int(m.group(1))
        outcome.fuzz_seconds = int(m.group(2))
    elif m := re.match(r"stat::new_units_added: (\d+)", line):
        outcome.new_units = int(m.group(1))
    elif m := re.search(r"Test unit written to (\S+)", line):
        outcome.artifacts.append(m.group(1))
    elif m := re.match(r"INFO: Seed: (\d+)", line):
        outcome.seed = m.group(1)
    elif m := re.search(r" corp: (\d+/\S+)", line):
        outcome.live_corpus = m.group(1)


def _is_input_file(arg: str) -> bool:
    return not arg.startswith("-") and Path(arg).is_file()


def run_target(target: str, options: argparse.Namespace, extra: Sequence[str]) -> Outcome:
    """Run one target in a worker process; its output is echoed unless ``--quiet``."""
    from tests.fuzz import seeds  # only the driver needs protobuf builders and test data

    outcome = Outcome(target)
    artifacts = Path(options.artifacts).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as tmp:
        tmp_dir = Path(tmp)
        args = [
            f"-artifact_prefix={artifacts}{os.sep}{target}-",
            f"-max_len={MAX_LEN[target]}",
            f"-timeout={options.timeout}",
            f"-rss_limit_mb={options.rss_limit_mb}",
            "-print_final_stats=1",
        ]
        if options.seconds is not None:
            args.append(f"-max_total_time={options.seconds}")
        if options.runs is not None:
            args.append(f"-runs={options.runs}")
        words = seeds.DICTIONARIES[target]
        if words:
            (tmp_dir / "dict").write_text(seeds.dictionary(words), encoding="utf-8")
            args.append(f"-dict={tmp_dir / 'dict'}")
        args.extend(extra)
        corpus: Path | None = None
        if not any(_is_input_file(a) for a in extra):  # fuzzing, not replaying files
            corpus = Path(options.corpus).resolve() if options.corpus else tmp_dir / "corpus"
            corpus.mkdir(parents=True, exist_ok=True)
            seed_dir = tmp_dir / "seeds"
            seed_dir.mkdir()
            for i, data in enumerate(seeds.SEEDS[target]()):
                (seed_dir / f"seed-{i:04d}").write_bytes(data[: MAX_LEN[target]])
            args += [str(corpus), str(seed_dir)]
        # libFuzzer re-runs its own argv[0] to merge and to minimise crashes: give it a script.
        program = tmp_dir / f"fuzz-{target}"
        program.write_text(
            f'#!/bin/sh\nexport FUZZ_PROGRAM="$0" PYTHONPATH="{ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"\n'
            f'exec "{sys.executable}" -m tests.fuzz --worker {target} "$@"\n'
        )
        program.chmod(0o755)
        start = time.monotonic()
        outcome.returncode = _run_worker(program, args, outcome, options.quiet)
        outcome.wall_s = time.monotonic() - start
        if corpus is not None and options.corpus and outcome.ok and options.merge:
            _merge(program, corpus, tmp_dir / "merged", options.quiet)
        if corpus is not None:
            outcome.corpus_size = _corpus_size(corpus)
    return outcome


def _run_worker(program: Path, args: Sequence[str], outcome: Outcome, quiet: bool) -> int:
    if not quiet:
        print(f"== {outcome.target}: {program.name} {' '.join(args)}", file=sys.stderr, flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        [str(program), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("INFO: Instrumenting "):
                continue
            tail.append(line.rstrip("\n"))
            _parse_stats(outcome, line)
            if not quiet:
                sys.stderr.write(line)
        returncode = proc.wait()
    outcome.tail = list(tail)
    return returncode


def _merge(program: Path, corpus: Path, merged: Path, quiet: bool) -> None:
    """Keep only the inputs that add coverage (libFuzzer's ``-merge=1``), so a persistent
    corpus does not grow with every run."""
    merged.mkdir()
    scratch = Outcome("merge")
    if _run_worker(program, ["-merge=1", str(merged), str(corpus)], scratch, quiet=True) != 0:
        print("== corpus merge failed; corpus left as it was:\n" + "\n".join(scratch.tail[-20:]), file=sys.stderr)
        return
    before = len(list(corpus.iterdir()))
    for old in corpus.iterdir():
        old.unlink()
    for new in merged.iterdir():
        new.rename(corpus / new.name)
    if not quiet:
        print(f"== corpus merged: {before} -> {len(list(corpus.iterdir()))} files", file=sys.stderr)


def summary(outcomes: Sequence[Outcome]) -> str:
    rows = [("target", "result", "executions", "wall time", "corpus (in use; on disk)", "artifacts")]
    for o in outcomes:
        rows.append(
            (
                o.target,
                "ok" if o.ok else f"FAILED (exit {o.returncode})",
                "?" if o.executions is None else str(o.executions),
                f"{o.wall_s:.1f} s" + ("" if o.fuzz_seconds is None else f" (libFuzzer: {o.fuzz_seconds} s)"),
                f"{o.live_corpus}; {o.corpus_size}",
                " ".join(dict.fromkeys(o.artifacts)) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def worker(target: str, libfuzzer_args: list[str], argv0: str) -> None:
    """Run inside the worker process: import the target (instrumenting scaler), then fuzz."""
    # Like the test suite (pyproject's filterwarnings): a warning is a bug.
    warnings.simplefilter("error")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"google\.protobuf.*")
    warnings.filterwarnings("ignore", category=ResourceWarning)
    # KNOWN ISSUE, reported not fixed: Python's re reads RE2's POSIX classes ("[[:alpha:]]")
    # as nested sets and only warns; in production that is a log line, not an error.
    warnings.filterwarnings("ignore", category=FutureWarning, message="Possible (nested set|set )")
    module = importlib.import_module(f"tests.fuzz.{target}")
    from tests.fuzz.common import atheris

    extra = {"custom_mutator": module.custom_mutator} if hasattr(module, "custom_mutator") else {}
    atheris.Setup([argv0, *libfuzzer_args], module.test_one_input, **extra)
    atheris.Fuzz()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:  # started through the script run_target writes, as libFuzzer's argv[0]
        worker(argv[1], argv[2:], os.environ.get("FUZZ_PROGRAM", sys.argv[0]))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", choices=[*TARGETS, "all"])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=int, help="fuzz for this long (per target)")
    budget.add_argument("--runs", type=int, help="run this many inputs (per target)")
    parser.add_argument("--corpus", help="corpus directory to use and grow (one target)")
    parser.add_argument("--corpus-root", default=".fuzz-corpus", help="corpus parent directory for 'all'")
    parser.add_argument("--artifacts", default=".fuzz-artifacts", help="where crashes are written")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds one input may take")
    parser.add_argument("--rss-limit-mb", type=int, default=DEFAULT_RSS_LIMIT_MB)
    parser.add_argument("--quiet", action="store_true", help="print only the summary (and a failure's tail)")
    parser.add_argument(
        "--no-merge", dest="merge", action="store_false", help="do not minimise a persistent corpus after the run"
    )
    options, extra = parser.parse_known_args(argv)
    if options.target == "all":
        if options.corpus:
            parser.error("--corpus is for one target; 'all' uses --corpus-root/TARGET")
        outcomes = []
        for target in TARGETS:
            options.corpus = str(Path(options.corpus_root) / target)
            outcomes.append(run_target(target, options, extra))
    else:
        outcomes = [run_target(options.target, options, extra)]
    for o in outcomes:
        if not o.ok and options.quiet:
            print(f"== {o.target} failed (-seed={o.seed}); last lines:\n" + "\n".join(o.tail), file=sys.stderr)
    print(summary(outcomes), flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
