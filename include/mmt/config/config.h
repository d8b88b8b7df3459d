/* Resolving an ExperimentConfig: defaults, then a JSON file (comments allowed), then
 * `--set a.b=value` overrides, in that order; then validation of every named choice.
 * Unknown keys, wrong types and unknown names fail with messages that list what is valid. */
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "mmt/config/options.h"

namespace mmt {

/// Resolves a config: defaults <- file (if path is not empty) <- overrides ("a.b=value").
/// A file may name another with "base": "path" (relative to it): the base applies first.
ExperimentConfig load_config(const std::string& path, const std::vector<std::string>& overrides);

/// Applies a JSON object onto cfg (strict: unknown keys and wrong types throw Error).
void apply_json(ExperimentConfig& cfg, const nlohmann::json& j);

/// Applies one "a.b=value" override; value is JSON if it parses as JSON, else a string.
void apply_override(ExperimentConfig& cfg, const std::string& assignment);

/// Checks every named choice (attention types, presets, schedule, ...); throws Error.
void validate_config(const ExperimentConfig& cfg);

/// Side in pixels of the images a pixel model reads: data.synth.image_size for the synthetic world,
/// data.image_size for datasets.
int64_t pixel_image_size(const ExperimentConfig& cfg);

/// The config as plain JSON (what <run>/config.json holds).
nlohmann::json config_to_json(const ExperimentConfig& cfg);

/// The config as JSON without the keys that may differ between the runs of one experiment: how
/// it runs (runtime.*), how its batches are built (data.loader_threads, data.prefetch: the same
/// batches either way) and train.steps (a run may be extended). What `train --resume` and
/// `--auto-resume` compare against the run's config.json.
nlohmann::json config_identity(const ExperimentConfig& cfg);

/// The keys ("train.align_inputs = \"unmasked\"", with their values in cfg) that cfg has and the
/// config file at `path` does not set: for a run's config.json written by an older mmt, the keys
/// added since, which a resumed run takes at their defaults. Empty when the file sets every key.
std::vector<std::string> keys_not_in_file(const ExperimentConfig& cfg, const std::string& path);

/// The config as JSON with a `//` comment above every key (loadable by load_config).
std::string config_to_commented_json(const ExperimentConfig& cfg);

/// Parses JSON text that may carry // and /* */ comments; errors name `origin` and the line.
nlohmann::json parse_json_with_comments(const std::string& text, const std::string& origin);

}  // namespace mmt
