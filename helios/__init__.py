"""Helios: automated trading on VALR with fail-closed PAPER/LIVE modes."""

__version__ = "0.1.0"
