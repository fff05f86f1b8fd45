"""The layering of docs/architecture.md, checked against the code: no import goes up the stack, no private name is
imported from another module, and the engines never ask which family they run."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "samkit"
DOC = ROOT / "docs" / "architecture.md"

#: Module prefix -> layer (lowest first), as the document's table; the longest prefix wins.
LAYERS = {
    "samkit.utils": 0,
    "samkit.cfg": 1,
    "samkit.data": 2,
    "samkit.data.synthetic": 4,
    "samkit.prompts": 2,
    "samkit.ops": 2,
    "samkit.nn": 3,
    "samkit.families": 3,
    "samkit.utils.downloads": 3,
    "samkit.writers": 4,
    "samkit.results": 5,
    "samkit.engine": 6,
    "samkit.model": 7,
    "samkit.runners": 7,
    "samkit.val": 7,
    "samkit.train": 7,
    "samkit.integrations": 8,
    "samkit.annotate": 9,
    "samkit.benchmark": 9,
    "samkit.app": 9,
    "samkit.cli": 10,
    "samkit": 10,
}


def layer_of(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, module: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every samkit import in a file, inside functions too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "samkit"]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:  # relative import
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] == "samkit":
                found.append((node.lineno, target, [a.name for a in node.names]))
    return found


def test_the_document_lists_the_layers_the_test_checks():
    text = DOC.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", text, flags=re.M))
    for prefix, layer in LAYERS.items():
        if prefix != "samkit":
            assert f"`{prefix}`" in rows[str(layer)], (prefix, layer)


def test_no_import_goes_up_the_stack():
    mods = modules()
    upward = []
    for name, path in mods.items():
        mine = layer_of(name)
        for line, target, names in imports(path, name):
            # ``from samkit.x import y`` where y is a submodule counts as importing samkit.x.y
            targets = [f"{target}.{n}" if f"{target}.{n}" in mods else target for n in names] or [target]
            for t in targets:
                if layer_of(t) > mine:
                    upward.append(f"{path.relative_to(ROOT)}:{line} ({name}, layer {mine}) imports {t} "
                                  f"(layer {layer_of(t)})")
    assert not upward, "imports that go up the stack:\n" + "\n".join(upward)


def test_no_private_name_is_imported_from_another_module():
    mods = modules()
    private = []
    for name, path in mods.items():
        for line, target, names in imports(path, name):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target != name:
                    private.append(f"{path.relative_to(ROOT)}:{line} imports {target}.{n}")
    assert not private, "private names imported across modules:\n" + "\n".join(private)


@pytest.mark.parametrize("engine", ["image.py", "video.py", "everything.py"])
def test_engines_never_ask_for_the_family(engine):
    """Family differences live in the transforms classes: the engines hold no family test."""
    text = (PACKAGE / "engine" / engine).read_text(encoding="utf-8")
    assert not re.search(r"is_sam2|\.family\b|\"sam2\"|'sam2'", text), engine


def test_the_check_catches_an_upward_import(tmp_path):
    """The checker itself: an import of the facade from the engine layer is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from samkit.model import SAM\n", encoding="utf-8")
    (line, target, _), = imports(bad, "samkit.engine.bad")
    assert layer_of(target) > layer_of("samkit.engine.bad") and line == 2


def test_only_the_families_name_a_family():
    """Outside ``samkit/families/`` nothing compares with a family's name or looks a table up by ``.family``: front
    ends ask capabilities, the nn layer asks the family's record."""
    from samkit import families

    names = {f.name for f in families.all_families()}
    found = []
    for module, path in modules().items():
        if module == "samkit.families" or module.startswith("samkit.families."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    if isinstance(side, ast.Constant) and side.value in names:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} compares with a family's name")
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Attribute) and \
                    node.slice.attr == "family":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} looks a table up by family")
    assert not found, "\n".join(found)


def test_the_engines_call_the_network_only_through_its_adapter():
    """No engine touches ``runtime.net`` (or a network's ``tracker`` / ``detector``) and none calls a private method
    of another object: every network call goes through ``runtime.network`` (samkit.families.network)."""
    found = [f"{path.name}:{line}" for path in sorted((PACKAGE / "engine").glob("*.py"))
             for line in network_reaches(path.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)


def network_reaches(source: str) -> list[str]:
    """Where code reaches a network other than through its adapter: reading ``.net`` / ``.tracker`` / ``.detector``,
    or calling a private method of an object other than ``self`` / ``cls``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ("net", "tracker", "detector"):
            found.append(f"{node.lineno} reads .{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, owner = node.func.attr, node.func.value
            mine = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            if name.startswith("_") and not name.startswith("__") and not mine:
                found.append(f"{node.lineno} calls {ast.unparse(node.func)}")
    return found


def test_the_adapter_check_catches_a_direct_network_call():
    bad = "def f(rt, x):\n    a = rt.net.forward_image(x)\n    return rt.network.net._encode_new_memory(a)\n"
    assert sorted(network_reaches(bad)) == ["2 reads .net", "3 calls rt.network.net._encode_new_memory",
                                            "3 reads .net"]
    assert network_reaches("def f(self, x):\n    return self._own(x) + self.network.encode_image(x)\n") == []


def test_no_module_is_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long
