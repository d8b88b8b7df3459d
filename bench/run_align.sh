#!/usr/bin/env bash
# The align head's cost (docs/performance.md): one training step of the tiny preset at batch 32 on a
# mixed stack (3 single_modality layers under 1 merged), classification ITM with random or hard
# negatives, without and with the align head (model.align, train.align_weight = 1). Without the head
# hard negatives score B x B pairs through the merged layer; with it, by the head's similarities
# from one unimodal pass. With train.align_queue, a momentum model embeds the batch for a queue of
# negatives (one more unimodal pass, no gradient; with train.mlm_distill a whole forward pass of it
# over the masked batch). The align loss reads the inputs before MLM masking (a second pass of the
# text tower, train.align_inputs = unmasked) or the MLM pass's states (masked). Each configuration in its own process (peak memory its own).
# usage: bench/run_align.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
common=(--set train.batch_size=32 --set data.synth.num_train_images=5000 --set data.synth.num_test_images=10
        --set 'model.layers=single_modality*3,merged')
run() { "$build"/bench/mmt_bench_losses --steps 5 "${common[@]}" "$@" 2>/dev/null; }
align=(--set model.align=true --set train.align_weight=1)
echo "ITM, random negatives          : $(run)"
echo "ITM, hard negatives (ITM score): $(run --set train.itm_negatives=hard)"
echo "ITM + align, random negatives  : $(run "${align[@]}")"
echo "ITM + align, masked inputs     : $(run "${align[@]}" --set train.align_inputs=masked)"
echo "ITM + align, hard (align score): $(run "${align[@]}" --set train.itm_negatives=hard)"
echo "ITM + align, queue of 4096     : $(run "${align[@]}" --set train.align_queue=4096)"
echo "ITM + align, queue + MLM distil.: $(run "${align[@]}" --set train.align_queue=4096 --set train.mlm_distill=0.4)"
