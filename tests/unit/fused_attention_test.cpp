/* The fused CPU attention kernel equals the plain formula, forward and backward, including
 * key masks, non-packed inputs and different query / key lengths. */
#include <gtest/gtest.h>

#include "mmt/model/fused_attention.h"

namespace mmt {
namespace {

double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

TEST(FusedAttention, MatchesPlainForwardAndBackward) {
  torch::manual_seed(0);
  for (auto [lq, lk] : std::vector<std::pair<int64_t, int64_t>>{{7, 7}, {5, 9}, {12, 3}, {1, 1}}) {
    const int64_t b = 3, h = 4, d = 8;
    auto q = torch::randn({b, lq, h * d}).view({b, lq, h, d}).requires_grad_();
    auto k = torch::randn({b, lk, h, d}).requires_grad_();
    auto v = torch::randn({b, lk, h, d}).requires_grad_();
    auto mask = torch::rand({b, lk}) > 0.3;
    mask.select(1, 0).fill_(true);  // every row keeps a key
    auto bias = torch::zeros({b, 1, 1, lk}).masked_fill_(mask.logical_not().view({b, 1, 1, lk}), -1e9);
    const double scale = 1.0 / std::sqrt(8.0);
    const auto weight = torch::randn({b, lq, h * d});

    ASSERT_TRUE(fused_attention_applies(q));
    auto out = fused_attention(q, k, v, bias, scale);
    (out * weight).sum().backward();
    const auto gq = q.grad().clone(), gk = k.grad().clone(), gv = v.grad().clone();
    q.grad().zero_(), k.grad().zero_(), v.grad().zero_();
    auto ref = plain_attention(q, k, v, bias, scale);
    (ref * weight).sum().backward();
    EXPECT_EQ(out.sizes(), ref.sizes());
    EXPECT_LT(rel_err(out, ref), 1e-5) << lq << "x" << lk;
    EXPECT_LT(rel_err(gq, q.grad()), 1e-5) << lq << "x" << lk;
    EXPECT_LT(rel_err(gk, k.grad()), 1e-5) << lq << "x" << lk;
    EXPECT_LT(rel_err(gv, v.grad()), 1e-5) << lq << "x" << lk;
    // Masked keys receive exactly no gradient through k and v.
    const auto dead = mask.logical_not().view({b, lk, 1, 1}).expand_as(gk);
    EXPECT_EQ(gk.masked_select(dead).abs().sum().item<double>(), 0.0);
    EXPECT_EQ(gv.masked_select(dead).abs().sum().item<double>(), 0.0);
  }
}

TEST(FusedAttention, FallsBackForDouble) {
  auto q = torch::randn({2, 3, 2, 4}, torch::kFloat64);
  EXPECT_FALSE(fused_attention_applies(q));
  auto out = fused_attention(q, q, q, torch::zeros({2, 1, 1, 3}, torch::kFloat64), 0.5);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 3, 8}));
}

}  // namespace
}  // namespace mmt
