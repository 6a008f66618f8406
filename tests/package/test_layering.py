"""The import layering of docs/architecture.md holds: a module imports only its own layer or lower ones.

layers → models → features / data / corpus → hmm / train → export; serving and tools sit on top, and the package
never imports them. Every import counts, also those inside functions (they still tie the layers together).
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAYERS = {
    "crnn_tf.layers": 0, "crnn_tf.models": 1, "crnn_tf.features": 2, "crnn_tf.data": 2, "crnn_tf.corpus": 2,
    "crnn_tf.hmm": 3, "crnn_tf.train": 3, "crnn_tf.export": 4, "serving": 5, "tools": 5,
}


def layer_of(module: str) -> int | None:
    for prefix, level in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return level
    return None


def imported_modules(path: pathlib.Path, package: str) -> list[tuple[str, int]]:
    """(module, line) of every import in a file, relative imports resolved against `package`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found += [(f"{base}.{alias.name}" if layer_of(f"{base}.{alias.name}") is not None else base, node.lineno)
                      for alias in node.names]
    return found


def violations(files) -> list[str]:
    out = []
    for path in files:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        own = layer_of(module)
        for target, line in imported_modules(path, module.rsplit(".", 1)[0]):
            level = layer_of(target)
            if level is not None and own is not None and level > own:
                out.append(f"{path.relative_to(ROOT)}:{line} ({module}, layer {own}) imports {target} (layer {level})")
    return out


def _sources():
    return sorted(p for top in ("crnn_tf", "serving", "tools") for p in (ROOT / top).rglob("*.py"))


def test_no_module_imports_a_higher_layer():
    assert violations(_sources()) == []


def test_the_check_catches_a_wrong_import(tmp_path):
    bad = ROOT / "crnn_tf" / "layers" / "_layering_probe.py"
    bad.write_text("def f():\n    from crnn_tf.hmm import decoder\n    from serving import server\n")
    try:
        found = violations([bad])
    finally:
        bad.unlink()
    assert len(found) == 2 and "imports crnn_tf.hmm.decoder (layer 3)" in found[0] and "serving" in found[1]


@pytest.mark.parametrize("module, level", [("crnn_tf.layers.clstm", 0), ("crnn_tf.export", 4), ("numpy", None)])
def test_layer_of(module, level):
    assert layer_of(module) == level
