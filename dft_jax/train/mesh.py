"""The device mesh ('data', 'fsdp', 'tensor') and logical-axis sharding rules.

Axes are Auto (not Explicit): ott-jax's Sinkhorn fails on Explicit-sharded inputs.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "tensor")
BATCH = ("data", "fsdp")  # the batch dimension is split over both data-parallel axes

# logical axis -> mesh axis (None: replicated). FSDP shards the embed dim of every weight.
DEFAULT_RULES = (
    ("vocab", "tensor"), ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"),
    ("kv_heads", "tensor"), ("head_dim", None), ("norm", None), ("lora", None),
)


def resolve_shape(mesh_shape: Sequence[int], device_count: int) -> tuple[int, ...]:
  """Fills the one -1 entry so the product is `device_count`; explains any mismatch."""
  shape = [int(s) for s in mesh_shape]
  if len(shape) != len(AXES):
    raise ValueError(f"mesh_shape must have {len(AXES)} entries {AXES}, got {tuple(shape)}")
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"mesh_shape {tuple(shape)}: sizes must be positive, at most one -1")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    if device_count % known:
      raise ValueError(f"mesh_shape {tuple(shape)} does not divide {device_count} devices")
    shape[shape.index(-1)] = device_count // known
  if int(np.prod(shape)) != device_count:
    raise ValueError(f"mesh_shape {tuple(shape)} needs {int(np.prod(shape))} devices, "
                     f"{device_count} available")
  return tuple(shape)


def make_mesh(mesh_shape: Sequence[int], devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  shape = resolve_shape(mesh_shape, len(devices))
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def logical_to_mesh(abstract_tree: Any, mesh: Mesh, rules=DEFAULT_RULES) -> Any:
  """NamedShardings for a tree whose nnx Variables carry logical `out_sharding` names.

  A dimension stays replicated when its mesh axis is already used in the same array or does
  not divide it, so any mesh shape works for any model.
  """
  rule = dict(rules)
  specs = nnx.get_partition_spec(abstract_tree)

  def to_mesh(leaf, spec):
    if not isinstance(spec, P):
      return NamedSharding(mesh, P())
    used, out = set(), []
    for dim, name in zip(leaf.shape, tuple(spec) + (None,) * (len(leaf.shape) - len(spec))):
      axis = rule.get(name) if name is not None else None
      if axis is None or axis in used or dim % mesh.shape[axis]:
        out.append(None)
      else:
        used.add(axis)
        out.append(axis)
    return NamedSharding(mesh, P(*out))

  return jax.tree.map(to_mesh, abstract_tree, specs)


def placed(abstract_tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs carrying shardings (a matching tree, or one sharding for every leaf):
  the abstract targets that restores and loads place arrays by."""
  if isinstance(shardings, jax.sharding.Sharding):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=shardings),
                        abstract_tree)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract_tree, shardings)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
