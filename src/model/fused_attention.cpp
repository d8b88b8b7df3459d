/* CPU attention kernel with its backward (see fused_attention.h).
 *
 * Per (example b, head h), row-major, with P saved for the backward pass:
 *   S = scale * Q K^T + bias_b;  P = softmax(S);  O = P V
 *   dP = dO V^T;  dV = P^T dO;  dS = P * (dP - rowsum(dP * P));  dQ = scale dS K;  dK = scale dS^T Q */
#include "mmt/model/fused_attention.h"

#include <torch/autograd.h>
#include <torch/version.h>

// The kernel needs a CBLAS; libtorch >= 2 has a fused attention of its own, so a build against
// it (the GPU build) may lack one.
#if __has_include(<cblas.h>)
#include <cblas.h>
#define MMT_HAVE_CBLAS 1
#endif

#include <algorithm>
#include <cmath>

namespace mmt {

#ifdef MMT_HAVE_CBLAS
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct Dims {
  int64_t b, lq, lk, h, d;
  int64_t q_row, k_row, v_row;     // row strides (elements) of q, k, v: H * D when packed
  int64_t q_batch, k_batch, v_batch;
};

Dims dims_of(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  return {q.size(0), q.size(1), k.size(1), q.size(2), q.size(3),
          q.stride(1), k.stride(1), v.stride(1), q.stride(0), k.stride(0), v.stride(0)};
}

void softmax_rows(float* s, const float* bias, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = s + i * cols;
    float mx = -INFINITY;
    for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, row[j] += bias[j]);
    float sum = 0;
    for (int64_t j = 0; j < cols; ++j) sum += (row[j] = std::exp(row[j] - mx));
    const float inv = 1.f / sum;
    for (int64_t j = 0; j < cols; ++j) row[j] *= inv;
  }
}

