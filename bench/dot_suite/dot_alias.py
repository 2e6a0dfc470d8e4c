"""pytest plugin: ``oauth2_provider`` and its submodules are ``oauth_provider``'s, the same objects.

Loaded with ``-p dot_alias`` before pytest-django sets Django up, so the test modules' and support
modules' ``from oauth2_provider.x import y`` get this project's ``oauth_provider.x.y``.
"""

import importlib
import importlib.abc
import importlib.util
import sys

ALIAS, TARGET = "oauth2_provider", "oauth_provider"


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec):
        module = importlib.import_module(TARGET + spec.name[len(ALIAS) :])
        self._real_spec = module.__spec__
        return module

    def exec_module(self, module):
        # importlib stamped the alias spec on the real module; give it its own back.
        module.__spec__ = self._real_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        real = TARGET + fullname[len(ALIAS) :]
        if importlib.util.find_spec(real) is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader())


sys.meta_path.insert(0, _AliasFinder())
