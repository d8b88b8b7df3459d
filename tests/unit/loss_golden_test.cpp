/* Every loss equals its python3-torch reference (tests/data/golden/losses.safetensors, made by
 * tests/golden/make_golden.py with torch.nn.functional) to a relative error of 1e-5 in fp32. */
#include <gtest/gtest.h>

#include <map>

#include "mmt/io/safetensors.h"
#include "mmt/loss/contrastive_itm.h"
#include "mmt/loss/pretraining.h"

namespace mmt {
namespace {

class LossGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto& [k, t] : load_safetensors(std::string(MMT_SOURCE_DIR) + "/tests/data/golden/losses.safetensors")) g[k] = t;
  }
  void expect(const torch::Tensor& ours, const char* reference) {
    const double want = g.at(reference).item<double>(), got = ours.item<double>();
    EXPECT_LE(std::abs(got - want), 1e-5 * std::abs(want)) << reference << ": " << got << " vs " << want;
  }
  std::map<std::string, torch::Tensor> g;
};

TEST_F(LossGolden, Mlm) { expect(loss_from_logits(g["mlm_logits"], g["mlm_targets"]).first, "mlm_loss"); }
TEST_F(LossGolden, Itm) { expect(loss_from_logits(g["itm_logits"], g["itm_labels"]).first, "itm_loss"); }
TEST_F(LossGolden, MrmRegression) { expect(loss_mrm_regression_from(g["mrm_pred"], g["mrm_target"]), "mrm_regression_loss"); }
TEST_F(LossGolden, MrmKl) { expect(loss_mrm_kl_from(g["mrm_logits"], g["mrm_p"]), "mrm_kl_loss"); }
TEST_F(LossGolden, MrmClass) { expect(loss_mrm_class_from(g["mrm_logits"], g["mrm_p"]).first, "mrm_class_loss"); }
TEST_F(LossGolden, DualInfoNce) {
  expect(loss_dual_contrastive(g["dual_text"], g["dual_image"], g["dual_scale"].reshape({})).first, "dual_loss");
}
TEST_F(LossGolden, ContrastiveItm) {
  expect(contrastive_loss_from_scores(g["contrastive_scores"], g["contrastive_excluded"]).first, "contrastive_loss");
}
TEST_F(LossGolden, AllLayerItm) {
  auto sum = torch::zeros({});
  for (int64_t l = 0; l < 3; ++l) sum = sum + loss_from_logits(g["hitm_logits"][l], g["hitm_labels"]).first;
  expect(sum / 3.0, "hitm_loss");
}

}  // namespace
}  // namespace mmt
