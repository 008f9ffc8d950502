"""The README's code runs as written: a reader copies it."""

import ast
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks under the README's ``## section`` heading (up to the next ``## `` heading)."""
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end >= 0 else None], flags=re.S)


def test_using_the_metrics_snippet_runs_and_measures_in_eval_mode(capsys):
    (code,) = python_blocks("Using the metrics in your own work")
    namespace = {}
    exec(compile(code, f"{README}:Using the metrics", "exec"), namespace)
    metrics, model = namespace["metrics"], namespace["model"]
    assert not model.training  # BatchNorm read with its running statistics, not each batch's
    assert metrics["num_samples"] == 256 and metrics["ncc_samples_used"] == 256
    assert "tr(Sigma_W Sigma_B^+)" in capsys.readouterr().out


#: the imports the Layout names as going up its list: (importer, imported)
LAYOUT_EXCEPTIONS = {("lsnc.training.engine", "lsnc.training.streams")}


def layout_order() -> dict[str, int]:
    """Module -> its place in the README's Layout list: backticked ``*.py`` files in the list's order. A file is in
    its item's folder (``lsnc/runs/`` opening the item), or, inside the parentheses right after a folder (``ufm/``),
    in that folder; a folder's own place is its package's."""
    text = README.read_text()
    section = text[text.index("## Layout\n"):]
    section = section[:section.index("\n## ", 1)]
    order, place = {}, 0

    def put(name: str) -> None:
        nonlocal place
        order.setdefault(name, place)
        place += 1
    for item in section.split("\n- ")[1:]:
        if item.startswith("outside the library"):
            break
        stack, last_folder = ["lsnc"], None   # the folder of each parenthesis depth; a folder just named
        for token in re.finditer(r"`([^`]+)`|(\()|(\))", item):
            name, opening, closing = token.groups()
            if opening:
                stack.append(last_folder or stack[-1])
            elif closing:
                stack.pop()
            if name is None:
                last_folder = None
                continue
            last_folder = None
            if name.endswith("/"):
                folder = name.strip("/").replace("/", ".")
                folder = folder if folder.startswith("lsnc") else f"{stack[-1]}.{folder}"
                if name.startswith("lsnc/"):
                    stack[-1] = folder   # an item's own folder
                last_folder = folder
                put(folder)
            elif name.endswith(".py"):
                module = name[:-3].replace("/", ".")
                put(module if module.startswith("lsnc.") else f"{stack[-1]}.{module}")
    return order


def imports_of(path: Path, module: str) -> set[str]:
    """The lsnc modules ``module`` (the file ``path``) imports, at any depth of its code."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target} | {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("lsnc")}


def test_the_layout_lists_every_module_and_imports_point_down_it():
    root = README.parent / "lsnc"
    order = layout_order()
    modules = {".".join(p.relative_to(root.parent).with_suffix("").parts): p for p in root.rglob("*.py")
               if p.name != "__init__.py"}
    assert not set(modules) - set(order), f"modules the README's Layout does not list: {set(modules) - set(order)}"
    known = set(order)
    up = []
    for module, path in modules.items():
        for target in imports_of(path, module) & known:
            if order[target] > order[module] and not module.startswith(target + ".") \
                    and (module, target) not in LAYOUT_EXCEPTIONS:
                up.append(f"{module} -> {target}")
    assert not up, f"imports that point up the README's Layout: {up}"


def test_every_stage_module_of_the_gpu_window_is_mapped():
    """device/stages/'s __init__ maps each module to its stage, and the README's Layout names them: a module added
    there without a word is a part a newcomer cannot find."""
    stages = README.parent / "device" / "stages"
    names = sorted(p.stem for p in stages.glob("*.py") if p.name != "__init__.py")
    doc = ast.get_docstring(ast.parse((stages / "__init__.py").read_text()))
    layout = README.read_text().split("## Layout", 1)[-1]
    unmapped = [n for n in names if f"{n}.py" not in doc]
    assert not unmapped, f"modules device/stages/__init__.py does not map: {unmapped}"
    shown = re.search(r"`stages/`:([^)]*)\)", layout.replace("\n", " ")).group(1)
    omitted = [n for n in names if n not in ("call", "settings", "files", "preview") and f"`{n}`" not in shown]
    assert not omitted, f"stages the README's Layout omits: {omitted}"
