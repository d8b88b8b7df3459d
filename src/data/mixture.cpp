/* Mixture sampler (see mixture.h). */
#include "mmt/data/mixture.h"

#include <nlohmann/json.hpp>
#include <numeric>

#include "mmt/util/error.h"
#include "mmt/util/rng.h"

namespace mmt {
namespace {
constexpr uint64_t kChoice = 0x4D495843, kEpoch = 0x4D495845;  // seed streams
}

MixtureSampler::MixtureSampler(std::vector<int64_t> sizes, std::vector<double> weights, uint64_t seed)
    : sizes_(std::move(sizes)), seed_(seed) {
  if (sizes_.empty()) throw Error("mixture: no datasets");
  if (weights.size() != sizes_.size()) throw Error("mixture: one weight per dataset needed");
  double total = 0;
  for (size_t d = 0; d < sizes_.size(); ++d) {
    if (sizes_[d] <= 0) throw Error("mixture: dataset " + std::to_string(d) + " is empty");
    if (!(weights[d] >= 0)) throw Error("mixture: weights must be >= 0");
    total += weights[d];
  }
  if (total <= 0) throw Error("mixture: all weights are 0");
  double acc = 0;
  for (double w : weights) probs_.push_back(w / total), cumulative_.push_back(acc += w / total);
  cumulative_.back() = 1.0;
  position_.assign(sizes_.size(), 0), counts_.assign(sizes_.size(), 0), epoch_.assign(sizes_.size(), -1);
  perm_.resize(sizes_.size());
}

std::vector<double> MixtureSampler::policy_weights(const std::string& policy, const std::vector<int64_t>& sizes,
                                                   const std::vector<double>& given) {
  check_choice("mixture sampling", policy, {"instance", "dataset", "weights"});
  if (policy == "instance") return {sizes.begin(), sizes.end()};
  if (policy == "dataset") return std::vector<double>(sizes.size(), 1.0);
  if (given.size() != sizes.size())
    throw Error("mixture: sampling=weights needs one weight per dataset (" + std::to_string(sizes.size()) + "), got " +
                std::to_string(given.size()));
  return given;
}

void MixtureSampler::load_epoch(size_t d, int64_t epoch) {
  auto& p = perm_[d];
  p.resize(static_cast<size_t>(sizes_[d]));
  std::iota(p.begin(), p.end(), 0);
  Rng rng(derive_seed(seed_, kEpoch, d * 0x100000000ull + static_cast<uint64_t>(epoch)));
  rng.shuffle(p);
  epoch_[d] = epoch;
}

MixtureSampler::Draw MixtureSampler::next() {
  Rng choice(derive_seed(seed_, kChoice, static_cast<uint64_t>(draws_)));
  const double u = choice.uniform();
  size_t d = 0;
  while (d + 1 < cumulative_.size() && u >= cumulative_[d]) ++d;
  const int64_t epoch = position_[d] / sizes_[d];
  if (epoch != epoch_[d]) load_epoch(d, epoch);
  const int64_t example = perm_[d][static_cast<size_t>(position_[d] % sizes_[d])];
  ++position_[d], ++counts_[d], ++draws_;
  return {static_cast<int64_t>(d), example};
}

nlohmann::json MixtureSampler::state() const {
  return {{"seed", seed_}, {"draws", draws_}, {"positions", position_}, {"counts", counts_}, {"sizes", sizes_},
          {"probabilities", probs_}};
}

void MixtureSampler::restore(const nlohmann::json& s) {
  try {
    if (s.at("seed").get<uint64_t>() != seed_ || s.at("sizes").get<std::vector<int64_t>>() != sizes_)
      throw Error("mixture: the saved sampler state is of other datasets or another seed");
    const auto probs = s.at("probabilities").get<std::vector<double>>();
    for (size_t d = 0; d < probs.size() && d < probs_.size(); ++d)
      if (std::abs(probs[d] - probs_[d]) > 1e-12) throw Error("mixture: the saved sampler state has other weights");
    draws_ = s.at("draws").get<int64_t>();
    position_ = s.at("positions").get<std::vector<int64_t>>();
    counts_ = s.at("counts").get<std::vector<int64_t>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("mixture: malformed sampler state: ") + e.what());
  }
  if (position_.size() != sizes_.size() || counts_.size() != sizes_.size()) throw Error("mixture: malformed sampler state");
}

}  // namespace mmt
