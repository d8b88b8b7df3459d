/* The options structs of mmt: one plain struct per component, every field commented,
 * defaults in place, nested into one ExperimentConfig. Files and `--set` flags only fill
 * these structs (config.h); the resolved struct is written into every run directory.
 *
 * Each struct lists its fields once, in visit(): the JSON reader, the JSON writer and the
 * commented `mmt config dump` all walk the same list, so a field cannot be forgotten by one
 * of them. A field's doc string is the text users read in `mmt config dump`. */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmt {

/// The synthetic world: the embedded default data (docs/synthetic.md).
struct SynthOptions {
  std::string analogue;              // "" or a named analogue of a paper dataset (a preset of the fields below)
  uint64_t seed = 1234;              // world seed: scenes, captions, features derive from it
  int64_t num_train_images = 20000;  // training scenes (disjoint from every test scene)
  int64_t num_test_images = 1000;    // images per test set (Flickr30k's test has 1,000)
  int64_t captions_per_image = 5;    // captions per test image (Flickr30k has 5)
  int64_t min_objects = 1;           // objects per scene, at least
  int64_t max_objects = 4;           // objects per scene, at most (<= 4)
  int64_t train_min_objects = -1;    // objects per training scene, at least (-1 = min_objects)
  int64_t train_max_objects = -1;    // objects per training scene, at most (-1 = max_objects)
  int64_t num_shapes = 8;            // shapes used, the first N of the lexicon (2..8)
  int64_t num_colours = 8;           // colours used, the first N of the lexicon (2..8)
  int64_t binding_group_size = 4;    // images per binding group (same bag, other binding)
  int64_t image_size = 64;           // side of the rendered RGB image, pixels
  int64_t feature_dim = 64;          // detector feature size per region
  double feature_noise = 0.25;       // std of the Gaussian noise on each region feature
  double detector_confusion = 0.15;  // probability mass the detector gives wrong classes
  std::string caption_style = "descriptive";  // training captions: descriptive, terse, phrase, narrative
  double caption_noise = 0.0;        // training captions describing another scene (misaligned alt-text)
  double caption_corruption = 0.0;   // each word of a training caption replaced by a random word
  std::vector<std::string> mixture;  // analogues whose training data are mixed (data.sampling: how)

  template <class V>
  void visit(V& v) {
    v.field("analogue", analogue,
            "a named analogue of a paper dataset, applied before the other keys: cc, sbu, vg, coco, coco-ln, "
            "oi-ln (docs/synthetic.md); \"\" = none");
    v.field("seed", seed, "world seed: scenes, captions and features all derive from it");
    v.field("num_train_images", num_train_images, "training scenes, disjoint from test scenes");
    v.field("num_test_images", num_test_images, "images per test set (Flickr30k test: 1000)");
    v.field("captions_per_image", captions_per_image, "captions per test image");
    v.field("min_objects", min_objects, "objects per scene, at least (>= 1)");
    v.field("max_objects", max_objects, "objects per scene, at most (<= 4)");
    v.field("train_min_objects", train_min_objects,
            "objects per training scene, at least (-1 = min_objects): an analogue's image distribution; the "
            "test and validation sets keep min_objects..max_objects, so every analogue is scored on the same sets");
    v.field("train_max_objects", train_max_objects, "objects per training scene, at most (-1 = max_objects)");
    v.field("num_shapes", num_shapes, "shapes in use: the first N of the lexicon (2..8)");
    v.field("num_colours", num_colours, "colours in use: the first N of the lexicon (2..8)");
    v.field("binding_group_size", binding_group_size,
            "images per binding group: same bag of attributes, different binding (2..8)");
    v.field("image_size", image_size, "side of the rendered RGB images in pixels");
    v.field("feature_dim", feature_dim, "detector feature size of each region");
    v.field("feature_noise", feature_noise, "std of Gaussian noise added to region features");
    v.field("detector_confusion", detector_confusion,
            "probability mass the simulated detector puts on wrong classes (0..1)");
    v.field("caption_style", caption_style,
            "language of training captions: descriptive (COCO-like sentences), terse (alt-text: content words "
            "only), phrase (Visual Genome: one object's phrase), narrative (Localized Narratives: several statements)");
    v.field("caption_noise", caption_noise,
            "fraction of training captions that describe another scene (web alt-text misalignment)");
    v.field("caption_corruption", caption_corruption,
            "probability that each word of a training caption is replaced by a random lexicon word");
    v.field("mixture", mixture,
            "analogues whose training data are mixed, as the paper mixed its datasets (e.g. [\"cc\", \"sbu\", "
            "\"vg\", \"coco\"]: UNITER's set), sampled by data.sampling: instance or dataset. Each part has its "
            "analogue's size, captions and training objects (these keys' own values then do not apply), and "
            "scenes of its own (coco and coco-ln share theirs, as the datasets share COCO's images); the test "
            "sets stay the world's. [] = one world, the keys above");
  }

  /// The training scenes' object counts as used: train_min/max_objects, or min/max_objects.
  int64_t train_objects_min() const { return train_min_objects < 0 ? min_objects : train_min_objects; }
  int64_t train_objects_max() const { return train_max_objects < 0 ? max_objects : train_max_objects; }
};

/// The named analogues of the paper's datasets (data.synth.analogue; docs/synthetic.md).
const std::vector<std::string>& synthetic_analogue_names();
/// Sets the fields of s.analogue's preset ("" = none); throws Error listing the valid names.
void apply_synthetic_analogue(SynthOptions& s);
/// One part of a synthetic mixture: `world` (its seed, features, test sets) with `analogue`'s
/// training data - the keys an analogue's preset sets start from their defaults, then the preset.
SynthOptions mixture_component(const SynthOptions& world, const std::string& analogue);

/// Model shape and attention stack (docs/configs.md; PAPER.md "Attention variants").
struct ModelOptions {
  std::string preset = "tiny";        // size preset, applied before every other key (config.h)
  std::string kind = "transformer";   // transformer (multimodal layers) or dual_encoder (two towers)
  std::string dual_score = "dot";     // dual_encoder: dot (contrastive) or classifier (ITM head)
  bool align = false;                 // transformer: align head on the states below the first cross-modal layer (ALBEF)
  int64_t embed_dim = 256;            // dual_encoder, dot, and align: size of the projected embeddings
  double temperature_init = 0.07;     // dual_encoder, dot, and align: initial temperature (learned)
  double max_logit_scale = 100.0;     // dual_encoder, dot, and align: clamp of the learned 1 / temperature
  int64_t hidden = 128;               // hidden size H of every token state
  int64_t num_layers = 4;             // layers, when `layers` is empty
  std::string attention = "merged";   // attention type of every layer, when `layers` is empty
  std::vector<std::string> layers;    // per-layer attention types, name*N repeats (overrides the two above)
  int64_t num_heads = 4;              // attention heads
  int64_t head_dim = 32;              // width of one head (independent of hidden)
  int64_t ffn_dim = 512;              // feed-forward inner size
  double dropout = 0.0;               // dropout on embeddings, attention output and FFN
  int64_t max_text_len = 40;          // position table size; longer captions are truncated
  std::string itm_pooling = "product";  // ITM input: product of [CLS] and [IMG], or cls
  bool pre_norm = false;              // LayerNorm before (true) or after (BERT) each block
  double init_std = 0.02;             // std of the normal initialisation (BERT)
  double layer_norm_eps = 1e-12;      // LayerNorm epsilon (BERT)
  std::string text_init;              // BERT checkpoint directory to initialise the text side ("" = none)
  std::string image_input = "regions";  // regions (detector features), patches, resnet50 (pixels)
  int64_t patch_size = 8;             // patches: side of a square patch, pixels
  bool resnet_frozen = true;          // resnet50: keep the backbone fixed (no gradients, BN inference)
  std::string resnet_init;            // resnet50: torchvision resnet50 weights as safetensors ("" = random)

  template <class V>
  void visit(V& v);  // defined below
};

/// Sets the size fields of `m` from the preset named m.preset; throws Error listing the
/// valid presets for an unknown name. load_config applies it before every other key.
void apply_model_preset(ModelOptions& m);
const std::vector<std::string>& model_preset_names();

template <class V>
void ModelOptions::visit(V& v) {
  v.field("preset", preset,
          "size preset (tiny, base): sets hidden, num_layers, num_heads, head_dim, ffn_dim, dropout "
          "before any other key applies, whichever file or --set names it");
  v.field("kind", kind,
          "transformer (layers with the configured attention) or dual_encoder (a text tower and an image "
          "tower: every layer single_modality, no multimodal attention)");
  v.field("dual_score", dual_score,
          "dual_encoder scoring: dot (scaled cosine of projected [CLS] and [IMG], trained with "
          "train.dual_contrastive_weight) or classifier (the ITM head over the two pooled vectors, "
          "the release's baseline-cls)");
  v.field("align", align,
          "transformer whose stack starts with single_modality layers (e.g. [\"single_modality*5\", \"merged\"]): "
          "projections and a learned temperature on the [CLS] and [IMG] states below the first cross-modal "
          "layer, ALBEF's align-before-fuse head; trained by train.align_weight, it is what eval.mode=dual and "
          "rerank's dual first stage compare and what train.itm_negatives=hard samples by");
  v.field("embed_dim", embed_dim, "dual_encoder with dot scoring, and model.align: size of the projected embeddings");
  v.field("temperature_init", temperature_init,
          "dual_encoder with dot scoring, and model.align: initial temperature (learned, log-parameterised)");
  v.field("max_logit_scale", max_logit_scale,
          "dual_encoder with dot scoring, and model.align: clamp of the learned 1 / temperature");
  v.field("hidden", hidden, "hidden size of every token state");
  v.field("num_layers", num_layers, "number of layers when `layers` is empty");
  v.field("attention", attention,
          "attention type of every layer when `layers` is empty: merged, single_modality, "
          "coattention, asymmetric_text_queries, asymmetric_image_queries, single_stream");
  v.field("layers", layers,
          "attention type per layer, bottom first; name*N repeats (e.g. [\"single_modality*5\", "
          "\"merged\"]); overrides attention and num_layers");
  v.field("num_heads", num_heads, "attention heads");
  v.field("head_dim", head_dim, "width of one attention head (independent of hidden)");
  v.field("ffn_dim", ffn_dim, "feed-forward inner size");
  v.field("dropout", dropout, "dropout on embeddings, attention output and feed-forward");
  v.field("max_text_len", max_text_len, "tokens per caption incl. [CLS]/[SEP]; longer ones are truncated");
  v.field("itm_pooling", itm_pooling,
          "ITM classifier input: product (element-wise product of the pooled [CLS] and "
          "[IMG] states, ViLBERT) or cls (pooled [CLS] only, BERT/UNITER)");
  v.field("pre_norm", pre_norm, "LayerNorm before each block (true) or after it (BERT)");
  v.field("init_std", init_std, "std of the normal weight initialisation");
  v.field("layer_norm_eps", layer_norm_eps, "LayerNorm epsilon");
  v.field("image_input", image_input,
          "image tokens from: regions (detector features + boxes, the paper's input), patches "
          "(ViT/ViLT-style linear patch embedding of the pixels) or resnet50 (grid features of a "
          "ResNet-50 over the pixels, 7x7 at 224 px); each plus a global mean token");
  v.field("patch_size", patch_size, "patches: side of one square patch in pixels");
  v.field("resnet_frozen", resnet_frozen, "resnet50: keep the backbone fixed (no gradients, BatchNorm in inference)");
  v.field("resnet_init", resnet_init,
          "resnet50: safetensors file with torchvision resnet50 weights (state-dict names; \"\" = random)");
  v.field("text_init", text_init,
          "Hugging Face BERT directory (config.json + model.safetensors) whose weights initialise the "
          "text embeddings, the text stream of the first layers and the MLM head (\"\" = from scratch)");
}

/// Pretraining data.
/// One real dataset of a mixture (formats and fields: include/mmt/data/dataset.h, docs/datasets.md).
struct DatasetOptions {
  std::string name;            // shown in logs and counts (default: the format)
  std::string format;          // coco, karpathy, tsv, webdataset, files, folder, narratives, vg
  std::string path;            // annotation file, shard or folder
  std::string images;          // image folder ("" = next to path)
  std::string features;        // region features: a packed store (mmt features pack) or a folder of KEY.npz
  std::vector<std::string> splits;  // keep only these splits (karpathy)
  std::string split;           // split of formats without one (default train)
  std::string naming = "index";  // tsv: index (img2dataset keys) or basename
  double weight = 1.0;         // with data.sampling = weights

  template <class V>
  void visit(V& v) {
    v.field("name", name, "name in logs and per-dataset counts (default: the format)");
    v.field("format", format, "coco, karpathy, tsv, webdataset, files, folder, narratives or vg");
    v.field("path", path, "annotation file, shard or folder");
    v.field("images", images, "image folder (default: next to path)");
    v.field("features", features, "region features: a packed store (mmt features pack) or a folder of KEY.npz");
    v.field("splits", splits, "keep only these splits (karpathy: train, restval, val, test)");
    v.field("split", split, "split given to records of formats without one (default train)");
    v.field("naming", naming, "tsv: image file of a row: index (img2dataset keys) or basename of the URL");
    v.field("weight", weight, "sampling weight with data.sampling = weights");
  }
};

struct DataOptions {
  std::string source = "synthetic";  // where records come from: synthetic or datasets
  std::vector<DatasetOptions> datasets;  // source = datasets: the mixture's datasets
  std::string sampling = "instance";     // instance, dataset or weights (PAPER.md "Data")
  std::string tokenizer;                 // vocab.txt (WordPiece) or .model (SentencePiece); source = datasets
  bool cased = false;                    // WordPiece: keep case and accents
  int64_t loader_threads = -1;           // batch-building worker threads (0 = on the training thread, -1 = auto)
  int64_t prefetch = 4;                  // batches built ahead of the training step
  double max_bad_fraction = 0.05;        // skipped records (and undecodable images) past this fraction stop the run
  int64_t image_size = 224;              // source = datasets, pixel models: side of the centre crop
  int64_t image_cache_mb = 1024;         // source = datasets, pixel models: decoded images kept in memory
  SynthOptions synth;                // the synthetic world
  int64_t max_regions = 100;         // regions kept per image (+1 global token)
  int64_t bucket_batches = 8;        // length bucketing: sort this many batches' worth by
                                     // length before cutting batches (1 = off)

  template <class V>
  void visit(V& v) {
    v.field("source", source, "where training records come from: synthetic or datasets");
    v.list("datasets", datasets, "source = datasets: the datasets of the mixture (docs/datasets.md)");
    v.field("sampling", sampling, "mixture sampling: instance (every example equally likely), dataset (every dataset "
            "equally likely) or weights (each dataset's weight)");
    v.field("tokenizer", tokenizer, "source = datasets: a WordPiece vocab.txt or a SentencePiece .model");
    v.field("cased", cased, "WordPiece: keep case and accents");
    v.field("loader_threads", loader_threads,
            "worker threads building batches: 0 = on the training thread, -1 = auto (the process's cores but "
            "one, at least 1); the synthetic world uses them on a GPU only (on a CPU they compete with the step)");
    v.field("prefetch", prefetch, "batches built ahead of the training step (at least one per loader thread)");
    v.field("max_bad_fraction", max_bad_fraction, "skipped records or undecodable images past this fraction stop the run");
    v.field("image_size", image_size, "source = datasets, pixel models (patches, resnet50): side of the resized centre crop");
    v.field("image_cache_mb", image_cache_mb,
            "source = datasets, pixel models: training images kept decoded and resized in memory, up to this many MB "
            "per process (the first ones read; 0 = none): later epochs skip their decoding");
    v.section("synth", synth, "the synthetic world (docs/synthetic.md)");
    v.field("max_regions", max_regions, "regions kept per image; +1 global token");
    v.field("bucket_batches", bucket_batches,
            "length bucketing: draw this many batches of examples, sort them by length and "
            "cut batches from the sorted pool (1 = no bucketing)");
  }
};

/// Optimisation and the pretraining losses.
struct TrainOptions {
  int64_t steps = 1000;             // optimizer steps
  int64_t batch_size = 128;         // examples (caption, image pairs) per step
  double lr = 1e-3;                 // peak learning rate
  double weight_decay = 0.01;       // AdamW decoupled weight decay (not on biases / norms)
  double adam_beta1 = 0.9;          // AdamW beta1
  double adam_beta2 = 0.999;        // AdamW beta2
  double adam_eps = 1e-6;           // AdamW epsilon
  int64_t warmup_steps = 100;       // linear warmup from 0 to lr
  std::string schedule = "linear";  // after warmup: linear (to 0), cosine (to 0), constant
  double grad_clip = 1.0;           // max global gradient norm (0 = off)
  uint64_t seed = 1;                // seed of initialisation, sampling, masking, pairing
  double mlm_weight = 1.0;          // weight of the MLM loss (0 = off)
  double itm_weight = 1.0;          // weight of the ITM loss (0 = off)
  double dual_contrastive_weight = 0.0;  // weight of the dual-encoder InfoNCE loss (0 = off)
  double align_weight = 0.0;        // weight of InfoNCE on the align head below the fusion layers (0 = off)
  std::string align_inputs = "unmasked";  // what the align loss reads: unmasked (ALBEF: towers rerun) or masked
  std::string contrastive_same_caption = "negative";  // dual / align InfoNCE: a row with the same caption - negative or excluded
  int64_t align_queue = 0;          // align loss: queued momentum embeddings of earlier batches as negatives (0 = in-batch only)
  double align_momentum = 0.995;    // align_queue: EMA factor of the momentum model that embeds them
  double align_distill = 0.0;       // align_queue: weight of the momentum model's similarities in the targets (ALBEF: 0.4)
  double mlm_distill = 0.0;         // align_queue: weight of the momentum model's MLM predictions in MLM's targets (ALBEF: 0.4)
  int64_t distill_ramp = 0;         // align_distill, mlm_distill: steps over which their weights rise linearly from 0 (ALBEF: an epoch)
  double itm_contrastive_weight = 0.0;   // weight of contrastive ITM with K negatives (0 = off)
  int64_t itm_contrastive_negatives = 32;  // K: negative images per caption
  int64_t itm_contrastive_chunk = 1024;  // pairs per forward pass of contrastive ITM (bounds memory)
  double mrm_kl_weight = 0.0;          // MRM: KL to the detector's class distribution (0 = off)
  double mrm_regression_weight = 0.0;  // MRM: L2 to the original region feature (0 = off)
  double mrm_class_weight = 0.0;       // MRM: cross-entropy to the detector's top class (0 = off)
  double mlm_prob = 0.15;           // fraction of text tokens selected for MLM
  double mrm_prob = 0.15;           // fraction of regions masked for MRM
  std::string mask_modalities = "both";  // both: MLM and MRM mask an example together; alternate: one of them
  bool whole_word_mask = false;     // MLM selects whole words (a word's ## pieces together)
  double itm_negative_prob = 0.5;   // fraction of pairs made mismatched
  std::string itm_swap = "image";   // mismatch by swapping the image, the caption, either (one per row, at random) with another pair's; both: add a row of each
  std::string itm_negatives = "random";  // partner of a swap: random, or hard (sampled by the model's scores)
  int64_t itm_hard_from_step = 0;   // itm_negatives = hard: optimizer steps before this one use random partners
  double itm_hard_temperature = 1.0;  // itm_negatives = hard: partners drawn by softmax(score / this)
  int64_t itm_hard_candidates = 0;  // itm_negatives = hard: partners drawn among this many random rows (0 = all)
  bool itm_all_layers = false;      // ITM loss after every layer, averaged (release: -hloss)
  int64_t log_every = 10;           // steps between metric lines in metrics.jsonl
  std::string optimizer = "adamw";  // adamw (decoupled weight decay) or adam (L2 added to the gradient)
  int64_t grad_accum_steps = 1;     // micro-batches of batch_size per optimizer step
  double cross_modal_lr_mult = 1.0; // learning-rate multiplier of layers with cross-modal attention
  int64_t checkpoint_every = 500;   // steps between resumable checkpoints (0 = only at the end)
  int64_t keep_checkpoints = 2;     // resumable checkpoints kept (the newest)
  int64_t max_bad_steps = 10;       // non-finite steps (loss or gradient) in a row that stop the run (each one is skipped)
  int64_t eval_every = 0;           // steps between validation evaluations (0 = none); best kept in <run>/best
  int64_t eval_max_images = 100;    // images of the validation set evaluated during training
  std::string eval_karpathy;        // source = datasets: Karpathy file of the validation set (its val split)
  std::string eval_image_dir;       // its image folder ("" = next to the file)
  std::string eval_features;        // its region features (region models)
  std::string stage = "pretrain";   // pretrain, or finetune (`mmt finetune`: results are labelled fine-tuned)
  std::string init;                 // a run directory whose final weights initialise the model (finetune)

  /// Whether micro-batch `micro` (grad_accum_steps of them per optimizer step, >= 1 by
  /// validate_config) pairs its ITM negatives by the model's scores.
  bool hard_negatives_at(int64_t micro) const {
    return itm_negatives == "hard" && micro / grad_accum_steps >= itm_hard_from_step;
  }

  /// Whether training keeps ALBEF's momentum model (train.align_queue, for the align loss), and
  /// whether it is the whole model - MLM's teacher, train.mlm_distill - rather than the towers
  /// the align loss reads. The step builds it, the FLOP count and the log describe it, by these.
  bool momentum_model() const { return align_queue > 0 && align_weight > 0; }
  bool momentum_mlm_teacher() const { return momentum_model() && mlm_distill > 0 && mlm_weight > 0; }

  template <class V>
  void visit(V& v) {
    v.field("steps", steps, "optimizer steps");
    v.field("batch_size", batch_size, "examples (caption, image pairs) per step");
    v.field("lr", lr, "peak learning rate");
    v.field("weight_decay", weight_decay, "AdamW weight decay (biases and LayerNorms exempt)");
    v.field("adam_beta1", adam_beta1, "AdamW beta1");
    v.field("adam_beta2", adam_beta2, "AdamW beta2");
    v.field("adam_eps", adam_eps, "AdamW epsilon");
    v.field("warmup_steps", warmup_steps, "linear warmup steps from 0 to lr");
    v.field("schedule", schedule, "decay after warmup: linear, cosine (both to 0) or constant");
    v.field("grad_clip", grad_clip, "max global gradient norm (0 = no clipping)");
    v.field("seed", seed, "seed of initialisation, sampling, masking and pairing");
    v.field("mlm_weight", mlm_weight, "weight of the masked language modelling loss (0 = off)");
    v.field("itm_weight", itm_weight, "weight of the image-text matching loss (0 = off)");
    v.field("itm_contrastive_weight", itm_contrastive_weight,
            "weight of contrastive ITM inside the multimodal transformer: each matched caption is scored "
            "with its image and K negative images, one forward pass per pair, softmax cross-entropy over the "
            "K + 1 scores (0 = off)");
    v.field("itm_contrastive_negatives", itm_contrastive_negatives,
            "contrastive ITM: K, negative images per caption (the release: 32 and 1024), drawn per step "
            "from the whole training set and shared by the batch");
    v.field("itm_contrastive_chunk", itm_contrastive_chunk,
            "contrastive ITM: pairs per forward pass; gradients are accumulated chunk by chunk, so memory "
            "stays bounded whatever K is and the result equals the unchunked loss");
    v.field("dual_contrastive_weight", dual_contrastive_weight,
            "weight of the dual-encoder InfoNCE loss over the batch's matched pairs, symmetric, in-batch "
            "negatives (model.kind=dual_encoder, dual_score=dot; set itm_negative_prob=0 to use every pair)");
    v.field("align_weight", align_weight,
            "weight of ALBEF's image-text contrastive loss inside a transformer (model.align): symmetric InfoNCE "
            "over the batch's matched pairs between the projected [CLS] and [IMG] states below the first "
            "cross-modal layer, in-batch negatives, learned temperature (0 = off)");
    v.field("align_inputs", align_inputs,
            "what the align loss (and hard negatives sampled by the align head) read: unmasked - the captions "
            "(and regions) as before MLM (MRM) masking, by a second pass of the towers over the matched pairs, "
            "as ALBEF does; masked - the states of the MLM pass itself, saving that pass");
    v.field("contrastive_same_caption", contrastive_same_caption,
            "dual and align InfoNCE (in-batch and queued): another row or queue entry with the very same caption "
            "(Batch::caption_key) - negative, as any other row (default), or excluded from the softmax, as another "
            "caption of the row's own image is (a caption true of both images is no negative)");
    v.field("align_queue", align_queue,
            "ALBEF's queue for the align loss: the last N captions' and images' embeddings by a momentum model "
            "(an exponential moving average of this one's weights) join the batch's as negatives, and the "
            "batch's own candidates are the momentum model's too (0 = in-batch negatives of this model only)");
    v.field("align_momentum", align_momentum,
            "align_queue: the momentum model's weights move to this model's by (1 - m) after every optimizer step");
    v.field("align_distill", align_distill,
            "align_queue: ALBEF's momentum distillation - the align loss's targets are this share of the momentum "
            "model's own softmax over the candidates plus the rest on the true pair (0 = the true pair alone)");
    v.field("mlm_distill", mlm_distill,
            "align_queue: ALBEF's momentum distillation of MLM - each masked token's target is this share of the "
            "momentum model's prediction for it (the whole model then follows as momentum model, an extra forward "
            "pass a step) plus the rest on the true token (0 = the true token alone)");
    v.field("distill_ramp", distill_ramp,
            "align_distill and mlm_distill: their weights rise linearly from 0 at step 0 to the full weights at "
            "this step, as ALBEF's do over its first epoch (0 = the full weights from the start)");
    v.field("mrm_kl_weight", mrm_kl_weight, "MRM: KL divergence to the detector's class distribution (0 = off)");
    v.field("mrm_regression_weight", mrm_regression_weight, "MRM: squared error to the original region feature (0 = off)");
    v.field("mrm_class_weight", mrm_class_weight, "MRM: cross-entropy to the detector's top class (0 = off)");
    v.field("mlm_prob", mlm_prob, "fraction of text tokens selected for MLM (80/10/10)");
    v.field("mrm_prob", mrm_prob, "fraction of regions (not the global one) masked for MRM: feature zeroed, box kept");
    v.field("mask_modalities", mask_modalities,
            "both: an example's text and regions are masked in the same step; alternate: each matched example "
            "masks one modality, chosen at random (UNITER's conditional masking)");
    v.field("whole_word_mask", whole_word_mask, "MLM selects whole words: a word's ## continuation pieces go together");
    v.field("itm_negative_prob", itm_negative_prob, "fraction of pairs made mismatched");
    v.field("itm_swap", itm_swap, "mismatch a pair by swapping its image, its caption, or either (chosen per row at random) with another pair of the batch; "
            "both: keep the pair and add two mismatched rows, its caption with another image and its image "
            "with another caption (ALBEF's, with hard negatives; partners drawn uniformly with random ones)");
    v.field("itm_negatives", itm_negatives,
            "which pair a mismatched example swaps with: random (uniform over the batch) or hard (ALBEF-style: "
            "sampled with probability softmax of the model's own match scores over the batch, without "
            "gradient; cheap for stacks without cross-modal layers or with the align head, otherwise a pair pass "
            "per partner of each row turned negative - train.itm_hard_candidates bounds them)");
    v.field("itm_hard_from_step", itm_hard_from_step,
            "itm_negatives = hard: the optimizer step from which partners are hard; steps before it draw "
            "random ones (an ITM head that has not yet left chance learns from easy negatives first)");
    v.field("itm_hard_temperature", itm_hard_temperature,
            "itm_negatives = hard: partners are drawn with probability softmax(score / T); T > 1 flattens it "
            "toward uniform, drawing fewer partners the caption is in fact true of (docs/losses.md measures "
            "how many); 1 = ALBEF's sampling; on the synthetic world 4 kept hard negatives' binding gain without "
            "T = 1's loss in easy retrieval (3 seeds)");
    v.field("itm_hard_candidates", itm_hard_candidates,
            "itm_negatives = hard: a row's partner is drawn by the scores of K rows chosen uniformly among "
            "those it may take (0 = all of them); where the stack crosses modalities only those K pairs are "
            "scored, so the scoring cost per row turned negative falls from the batch size to K pair passes");
    v.field("itm_all_layers", itm_all_layers,
            "ITM loss after every layer through the same head, averaged over layers (the release's "
            "single-modality-hloss)");
    v.field("log_every", log_every, "steps between metric records in metrics.jsonl");
    v.field("optimizer", optimizer, "adamw (decoupled weight decay) or adam (L2 penalty added to the gradient)");
    v.field("grad_accum_steps", grad_accum_steps,
            "micro-batches of batch_size accumulated per optimizer step (effective batch = batch_size x this)");
    v.field("cross_modal_lr_mult", cross_modal_lr_mult,
            "learning-rate multiplier of the layers whose attention mixes modalities (all but single_modality)");
    v.field("checkpoint_every", checkpoint_every,
            "steps between resumable checkpoints in DIR/checkpoints (0 = only at the end); `mmt train --resume DIR`");
    v.field("keep_checkpoints", keep_checkpoints, "resumable checkpoints kept, the newest (>= 1)");
    v.field("max_bad_steps", max_bad_steps,
            "a step with a NaN or infinite loss or gradient is skipped and counted; this many in a row stop the run, "
            "naming the step and the losses");
    v.field("eval_every", eval_every,
            "steps between evaluations on a validation set during training (0 = none); the best weights by "
            "RSUM are kept in <run>/best (mmt eval --best). Never a test set: synthetic runs use the world's "
            "validation scenes, real data the val split of train.eval_karpathy");
    v.field("eval_max_images", eval_max_images, "images of the validation set scored during training (with their captions)");
    v.field("eval_karpathy", eval_karpathy,
            "data.source = datasets: Karpathy split file whose val images form the validation set");
    v.field("eval_image_dir", eval_image_dir, "image folder of train.eval_karpathy (default: next to it)");
    v.field("eval_features", eval_features, "region features of the held-out images (region models)");
    v.field("stage", stage, "pretrain, or finetune: set by mmt finetune; its results are labelled fine-tuned");
    v.field("init", init, "a run directory whose final weights initialise the whole model (mmt finetune sets it)");
  }
};

/// Zero-shot retrieval evaluation.
struct EvalOptions {
  std::vector<std::string> test_sets = {"easy", "binding"};  // synthetic test sets to score
  std::string mode = "exact";   // exact, dual or rerank (docs/evaluation.md)
  int64_t pair_batch = 0;       // (caption, image) pairs per forward pass; 0 = auto (64 on a CPU, 2048 on CUDA)
  int64_t rerank_k = 128;       // rerank: candidates per query re-scored by the ITM head
  std::string first_stage = "dual";  // rerank: dual, or a .npy score matrix ({split} = split name)
  bool cache = true;            // exact: compute the unimodal layers once per caption / image
  int64_t threads = 0;          // CPU: threads scoring pair batches side by side (0 = this process's cores)
  int64_t bootstrap = 1000;     // resamplings of the test images for 95 % intervals of the recalls (0 = none)
  int64_t examples = 5;         // captions missed at R@1 shown with the image that beat theirs (0 = none)
  int64_t image_cache_mb = 4096;  // decoded evaluation images kept in memory (0 = decode at every use)

  template <class V>
  void visit(V& v) {
    v.field("test_sets", test_sets, "test sets to evaluate: easy, binding");
    v.field("mode", mode,
            "scoring: exact (every caption-image pair through the ITM head), dual (dot products of unimodal "
            "embeddings: a dual encoder's, or the pooled states below the first cross-modal layer), rerank (the "
            "top rerank_k of the first stage per query re-scored by the ITM head, ALBEF style)");
    v.field("pair_batch", pair_batch,
            "caption-image pairs per forward pass; 0 = auto: 64 on a CPU (small passes stay in cache: 1.5-1.65x "
            "the pairs/s of 2048 at about an eighth of the memory, docs/performance.md), 2048 on CUDA");
    v.field("rerank_k", rerank_k, "rerank: candidates per query (each caption's images, each image's captions)");
    v.field("first_stage", first_stage,
            "rerank: the cheap first stage: dual (this model's unimodal embeddings), or a score matrix .npy "
            "(captions x images, e.g. another run's eval-{split}-scores.npy; {split} becomes the split name)");
    v.field("cache", cache,
            "exact: run the layers below the first cross-modal layer once per caption and once per image and reuse "
            "them for every pair (false: every pair from the embeddings up - for checking and timing)");
    v.field("threads", threads,
            "CPU: threads scoring pair batches side by side, each with single-threaded matrix products (0 = the "
            "cores of this process: all of them, or their share under torchrun / SLURM); GPUs score on one");
    v.field("bootstrap", bootstrap,
            "resamplings of the test images (each with its captions) for the 95 % intervals of every recall in "
            "eval.json and the table (0 = none); `mmt compare` resamples two runs' results the same way, paired");
    v.field("examples", examples,
            "captions missed at R@1 listed per test set in eval.md / eval.json, each with the highest-scored other "
            "image - evenly spaced over the misses (the typical error, not the worst); 0 = none");
    v.field("image_cache_mb", image_cache_mb,
            "decoded evaluation images kept in memory, the first ones read (mmt eval, mmt retrieve, validation "
            "during training; exact scoring asks for each image once per caption block): pixels as bytes, "
            "5,000 COCO images at 224 px are 750 MB; 0 = decode at every use");
  }
};

/// Threads and other process-wide settings.
struct RuntimeOptions {
  int64_t threads = 0;       // libtorch intra-op threads (0 = auto: torch_threads() in runtime.h)
  int64_t blas_threads = 0;  // OpenBLAS threads (0 = number of cores)
  std::string device = "cpu";      // cpu, cuda, cuda:N, auto (CUDA when present)
  std::string precision = "auto";  // auto (bf16 on GPUs with bf16 units, else fp32), fp32, or bf16 autocast
  double dist_timeout_s = 300;     // a collective waiting longer for another rank fails the job
  double dist_bucket_mb = 4;       // gradient buckets summed during the backward pass (0 = one sum after it)
  bool fused_adamw = true;         // CUDA: libtorch's fused AdamW kernel where it has one (>= 2)
  std::string fused_layers = "auto";  // q/k/v as one product, one attention call per layer: auto (CUDA), on, off
  bool recompute_layers = false;      // training keeps each layer's inputs only and reruns it in the backward pass

  template <class V>
  void visit(V& v) {
    v.field("threads", threads,
            "libtorch intra-op threads; 0 = auto: 1 for fp32 on a CPU (OpenBLAS runs the matrix products on "
            "blas_threads; 1 was fastest on 2 cores), the process's cores for bf16 on a CPU (oneDNN runs them on "
            "these threads), 1 on a GPU");
    v.field("blas_threads", blas_threads, "OpenBLAS threads for matrix products (0 = all cores)");
    v.field("device", device, "where training and evaluation run: cpu, cuda, cuda:N, or auto (CUDA when libtorch sees a GPU)");
    v.field("precision", precision,
            "auto (bf16 on a CUDA GPU of compute capability 8.0 or later - Ampere, Hopper -, fp32 on the CPU, the "
            "reference, and on older GPUs), fp32, or bf16 (autocast: matrix products, attention, LayerNorms and the residual stream in bfloat16 "
            "with fp32 weights, norm statistics and losses; for GPUs, and CPUs with bf16 instructions "
            "(avx512_bf16, amx_bf16: 1.4x the fp32 step on the tiny preset, 1.7x on the base preset, on 2 cores) - without them it is slower than "
            "fp32, and mmt warns)");
    v.field("dist_timeout_s", dist_timeout_s,
            "distributed runs (docs/distributed.md): seconds a rank waits for the others at the rendezvous or a "
            "collective before the job fails with an error (a dead or hung rank)");
    v.field("dist_bucket_mb", dist_bucket_mb,
            "distributed training: MiB of gradients per bucket; a bucket is summed over the ranks as soon as the "
            "backward pass has filled it, overlapping the rest of the pass (0 = one all-reduce after the pass)");
    v.field("fused_adamw", fused_adamw,
            "CUDA with libtorch >= 2: the AdamW update as libtorch's fused kernel (one launch per step, the same "
            "math); false: mmt's flat-buffer update, as on the CPU");
    v.field("fused_layers", fused_layers,
            "each layer's q, k and v as one matrix product, and one attention call for both streams where both "
            "read every key: auto (on CUDA only: the CPU keeps the separate products whose numbers the study "
            "reports, bit for bit), on, off (the same math; results differ in the last bits)");
    v.field("recompute_layers", recompute_layers,
            "training: each transformer layer keeps only its inputs for the backward pass and runs its forward "
            "again there (activation recomputation, 'gradient checkpointing'), with the same dropout masks and "
            "precision: the same gradients for far less activation memory (a bigger batch fits) and about one "
            "more forward pass of the layers' time (docs/performance.md)");
  }
};

/// One experiment: everything a run needs, written to <run>/config.json.
struct ExperimentConfig {
  std::string name = "experiment";  // free-form run name, shown in logs and results
  ModelOptions model;
  DataOptions data;
  TrainOptions train;
  EvalOptions eval;
  RuntimeOptions runtime;

  template <class V>
  void visit(V& v) {
    v.field("name", name, "free-form name of the experiment");
    v.section("model", model, "model size and attention stack");
    v.section("data", data, "pretraining data");
    v.section("train", train, "optimisation and losses");
    v.section("eval", eval, "zero-shot retrieval evaluation");
    v.section("runtime", runtime, "threads");
  }
};

}  // namespace mmt
