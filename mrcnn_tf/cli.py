"""The ``mrcnn-tf`` command line.

Errors a user can cause (a bad path, bad YAML, an unknown name or key, a bad ``--set``)
print one message and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

from mrcnn_tf import __version__
from mrcnn_tf.cli_common import config_overrides
from mrcnn_tf.cli_convert import add_convert_command
from mrcnn_tf.cli_data import add_data_commands
from mrcnn_tf.cli_predict import add_predict_command
from mrcnn_tf.cli_train import add_train_commands
from registry.errors import UserError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse with exit status 2 and a hint to ``--help`` on usage errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\nRun `{self.prog} --help` for help.\n")


@contextlib.contextmanager
def _quiet_native_stderr(enabled: bool) -> Iterator[None]:
    """Silence the C++ start-up lines TensorFlow prints before its logging is configured.

    They are written to file descriptor 2 before ``TF_CPP_MIN_LOG_LEVEL`` takes effect, so
    the descriptor itself is redirected while TensorFlow is imported. Python exceptions are
    unaffected (they are raised, and printed after the descriptor is restored).
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _import_framework(debug: bool) -> None:
    # Level 3 also hides "failed call to cuInit" on machines without a GPU; TensorFlow's
    # real failures still arrive as Python exceptions. --debug keeps TensorFlow's default.
    if not debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _quiet_native_stderr(not debug):
        import tensorflow

        if not debug:  # e.g. tf.function retracing notes while an export traces its signatures
            tensorflow.get_logger().setLevel("ERROR")

        from mrcnn_tf.registries import load_builtins

        load_builtins()


def _with_framework(func):
    """Import TensorFlow quietly first when the command needs it (or reads a config)."""

    def run(args: argparse.Namespace) -> int:
        if getattr(args, "needs_framework", True) or getattr(args, "config", None):
            _import_framework(args.debug)
        return func(args)

    run.__doc__ = func.__doc__
    return run


# ------------------------------------------------------------------------------ commands
def cmd_list(args: argparse.Namespace) -> int:
    """Print registered names per role (or the bundled configs)."""
    if args.role in ("config", "configs"):
        from mrcnn_tf.config import CONFIG_ROOT, list_configs

        configs = list_configs()
        print(f"configs ({len(configs)}) in {CONFIG_ROOT}")
        for path in configs:
            print(f"  {path.relative_to(CONFIG_ROOT)!s:<44} {_yaml_description(path)}")
        return 0
    _import_framework(args.debug)
    from mrcnn_tf.registries import ALL, registry_for_role

    registries = [registry_for_role(args.role)] if args.role else list(ALL.values())
    for registry in registries:
        entries = registry.entries()
        print(f"{registry.name} ({len(entries)})")
        if not entries:
            print("  (none registered yet)")
        for entry in entries:
            aliases = f"  [aliases: {', '.join(entry.aliases)}]" if entry.aliases else ""
            print(f"  {entry.name:<24} {entry.description}{aliases}")
    return 0


def _yaml_description(path: os.PathLike) -> str:
    """The first ``# comment`` line of a YAML file, for listings."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#"):
                return line.lstrip("# ").rstrip()
            if line.strip():
                break
    return ""


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print the fully resolved config as YAML."""
    _import_framework(args.debug)
    from mrcnn_tf.config import load_config
    from registry.config import dump_config

    cfg = load_config(args.config, config_overrides(args))
    sys.stdout.write(dump_config(cfg))
    return 0


# -------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``mrcnn-tf``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks and TensorFlow's logs",
    )
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument(
        "--set",
        action="append",
        nargs="+",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.backbone.depth=101 (VALUE is YAML); repeatable",
    )

    parser = _Parser(
        prog="mrcnn-tf",
        description="Mask R-CNN instance segmentation for TensorFlow 2 / Keras 3, built from plugins.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("list", parents=[common], help="list registered components per role, or configs")
    p.add_argument("role", nargs="?", help="one role (backbone, neck, mask_head, ...) or 'configs'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("config", parents=[common], help="work with config files")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", parser_class=_Parser)
    config_sub.required = True
    show = config_sub.add_parser(
        "show",
        parents=[common, overrides],
        help="print the fully resolved config (bases merged, overrides applied)",
    )
    show.add_argument("config", help="a YAML file or the name of a bundled config")
    show.set_defaults(func=cmd_config_show)

    add_train_commands(sub, common, overrides, _Parser, _with_framework)
    add_data_commands(sub, common, overrides, _Parser, _with_framework)
    add_predict_command(sub, common, overrides, _with_framework)
    add_convert_command(sub, common, overrides, _Parser, _with_framework)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mrcnn-tf`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # ``--debug`` may come before or after the subcommand; its default is suppressed in every
    # parser (the action object is shared through ``parents=``, so set_defaults would leak).
    args.debug = getattr(args, "debug", False)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.debug:
            raise
        print(f"mrcnn-tf: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("mrcnn-tf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
