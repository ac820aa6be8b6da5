"""Coverage-guided fuzzing (atheris/libFuzzer) of the OTLP translation and the query parsers.

    python -m tests.fuzz promql --seconds 60           # one target, one minute
    python -m tests.fuzz all --seconds 1800            # every target, persistent corpus (make fuzz)
    python -m tests.fuzz promql .fuzz-artifacts/promql-crash-1234   # replay one input

Targets (one module each): ``otlp_protobuf``, ``otlp_json``, ``promql``, ``compat``. Each checks
properties, not just "no exception": label sets stay canonical, the store stays sorted and
within its limits, only the documented error types escape, printed PromQL parses back to itself.
Seed inputs are generated at start-up (:mod:`tests.fuzz.seeds`), never committed; a crash is
replayed and minimised, fixed, and kept as a plain test in ``tests/fuzz/test_regressions.py``.

Nothing here imports :mod:`scaler` at package import time: a worker process must import the
scaler modules inside ``atheris.instrument_imports()`` for coverage guidance to see them.
"""
