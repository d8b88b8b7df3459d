/* Mixtures of datasets (PAPER.md "Data"): an endless, deterministic sampler over several datasets.
 *  - instance sampling: every example equally likely (dataset d drawn with probability N_d / N);
 *  - dataset sampling: every dataset equally likely (1 / D), whatever its size;
 *  - explicit weights, normalised.
 * Within a dataset, examples come in epochs: a fresh permutation per epoch, seeded by (seed,
 * dataset, epoch), so every example is seen once per epoch of its dataset. Which dataset a draw
 * takes depends only on (seed, draw number). The state (draw number, position per dataset, counts)
 * is a few integers, saved in checkpoints; restoring it continues the exact same stream. */
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace mmt {

class MixtureSampler {
 public:
  struct Draw {
    int64_t dataset, example;
  };
  /// `sizes`: examples per dataset (all > 0); `weights`: per dataset, normalised here.
  MixtureSampler(std::vector<int64_t> sizes, std::vector<double> weights, uint64_t seed);
  /// Weights of a policy: "instance" (by size), "dataset" (equal), "weights" (the given ones).
  static std::vector<double> policy_weights(const std::string& policy, const std::vector<int64_t>& sizes,
                                            const std::vector<double>& given = {});

  Draw next();
  const std::vector<double>& probabilities() const { return probs_; }
  /// Draws per dataset so far (for the logs).
  const std::vector<int64_t>& counts() const { return counts_; }
  int64_t draws() const { return draws_; }

  nlohmann::json state() const;
  /// Restores a state() of a sampler with the same sizes, weights and seed (checked).
  void restore(const nlohmann::json& state);

 private:
  void load_epoch(size_t d, int64_t epoch);
  std::vector<int64_t> sizes_;
  std::vector<double> probs_, cumulative_;
  uint64_t seed_;
  int64_t draws_ = 0;
  std::vector<int64_t> position_, counts_;  // examples taken per dataset (over all epochs)
  std::vector<int64_t> epoch_;              // epoch whose permutation is loaded
  std::vector<std::vector<int64_t>> perm_;
};

}  // namespace mmt
