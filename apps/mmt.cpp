/* mmt: the command-line tool. Subcommands only parse arguments and call the library. */
#include <CLI/CLI.hpp>

#include <iostream>
#include <nlohmann/json.hpp>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/synthetic_export.h"
#include "mmt/model/summary.h"
#include "mmt/eval/evaluate.h"
#include "mmt/train/trainer.h"
#include "mmt/util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"mmt: pretrain image-text transformers and measure them on zero-shot retrieval"};
  app.set_version_flag("--version", "mmt 0.1.0");
  app.require_subcommand(1);

  std::string config_path, out_dir, run_dir;
  std::vector<std::string> overrides, splits = {"easy", "binding"};
  bool plain = false;
  auto add_config = [&](CLI::App* cmd) {
    cmd->add_option("--config", config_path, "experiment config (JSON, comments allowed)");
    cmd->add_option("--set", overrides, "override a config key: --set train.steps=100 (repeatable)")
        ->take_all()
        ->allow_extra_args(false);
  };

  auto* train = app.add_subcommand("train", "pretrain a model and write a run directory");
  add_config(train);
  train->add_option("--out", out_dir, "run directory to create")->required();

  auto* eval = app.add_subcommand("eval", "zero-shot retrieval of a trained run (writes eval.json / eval.md)");
  eval->add_option("--run", run_dir, "run directory written by mmt train")->required();
  eval->add_option("--set", overrides, "override eval.*, runtime.* or the test set size")->take_all();

  auto* data = app.add_subcommand("data", "datasets");
  data->require_subcommand(1);
  auto* synth = data->add_subcommand("synth", "write the synthetic world (images, captions, regions) to disk");
  add_config(synth);
  synth->add_option("--out", out_dir, "output directory")->required();
  synth->add_option("--splits", splits, "splits to write: easy, binding, train")->delimiter(',');

  auto* model_cmd = app.add_subcommand("model", "models");
  model_cmd->require_subcommand(1);
  auto* summary = model_cmd->add_subcommand("summary", "parameters by block and FLOPs per example");
  add_config(summary);
  int64_t text_tokens = 20, image_tokens = -1;
  summary->add_option("--text-tokens", text_tokens, "caption length for the FLOP count (default 20)");
  summary->add_option("--image-tokens", image_tokens, "image tokens for the FLOP count (default data.max_regions + 1)");

  auto* config = app.add_subcommand("config", "configuration");
  config->require_subcommand(1);
  auto* dump = config->add_subcommand("dump", "print the resolved config with a comment on every key");
  add_config(dump);
  dump->add_flag("--plain", plain, "plain JSON without comments");

  CLI11_PARSE(app, argc, argv);
  try {
    if (train->parsed()) {
      mmt::train_run(mmt::load_config(config_path, overrides), out_dir, std::cerr);
    } else if (eval->parsed()) {
      mmt::evaluate_run(run_dir, overrides, std::cout, std::cerr);
    } else if (synth->parsed()) {
      mmt::export_synthetic(mmt::load_config(config_path, overrides).data.synth, out_dir, splits, std::cerr);
    } else if (summary->parsed()) {
      const auto cfg = mmt::load_config(config_path, overrides);
      std::cout << mmt::model_summary(cfg, mmt::data_input_dims(cfg), text_tokens,
                                      image_tokens > 0 ? image_tokens : cfg.data.max_regions + 1);
    } else if (dump->parsed()) {
      const auto cfg = mmt::load_config(config_path, overrides);
      std::cout << (plain ? mmt::config_to_json(cfg).dump(2) + "\n" : mmt::config_to_commented_json(cfg));
    }
  } catch (const mmt::Error& e) {
    std::cerr << "mmt: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "mmt: internal error: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
