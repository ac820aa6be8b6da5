"""Issue 20's streams figure: 10,000 ``StreamIsActive`` streams opened at once, all served, and the
push latency of a flip while they are open.

Clients run in their own processes (``python -m bench.streams --port P --first I --count N``),
each a grpc.aio client with two connections, driven by JSON lines on stdin/stdout. Every stream
is a ScaledObject trigger on its own deployment, ``sum(vllm:num_requests_waiting{deployment=…})``
(a realistic fleet of ScaledObjects: the same metric, one deployment each); the first
``flip_streams`` watch the flip deployment instead. Phases, all against one server:

1. every stream opened at once: the time until each has its first message, and how many did;
2. baseline: the same number of ``IsActive`` calls (same triggers, same evaluation) at once, after
   (the triggers are parsed by then, so the baseline is the cheaper side);
3. flips (Export of the flip deployment's gauge, alternating high/low) while the streams are
   open and :mod:`bench.background` ingests 10k series every 5 s: Export → message at each
   flip stream; the server's CPU while nothing but rechecks runs;
4. the other streams closed, the same flips again: the baseline of 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import grpc

from bench import reaction
from bench.loadgen import end_children
from bench.server import GRPC_OPTIONS, ServerProcess, otlp_export
from bench.stats import Latency, cpu_seconds
from scaler._gen import externalscaler_pb2 as pb
from scaler._gen import externalscaler_pb2_grpc as pb_grpc

CHANNELS_PER_PROCESS = 2


def metadata(index: int, flip_streams: int) -> dict[str, str]:
    deployment = reaction.FLIP_DEPLOYMENT if index < flip_streams else f"so-{index:05d}-llm-d-modelservice-decode"
    return {**reaction.FLIP_METADATA, "metricQuery": f"sum(vllm:num_requests_waiting{{deployment={deployment}}})"}


@dataclass(frozen=True)
class StreamsResult:
    streams: int
    unary_seconds: float
    open_seconds: float
    served: int
    errors: list[str]
    flips_open: Latency
    flips_alone: Latency
    missed: int
    idle_cpu: float
    """Server CPU (cores) with every stream open and no data arriving."""
    open_cpu: tuple[float, float]
    """CPU seconds of the server and of all client processes while the streams opened."""
    unary_cpu: tuple[float, float]
    """The same for the ``IsActive`` calls."""
    background: dict[str, float]


class Clients:
    """``processes`` stream client processes sharing ``streams`` streams."""

    def __init__(self, port: int, streams: int, processes: int, flip_streams: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.flips: queue.Queue[tuple[int, float, bool]] = queue.Queue()
        self.answers: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        share = -(-streams // processes)
        for p in range(processes):
            first, count = p * share, max(0, min(share, streams - p * share))
            command = [sys.executable, "-m", "bench.streams", "--port", str(port), "--first", str(first)]
            command += ["--count", str(count), "--flip-streams", str(flip_streams)]
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
            self.procs.append(proc)
            threading.Thread(target=self._pump, args=(p, proc), daemon=True).start()
        self.ask({"cmd": "ping"})

    def _pump(self, index: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            message = json.loads(line)
            if "flip" in message:
                self.flips.put((int(message["flip"]), float(message["t"]), bool(message["active"])))
            else:
                self.answers.put((index, message))

    def ask(self, command: dict[str, Any], timeout: float = 120.0) -> list[dict[str, Any]]:
        """Send ``command`` to every process at once; their answers, in process order."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        answers: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(answers) < len(self.procs):
            index, answer = self.answers.get(timeout=max(0.1, deadline - time.monotonic()))
            answers[index] = answer
        return [answers[i] for i in range(len(self.procs))]

    def cpu(self, server_pid: int) -> tuple[float, float]:
        """CPU seconds so far of the server and of all client processes."""
        return cpu_seconds(server_pid), sum(cpu_seconds(p.pid) for p in self.procs)

    def close(self) -> None:
        end_children(self.procs)


def _spent(before: tuple[float, float], after: tuple[float, float]) -> tuple[float, float]:
    return after[0] - before[0], after[1] - before[1]


def _flips(clients: Clients, export: Any, flips: int, flip_streams: int) -> tuple[list[float], int]:
    """Export → message at each flip stream, for ``flips`` flips; returns latencies and misses."""
    latencies: list[float] = []
    missed = 0
    for i in range(flips):
        time.sleep(0.05)
        value = reaction.HIGH if i % 2 == 0 else reaction.LOW
        sent = time.monotonic()
        export(reaction.flip_request(value), timeout=10)
        pending = set(range(flip_streams))
        deadline = sent + 5.0
        while pending and time.monotonic() < deadline:
            try:
                stream, at, active = clients.flips.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if stream in pending and active == (value == reaction.HIGH):
                pending.discard(stream)
                latencies.append(at - sent)
        missed += len(pending)
    return latencies, missed


