/* Small, portable random number generator. mmt derives every random choice of data
 * generation, masking and pairing from it so that runs are bit-reproducible across
 * compilers and standard libraries (std:: distributions are implementation-defined). */
#pragma once

#include <cmath>
#include <cstdint>

namespace mmt {

/// splitmix64 step: also used to derive independent seeds from (seed, stream ids).
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Mixes any number of 64-bit ids into one seed: derive_seed(seed, step, index).
inline uint64_t derive_seed(uint64_t a) {
  uint64_t s = a;
  return splitmix64(s);
}
template <class... Rest>
uint64_t derive_seed(uint64_t a, uint64_t b, Rest... rest) {
  uint64_t s = a ^ (0xD1B54A32D192ED03ull * (b + 1));
  return derive_seed(splitmix64(s), static_cast<uint64_t>(rest)...);
}

/// xoshiro256** generator with the helpers the data code needs.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) {
    uint64_t s = seed;
    for (auto& w : s_) w = splitmix64(s);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n); n > 0.
  int64_t below(int64_t n) {
    return static_cast<int64_t>((static_cast<unsigned __int128>(next()) * static_cast<uint64_t>(n)) >> 64);
  }
  /// Uniform integer in [lo, hi] (inclusive).
  int64_t range(int64_t lo, int64_t hi) { return lo + below(hi - lo + 1); }
  bool bernoulli(double p) { return uniform() < p; }
  /// Standard normal (Box-Muller, one value per call).
  double normal() {
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  template <class Vec>
  void shuffle(Vec& v) {
    for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i) {
      const int64_t j = below(i + 1);
      std::swap(v[i], v[j]);
    }
  }
  template <class Vec>
  const auto& pick(const Vec& v) {
    return v[below(static_cast<int64_t>(v.size()))];
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace mmt
