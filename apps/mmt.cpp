/* mmt: the command-line tool. Subcommands only parse arguments and call the library. */
#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/data_tools.h"
#include "mmt/data/region_features.h"
#include "mmt/data/synthetic_export.h"
#include "mmt/model/flops.h"
#include "mmt/model/summary.h"
#include "mmt/text/tokenizer.h"
#include "mmt/eval/compare.h"
#include "mmt/eval/evaluate.h"
#include "mmt/eval/retrieve.h"
#include "mmt/study/study.h"
#include "mmt/train/dist_env.h"
#include "mmt/train/finetune.h"
#include "mmt/train/trainer.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace {

// retrieve / embed --captions FILE: its lines after the captions given on the command line.
void add_caption_lines(const std::string& file, mmt::RetrieveRequest& r) {
  if (file.empty()) return;
  for (auto& line : mmt::read_lines(file)) r.queries.push_back(std::move(line));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mmt: pretrain image-text transformers and measure them on zero-shot retrieval"};
  app.set_version_flag("--version", "mmt 0.1.0");
  app.require_subcommand(1);

  std::string config_path, out_dir, run_dir;
  std::vector<std::string> overrides, splits = {"easy", "binding"};
  bool plain = false;
  auto add_config = [&](CLI::App* cmd) {
    cmd->add_option("--config", config_path, "experiment config (JSON, comments allowed)");
    cmd->add_option("--set", overrides,
                    "override config keys: --set train.steps=100 model.preset=tiny (or --set once per key)")
        ->take_all();
  };

  auto* train = app.add_subcommand("train", "pretrain a model and write a run directory");
  add_config(train);
  std::string resume_dir;
  auto* out_opt = train->add_option("--out", out_dir, "run directory to create");
  auto* resume_opt = train->add_option("--resume", resume_dir,
                                       "continue the run in this directory from its newest checkpoint (its config; "
                                       "--set may change train.steps and runtime.*)");
  out_opt->excludes(resume_opt);
  bool auto_resume = false;
  train->add_flag("--auto-resume", auto_resume,
                  "with --out: if DIR already holds this run (same config, train.steps and runtime.* aside), continue "
                  "it from its newest checkpoint instead of refusing - for relaunches by torchrun --max_restarts or a "
                  "requeued SLURM job (docs/distributed.md)");

  auto* eval = app.add_subcommand("eval", "zero-shot retrieval of a trained run (writes eval.json / eval.md)");
  eval->add_option("--run", run_dir, "run directory written by mmt train")->required();
  std::string protocol, karpathy, eval_images, eval_features;
  eval->add_option("--protocol", protocol, "real-image protocol: flickr30k-1k, coco-5k, coco-1k, test or val (needs --karpathy)");
  eval->add_option("--karpathy", karpathy, "the Karpathy split file of the protocol (dataset_flickr30k.json, ...)");
  eval->add_option("--images", eval_images, "its image folder (default: next to the file)");
  eval->add_option("--features", eval_features, "region models: the test images' features (store or folder)");
  eval->add_option("--set", overrides, "override eval.*, runtime.* or the test set size")->take_all();
  bool eval_best = false;
  eval->add_flag("--best", eval_best, "evaluate the best weights kept during training (<run>/best) instead of the final ones");

  // What retrieve and embed share: the run and its weights, captions on the line or in a file, the
  // images (a synthetic test set or a protocol's split), and --set.
  auto add_run_query = [](CLI::App* cmd, mmt::RetrieveRequest& r, std::string& captions_file, const char* captions_help) {
    cmd->add_option("--run", r.run_dir, "run directory written by mmt train")->required();
    cmd->add_option("captions", r.queries, captions_help);
    cmd->add_option("--captions", captions_file, "more captions, one per line");
    cmd->add_flag("--best", r.best, "the best weights kept during training (<run>/best)");
    cmd->add_option("--test-set", r.test_set, "synthetic test set (default: the run's first eval.test_sets)");
    cmd->add_option("--protocol", r.protocol, "or real images: a protocol's split (flickr30k-1k, coco-5k, coco-1k, test, val)");
    cmd->add_option("--karpathy", r.karpathy, "its Karpathy split file");
    cmd->add_option("--images", r.images, "its image folder (default: next to the file)");
    cmd->add_option("--features", r.features, "region models: the images' features (store or folder)");
    cmd->add_option("--split", r.split, "which split of the protocol (coco-1k: coco-1k-fold1..5; default the first)");
    cmd->add_option("--set", r.overrides, "override eval.* (eval.mode=dual, ...) or runtime.* (device, threads)")->take_all();
  };
  auto* retrieve = app.add_subcommand("retrieve", "what a trained run finds: the top images of a test set for captions you "
                                                  "write, or the top captions for one of its images");
  mmt::RetrieveRequest rq;
  std::string captions_file, retrieve_json;
  add_run_query(retrieve, rq, captions_file, "captions to search for (quote each)");
  retrieve->add_option("--image", rq.image_queries, "and the other way: the set's captions ranked for this image "
                                                    "(synthetic: its index; real: its file name; repeatable)");
  retrieve->add_option("--top", rq.top, "images listed per caption (default 5)")->check(CLI::Range(int64_t{1}, int64_t{1000}));
  retrieve->add_option("--json", retrieve_json, "also write the results as JSON to this file");

  auto* embed = app.add_subcommand("embed", "the vectors behind a run's dual scores, for captions and a test set's "
                                            "images, as .npy files (a dual encoder's retrieval embeddings)");
  mmt::RetrieveRequest eq;
  std::string embed_out, embed_captions;
  add_run_query(embed, eq, embed_captions, "captions to embed (default: the set's own)");
  embed->add_option("--out", embed_out, "writes OUT-text.npy, OUT-images.npy and OUT.json")->required();

  auto* compare = app.add_subcommand(
      "compare", "is run B better than run A beyond the luck of the test set? paired bootstrap over their test images");
  std::string compare_a, compare_b, compare_json;
  mmt::BootstrapSettings compare_settings;
  compare->add_option("A", compare_a,
                      "a run directory (its eval.json, else its only eval-*.json) or an evaluation "
                      "result file (eval-best.json, eval-flickr30k-1k.json, ...); several, "
                      "comma-separated (the seeds of one configuration), are compared as their mean")
      ->required();
  compare->add_option("B", compare_b, "the other: the same kind of result, one or several")->required();
  compare->add_option("--samples", compare_settings.samples, "resamplings of the test images (default 1000)")
      ->check(CLI::Range(int64_t{2}, int64_t{1000000}));
  compare->add_option("--level", compare_settings.level, "central interval (default 0.95)")->check(CLI::Range(0.5, 0.999));
  compare->add_option("--seed", compare_settings.seed, "resampling seed (default 0)");
  compare->add_option("--json", compare_json, "also write the comparison as JSON to this file");

  auto* finetune = app.add_subcommand("finetune", "fine-tune a finished run for retrieval (ITM, hard negatives) on a Karpathy split file");
  std::string ft_run;
  mmt::FinetuneData ft_data;
  finetune->add_option("--run", ft_run, "the pretrained run directory")->required();
  finetune->add_option("--karpathy", ft_data.karpathy, "Karpathy split file with the retrieval training images")->required();
  finetune->add_option("--images", ft_data.images, "its image folder (default: next to the file)");
  finetune->add_option("--features", ft_data.features, "region models: features of its images (store or folder)");
  finetune->add_option("--splits", ft_data.splits, "splits to fine-tune on (default train,restval)")->delimiter(',');
  finetune->add_option("--out", out_dir, "run directory to create")->required();
  finetune->add_option("--set", overrides, "override a config key of the fine-tuning run (train.steps=..., ...)")->take_all();

  auto* study = app.add_subcommand("study", "grids of runs: train and evaluate every cell, then compare");
  study->require_subcommand(1);
  auto* study_run = study->add_subcommand("run", "train and evaluate every cell x seed of a grid (resumable: rerun to continue)");
  std::string grid_path, study_dir;
  study_run->add_option("grid", grid_path, "the grid file (configs/studies/*.json)")->required();
  study_run->add_option("--out", study_dir, "study folder (default runs/studies/<grid name>)");
  std::vector<std::string> only_cells;
  std::vector<int64_t> only_seeds;
  study_run->add_option("--cells", only_cells, "run only these cells (names as in the report: base, attention=coattention)")->delimiter(',');
  study_run->add_option("--seeds", only_seeds, "run only these seeds")->delimiter(',');
  auto* study_report = study->add_subcommand("report", "tables (Markdown, CSV), SVG charts and an HTML page of a study folder");
  study_report->add_option("dir", study_dir, "the study folder")->required();
  auto* study_status = study->add_subcommand("status", "where a study folder stands: each run finished, failed, started "
                                                       "(at which step) or not started, time spent and an estimate for the rest");
  study_status->add_option("dir", study_dir, "the study folder")->required();
  std::string status_json;
  study_status->add_option("--json", status_json, "also write the status as JSON to this file");

  auto* data = app.add_subcommand("data", "datasets");
  data->require_subcommand(1);
  auto* synth = data->add_subcommand("synth", "write the synthetic world (images, captions, regions) to disk");
  add_config(synth);
  synth->add_option("--out", out_dir, "output directory")->required();
  synth->add_option("--splits", splits, "splits to write: easy, binding, train")->delimiter(',');

  auto* check = data->add_subcommand("check", "read a dataset, count images / captions per split and skipped records");
  std::vector<std::string> dataset_args;
  bool decode = false, as_json = false;
  check->add_option("--dataset", dataset_args, "format=F,path=P[,images=DIR][,splits=a+b][,name=N] (repeatable)")->required();
  check->add_flag("--decode", decode, "also decode every image and count the undecodable ones");
  check->add_flag("--json", as_json, "print JSON");
  auto* stats = data->add_subcommand("stats", "caption lengths, vocabulary, vocabulary overlap between datasets, exact caption repeats");
  stats->add_option("--dataset", dataset_args, "format=F,path=P[,images=DIR][,splits=a+b][,name=N] (repeatable)")->required();
  stats->add_flag("--json", as_json, "print JSON");
  int64_t stats_queue = mmt::kStatsQueue;
  stats->add_option("--queue", stats_queue,
                    "exact caption repeats: copies of a caption expected among this many others drawn at random "
                    "(a contrastive queue, train.align_queue)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  auto* model_cmd = app.add_subcommand("model", "models");
  model_cmd->require_subcommand(1);
  auto* summary = model_cmd->add_subcommand("summary", "parameters by block and FLOPs per example");
  add_config(summary);
  int64_t text_tokens = mmt::kTypicalCaptionTokens, image_tokens = -1;
  summary->add_option("--text-tokens", text_tokens,
                      "caption length for the FLOP count (default " + std::to_string(mmt::kTypicalCaptionTokens) + ")");
  summary->add_option("--image-tokens", image_tokens, "image tokens for the FLOP count (default: the config's, e.g. the patch grid + 1)");

  auto* config = app.add_subcommand("config", "configuration");
  config->require_subcommand(1);
  auto* dump = config->add_subcommand("dump", "print the resolved config with a comment on every key");
  add_config(dump);
  dump->add_flag("--plain", plain, "plain JSON without comments");

  auto* tokenizer = app.add_subcommand("tokenizer", "tokenizers: encode text, train a SentencePiece model");
  tokenizer->require_subcommand(1);
  auto* encode = tokenizer->add_subcommand(
      "encode", "read lines on stdin, print one JSON array of ids per line ([CLS] ... [SEP])");
  std::string vocab_path, spm_model, input_path, out_prefix;
  bool cased = false, show_pieces = false;
  int64_t max_len = 512;
  auto* vocab_opt = encode->add_option("--vocab", vocab_path, "WordPiece vocab.txt (BERT)");
  auto* model_opt = encode->add_option("--model", spm_model, "SentencePiece .model");
  vocab_opt->excludes(model_opt);
  encode->add_flag("--cased", cased, "WordPiece: keep case and accents (cased BERT vocabularies)");
  encode->add_option("--max-len", max_len, "truncate to this many ids, [CLS] and [SEP] included (default 512)");
  encode->add_flag("--pieces", show_pieces, "print the pieces (JSON strings) instead of ids");
  auto* tok_train = tokenizer->add_subcommand("train", "train a SentencePiece model on captions (one per line)");
  mmt::SentencePieceTrainOptions spm_options;
  std::vector<std::string> tok_datasets;
  auto* tok_input = tok_train->add_option("--input", input_path, "text file, one caption per line");
  auto* tok_ds = tok_train->add_option("--dataset", tok_datasets,
                                       "or the captions of datasets: format=F,path=P[,splits=train] (repeatable)");
  tok_input->excludes(tok_ds);
  tok_train->add_option("--out", out_prefix, "output prefix: writes PREFIX.model and PREFIX.vocab")->required();
  tok_train->add_option("--vocab-size", spm_options.vocab_size, "pieces, specials included (default 8000)");
  tok_train->add_option("--type", spm_options.model_type, "unigram (default), bpe, char or word");
  tok_train->add_option("--seed", spm_options.seed, "random seed");
  tok_train->add_flag("!--cased", spm_options.lower_case, "keep case (default: NFKC + case folding)");

  auto* features = app.add_subcommand("features", "region feature stores");
  features->require_subcommand(1);
  auto* pack = features->add_subcommand("pack", "pack a folder of per-image .npz / .npy features into one memory-mapped store");
  std::string pack_in, pack_out;
  bool pack_f32 = false, pack_no_classes = false;
  pack->add_option("--input", pack_in, "folder of KEY.npz (or KEY.npy) files")->required();
  pack->add_option("--out", pack_out, "store to write (plus OUT.idx)")->required();
  pack->add_flag("--float32", pack_f32, "keep features in float32 (default float16: half the size)");
  pack->add_flag("--no-classes", pack_no_classes, "drop class probabilities (MRM-KL / -class need them)");

  CLI11_PARSE(app, argc, argv);
  const mmt::DistEnv dist = [] {
    try {
      return mmt::read_dist_env();
    } catch (const mmt::Error& e) {
      std::cerr << "mmt: error: " << e.what() << "\n";
      std::exit(2);
    }
  }();
  // Launched as one of several processes (torchrun, srun): train, finetune and eval join the
  // process group with their config's runtime options; other commands run in one process only.
  auto join = [&](const mmt::RuntimeOptions& runtime) {
    if (dist.distributed()) mmt::set_current_communicator(mmt::connect(dist, runtime));
  };
  auto only_one = [&](const char* command) {
    if (dist.distributed())
      throw mmt::Error(std::string(command) + " runs in one process; it was launched as " + dist.describe() +
                       " (only train, finetune and eval are distributed)");
  };
  // A run resumed by a newer mmt: keys its config.json lacks take their defaults - say which.
  // `saved`: that config.json as loaded.
  auto note_keys_added_since = [](const mmt::ExperimentConfig& saved, const std::string& dir) {
    const auto added = mmt::keys_not_in_file(saved, dir + "/config.json");
    if (added.empty()) return;
    std::cerr << "mmt train: note: " << dir << "/config.json was written by an older mmt; these keys were added "
              << "since and take their defaults:";
    for (const auto& k : added) std::cerr << " " << k << ";";
    std::cerr << "\n";
  };
  try {
    if (!train->parsed() && !eval->parsed() && !finetune->parsed()) only_one("this command");
    if (train->parsed()) {
      if (!resume_dir.empty()) {
        if (!config_path.empty()) throw mmt::Error("train --resume uses the run's own config.json; drop --config");
        const auto saved = mmt::load_config(resume_dir + "/config.json", {});
        const auto cfg = mmt::load_config(resume_dir + "/config.json", overrides);
        if (mmt::config_identity(cfg) != mmt::config_identity(saved))
          throw mmt::Error("train --resume: --set may change only train.steps, runtime.*, data.loader_threads, "
                           "data.prefetch, data.image_cache_mb and eval.image_cache_mb");
        note_keys_added_since(saved, resume_dir);
        join(cfg.runtime);
        mmt::train_run(cfg, resume_dir, std::cerr, /*resume=*/true);
      } else {
        if (out_dir.empty()) throw mmt::Error("train: give --out DIR (a new run) or --resume DIR");

        const auto cfg = mmt::load_config(config_path, overrides);
        const bool continuing = auto_resume && mmt::has_resumable_checkpoint(out_dir);
        if (continuing) {  // the command must describe the run the directory holds
          const auto saved = mmt::load_config(out_dir + "/config.json", {});
          if (mmt::config_identity(cfg) != mmt::config_identity(saved))
            throw mmt::Error("train --auto-resume: " + out_dir + " holds a run with another config (only train.steps, "
                             "runtime.*, data.loader_threads, data.prefetch, data.image_cache_mb and "
                             "eval.image_cache_mb may differ); choose another --out");
          note_keys_added_since(saved, out_dir);
          // A job relaunched after its run finished (a requeue, a restart after the last step) succeeds.
          if (const int64_t done = mmt::finished_steps(out_dir); done >= cfg.train.steps) {
            std::cerr << "mmt train: " << out_dir << " has finished its " << done << " steps; nothing to do\n";
            return 0;
          }
        }
        join(cfg.runtime);
        mmt::train_run(cfg, out_dir, std::cerr, /*resume=*/continuing);
      }
    } else if (eval->parsed()) {
      // The runtime options (rendezvous timeout) the evaluation will run with.
      if (dist.distributed()) join(mmt::eval_config(run_dir, overrides).runtime);
      if (!protocol.empty()) {
        if (karpathy.empty()) throw mmt::Error("eval --protocol needs --karpathy FILE (a Karpathy split file)");
        mmt::evaluate_protocol(run_dir, protocol, karpathy, eval_images, eval_features, overrides, std::cout, std::cerr,
                               eval_best);
      } else {
        mmt::evaluate_run(run_dir, overrides, std::cout, std::cerr, eval_best);
      }
    } else if (embed->parsed()) {
      add_caption_lines(embed_captions, eq);
      mmt::embed(eq, embed_out, std::cerr);
    } else if (retrieve->parsed()) {
      add_caption_lines(captions_file, rq);
      const nlohmann::json result = mmt::retrieve(rq, std::cout, std::cerr);
      if (!retrieve_json.empty()) {
        std::ofstream f(retrieve_json);
        if (!(f << result.dump(2) << "\n")) throw mmt::Error("cannot write '" + retrieve_json + "'");
      }
    } else if (compare->parsed()) {
      const nlohmann::json result = mmt::compare_results(compare_a, compare_b, compare_settings, std::cout);
      if (!compare_json.empty()) {
        std::ofstream f(compare_json);
        if (!(f << result.dump(2) << "\n")) throw mmt::Error("cannot write '" + compare_json + "'");
      }
    } else if (study_run->parsed()) {
      if (study_dir.empty()) study_dir = "runs/studies/" + mmt::load_grid(grid_path).name;
      mmt::run_study(grid_path, study_dir, std::cerr, only_cells, only_seeds);
    } else if (study_report->parsed()) {
      std::cout << mmt::report_study(study_dir, std::cerr);
    } else if (study_status->parsed()) {
      nlohmann::json j;
      std::cout << mmt::study_status(study_dir, &j);
      if (!status_json.empty()) {
        std::ofstream f(status_json);
        if (!(f << j.dump(2) << "\n")) throw mmt::Error("cannot write '" + status_json + "'");
      }
    } else if (finetune->parsed()) {
      const auto cfg = mmt::finetune_config(ft_run, ft_data, overrides);
      join(cfg.runtime);
      mmt::train_run(cfg, out_dir, std::cerr);
    } else if (synth->parsed()) {
      mmt::export_synthetic(mmt::load_config(config_path, overrides).data.synth, out_dir, splits, std::cerr);
    } else if (check->parsed()) {
      nlohmann::json all = nlohmann::json::array();
      for (const auto& a : dataset_args) {
        const auto c = mmt::check_dataset(mmt::parse_dataset_arg(a), decode, &std::cerr);
        if (as_json) all.push_back(c);
        else std::cout << mmt::format_check(c);
      }
      if (as_json) std::cout << all.dump(2) << "\n";
    } else if (stats->parsed()) {
      std::vector<mmt::Dataset> sets;
      for (const auto& a : dataset_args) {
        auto spec = mmt::parse_dataset_arg(a);
        spec.max_bad_fraction = 1.0, spec.check_images = false;
        sets.push_back(mmt::read_dataset(spec, &std::cerr));
      }
      const auto s = mmt::dataset_stats(sets, stats_queue);
      std::cout << (as_json ? s.dump(2) + "\n" : mmt::format_stats(s));
    } else if (summary->parsed()) {
      const auto cfg = mmt::load_config(config_path, overrides);
      std::vector<std::string> assumed;  // a run planned before its data is there
      const auto dims = mmt::data_input_dims(cfg, &assumed);
      std::cout << mmt::model_summary(cfg, dims, text_tokens, image_tokens > 0 ? image_tokens : mmt::max_image_positions(cfg));
      for (const auto& a : assumed) std::cout << "note: " << a << "\n";
    } else if (encode->parsed()) {
      if (vocab_path.empty() && spm_model.empty()) throw mmt::Error("tokenizer encode: give --vocab or --model");
      mmt::BasicTokenizerOptions basic;
      basic.lower_case = !cased;
      const auto tok = spm_model.empty() ? std::unique_ptr<mmt::Tokenizer>(mmt::WordPieceTokenizer::load(vocab_path, basic))
                                         : std::unique_ptr<mmt::Tokenizer>(mmt::SentencePieceTokenizer::load(spm_model));
      std::string line;
      while (std::getline(std::cin, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const auto ids = tok->encode(line, max_len);
        nlohmann::json out = nlohmann::json::array();
        for (int64_t id : ids)
          if (show_pieces) out.push_back(nlohmann::json(tok->vocab().token(id)));
          else out.push_back(id);
        std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      }
    } else if (tok_train->parsed()) {
      std::vector<std::string> lines;
      if (!tok_datasets.empty()) {
        for (const auto& a : tok_datasets) {
          auto spec = mmt::parse_dataset_arg(a);
          spec.check_images = false;
          for (const auto& r : mmt::read_dataset(spec, &std::cerr).records)
            lines.insert(lines.end(), r.captions.begin(), r.captions.end());
        }
      } else {
        if (input_path.empty()) throw mmt::Error("tokenizer train: give --input or --dataset");
        for (auto& line : mmt::read_lines(input_path)) lines.push_back(std::move(line));
      }
      mmt::train_sentencepiece(lines, out_prefix, spm_options);
      const auto tok = mmt::SentencePieceTokenizer::load(out_prefix + ".model");
      std::cerr << "mmt tokenizer train: " << lines.size() << " lines -> " << tok->describe() << "\n";
    } else if (pack->parsed()) {
      const int64_t n = mmt::pack_region_folder(pack_in, pack_out, {!pack_f32, !pack_no_classes}, &std::cerr);
      const mmt::PackedStore store(pack_out);
      std::cerr << "mmt features pack: " << n << " images -> " << pack_out << " (dim " << store.dim() << ", "
                << store.classes() << " classes)\n";
    } else if (dump->parsed()) {
      const auto cfg = mmt::load_config(config_path, overrides);
      std::cout << (plain ? mmt::config_to_json(cfg).dump(2) + "\n" : mmt::config_to_commented_json(cfg));
    }
  } catch (const mmt::Interrupted& e) {
    std::cerr << "mmt: " << e.what() << "\n";
    return 128 + e.signal;
  } catch (const mmt::Error& e) {
    std::cerr << "mmt: error: " << (dist.distributed() && std::string(e.what()).rfind("rank ", 0) != 0 ? "rank " + std::to_string(dist.rank) + ": " : "")
              << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "mmt: internal error: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
