"""The longest time a command leaves a terminal unchanged: run it on a pseudo-terminal (as a
user's shell would, so progress displays are live), timestamp every chunk it writes, and
print the longest gaps with what was on screen before each.

    .venv/bin/python scripts/silence.py -- make run          # a cold start, from a fresh clone
    .venv/bin/python scripts/silence.py --top 5 -- .venv/bin/nw run --date 2024-01-15

Exit status is the command's. The transcript (with the time of every chunk) goes to --log.
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import sys
import time

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=3, help="how many of the longest gaps to print")
    parser.add_argument("--log", default="silence.log", help="transcript with a timestamp per chunk")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")

    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, on the terminal's slave side
        os.environ.setdefault("TERM", "xterm-256color")
        os.execvp(command[0], command)  # noqa: S606 (the command line the user gave)
    start = last = time.monotonic()
    gaps: list[tuple[float, float, str]] = []  # (seconds, at, screen text before)
    tail = b""
    with open(args.log, "w") as log:
        while True:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            now = time.monotonic()
            text = ANSI.sub(b"", tail).decode(errors="replace").strip().splitlines()
            gaps.append((now - last, last - start, text[-1] if text else ""))
            last = now
            tail = (tail + chunk)[-400:]
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            log.write(f"[{now - start:8.2f}] {chunk.decode(errors='replace')!r}\n")
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    total = time.monotonic() - start
    print(f"\n== {' '.join(command)}: exit {code}, {total:.1f} s; longest times with the terminal unchanged:")
    for seconds, at, before in sorted(gaps, reverse=True)[: args.top]:
        print(f"   {seconds:5.1f} s from {at:6.1f} s, after: {before[:100]}")
    return code


if __name__ == "__main__":
    sys.exit(main())
