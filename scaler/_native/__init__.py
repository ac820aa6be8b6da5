"""Compiled extensions (built by ``setup.py``; see :mod:`scaler.nativeingest`)."""
