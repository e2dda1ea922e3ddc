"""The modules of sonify_jax import one another without a circle.

The graph is read from the source with ``ast``: every ``import`` and
``from ... import`` of a ``sonify_jax`` module, at module level or inside a
function (a deferred import is a circle all the same, only hidden until the
call). ``from pkg import name`` is an edge to ``pkg.name`` where that is a
module, else to ``pkg`` (its ``__init__``).
"""
import ast
import os

import sonify_jax

ROOT = os.path.dirname(sonify_jax.__file__)
PACKAGE = "sonify_jax"


def _modules(root: str):
  """``{dotted name: path}`` of every .py file under ``root``."""
  out = {}
  base = os.path.dirname(root)
  for folder, _, files in os.walk(root):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        name = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
        if name.endswith(".__init__"):
          name = name[:-len(".__init__")]
        out[name] = path
  return out


def import_graph(root: str = ROOT):
  """``{module: set of the package's modules it imports}``."""
  modules = _modules(root)

  def known(name):   # the module itself, else its nearest enclosing package
    while name and name not in modules:
      name = name.rpartition(".")[0]
    return name or None

  graph = {}
  for name, path in modules.items():
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    here = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    deps = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        deps.update(known(a.name) for a in node.names
                    if a.name.split(".")[0] == PACKAGE)
      elif isinstance(node, ast.ImportFrom):
        if node.level:
          pkg = here
          for _ in range(node.level - 1):
            pkg = pkg.rpartition(".")[0]
          full = pkg + ("." + node.module if node.module else "")
        else:
          full = node.module or ""
        if full.split(".")[0] != PACKAGE:
          continue
        for a in node.names:
          sub = f"{full}.{a.name}"
          deps.add(sub if sub in modules else known(full))
    deps.discard(None)
    deps.discard(name)
    graph[name] = deps
  return graph


def find_cycle(graph):
  """One import circle as ``[a, b, ..., a]``, or None."""
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
    state[v] = "done"
    stack.pop()
    return None

  for v in sorted(graph):
    if v not in state:
      found = visit(v)
      if found:
        return found
  return None


def test_the_graph_is_read_from_the_source():
  graph = import_graph()
  # Facts of the source, written down by hand: a module-level import, a
  # function-level one and a relative-free `from pkg import module`.
  assert "sonify_jax.models.shapes" in graph["sonify_jax.transpose.chain"]
  assert "sonify_jax.models.shapes" in graph["sonify_jax.models.network"]
  assert "sonify_jax.audio_io" in graph["sonify_jax.data.sources"]
  assert len(graph) > 50


def test_find_cycle_finds_a_planted_circle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
      "a", "b", "c", "a"]


def test_no_import_circles():
  cycle = find_cycle(import_graph())
  assert cycle is None, "import circle: " + " -> ".join(cycle)
