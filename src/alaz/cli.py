"""Command line: `alaz run`, `alaz doctor`, `alaz version`.

Every setting of `alaz run` is a flag named after its config key (`--capture-bytes`), beside
the Go agent's environment variable (`ALAZ_CAPTURE_BYTES`, `BACKEND_HOST`, ...); a flag wins.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from alaz import __version__
from alaz.config import load_config, override_names
from alaz.errors import AlazError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alaz",
        description="eBPF node agent: every request "
        "between services on this node, named after Kubernetes objects.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="capture and export (JSON lines on stdout by default)")
    for name in override_names():
        run.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar="VALUE")
    sub.add_parser("doctor", help="check that this host can run the agent")
    sub.add_parser("version", help="print the version")
    return p


def _doctor() -> int:
    from alaz.doctor import run_doctor

    return run_doctor()


def _run(args: argparse.Namespace) -> int:
    from alaz.app import Agent
    from alaz.log import configure_logging

    overrides = {k: v for k, v in vars(args).items() if k in override_names() and v is not None}
    config = load_config(os.environ, **overrides)
    configure_logging(config.log.level)
    for warning in config.warnings:
        from alaz.log import get_logger

        get_logger("config").warning("config.warning", detail=warning)

    async def main() -> None:
        await Agent(config).run()

    asyncio.run(main())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "version":
            print(f"alaz {__version__}")
            return 0
        if args.command == "doctor":
            return _doctor()
        return _run(args)
    except AlazError as exc:
        print(f"alaz: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
