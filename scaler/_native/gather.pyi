from scaler.series import FloatArray, Int64Array, Series

def gather(series: list[Series], lo: int, hi: int, /) -> tuple[Int64Array, Int64Array, Int64Array, FloatArray]:
    """The samples ``lo < ts <= hi`` of each series back to back: ``(rows, offs, ts, vals)``,
    ``rows`` the indices of the series with a non-empty window (scaler/_native/gather.c)."""