class FusedAttention : public torch::autograd::Function<FusedAttention> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& bias, double scale) {
    const Dims n = dims_of(q, k, v);
    auto probs = torch::empty({n.b, n.h, n.lq, n.lk}, q.options());
    auto out = torch::empty({n.b, n.lq, n.h, n.d}, q.options());
    const auto bias_c = bias.contiguous();
    const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
    const float* bp = bias_c.data_ptr<float>();
    float *pp = probs.data_ptr<float>(), *op = out.data_ptr<float>();
    for (int64_t b = 0; b < n.b; ++b) {
      for (int64_t h = 0; h < n.h; ++h) {
        float* p = pp + (b * n.h + h) * n.lq * n.lk;
        const float* qb = qp + b * n.q_batch + h * n.d;
        const float* kb = kp + b * n.k_batch + h * n.d;
        const float* vb = vp + b * n.v_batch + h * n.d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n.lq, n.lk, n.d, static_cast<float>(scale), qb,
                    n.q_row, kb, n.k_row, 0.f, p, n.lk);
        softmax_rows(p, bp + b * n.lk, n.lq, n.lk);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n.lq, n.d, n.lk, 1.f, p, n.lk, vb, n.v_row, 0.f,
                    op + b * n.lq * n.h * n.d + h * n.d, n.h * n.d);
      }
    }
    ctx->save_for_backward({q, k, v, probs});
    ctx->saved_data["scale"] = scale;
    return out.view({n.b, n.lq, n.h * n.d});
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &probs = saved[3];
    const float scale = static_cast<float>(ctx->saved_data["scale"].toDouble());
    const Dims n = dims_of(q, k, v);
    const auto grad_out = grads[0].contiguous();  // (B, Lq, H * D)
    // Gradients in the packed (B, L, H, D) layout, viewed back to the inputs' shapes.
    auto dq = torch::empty({n.b, n.lq, n.h, n.d}, q.options());
    auto dk = torch::empty({n.b, n.lk, n.h, n.d}, q.options());
    auto dv = torch::empty({n.b, n.lk, n.h, n.d}, q.options());
    std::vector<float> dp(static_cast<size_t>(n.lq * n.lk));
    const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
    const float *pp = probs.data_ptr<float>(), *gp = grad_out.data_ptr<float>();
    float *dqp = dq.data_ptr<float>(), *dkp = dk.data_ptr<float>(), *dvp = dv.data_ptr<float>();
    const int64_t packed = n.h * n.d;
    for (int64_t b = 0; b < n.b; ++b) {
      for (int64_t h = 0; h < n.h; ++h) {
        const float* p = pp + (b * n.h + h) * n.lq * n.lk;
        const float* g = gp + b * n.lq * packed + h * n.d;
        const float* qb = qp + b * n.q_batch + h * n.d;
        const float* kb = kp + b * n.k_batch + h * n.d;
        const float* vb = vp + b * n.v_batch + h * n.d;
        // dP = dO V^T (Lq x Lk); dV = P^T dO (Lk x D)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n.lq, n.lk, n.d, 1.f, g, packed, vb, n.v_row, 0.f,
                    dp.data(), n.lk);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n.lk, n.d, n.lq, 1.f, p, n.lk, g, packed, 0.f,
                    dvp + b * n.lk * packed + h * n.d, packed);
        // dS = P * (dP - rowsum(dP * P)), in place in dp
        for (int64_t i = 0; i < n.lq; ++i) {
          float* r = dp.data() + i * n.lk;
          const float* pr = p + i * n.lk;
          float dot = 0;
          for (int64_t j = 0; j < n.lk; ++j) dot += r[j] * pr[j];
          for (int64_t j = 0; j < n.lk; ++j) r[j] = pr[j] * (r[j] - dot);
        }
        // dQ = scale dS K (Lq x D); dK = scale dS^T Q (Lk x D)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n.lq, n.d, n.lk, scale, dp.data(), n.lk, kb, n.k_row,
                    0.f, dqp + b * n.lq * packed + h * n.d, packed);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n.lk, n.d, n.lq, scale, dp.data(), n.lk, qb, n.q_row,
                    0.f, dkp + b * n.lk * packed + h * n.d, packed);
      }
    }
    return {dq, dk, dv, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace
#endif  // MMT_HAVE_CBLAS

bool fused_attention_applies(const torch::Tensor& q) {
#if TORCH_VERSION_MAJOR >= 2 || !defined(MMT_HAVE_CBLAS)
  (void)q;
  return false;  // libtorch 2.x has a fused scaled_dot_product_attention of its own
#else
  return q.device().is_cpu() && q.scalar_type() == torch::kFloat32;
#endif
}

torch::Tensor plain_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& bias, double scale) {
  // (B, L, H, D) -> (B, H, L, D)
  const auto qh = q.transpose(1, 2), kh = k.transpose(1, 2), vh = v.transpose(1, 2);
#if TORCH_VERSION_MAJOR >= 2
  auto ctx = at::scaled_dot_product_attention(qh, kh, vh, bias.to(q.scalar_type()), 0.0, false, scale);
#else
  auto scores = torch::matmul(qh, kh.transpose(-2, -1)).mul_(scale).add_(bias);
  auto ctx = torch::matmul(torch::softmax(scores, -1), vh);
#endif
  return ctx.transpose(1, 2).reshape({q.size(0), q.size(1), -1});
}

torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& bias, double scale) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.sizes() == k.sizes() && q.size(0) == k.size(0) &&
                  q.size(2) == k.size(2) && q.size(3) == k.size(3),
              "fused_attention: q must be (B, Lq, H, D) and k, v (B, Lk, H, D), got ", q.sizes(), ", ", k.sizes(),
              ", ", v.sizes());
  TORCH_CHECK(bias.numel() == q.size(0) * k.size(1), "fused_attention: bias must be (B, 1, 1, Lk), got ",
              bias.sizes());
  if (!fused_attention_applies(q) || q.stride(3) != 1 || k.stride(3) != 1 || v.stride(3) != 1 ||
      q.stride(2) != q.size(3) || k.stride(2) != k.size(3) || v.stride(2) != v.size(3))
    return plain_attention(q, k, v, bias, scale);
#ifdef MMT_HAVE_CBLAS
  return FusedAttention::apply(q, k, v, bias.to(torch::kFloat32), scale);
#else
  return plain_attention(q, k, v, bias, scale);
#endif
}

}  // namespace mmt
