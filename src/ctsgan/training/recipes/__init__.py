"""Registry of GAN recipes: ``--model NAME`` -> :class:`~ctsgan.training.recipe.GanRecipe`.

Each model lives in its own module here and registers itself with :func:`register_recipe`;
add the module to ``_RECIPE_MODULES`` so the registry imports it on first use. A model kept
outside the package (a user's own) is named in the environment variable ``CTSGAN_RECIPE_MODULES``
(comma-separated importable module names), which every ctsgan process, subprocesses included,
reads on its first registry look-up.
"""

from __future__ import annotations

import importlib
import os

from ctsgan.training.recipe import GanRecipe

# One line per model; modules are imported lazily (on the first registry look-up).
_RECIPE_MODULES: tuple[str, ...] = (
    "ctsgan.training.recipes.ctsgan",
    "ctsgan.training.recipes.gan3d",
    "ctsgan.nodules.recipe",  # injector, eraser (the nodules package sits above training)
)

_REGISTRY: dict[str, type[GanRecipe]] = {}
_loaded = False


def register_recipe(cls: type[GanRecipe]) -> type[GanRecipe]:
    """Class decorator: make ``cls`` available as ``--model cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"recipe {cls.name!r} registered twice ({_REGISTRY[cls.name]} and {cls})")
    _REGISTRY[cls.name] = cls
    return cls


#: environment variable naming extra recipe modules (comma-separated), imported after the built-in ones
EXTRA_MODULES_ENV = "CTSGAN_RECIPE_MODULES"


def _load() -> None:
    global _loaded
    if not _loaded:
        for mod in _RECIPE_MODULES:
            importlib.import_module(mod)
        for mod in filter(None, (m.strip() for m in os.environ.get(EXTRA_MODULES_ENV, "").split(","))):
            try:
                importlib.import_module(mod)
            except ImportError as e:
                raise ImportError(f"{EXTRA_MODULES_ENV}: cannot import recipe module {mod!r} ({e})") from None
        _loaded = True


def recipe_names() -> list[str]:
    """Names of all registered models."""
    _load()
    return sorted(_REGISTRY)


def get_recipe(name: str) -> GanRecipe:
    """A fresh recipe instance for ``name``; unknown names raise ValueError listing the valid ones."""
    _load()
    if name not in _REGISTRY:
        raise ValueError(f"model must be one of {sorted(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]()
