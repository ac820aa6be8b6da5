from collections.abc import Callable
from collections.abc import Set as AbstractSet

from scaler.series import Series

class Ingest:
    """The native OTLP translate + append loop and its point cache (scaler/_native/otlpwire.c)."""

    cached_points: int

    def __init__(
        self,
        new_resource: Callable[[bytes], object],
        resolve: Callable[..., object],
        series_type: type,
        initial_capacity: int,
        no_sample: int,
    ) -> None: ...
    def run(
        self,
        data: bytes,
        pos: tuple[int, int, int],
        now_ms: int,
        cutoff_ms: int,
        horizon_ms: int,
        budget: int,
        watched: AbstractSet[str],
        written: dict[str, int],
    ) -> tuple[tuple[int, int, int] | None, int, int, list[int], set[str], list[Series]]: ...
    def clear(self) -> None: ...

def chunks(data: bytes, chunk: int) -> list[int]: ...
