"""The ``ctsgan`` command.

Subcommands are thin: each lives in ``ctsgan.commands.<name>`` and exposes
``register(app)``, which adds its command(s) to the right Typer app. The work itself lives in
library functions that tests call directly. Command modules import heavy libraries (torch,
SimpleITK) inside the command functions so that ``ctsgan --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="ctsgan",
    help="Synthetic 3D chest CT: prepare data, train CT-SGAN / 3D GAN, generate, evaluate, nodules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks (speed, memory) printed as a table or JSON.", no_args_is_help=True)
nodules_app = typer.Typer(help="Nodule statistics, injector / eraser GANs, inject and erase.", no_args_is_help=True)
experiment_app = typer.Typer(help="Downstream experiments (nodule detection).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(nodules_app, name="nodules")
app.add_typer(experiment_app, name="experiment")

# (module under ctsgan.commands, the Typer app its register() receives)
_COMMAND_MODULES: list[tuple[str, typer.Typer]] = [
    ("prepare", app),
    ("phantom", app),
    ("train", app),
    ("generate", app),
    ("calibrate", app),
    ("evaluate", app),
    ("quickstart", app),
    ("nodules", nodules_app),
    ("experiment", experiment_app),
    ("bench_generate", bench_app),
    ("bench_evaluate", bench_app),
    ("bench_memory", bench_app),
    ("bench_train", bench_app),
]


def _register_all() -> None:
    for name, target in _COMMAND_MODULES:
        module = importlib.import_module(f"ctsgan.commands.{name}")
        module.register(target)


_register_all()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
