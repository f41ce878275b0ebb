"""The ``xmr`` command line. Each subcommand lives in its own module and registers itself in ``COMMANDS``."""
from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import XmrError
from ._common import COMMANDS

# subcommand modules (each registers itself)
from . import demo_cmd, eval_cmd, index_cmd, info_cmd, models_cmd, search_cmd, serve_cmd, synth_cmd, train_head_cmd  # noqa: F401,E402,E501


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xmr", description="Cross-modal retrieval: search images with text or images.")
    p.add_argument("--version", action="version", version=f"xmr {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (setup, run, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        setup(sp)
        sp.set_defaults(_run=run)
    return p


def _setup_logging(verbose: int, quiet: bool) -> None:
    """xmr's own INFO messages (and progress bars) by default; third-party chatter only with -vv."""
    logging.basicConfig(level=logging.DEBUG if verbose >= 2 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("xmr").setLevel(logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO))
    if verbose < 2:
        for name in ("transformers", "sentence_transformers", "huggingface_hub", "httpx", "urllib3", "faiss"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:  # transformers' "Loading weights" bars
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args._run(args) or 0)
    except XmrError as e:
        print(f"xmr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nxmr: interrupted (work already committed is kept; re-run to resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
