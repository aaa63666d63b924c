"""Plan: nn.GRU's forward, layer by layer and direction by direction, as PyTorch defines it.

For each layer the input projections of every step, both directions', are one product
(`x W_ih^T + b_ih` over the whole sequence, on cuBLAS: a Triton kernel remains), and the
recurrence is one Triton launch with a program per (batch row, direction), the two
directions side by side. Batch rows and directions never meet inside a layer, so a program
owns its row's whole hidden state and walks the steps in order (backwards for the reverse
direction) with no other program to wait for. Each step it reads W_hh in (BLOCK_J, H)
slices of the three gates (r, z, n), forms

    r = sigmoid(gi_r + W_hr h + b_hr)       z = sigmoid(gi_z + W_hz h + b_hz)
    n = tanh(gi_n + r * (W_hn h + b_hn))    h' = (1 - z) * n + z * h

for BLOCK_J hidden units at a time, and writes h' into the layer's output at that step,
which is also where the next step reads its state back (after a barrier, so every unit
written is seen). The layer's output is the next layer's input; the last step's state is
h_n's row for that layer and direction. fp32 sums in a different order from cuDNN's, with
no reduced precision anywhere.

With `config.gru_steps` the recurrence is instead a launch per step, each with a program per
(batch row, BLOCK_J hidden units, direction): many more programs read W_hh at once, but
T launches a layer, so it pays only replayed as a CUDA graph (the search's `cuda_graph`).
The gate arithmetic is one jit function both kernels call.
"""
from agent.builtin.ir import OpGraph
from agent.builtin.partition import Stage, Unsupported
from agent.builtin.plans.common import Config, Emitted, forward_expr, module_expr

