"""The lazy public API: ``import class_hf`` is cheap, every export resolves, and the backbones still register with
``AutoConfig`` / ``AutoModel`` (issue 14 part 4).

Start-up *times* are measured in ``benchmarks/startup.py``, not here.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import class_hf

PACKAGE = Path(class_hf.__file__).parent
LAZY_PACKAGES = ["class_hf", "class_hf.curriculum", "class_hf.data", "class_hf.evaluation", "class_hf.models"]
LAZY_PACKAGES += ["class_hf.search"]
HEAVY = ("torch", "transformers", "datasets", "rdkit", "torch_geometric", "numpy", "accelerate")


def _run(code: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _type_checking_imports(init: Path) -> dict[str, list[str]]:
    """``{relative module: names}`` of the ``if TYPE_CHECKING:`` block of a package ``__init__``."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    block = next(
        node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    return {node.module: sorted(a.name for a in node.names) for node in block.body if isinstance(node, ast.ImportFrom)}


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_type_checking_imports_match_the_lazy_exports(package):
    """The names type checkers see are exactly the names ``__getattr__`` serves, from the same modules."""
    module = importlib.import_module(package)
    init = Path(module.__file__)
    assert _type_checking_imports(init) == {key: sorted(names) for key, names in module._EXPORTS.items()}
    assert module.__all__ == sorted(name for names in module._EXPORTS.values() for name in names)
    for relative, names in module._EXPORTS.items():
        defining = importlib.import_module(f"{package}.{relative}")
        for name in names:
            assert getattr(module, name) is getattr(defining, name), f"{package}.{name}"
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        module.NoSuchThing  # noqa: B018


def test_import_class_hf_imports_nothing_heavy():
    out = _run(
        f"""
        import sys
        import class_hf
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        print(class_hf.__version__, 'load_chebi20' in dir(class_hf))
        """
    )
    assert out.splitlines() == ["[]", f"{class_hf.__version__} True"]


def test_configuration_modules_import_no_modeling_code():
    """Registering the configs with AutoConfig imports transformers' config classes only: no PyG, no AutoModel."""
    out = _run(
        """
        import sys
        import class_hf.models.configuration_aman, class_hf.models.configuration_dual_encoder
        import class_hf.models.configuration_orma
        print('torch_geometric' in sys.modules, 'transformers.models.auto.modeling_auto' in sys.modules)
        """
    )
    assert out.split() == ["False", "False"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_tokenizer):
    from conftest import make_tiny_bert_config

    from class_hf.models.modeling_dual_encoder import DualEncoderConfig, DualEncoderModel

    torch.manual_seed(0)
    config = DualEncoderConfig(
        text_config=make_tiny_bert_config(len(tiny_tokenizer)).to_dict(),
        gnn_hidden_size=16,
        gnn_num_layers=2,
        projection_dim=16,
    )
    path = tmp_path_factory.mktemp("lazy-ckpt")
    DualEncoderModel(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("transformers_first", [False, True])
def test_auto_classes_load_class_hf_checkpoints_right_after_import(tiny_checkpoint, transformers_first):
    """``import class_hf`` then ``AutoModel.from_pretrained``: no other class-hf import needed, in either order."""
    imports = ["import class_hf", "from transformers import AutoConfig, AutoModel"]
    lines = [
        "import sys",
        *(reversed(imports) if transformers_first else imports),
        "pyg_before = 'torch_geometric' in sys.modules",
        f"config = AutoConfig.from_pretrained({str(tiny_checkpoint)!r})",
        f"model = AutoModel.from_pretrained({str(tiny_checkpoint)!r})",
        "fresh = AutoModel.from_config(config)",
        "print(type(config).__name__, type(model).__name__, type(fresh).__name__, pyg_before)",
    ]
    out = _run("\n".join(lines))
    assert out.split() == ["DualEncoderConfig", "DualEncoderModel", "DualEncoderModel", "False"]
