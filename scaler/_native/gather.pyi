from scaler.series import FloatArray, Int64Array, Series

def gather(series: list[Series], lo: int, hi: int, /) -> tuple[Int64Array, Int64Array, Int64Array, FloatArray]:
    """The samples ``lo < ts <= hi`` of each series back to back: ``(rows, offs, ts, vals)``,
    ``rows`` the indices of the series with a non-empty window (scaler/_native/gather.c)."""

def rate(
    series: list[Series], first: int, stop: int, lo: int, hi: int, kind: int, range_seconds: float, /
) -> tuple[Int64Array, FloatArray, int]:
    """``delta`` (kind 0), ``increase`` (1) or ``rate`` (2) of each series of
    ``series[first:stop]`` with two samples or more in ``lo < ts <= hi`` (staleness markers
    skipped): ``(rows, values, samples read)``, ``rows`` indices into ``series``."""

def latest(
    series: list[Series], first: int, stop: int, lo: int, hi: int, /
) -> tuple[Int64Array, Int64Array, FloatArray]:
    """Per series of ``series[first:stop]``, its newest sample with ``lo < ts <= hi`` unless that
    is a staleness marker (what an instant selector sees): ``(rows, ts, vals)``, ``rows`` indices
    into ``series``."""

def group_sums(values: FloatArray, groups: Int64Array, ngroups: int, /) -> tuple[Int64Array, FloatArray]:
    """PromQL's ``sum`` of each group (Kahan-Neumaier, members in input order): ``(group
    indices in order of first member, their sums)``."""