def measure(
    server: ServerProcess, streams: int, processes: int, flip_streams: int, flips: int, background_series: int
) -> StreamsResult:
    otlp = grpc.insecure_channel(f"127.0.0.1:{server.otlp}", options=GRPC_OPTIONS)
    export = otlp_export(otlp)
    export(reaction.flip_request(reaction.LOW), timeout=10)
    clients = Clients(server.keda, streams, processes, flip_streams)
    bg: subprocess.Popen[bytes] | None = None
    try:
        cpu = clients.cpu(server.pid)
        opened = clients.ask({"cmd": "open"})
        cpu, open_cpu = clients.cpu(server.pid), _spent(cpu, clients.cpu(server.pid))
        open_seconds = max(a["end"] for a in opened) - min(a["start"] for a in opened)
        served = sum(int(a["served"]) for a in opened)
        errors = [e for a in opened for e in a["errors"]]
        unary = clients.ask({"cmd": "unary"})  # after: with the triggers parsed, the baseline is the cheaper
        unary_cpu = _spent(cpu, clients.cpu(server.pid))
        if any(a["errors"] for a in unary):
            raise RuntimeError(f"IsActive failed: {[a['errors'] for a in unary]}")
        unary_seconds = max(a["end"] for a in unary) - min(a["start"] for a in unary)
        time.sleep(2.0)
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(5.0)
        idle_cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
        command = [sys.executable, "-m", "bench.background", "--port", str(server.otlp)]
        command += ["--series", str(background_series), "--duration", str(30 + flips * 0.3)]
        bg = subprocess.Popen(command, stdout=subprocess.PIPE)
        time.sleep(6.0)  # a scrape interval of background load first
        with_open, missed_open = _flips(clients, export, flips, flip_streams)
        clients.ask({"cmd": "close_others"})
        time.sleep(1.0)
        alone, missed_alone = _flips(clients, export, flips, flip_streams)
        bg.terminate()
        out, _ = bg.communicate(timeout=60)
        background = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    finally:
        if bg is not None and bg.poll() is None:
            bg.kill()
            bg.wait()
        clients.close()
        otlp.close()
    return StreamsResult(
        streams,
        unary_seconds,
        open_seconds,
        served,
        errors,
        Latency.of(with_open),
        Latency.of(alone),
        missed_open + missed_alone,
        idle_cpu,
        open_cpu,
        unary_cpu,
        background,
    )


# ----------------------------------------------------------------------- the client process


class Worker:
    def __init__(self, port: int, first: int, count: int, flip_streams: int, out: IO[str]) -> None:
        self.indices = range(first, first + count)
        self.flip_streams = flip_streams
        self.out = out
        target = f"127.0.0.1:{port}"
        self.channels = [grpc.aio.insecure_channel(target, options=GRPC_OPTIONS) for _ in range(CHANNELS_PER_PROCESS)]
        self.stubs = [pb_grpc.ExternalScalerStub(c) for c in self.channels]
        self.calls: dict[int, Any] = {}
        self.readers: dict[int, asyncio.Task[None]] = {}

    def ref(self, i: int) -> pb.ScaledObjectRef:
        return pb.ScaledObjectRef(name=f"so-{i}", namespace="bench", scalerMetadata=metadata(i, self.flip_streams))

    def say(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    async def unary(self) -> dict[str, Any]:
        start = time.monotonic()
        calls = (self.stubs[i % CHANNELS_PER_PROCESS].IsActive(self.ref(i)) for i in self.indices)
        answers = await asyncio.gather(*calls, return_exceptions=True)
        errors = [f"{a.code().name}: {a.details()}" for a in answers if isinstance(a, grpc.aio.AioRpcError)]
        return {"start": start, "end": time.monotonic(), "errors": errors[:5]}

    async def open(self) -> dict[str, Any]:
        first: dict[int, asyncio.Future[None]] = {i: asyncio.get_running_loop().create_future() for i in self.indices}
        errors: list[str] = []
        start = time.monotonic()
        for i in self.indices:
            self.calls[i] = self.stubs[i % CHANNELS_PER_PROCESS].StreamIsActive(self.ref(i))
            self.readers[i] = asyncio.create_task(self.read(i, first[i], errors))
        done, _ = await asyncio.wait(first.values(), timeout=60)
        return {"start": start, "end": time.monotonic(), "served": len(done), "errors": errors[:5]}

    async def read(self, i: int, first: asyncio.Future[None], errors: list[str]) -> None:
        try:
            async for message in self.calls[i]:
                if not first.done():
                    first.set_result(None)
                elif i < self.flip_streams:
                    self.say({"flip": i, "t": time.monotonic(), "active": message.result})
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.CANCELLED or not first.done():
                errors.append(f"{exc.code().name}: {exc.details()}")

    async def close_others(self) -> dict[str, Any]:
        for i in [i for i in self.calls if i >= self.flip_streams]:
            self.calls.pop(i).cancel()
            self.readers.pop(i).cancel()
        return {"open": len(self.calls)}

    async def serve(self, stdin: IO[str]) -> None:
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, stdin.readline):
            command = json.loads(line)["cmd"]
            if command == "ping":
                self.say({"pong": True})
            elif command == "unary":
                self.say(await self.unary())
            elif command == "open":
                self.say(await self.open())
            elif command == "close_others":
                self.say(await self.close_others())
        for call in self.calls.values():
            call.cancel()
        for channel in self.channels:
            await channel.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="KEDA gRPC port on 127.0.0.1")
    parser.add_argument("--first", type=int, default=0, help="index of this process's first stream")
    parser.add_argument("--count", type=int, required=True, help="streams of this process")
    parser.add_argument("--flip-streams", type=int, default=10, help="streams 0..N-1 watch the flip deployment")
    args = parser.parse_args(argv)

    async def run() -> None:
        await Worker(args.port, args.first, args.count, args.flip_streams, sys.stdout).serve(sys.stdin)

    asyncio.run(run())


if __name__ == "__main__":
    main()
