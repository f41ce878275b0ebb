"""The ``xmr`` command line. Each subcommand lives in its own module and registers itself in ``COMMANDS``."""
from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import XmrError
from ._common import COMMANDS

# subcommand modules (each registers itself)
from . import adapt_cmd, demo_cmd, embed_cmd, eval_cmd, export_cmd, index_cmd, info_cmd, models_cmd, search_cmd, serve_cmd, side_text_cmd, synth_cmd, train_audio_cmd, train_av_cmd, train_cmd, train_compose_cmd, train_fusion_cmd, train_head_cmd, train_moments_cmd, train_recipe_cmd, train_reranker_cmd, train_text_cmd  # noqa: F401,E402,E501


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
        _quiet_transformers_bars()


#: loggers whose warnings say the same thing every time (random initialisation of tiny / openclip): shown once per
#: process (a search builds ``tiny`` for the index, a video head's base and an xattn re-ranker: one warning, not three)
_ONCE_LOGGERS = ("xmr.encoders.tiny", "xmr.encoders.openclip")


class _Once(logging.Filter):
    """Passes each distinct message once."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


def _quiet_transformers_bars() -> None:
    """transformers' "Loading weights" bars off, without importing transformers (0.6 s) for commands that never
    load it: done now if it is imported, else right after its logging module is."""
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()
        return
    if not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


class _AfterImport:
    """Meta path hook: runs ``disable_progress_bar()`` once ``transformers.utils.logging`` has been executed."""

    name = "transformers.utils.logging"

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def run(module):
            exec_module(module)
            try:
                module.disable_progress_bar()
            except Exception:  # noqa: BLE001 - a cosmetic setting never breaks an import
                pass

        spec.loader.exec_module = run
        return spec


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    _setup_logging(args.verbose, args.quiet)
    once = _Once()
    for name in _ONCE_LOGGERS:  # one command, one announcement: a random model built twice is not news twice
        logging.getLogger(name).addFilter(once)
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
    finally:
        for name in _ONCE_LOGGERS:
            logging.getLogger(name).removeFilter(once)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
