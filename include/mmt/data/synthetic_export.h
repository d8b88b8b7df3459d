/* `mmt data synth`: writes the synthetic world to disk in the formats users know, so it can
 * be inspected and fed to other tools: per split a Karpathy-style dataset_synth.json, PNG
 * renders, region features as .npy, scenes.jsonl with the structured content of every scene
 * and caption, and (test splits) ceilings.json. Layout in docs/synthetic.md. */
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "mmt/config/options.h"

namespace mmt {

/// Splits: any of easy, binding, train. Train captions are 5 samples per scene (training
/// itself draws new ones every epoch).
void export_synthetic(const SynthOptions& options, const std::string& out_dir, const std::vector<std::string>& splits,
                      std::ostream& log);

}  // namespace mmt
