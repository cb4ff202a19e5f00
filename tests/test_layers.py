"""The package's import layers (dft_jax/__init__.py): no module imports one from a higher
layer, module-level imports form no cycle, and library code never imports a CLI module."""

import ast
import os

import dft_jax

ROOT = os.path.dirname(os.path.abspath(dft_jax.__file__))


def _modules():
  """{module name: (path, [(imported dft_jax module, at module level?)])}."""
  out = {}
  for base, _, names in os.walk(ROOT):
    for name in names:
      if not name.endswith(".py"):
        continue
      path = os.path.join(base, name)
      rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
      module = rel.removesuffix(".__init__")
      tree = ast.parse(open(path, encoding="utf-8").read())
      top = {id(node) for node in tree.body}
      imports = []
      for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and \
            node.module.startswith("dft_jax"):
          imports += [(_resolve(f"{node.module}.{a.name}"), id(node) in top) for a in node.names]
        elif isinstance(node, ast.Import):
          imports += [(_resolve(a.name), id(node) in top) for a in node.names
                      if a.name.startswith("dft_jax")]
      out[module] = (path, imports)
  return out


def _resolve(name):
  """`dft_jax.losses.dft` for a module, `dft_jax.models` for `dft_jax.models.Decoder`."""
  parts = name.split(".")
  while parts:
    candidate = os.path.join(os.path.dirname(ROOT), *parts)
    if os.path.isdir(candidate) or os.path.isfile(candidate + ".py"):
      return ".".join(parts)
    parts.pop()
  raise AssertionError(f"cannot resolve import {name}")


def _layer(module):
  part = module.split(".")[1] if "." in module else ""
  for i, names in enumerate(dft_jax.LAYERS):
    if part in names:
      return i
  raise AssertionError(f"{module} is in no layer of dft_jax.LAYERS")


def _upward(modules):
  """Every (importer, imported) pair that goes up the layers."""
  return [(m, i) for m, (_, imports) in sorted(modules.items()) for i, _ in imports
          if i != "dft_jax" and _layer(i) > _layer(m)]


def _cycle(modules):
  """One cycle of module-level imports as a list of modules, or None."""
  graph = {m: {i for i, at_top in imports if at_top and i in modules and i != m}
           for m, (_, imports) in modules.items()}
  # a package's __init__ importing its own modules is how packages work, not a cycle
  graph = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}
  state = {}

  def visit(m, stack):
    state[m] = "open"
    for n in sorted(graph[m]):
      if state.get(n) == "open":
        return stack[stack.index(n):] + [n]
      if n not in state:
        found = visit(n, stack + [n])
        if found:
          return found
    state[m] = "done"
    return None

  for m in sorted(graph):
    if m not in state:
      found = visit(m, [m])
      if found:
        return found
  return None


MODULES = _modules()


def test_imports_go_down_the_layers():
  assert _upward(MODULES) == []


def test_module_level_imports_have_no_cycle():
  assert _cycle(MODULES) is None


def test_the_checks_catch_an_upward_import_and_a_cycle():
  fake = {"dft_jax.data.a": ("", [("dft_jax.losses.b", True)]),
          "dft_jax.losses.b": ("", [("dft_jax.data.a", True)])}
  assert _upward(fake) == [("dft_jax.data.a", "dft_jax.losses.b")]
  assert _cycle(fake) == ["dft_jax.data.a", "dft_jax.losses.b", "dft_jax.data.a"]
