"""``python -m loadgen.shell HOST:PORT`` (``unix:PATH``, ``udp:HOST:PORT``): the server's prompt.

The client with "a simple prompt" of the original lecture notes' file server
(list / get / put / quit), built on the standard :mod:`cmd` module (line
editing, history and ``help`` for free) and printing through rich.  A server
ERROR is printed as one red line; the shell never shows a traceback.

    cb> put notes.txt
    cb> list
    cb> get notes.txt copy.txt
    cb> echo hello
    cb> work wait 500 hi      (the server waits 500 ms, then answers "hi")
    cb> work compute 20000    (20,000 units of the server's pure-Python kernel)
    cb> quit

``udp:HOST:PORT`` talks to a datagram server (issue 17) with the same
commands: echo and work are answered, list/get/put get the server's ``ERROR
use TCP``, a reply not back within ``--timeout`` is said to be lost (UDP has
no retry) and the prompt stays.

``work``'s amount is in milliseconds for wait, block and offload (a person
types ``500`` for half a second; the protocol itself counts µs) and in units
for compute (about 1 µs each).
"""

from __future__ import annotations

import argparse
import cmd
import shlex
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from loadgen.client import (
    MAX_WORK_AMOUNT,
    Client,
    DatagramClient,
    ServerError,
    parse_address,
    parse_udp_target,
    work_kind,
)
from servers.protocol import WorkKind

WORK_USAGE = "usage: work wait|compute|block|offload AMOUNT [TEXT]"

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class Shell(cmd.Cmd):
    intro = "Connected. Type help or ? to list commands."
    prompt = "cb> "

    def __init__(self, client: Client | DatagramClient, target: str) -> None:
        super().__init__()
        self.client = client
        self.intro = f"Connected to {target}. Type help or ? to list commands."

    # -- commands (their docstrings are what `help` shows) -----------------

    def do_list(self, arg: str) -> None:
        """list: show the files the server serves."""
        names = self.client.list()
        if not names:
            console.print("[dim](no files)[/dim]")
            return
        table = Table(show_header=False, box=None)
        for name in names:
            table.add_row(name)
        console.print(table)

    def do_get(self, arg: str) -> None:
        """get NAME [LOCAL]: download NAME into LOCAL (default: ./NAME)."""
        args = shlex.split(arg)
        if len(args) not in (1, 2):
            console.print("[yellow]usage: get NAME [LOCAL][/yellow]")
            return
        data = self.client.get(args[0])
        local = Path(args[1] if len(args) == 2 else args[0])
        local.write_bytes(data)
        console.print(f"[green]got[/green] {args[0]} -> {local} ({len(data)} bytes)")

    def do_put(self, arg: str) -> None:
        """put LOCAL [NAME]: upload the local file LOCAL as NAME (default: its file name)."""
        args = shlex.split(arg)
        if len(args) not in (1, 2):
            console.print("[yellow]usage: put LOCAL [NAME][/yellow]")
            return
        local = Path(args[0])
        try:
            data = local.read_bytes()
        except OSError as exc:
            console.print(f"[red]cannot read {local}: {exc.strerror or exc}[/red]")
            return
        name = args[1] if len(args) == 2 else local.name
        self.client.put(name, data)
        console.print(f"[green]put[/green] {local} -> {name} ({len(data)} bytes)")

    def do_echo(self, arg: str) -> None:
        """echo TEXT: send TEXT and print what comes back."""
        console.print(self.client.echo(arg.encode("utf-8")).decode("utf-8", "replace"))

    def do_work(self, arg: str) -> None:
        """work KIND AMOUNT [TEXT]: ask the server to work, then answer TEXT.

        KIND is wait (a backend call: the model waits its own way), block (a
        blocking call in the handler), offload (the same call the way the
        model's framework recommends), each for AMOUNT milliseconds (decimals
        allowed, e.g. 0.5); or compute, AMOUNT units of a pure-Python kernel
        (about 1 us each).  Prints the reply and how long it took.
        """
        parts = arg.split(None, 2)
        if len(parts) < 2:
            console.print(f"[yellow]{WORK_USAGE}[/yellow]")
            return
        try:
            kind = work_kind(parts[0])
            amount = work_amount(kind, parts[1])
        except ValueError as exc:
            console.print(f"[yellow]{exc} ({WORK_USAGE})[/yellow]")
            return
        text = parts[2] if len(parts) == 3 else ""
        start = time.perf_counter()
        reply = self.client.work(kind, amount, text.encode("utf-8"))
        elapsed = time.perf_counter() - start
        if reply:
            console.print(reply.decode("utf-8", "replace"))
        console.print(f"[dim]answered in {elapsed * 1e3:.1f} ms[/dim]")

    def do_quit(self, arg: str) -> bool:
        """quit: say goodbye to the server and leave."""
        try:
            self.client.quit()
        except OSError:
            pass
        return True

    do_exit = do_quit

    def do_EOF(self, arg: str) -> bool:  # noqa: N802 - cmd's name for Ctrl-D
        console.print()
        return self.do_quit(arg)

    # -- plumbing ----------------------------------------------------------

    def emptyline(self) -> bool:
        return False  # cmd's default repeats the last command; that surprises people

    def default(self, line: str) -> None:
        console.print(f"[yellow]unknown command: {line.split()[0]}[/yellow] (try help)")

    def onecmd(self, line: str) -> bool:
        try:
            return super().onecmd(line)
        except ServerError as exc:
            console.print(f"[red]server error:[/red] {exc}")
        except ValueError as exc:  # shlex: unbalanced quotes
            console.print(f"[yellow]{exc}[/yellow]")
        except TimeoutError as exc:
            if not isinstance(self.client, DatagramClient):  # TCP: the stream is out of step
                console.print(f"[red]connection lost: {exc}[/red]")
                return True
            console.print("[red]no reply in time: the datagram or its reply was lost[/red]")
        except OSError as exc:
            console.print(f"[red]connection lost: {exc.strerror or exc}[/red]")
            return True
        return False


def work_amount(kind: int, text: str) -> int:
    """The protocol's amount for the shell's AMOUNT: milliseconds -> µs, or compute units."""
    try:
        value = float(text) if kind != WorkKind.COMPUTE else int(text)
    except ValueError:
        unit = "units (a whole number)" if kind == WorkKind.COMPUTE else "milliseconds"
        raise ValueError(f"AMOUNT must be a number of {unit}, got {text!r}") from None
    amount = value if kind == WorkKind.COMPUTE else value * 1000
    if not 0 <= amount <= MAX_WORK_AMOUNT:  # also refuses nan; inf is over the top
        raise ValueError(f"AMOUNT {text} is out of range")
    return round(amount)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadgen.shell", description="Interactive client for the echo/file server."
    )
    parser.add_argument(
        "target", help="HOST:PORT, unix:PATH or udp:HOST:PORT (loopback) of a running server"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per reply (a WORK's own time added)"
    )
    args = parser.parse_args(argv)
    try:
        udp = parse_udp_target(args.target)
        address = udp or parse_address(args.target)
    except ValueError as exc:
        err_console.print(f"error: {exc}")
        return 2
    try:
        if udp is not None:
            client: Client | DatagramClient = DatagramClient(*udp, timeout=args.timeout)
        else:
            client = Client.to(address, timeout=args.timeout)
    except OSError as exc:
        err_console.print(f"error: cannot connect to {args.target}: {exc.strerror or exc}")
        return 1
    with client:
        try:
            Shell(client, args.target).cmdloop()
        except KeyboardInterrupt:
            console.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
