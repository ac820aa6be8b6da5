"""Build script for the native extensions (OTLP ingest; the query's window gather); everything else is in pyproject.toml.

setuptools reads the project metadata from pyproject.toml; this file only adds the C extension,
which needs numpy's headers at build time (``build-system.requires``).
"""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "scaler._native.otlpwire",
            ["scaler/_native/otlpwire.c", "scaler/_native/series.c"],
            depends=["scaler/_native/series.h", "scaler/_native/wire.h"],
            include_dirs=[numpy.get_include()],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        ),
        Extension(
            "scaler._native.gather",
            ["scaler/_native/gather.c", "scaler/_native/groupsum.c"],
            depends=["scaler/_native/groupsum.h"],
            include_dirs=[numpy.get_include()],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        ),
    ]
)
