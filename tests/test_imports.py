"""How the project's modules import each other, read from the source (``ast``; nothing is
imported): no import cycle among the modules of ``frcnn_plugin`` and of the benchmark lab
(``benchmarks/``), the installed package never imports the lab, no module imports another's
``_private`` name, and a function imports a module only to defer a heavy optional one
(docs/layout.md)."""
import ast
import os
import unittest

from tests.conftest import REPO

PACKAGES = ("frcnn_plugin", "benchmarks")
# what a function may import, with a comment that says why: optional or slow to import, and
# needed by a few functions only
DEFERRED = ("onnx", "onnxruntime", "matplotlib", "cv2", "torchvision.models.detection")


def _modules(package):
    """{dotted module name: path} of a package folder under the repository."""
    out = {}
    for folder, _, files in os.walk(os.path.join(REPO, package)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted] = path
    return out


MODULES = {}
for _package in PACKAGES:
    MODULES.update(_modules(_package))
TOOLS = {"tools." + name[:-3]: os.path.join(REPO, "tools", name)
         for name in os.listdir(os.path.join(REPO, "tools")) if name.endswith(".py")}


def _parse(path):
    with open(path) as f:
        return ast.parse(f.read(), path)


def _package_of(module, path):
    return module if path.endswith("__init__.py") else module.rpartition(".")[0]


def _imported(module, path, node):
    """[(imported module, names read from it)] of an import statement; relative ones
    resolved."""
    if isinstance(node, ast.Import):
        return [(alias.name, []) for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = _package_of(module, path).split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
    return [(base, [alias.name for alias in node.names])]


def _top_level_imports(tree):
    """The import statements run when the module is imported: at module level, also under
    ``if`` / ``try``, not in a function or class body."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)


def import_graph():
    """{module: the project modules that importing it runs}.

    ``from a.b import x`` needs ``a.b.x`` if that is a module, else the names of ``a.b`` (its
    ``__init__``, run to its end); ``import a.b`` needs ``a.b``. Each also runs the ``__init__``
    of the packages above (``a``), except the importer's own packages: those are already
    running when it is imported.
    """
    graph = {}
    for module, path in MODULES.items():
        own = set()
        package = _package_of(module, path)
        while package:
            own.add(package)
            package = package.rpartition(".")[0]
        edges = set()
        for node in _top_level_imports(_parse(path)):
            for target, names in _imported(module, path, node):
                needed = {target + "." + n if target + "." + n in MODULES else target
                          for n in names} if names else ({target} - own)
                for name in needed:
                    edges.add(name)
                    parent = name.rpartition(".")[0]
                    while parent:
                        if parent not in own:
                            edges.add(parent)
                        parent = parent.rpartition(".")[0]
        graph[module] = {m for m in edges if m in MODULES and m != module}
    return graph


def find_cycle(graph):
    """One cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(v):
        state[v] = "open"
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == "open":
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = "done"
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


class TestImports(unittest.TestCase):
    def test_the_sources_are_found(self):
        self.assertIn("frcnn_plugin.errors", MODULES)
        self.assertIn("benchmarks.suite", MODULES)
        self.assertIn("tools.benchmark", TOOLS)

    def test_no_import_cycle(self):
        graph = import_graph()
        self.assertIn("frcnn_plugin.config", graph["frcnn_plugin.cli"])
        self.assertIn("benchmarks.measure", graph["benchmarks.variants"])
        cycle = find_cycle(graph)
        self.assertIsNone(cycle, "import cycle: " + " -> ".join(cycle or []))

    def test_the_cycle_finder_finds_cycles(self):
        self.assertEqual(find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}),
                         ["a", "b", "c", "a"])
        self.assertIsNone(find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}))

    def test_the_installed_package_does_not_import_the_lab(self):
        for module, path in MODULES.items():
            if not module.startswith("frcnn_plugin"):
                continue
            for node in ast.walk(_parse(path)):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    for target, _ in _imported(module, path, node):
                        self.assertFalse(target.split(".")[0] in ("benchmarks", "tests", "tools"),
                                         "{} imports {}".format(module, target))

    def test_no_private_name_of_another_module(self):
        """``from x import _name`` and ``x._name`` (``x`` an imported project module) only
        within one module."""
        bad = []
        for module, path in list(MODULES.items()) + list(TOOLS.items()):
            tree = _parse(path)
            aliases = {}  # local name -> project module
            for node in ast.walk(tree):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                for target, names in _imported(module, path, node):
                    if target.split(".")[0] not in PACKAGES:
                        continue
                    for name in names:
                        if name.startswith("_") and not name.startswith("__"):
                            bad.append("{}: from {} import {}".format(module, target, name))
                    for alias in node.names:
                        full = (target + "." + alias.name if isinstance(node, ast.ImportFrom)
                                else alias.name)
                        if full in MODULES:
                            aliases[alias.asname or alias.name.split(".")[0]] = full
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id in aliases and node.attr.startswith("_")
                        and not node.attr.startswith("__")):
                    bad.append("{}: {}.{}".format(module, aliases[node.value.id], node.attr))
        self.assertEqual(bad, [])

    def test_function_level_imports_only_defer_optional_modules(self):
        """Every other import is at module level, where a cycle would show; a probe (an import
        in a ``try`` that catches ImportError) may stay in its function."""
        bad = []
        for module, path in list(MODULES.items()) + list(TOOLS.items()):
            tree = _parse(path)
            parents = {}
            for node in ast.walk(tree):
                for child in ast.iter_child_nodes(node):
                    parents[child] = node
            for node in ast.walk(tree):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                chain, up = [], parents.get(node)
                while up is not None:
                    chain.append(up)
                    up = parents.get(up)
                if not any(isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)) for p in chain):
                    continue
                probe = any(isinstance(p, ast.Try) and node in p.body and any(
                    h.type is not None and "ImportError" in ast.unparse(h.type)
                    for h in p.handlers) for p in chain)
                for target, _ in _imported(module, path, node):
                    if not probe and not any(target == d or target.startswith(d + ".")
                                             for d in DEFERRED):
                        bad.append("{}:{}: {}".format(module, node.lineno, ast.unparse(node)))
        self.assertEqual(bad, [])
