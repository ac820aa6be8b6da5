"""PD fleet simulator and KEDA/HPA emulator, shared by ``keda-otel-scaler demo`` (wall clock,
real gRPC to a child-process scaler) and the evaluation lab (:mod:`scaler.lab`: virtual clock,
the scaler's core in-process). It imports no service module (an import-linter contract).

* :mod:`scaler.sim.profiles`, :mod:`scaler.sim.phases`, :mod:`scaler.sim.scenario`,
  :mod:`scaler.sim.validate` — capacity profiles, load phases and scenario YAML → typed,
  validated config (every error names the key).
* :mod:`scaler.sim.workload`, :mod:`scaler.sim.request`, :mod:`scaler.sim.vllm_engine`,
  :mod:`scaler.sim.decode_engine`, :mod:`scaler.sim.epp`, :mod:`scaler.sim.fleet` — the
  simulated llm-d P/D deployment (arrivals, prompts and prefix caches, event-driven prefill
  and decode vLLM engines, the gateway/EPP, pods and Deployments).
* :mod:`scaler.sim.capacity` — what a replica sustains at the SLO, from the profile alone.
* :mod:`scaler.sim.vllm_metrics`, :mod:`scaler.sim.otlp_export` — per-pod vLLM metrics (and
  the EPP's) converted to OTLP the way a collector's Prometheus receiver does.
* :mod:`scaler.sim.run` — one run: the simulation, the scale subresource, the collectors.
* :mod:`scaler.sim.manifests`, :mod:`scaler.sim.hpa`, :mod:`scaler.sim.keda_emulator` —
  ScaledObjects, and KEDA and the HPA driving them through "the scaler" (any transport).
* :mod:`scaler.sim.recorder`, :mod:`scaler.sim.report`, :mod:`scaler.sim.view` — the demo's output.
* :mod:`scaler.sim.scaler_process`, :mod:`scaler.sim.demo_run`, :mod:`scaler.sim.demo` — the
  scaler as a child process, the run's state, and the entry point wiring everything together.
"""