WEIGHT_TILE = 4096      # elements of one gate's (BLOCK_J, BLOCK_H) slice of W_hh: 32 registers a thread at 4 warps


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    anchor = stage.anchor
    a = anchor.attrs
    if a["pick"] not in (0, 1):
        raise Unsupported(f"{anchor.name}: GRU result [{a['pick']}] (only the output [0] and h_n [1])")
    refs = anchor.refs
    h0 = forward_expr(refs[1], graph) if len(refs) > 1 else "None"
    call = f"{anchor.name} = {name}({forward_expr(refs[0], graph)}, {h0}, {module_expr(a['module'])})[{a['pick']}]"
    block_h = 1 << (a["hidden_size"] - 1).bit_length()
    block_j = max(1, min(64, WEIGHT_TILE // block_h))
    launch = (STEP_LAUNCH if config.gru_steps else ROW_LAUNCH).format(name=name, block_h=block_h, block_j=block_j,
                                                                      warps=config.row_warps, bias=a["bias"])
    kernel = UNITS.format(name=name) + (STEP_KERNEL if config.gru_steps else ROW_KERNEL).format(name=name)
    return Emitted(kernel, WRAPPER.format(
        name=name, layers=a["num_layers"], dirs=2 if a["bidirectional"] else 1, hidden=a["hidden_size"],
        bias=a["bias"], batch_first=a["batch_first"], launch=launch), call, frozenset({"_tanh"}))


UNITS = '''
@triton.jit
def {name}_units(gi_row, w_ptr, bias_ptr, h, prev_ptr, j, offs, H, HAS_BIAS: tl.constexpr):
    """h' for hidden units j: the three gates from W_hh (3H, H) times h, the step's input
    projections gi_row, the biases, and the previous state of those units at prev_ptr."""
    jmask = j < H
    wmask = jmask[:, None] & (offs < H)[None, :]
    h_r = tl.sum(tl.load(w_ptr + j[:, None] * H + offs[None, :], mask=wmask, other=0.0) * h[None, :], axis=1)
    h_z = tl.sum(tl.load(w_ptr + (H + j)[:, None] * H + offs[None, :], mask=wmask, other=0.0) * h[None, :], axis=1)
    h_n = tl.sum(tl.load(w_ptr + (2 * H + j)[:, None] * H + offs[None, :], mask=wmask, other=0.0) * h[None, :], axis=1)
    if HAS_BIAS:
        h_r += tl.load(bias_ptr + j, mask=jmask, other=0.0)
        h_z += tl.load(bias_ptr + H + j, mask=jmask, other=0.0)
        h_n += tl.load(bias_ptr + 2 * H + j, mask=jmask, other=0.0)
    r = tl.sigmoid(tl.load(gi_row + j, mask=jmask, other=0.0) + h_r)
    z = tl.sigmoid(tl.load(gi_row + H + j, mask=jmask, other=0.0) + h_z)
    n = _tanh(tl.load(gi_row + 2 * H + j, mask=jmask, other=0.0) + r * h_n)
    return (1.0 - z) * n + z * tl.load(prev_ptr + j, mask=jmask, other=0.0)
'''


ARGS = '''    gi_ptr,  # (T, B, dirs * 3H) input projections with b_ih: per direction gates r, z, n; strides gi_t, gi_b
    w_ptr,  # (dirs, 3H, H) weight_hh, contiguous
    bias_ptr,  # (dirs, 3H) bias_hh, read when HAS_BIAS
    h0_ptr,  # (dirs, B, H) the initial states, contiguous
    out_ptr,  # (T, B, dirs * H) the layer's output, strides out_t, out_b, 1
    hn_ptr,  # (dirs, B, H) the final states, contiguous
    T, B, H, gi_t, gi_b, out_t, out_b,  # steps, batch, hidden size, strides in elements
'''


ROW_KERNEL = '''
@triton.jit
def {name}_kernel(
''' + ARGS + '''    HAS_BIAS: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_J: tl.constexpr,
):
    b = tl.program_id(axis=0)
    d = tl.program_id(axis=1)  # direction: 1 walks the steps backwards
    offs = tl.arange(0, BLOCK_H)
    w_ptr += d * 3 * H * H
    bias_ptr += d * 3 * H
    state = (d * B + b) * H
    h = tl.load(h0_ptr + state + offs, mask=offs < H, other=0.0)
    prev_ptr = h0_ptr + state  # where the state h was written
    for step in range(T):
        t = step + d * (T - 1 - 2 * step)
        gi_row = gi_ptr + t * gi_t + b * gi_b + d * 3 * H
        out_row = out_ptr + t * out_t + b * out_b + d * H
        for j0 in range(0, H, BLOCK_J):
            j = j0 + tl.arange(0, BLOCK_J)
            tl.store(out_row + j, {name}_units(gi_row, w_ptr, bias_ptr, h, prev_ptr, j, offs, H, HAS_BIAS), mask=j < H)
        tl.debug_barrier()  # every unit of h' stored before any is read back
        h = tl.load(out_row + offs, mask=offs < H, other=0.0)
        prev_ptr = out_row
    tl.store(hn_ptr + state + offs, h, mask=offs < H)
'''


STEP_KERNEL = '''
@triton.jit
def {name}_kernel(
''' + ARGS + '''    step,  # this launch's step: direction 0 is at t = step, direction 1 at T - 1 - step
    HAS_BIAS: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_J: tl.constexpr,
):
    blocks = tl.cdiv(H, BLOCK_J)
    b = tl.program_id(axis=0) // blocks
    j = (tl.program_id(axis=0) % blocks) * BLOCK_J + tl.arange(0, BLOCK_J)
    d = tl.program_id(axis=1)
    offs = tl.arange(0, BLOCK_H)
    t = step + d * (T - 1 - 2 * step)
    if step == 0:
        prev_ptr = h0_ptr + (d * B + b) * H
    else:
        prev_ptr = out_ptr + (t - 1 + 2 * d) * out_t + b * out_b + d * H  # the step before, in this direction
    h = tl.load(prev_ptr + offs, mask=offs < H, other=0.0)
    h_new = {name}_units(gi_ptr + t * gi_t + b * gi_b + d * 3 * H, w_ptr + d * 3 * H * H, bias_ptr + d * 3 * H, h,
                         prev_ptr, j, offs, H, HAS_BIAS)
    tl.store(out_ptr + t * out_t + b * out_b + d * H + j, h_new, mask=j < H)
    if step == T - 1:
        tl.store(hn_ptr + (d * B + b) * H + j, h_new, mask=j < H)
'''


ROW_LAUNCH = '''{name}_kernel[(B, dirs)](gi, w_hh, b_hh, h0_l, out, hn_l, T, B, H, gi.stride(0), gi.stride(1),
            out.stride(0), out.stride(1), HAS_BIAS={bias}, BLOCK_H={block_h}, BLOCK_J={block_j}, num_warps={warps})'''


STEP_LAUNCH = '''grid = (B * triton.cdiv(H, {block_j}), dirs)
        for step in range(T):  # a launch a step: the programs of one step wait on the step before
            {name}_kernel[grid](gi, w_hh, b_hh, h0_l, out, hn_l, T, B, H, gi.stride(0), gi.stride(1),
                out.stride(0), out.stride(1), step, HAS_BIAS={bias}, BLOCK_H={block_h}, BLOCK_J={block_j},
                num_warps={warps})'''


WRAPPER = '''
def {name}(x, h0, gru):
    """(output, h_n) of nn.GRU `gru` on x, as PyTorch computes them."""
    layers, dirs, H = {layers}, {dirs}, {hidden}
    seq = x.transpose(0, 1) if {batch_first} else x  # (T, B, features)
    T, B = seq.shape[0], seq.shape[1]
    if h0 is None:
        h0 = torch.zeros((layers * dirs, B, H), device=x.device, dtype=x.dtype)
    h0 = h0.contiguous()
    hn = torch.empty((layers * dirs, B, H), device=x.device, dtype=x.dtype)
    layer_in = seq
    for layer in range(layers):
        names = [f"_l{{layer}}" + ("_reverse" if d else "") for d in range(dirs)]
        weights = [[getattr(gru, kind + n) for n in names] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                   if {bias} or kind.startswith("weight")]
        joined = [w[0] if dirs == 1 else torch.cat(w) for w in weights]  # both directions in one product, one launch
        w_ih, w_hh = joined[0], joined[1].contiguous()
        b_ih, b_hh = (joined[2], joined[3]) if {bias} else (None, w_hh)
        gi = F.linear(layer_in, w_ih, b_ih)  # every step's projections, cuBLAS
        out = torch.empty((T, B, dirs * H), device=x.device, dtype=x.dtype)
        h0_l, hn_l = h0[layer * dirs:(layer + 1) * dirs], hn[layer * dirs:(layer + 1) * dirs]
        {launch}
        layer_in = out
    return (layer_in.transpose(0, 1) if {batch_first} else layer_in), hn
'''
