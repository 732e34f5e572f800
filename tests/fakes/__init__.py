"""Deliberately broken server variants, started through the real command line in tests.

Users never see them: the registry in ``servers/`` knows nothing of them.
A test that needs one passes :func:`fake_env` as the environment of the
processes it starts (``start_server(name, root, env=fake_env())``, or
``run_all.py`` run with it).  That puts ``tests/fakes/startup`` first on
``PYTHONPATH``, whose ``sitecustomize`` -- the module Python imports at
start-up if it finds one -- calls :func:`register_fakes`; so
``python -m servers fake_bad_echo`` starts through the real command line,
and any process those processes start (``run_all.py``'s servers) knows the
fakes too.
"""

from __future__ import annotations

import os
from pathlib import Path

import servers

STARTUP = Path(__file__).resolve().parent / "startup"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent

# name -> (module in tests.fakes, summary)
FAKES = {
    "fake_bad_echo": ("bad_echo", "test-only: ECHO answers the wrong bytes"),
    "fake_flip_echo": ("flip_echo", "test-only: ECHO's last payload byte inverted"),
    "fake_flip_echo_deep": ("flip_echo_deep", "test-only: ECHO's byte at offset 40,000 inverted"),
    "fake_pause_once": ("pause_once", "test-only: every reply stalls once for 300 ms"),
    "fake_never_reply": ("never_reply", "test-only: reads everything, never answers"),
    "fake_bad_status": ("bad_status", "test-only: every reply has status byte 7"),
    "fake_close_after_one": ("close_after_one", "test-only: closes after one reply"),
    "fake_sleepy_echo": ("sleepy_echo", "test-only: every reply 2 ms late (latency-bound)"),
    "fake_slow_first": ("slow_first", "test-only: each connection's first reply 0.4 s late"),
}


def register_fakes() -> None:
    """Add every fake to this process's registry."""
    for name, (module, summary) in FAKES.items():
        servers.register(
            servers.Variant(
                name,
                summary,
                concurrent=True,
                code="test",
                scheduling="threads",
                module=f"tests.fakes.{module}",
            )
        )


def fake_env() -> dict[str, str]:
    """Environment entries that make a started process (and its children) know the fakes."""
    path = [str(STARTUP), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in path if p)}
