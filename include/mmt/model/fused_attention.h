/* Scaled dot-product attention as one autograd op on CPU: softmax(q k^T * scale + bias) v.
 *
 * Why: multimodal layers attend over short sequences (a caption and a handful of regions), so
 * the per-(example, head) matrices are tiny and libtorch 1.13's bmm spends most of its time in
 * per-matrix dispatch (three tensor selects and an addmm per matrix, forward and backward).
 * This op calls sgemm directly for each (example, head) from one loop, reads q/k/v in the
 * (B, L, heads, dim) layout the projections produce (no transposes copied), and writes its
 * output as (B, Lq, heads * dim) ready for the output projection. Same math, same precision;
 * CUDA, non-float32 inputs and libtorch >= 2 (fused SDPA) take the plain path. */
#pragma once

#include <torch/types.h>

namespace mmt {

/// q (B, Lq, H, D), k and v (B, Lk, H, D) with the last dim contiguous; bias (B, 1, 1, Lk)
/// additive key mask. Returns (B, Lq, H * D).
torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& bias, double scale);

/// The same computation with plain tensor ops (reference and fallback).
torch::Tensor plain_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& bias, double scale);

/// Whether fused_attention runs its own kernel for these inputs (else it calls plain_attention).
bool fused_attention_applies(const torch::Tensor& q);

}  // namespace mmt
