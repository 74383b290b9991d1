"""Typed keys into the emulator's aiohttp application."""

from __future__ import annotations

from aiohttp import web

from onespace.emulator.state import EmulatorState

__all__ = ["STATE"]

STATE = web.AppKey("onespace_emulator_state", EmulatorState)
