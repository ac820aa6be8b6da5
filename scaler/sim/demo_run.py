"""The state of one demo run, shared by the demo loop, the live view and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scaler.sim.fleet import Fleet, Role
from scaler.sim.keda_emulator import ScaledObjectEmulator
from scaler.sim.manifests import ScaledObject
from scaler.sim.otlp_export import OtlpPusher
from scaler.sim.recorder import Recorder
from scaler.sim.run import Simulation
from scaler.sim.scenario import Scenario


@dataclass
class DemoRun:
    """Everything one run accumulates; lives outside the event loop so Ctrl-C keeps it."""

    scenario: Scenario
    objects: list[ScaledObject]
    manifests_dir: Path
    seed: int
    recorder: Recorder = field(init=False)
    sim: Simulation = field(init=False)
    emulators: list[ScaledObjectEmulator] = field(default_factory=list)
    pusher: OtlpPusher | None = None
    wall_seconds: float = 0.0
    interrupted: bool = False

    def __post_init__(self) -> None:
        self.recorder = Recorder(self.scenario)
        self.sim = Simulation(self.scenario, self.seed, self.recorder)

    @property
    def fleet(self) -> Fleet:
        return self.sim.fleet

    def role_of(self, emulator: ScaledObjectEmulator) -> Role:
        return self.fleet.deployments[emulator.so.target].role

    def trigger_values(self) -> dict[Role, dict[str, float | None]]:
        return {self.role_of(e): e.values() for e in self.emulators}
