"""Kernel plans: one module per stage family, each turning a `Stage` into Triton source.

    pointwise.py   fused elementwise chains (activations, scale, bias, clamp, residual adds)
    rows.py        one program per row: softmax, log-softmax, layer/RMS norm, sums, logsumexp, arg-reductions, cumsum
    long_rows.py   a row program that walks its row in steps (rows too long for registers)
    split_rows.py  few such rows split into segments: a launch per reduction, partials combined
    row_wrapper.py the Python wrapper both row programs share: check, allocate, launch per row
    reduce.py      reductions and arg-reductions over a dim that is not the last
    groupnorm.py   group norm, looping over each (sample, group) slice
    matmul.py      tl.dot GEMM (and batched) with the epilogue on the accumulator
    total.py       a reduction over every element: partials, then one ordered finish
    pool.py        max and average pooling (1/2/3-d, padding, dilation, ceil mode), the following chain before the store
    conv_depthwise.py  a depthwise convolution as a direct kernel (taps unrolled), the chain after it fused
    conv.py        cuDNN convolution (1/2/3-d, transposed too), bias and the following chain in a Triton epilogue
    library.py     an op kept in PyTorch as the reference wrote it, the following chain in a Triton epilogue
    program.py     the whole candidate: kernels, wrappers, ModelNew, optional CUDA graph
"""
