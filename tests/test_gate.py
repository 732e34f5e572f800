"""The benchmarks' instruction gate (tests/benchmarks/gate.py) on synthetic saves: a rise of
the limit fails, less passes, the wall-clock means never gate, a missing figure is listed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks import gate


def save(figures: dict[str, float | None], mean_s: float = 0.05) -> dict[str, Any]:
    """A pytest-benchmark save with one test_echo_small per variant."""
    return {
        "benchmarks": [
            {
                "name": f"test_echo_small[{name}]",
                "stats": {"mean": mean_s},
                "extra_info": {"variant": name, gate.FIGURE: ir, "instructions_spread": 0.001},
            }
            for name, ir in figures.items()
        ]
    }


def test_a_rise_of_the_limit_fails_and_less_passes() -> None:
    base = save({"epoll_reactor": 30_000.0, "asyncio_streams": 110_000.0})
    now = save({"epoll_reactor": 33_000.0, "asyncio_streams": 119_900.0})  # +10.0%, +9.0%
    verdicts = {v.variant: v for v in gate.compare(base, now, 0.10)}
    assert verdicts["epoll_reactor"].failed and verdicts["epoll_reactor"].status == "FAIL"
    assert not verdicts["asyncio_streams"].failed
    assert verdicts["asyncio_streams"].change == pytest.approx(0.09, abs=1e-3)
    assert gate.report(list(verdicts.values()), 0.10)[-1] == (
        "instructions gate (10%): FAILED: epoll_reactor"
    )


def test_wall_clock_never_gates() -> None:
    """A mean twice as long (a busy machine) with the same instructions passes."""
    verdicts = gate.compare(save({"thread_pool": 22_000.0}), save({"thread_pool": 22_050.0}, 0.1))
    assert [v.status for v in verdicts] == ["ok"]
    assert verdicts[0].current_mean_s == 0.1


def test_a_missing_figure_is_listed_not_failed() -> None:
    verdicts = gate.compare(save({"a": 1000.0}), save({"a": None, "b": 5.0}))
    assert [(v.variant, v.status) for v in verdicts] == [
        ("a", "not compared"),
        ("b", "not compared"),
    ]
    assert gate.report(verdicts, 0.1)[-1] == "instructions gate (10%): passed"


@pytest.mark.parametrize("text, value", [("10%", 0.10), ("0.05", 0.05), ("2.5%", 0.025)])
def test_parse_fraction(text: str, value: float) -> None:
    assert gate.parse_fraction(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["0", "-5%", "ten"])
def test_parse_fraction_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        gate.parse_fraction(text)


def test_the_command_exits_1_on_a_rise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old.json").write_text(json.dumps(save({"gevent_server": 68_000.0})))
    (tmp_path / "new.json").write_text(json.dumps(save({"gevent_server": 80_000.0})))
    (tmp_path / "same.json").write_text(json.dumps(save({"gevent_server": 68_100.0})))
    old, new, same = (str(tmp_path / f"{n}.json") for n in ("old", "new", "same"))
    assert gate.main([old, new]) == 1
    assert "FAILED: gevent_server" in capsys.readouterr().out
    assert gate.main([old, same]) == 0


def test_resolve_takes_the_newest_numbered_save(tmp_path: Path) -> None:
    machine = tmp_path / "Linux-CPython-3.11-64bit"
    machine.mkdir()
    for n in ("0001_abc", "0002_def"):
        (machine / f"{n}.json").write_text("{}")
    assert gate.resolve("", tmp_path).name == "0002_def.json"
    assert gate.resolve("0001", tmp_path).name == "0001_abc.json"
    with pytest.raises(FileNotFoundError):
        gate.resolve("0009", tmp_path)
