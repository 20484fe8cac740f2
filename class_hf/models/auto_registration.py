"""Register the class-hf backbones with ``transformers``' Auto classes, without importing transformers early.

``import class_hf`` must make ``AutoConfig`` / ``AutoModel.from_pretrained(<class-hf checkpoint>)`` work, yet cost
nothing (``class-hf --help`` must not import torch, which ``transformers.AutoConfig`` pulls in). So
:func:`register_backbones` registers

- the **configs** (small modules: transformers' ``PreTrainedConfig`` only) with ``AutoConfig``, and
- a :class:`LazyBackbone` stand-in per **model** with ``AutoModel``, which imports the real modeling module (and
  PyTorch Geometric) only when a model is built or loaded; the modeling module then registers its real class,
  replacing the stand-in,

at the moment transformers' ``configuration_auto`` / ``modeling_auto`` modules finish importing (an import hook that
removes itself once both fired), or at once when they are already imported.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .registry import BACKBONES, Backbone, backbone_for_model_type

logger = logging.getLogger(__name__)

__all__ = ["LazyBackbone", "register_backbones", "register_config"]

CONFIG_AUTO = "transformers.models.auto.configuration_auto"
MODEL_AUTO = "transformers.models.auto.modeling_auto"


def _config_class(backbone: Backbone) -> type | None:
    """The backbone's config class; None while its module is still executing (importing a configuration module
    first imports ``AutoConfig``, which fires the hook before the class exists): :func:`register_config`, at the
    module's end, registers it then."""
    module = sys.modules.get(backbone.config_module)
    if module is not None and not hasattr(module, backbone.config_class_name):
        return None
    return getattr(importlib.import_module(backbone.config_module), backbone.config_class_name)


def register_config(config_class: type) -> None:
    """Registers a class-hf config with ``AutoConfig`` (and the model's stand-in with ``AutoModel``) where
    transformers' auto modules are already imported; called at the end of each configuration module.

    Args:
        config_class (type): the config class; its ``model_type`` names the backbone in the registry.
    """
    backbone = backbone_for_model_type(config_class.model_type)
    if backbone is None:
        return
    configuration_auto, modeling_auto = sys.modules.get(CONFIG_AUTO), sys.modules.get(MODEL_AUTO)
    if configuration_auto is not None and hasattr(configuration_auto, "AutoConfig"):
        configuration_auto.AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    if modeling_auto is not None and hasattr(modeling_auto, "AutoModel"):
        _register_model(modeling_auto, backbone, config_class)


class LazyBackbone:
    """Stands in ``AutoModel``'s mapping for a class-hf backbone until the model is first built or loaded.

    ``AutoModel.from_pretrained`` / ``from_config`` call ``from_pretrained`` / ``_from_config`` on it; it imports the
    real class (whose module registers itself with ``AutoModel`` in its place) and hands the call on.

    Args:
        module (str): the modeling module, e.g. ``class_hf.models.modeling_dual_encoder``.
        name (str): the model class, e.g. ``DualEncoderModel``.
        config_class (type): its config class (``AutoModel.register`` checks that the two match).
    """

    def __init__(self, module: str, name: str, config_class: type) -> None:
        self.__module__ = module
        self.__name__ = self.__qualname__ = name
        self.config_class = config_class

    def resolve(self) -> type:
        """The real model class (imports its module)."""
        return getattr(importlib.import_module(self.__module__), self.__name__)

    def from_pretrained(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve().from_pretrained(*args, **kwargs)

    def _from_config(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()._from_config(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"<LazyBackbone {self.__module__}.{self.__name__}>"


def _register_configs(configuration_auto: ModuleType) -> None:
    for backbone in BACKBONES.values():
        config_class = _config_class(backbone)
        if config_class is not None:
            configuration_auto.AutoConfig.register(backbone.model_type, config_class, exist_ok=True)


def _register_model(modeling_auto: ModuleType, backbone: Backbone, config_class: type) -> None:
    if config_class in modeling_auto.MODEL_MAPPING:
        return  # the real class is already registered (its module was imported)
    stand_in = LazyBackbone(backbone.modeling_module, backbone.model_class_name, config_class)
    modeling_auto.AutoModel.register(config_class, stand_in, exist_ok=True)


def _register_models(modeling_auto: ModuleType) -> None:
    for backbone in BACKBONES.values():
        config_class = _config_class(backbone)
        if config_class is not None:
            _register_model(modeling_auto, backbone, config_class)


def _safely(register: Callable[[ModuleType], None]) -> Callable[[ModuleType], None]:
    def run(module: ModuleType) -> None:
        try:
            register(module)
        except Exception as err:  # never break the user's `import transformers` because of class-hf
            logger.warning("Could not register the class-hf backbones with %s: %s", module.__name__, err)

    return run


class _HookedLoader(importlib.abc.Loader):
    """A module's own loader, plus a call once the module has executed."""

    def __init__(self, loader: importlib.abc.Loader, hook: Callable[[ModuleType], None]) -> None:
        self._loader, self._hook = loader, hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._hook(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_code, is_package, resource readers ...
        return getattr(self._loader, name)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a hook when a module finishes importing; leaves ``sys.meta_path`` when every hook has fired."""

    def __init__(self, hooks: dict[str, Callable[[ModuleType], None]]) -> None:
        self._hooks = hooks

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> Any:
        if fullname not in self._hooks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None:
            return None
        hook = self._hooks.pop(fullname)
        spec.loader = _HookedLoader(spec.loader, self._fire(hook))
        return spec

    def _fire(self, hook: Callable[[ModuleType], None]) -> Callable[[ModuleType], None]:
        def run(module: ModuleType) -> None:
            if not self._hooks and self in sys.meta_path:
                sys.meta_path.remove(self)
            hook(module)

        return run


def register_backbones() -> None:
    """Registers the backbones with ``AutoConfig`` / ``AutoModel`` now, or when transformers' auto modules load.

    Called by ``import class_hf``; calling it again does no harm.
    """
    hooks: dict[str, Callable[[ModuleType], None]] = {}
    for name, register, attribute in (
        (CONFIG_AUTO, _register_configs, "AutoConfig"),
        (MODEL_AUTO, _register_models, "AutoModel"),
    ):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, attribute):
            _safely(register)(module)
        else:
            hooks[name] = _safely(register)
    if hooks and not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(hooks))
