"""How views reach the daemon: the `Services` the app was built with, and its clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app

from headwater.daemon.services import Services

EXTENSION = "headwater"


@dataclass(frozen=True)
class Seam:
    services: Services
    clock: Callable[[], float] = time.time


def install(app: Flask, services: Services, clock: Callable[[], float] = time.time) -> None:
    app.extensions[EXTENSION] = Seam(services, clock)


def seam() -> Seam:
    found: Seam = current_app.extensions[EXTENSION]
    return found


def services() -> Services:
    return seam().services


def now() -> float:
    return seam().clock()
