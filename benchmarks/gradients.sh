#!/usr/bin/env bash
# The runs behind docs/gradients.md: pictures of untrained and trained layers, the adding problem
# for Elman / LSTM / GRU at T in {10, 50, 100, 200}, and an exploding Elman with and without clipping.
# Usage: bash benchmarks/gradients.sh [pictures|adding|clipping]   (LENGTHS="10 50" to run only those T)
set -euo pipefail
cd "$(dirname "$0")/.."
U=.venv/bin/unrolled
IMG=docs/img
part=${1:-all}

if [[ $part == all || $part == pictures ]]; then
  for cell in elman lstm gru; do
    $U diagnose --cell "$cell" --hidden 128 --length 100 --out "$IMG/untrained-$cell"
  done
  $U diagnose --cell elman --hidden 128 --length 100 --init-scale 1.5 --out "$IMG/untrained-elman-scale1.5"
fi

if [[ $part == all || $part == adding ]]; then
  for T in ${LENGTHS:-10 50 100 200}; do
    for cell in elman lstm gru; do
      out=runs/adding-$cell-T$T
      rm -rf "$out"
      $U train adding --cell "$cell" --length "$T" --hidden 128 --batch-size 50 --steps 4000 --lr 1e-3 \
        --optimizer adam --schedule constant --clip-norm 1 --eval-every 500 --quiet --out "$out" \
        --results docs/results.json
    done
  done
  for cell in elman lstm gru; do
    $U diagnose "runs/adding-$cell-T100" --out "$IMG/trained-adding-$cell-T100"
  done
fi

if [[ $part == all || $part == clipping ]]; then
  # Adam divides each gradient by its own running scale, so an exploding gradient barely moves it:
  # the experiment uses plain SGD, where the step is the gradient. ReLU Elman, W_hh = 1.5 × orthogonal.
  $U diagnose --cell elman --nonlinearity relu --hidden 128 --length 50 --init-scale 1.5 \
    --out "$IMG/untrained-elman-relu-scale1.5"
  for clip in 0 1; do
    out=runs/adding-elman-relu-explode-clip$clip
    rm -rf "$out"
    $U train adding --cell elman --nonlinearity relu --length 50 --hidden 128 --init-scale 1.5 --batch-size 50 \
      --steps 2000 --lr 1e-2 --optimizer sgd --schedule constant --clip-norm "$clip" --eval-every 250 --quiet \
      --out "$out" --results docs/results.json || true  # without clipping the loss may become NaN: that is the point
  done
fi
