"""Names a DOT test module imports that this provider does not have, as placeholders.

``run.py`` rewrites each top-level ``from oauth2_provider.x import a, b`` of DOT's test modules into
one ``import_or_missing`` call per name, so a module that imports one absent name (often an
internal helper) still runs: only the tests that use the name fail, with an ImportError naming it.
"""

import importlib
import types


class _MissingMeta(type):
    def __getattr__(cls, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise ImportError(f"oauth_provider has no {cls._dotted} (used as {cls._dotted}.{attr})")


def _missing(dotted: str):
    def fail(*args, **kwargs):
        raise ImportError(f"oauth_provider has no {dotted}")

    return _MissingMeta(
        dotted.rsplit(".", 1)[-1], (), {"_dotted": dotted, "__init__": fail, "__call__": fail}
    )


class _TolerantModule(types.ModuleType):
    """A module as a test module sees it: an absent attribute is a placeholder, not an error at import."""

    def __init__(self, module):
        super().__init__(module.__name__)
        self.__dict__["_module"] = module

    def __getattr__(self, attr):
        try:
            return getattr(self.__dict__["_module"], attr)
        except AttributeError:
            if attr.startswith("__"):
                raise
            return _missing(f"{self.__name__}.{attr}")

    def __setattr__(self, attr, value):
        setattr(self.__dict__["_module"], attr, value)


def import_or_missing(module: str, name: str):
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return _missing(f"{module}.{name}")
    try:
        value = getattr(mod, name)
    except AttributeError:
        try:
            value = importlib.import_module(f"{module}.{name}")
        except ImportError:
            return _missing(f"{module}.{name}")
    return _TolerantModule(value) if isinstance(value, types.ModuleType) else value
