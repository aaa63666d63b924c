"""What an fx node says about itself and its arguments, in the form an OpNode takes:
its shape and dtype from ShapeProp's metadata, its node arguments as `Ref`s."""
import torch.fx as fx

from agent.builtin.ir import Ref


def meta(node: fx.Node) -> tuple:
    tm = node.meta.get("tensor_meta")
    if tm is None or not hasattr(tm, "shape"):
        return None, None
    return tuple(int(s) for s in tm.shape), tm.dtype


def refs(args) -> tuple:
    return tuple(Ref(a.name) if isinstance(a, fx.Node) else a for a in args)
