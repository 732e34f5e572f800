"""What each connection sends and expects, encoded before any connection opens.

Every reply of every workload is known in advance (status OK, the length,
and for ECHO/GET/WORK the bytes), so a worker checks a reply by comparing the
received bytes with the exact expected ones: no parsing on the hot path.

A WORK request (``work`` workload) is kind and amount, then ``size`` bytes the
OK reply carries back; the neighbours' WORK carries :data:`NEIGHBOUR_DATA`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from loadgen.engine.config import LoadConfig, LoadError, parse_work
from servers.protocol import Op, encode_frame, encode_put_payload, encode_work_payload

GET_FILES = 4  # distinct files read by the get/mixed workloads
# mixed: per 20 requests, 16 ECHO, 3 GET, 1 PUT (80% / 15% / 5%)
MIXED_CYCLE = ("echo",) * 16 + ("get",) * 3 + ("put",)
OK_EMPTY = encode_frame(0)  # PUT's reply
NEIGHBOUR_DATA = b"neighbour"  # the neighbours' WORK carries these bytes back (checked)


@dataclass
class Plan:
    """Per connection slot: the cycle of (request bytes, exact expected reply bytes)."""

    cycles: list[list[tuple[bytes, bytes]]]
    get_files: dict[str, bytes] = field(default_factory=dict)


def _payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def work_request(spec: str, data: bytes) -> tuple[bytes, bytes]:
    """A WORK request for ``spec`` (``KIND:AMOUNT``) carrying ``data``, and its exact reply."""
    kind, amount = parse_work(spec)
    return encode_frame(Op.WORK, encode_work_payload(kind, amount, data)), encode_frame(0, data)


def build_plan(cfg: LoadConfig, token: str) -> Plan:
    """Pre-encode every request and its expected reply, before any connection opens."""
    echo_payload = _payload(cfg.size, 1)
    echo = (encode_frame(Op.ECHO, echo_payload), encode_frame(0, echo_payload))
    raw = (echo_payload, echo_payload)
    get_files: dict[str, bytes] = {}
    if cfg.workload in ("get", "mixed"):
        for i in range(GET_FILES):
            get_files[f"loadgen-{token}-get-{i}.bin"] = _payload(cfg.size, 100 + i)
    get_names = list(get_files)

    def get(slot: int) -> tuple[bytes, bytes]:
        name = get_names[slot % GET_FILES]
        return encode_frame(Op.GET, name.encode()), encode_frame(0, get_files[name])

    put_data = _payload(cfg.size, 2) if cfg.workload in ("put", "mixed") else b""

    def put(slot: int) -> tuple[bytes, bytes]:
        name = f"loadgen-{token}-put-{slot}.bin"  # unique per connection
        return encode_frame(Op.PUT, encode_put_payload(name, put_data)), OK_EMPTY

    work = work_request(cfg.work, echo_payload) if cfg.workload == "work" else None
    neighbour = None
    if cfg.neighbours and cfg.neighbour_work is not None:
        neighbour = work_request(cfg.neighbour_work, NEIGHBOUR_DATA)
    cycles: list[list[tuple[bytes, bytes]]] = []
    for slot in range(cfg.connections):
        w = cfg.workload
        if neighbour is not None and slot < cfg.neighbours:
            cycle = [neighbour]
        elif work is not None:
            cycle = [work]
        elif w == "raw":
            cycle = [raw]
        elif w == "get":
            cycle = [get(slot)]
        elif w == "put":
            cycle = [put(slot)]
        elif w == "mixed" and slot >= cfg.slow_clients:
            kinds = {"echo": echo, "get": get(slot), "put": put(slot)}
            start = slot % len(MIXED_CYCLE)  # so the connections do not move in lockstep
            order = MIXED_CYCLE[start:] + MIXED_CYCLE[:start]
            cycle = [kinds[k] for k in order]
        else:  # echo, churn, idle; slow clients of mixed send ECHO
            cycle = [echo]
        cycles.append(cycle)
    return Plan(cycles, get_files)


def prepare_files(cfg: LoadConfig, plan: Plan) -> None:
    """PUT the files the get/mixed workloads read, and check one comes back."""
    if not plan.get_files:
        return
    from loadgen.client import Client, ServerError

    try:
        with Client.to(cfg.address, timeout=5.0) as client:
            for name, data in plan.get_files.items():
                client.put(name, data)
            name, data = next(iter(plan.get_files.items()))
            if client.get(name) != data:
                raise LoadError(f"{cfg.target} returned other bytes than were PUT for {name}")
    except (OSError, ServerError) as exc:
        raise LoadError(f"could not prepare the GET files on {cfg.target}: {exc}") from None
