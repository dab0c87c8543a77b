#!/usr/bin/env bash
# NormKit against PyTorch (and Keras+JAX where its venv exists) on the same work, in one run,
# interleaved (NormKit, PyTorch, Keras, NormKit, …) so that a noisy host hits every side alike.
# Prints a table of ratios at the end (min over repetitions; also saved to $OUT/summary.md).
#
#   scripts/compare_speed.sh                 # REPS=1, everything (about 10 minutes on 2 cores)
#   REPS=3 PARTS="kernels mlp" scripts/compare_speed.sh
#
# Knobs: REPS (1), PARTS ("kernels mlp"), EPOCHS (3; seed-MLP epochs per run, the first is
# dropped as warm-up), THREADS (2), PEERS (/tmp/peers: bash ../shared/peers/setup.sh makes it),
# PEER_SCRIPTS (../shared/peers beside the repository), OUT (/tmp/normkit-compare/<stamp>).
# Kernel comparisons use PyTorch with glibc's heap-reuse tunables (no page faults per call), as
# NormKit's benchmarks reuse their buffers. The full Fashion-MNIST must be installed
# (apt-get install dataset-fashion-mnist).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${REPS:-1}
PARTS=${PARTS:-kernels mlp}
EPOCHS=${EPOCHS:-3}
THREADS=${THREADS:-2}
PEERS=${PEERS:-/tmp/peers}
PEER_SCRIPTS=${PEER_SCRIPTS:-$ROOT/../shared/peers}
[ -d "$PEER_SCRIPTS" ] || PEER_SCRIPTS=/work/shared/peers
OUT=${OUT:-/tmp/normkit-compare/$(date +%Y%m%d-%H%M%S)}
DATA=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
PY=$PEERS/venv/bin/python
HEAP_REUSE="glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"
mkdir -p "$OUT"
has() { [[ " $PARTS " == *" $1 "* ]]; }
log() { echo "+ $*" >&2; }

[ -x "$PY" ] || { echo "no PyTorch venv at $PY (run: bash $PEER_SCRIPTS/setup.sh)" >&2; exit 1; }
HAVE_KERAS=0
KERAS_BACKEND=jax "$PY" -c "import jax, keras" >/dev/null 2>&1 && HAVE_KERAS=1

echo "# $(date -Is) $(hostname); threads $THREADS; reps $REPS; load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/info.txt"
echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} in the environment (NormKit loads OpenBLAS with SkylakeX on AVX-512 CPUs regardless)" | tee -a "$OUT/info.txt"

log "building NormKit (release)"
(cd "$ROOT" && swift build -c release --product normkit >"$OUT/build.log" 2>&1) || { cat "$OUT/build.log"; exit 1; }
NORMKIT=$(cd "$ROOT" && swift build -c release --show-bin-path)/normkit

for rep in $(seq 1 "$REPS"); do
  echo "=== rep $rep/$REPS $(date -Is) load $(cut -d' ' -f1 /proc/loadavg)" >&2
  if has kernels; then
    log "NormKit benchmarks (bn, memcpy, sgemm, step)"
    (cd "$ROOT/Benchmarks" && NORMKIT_THREADS=$THREADS swift package --disable-sandbox benchmark \
        --filter 'bn/.*|memcpy/.*|sgemm/.*|step/.*' --format markdown --no-progress) \
      > "$OUT/normkit-bench-$rep.md" 2>"$OUT/normkit-bench-$rep.err"
    log "PyTorch BN kernels"
    GLIBC_TUNABLES=$HEAP_REUSE "$PY" "$PEER_SCRIPTS/torch_bn_kernels.py" --threads "$THREADS" --min-run-time 0.5 \
      --only 1d_32x64,2d_64x64x56x56_nchw,2d_64x64x56x56_channels_last,2d_128x256x14x14_nchw \
      --out "$OUT/torch.jsonl" > "$OUT/torch-kernels-$rep.log" 2>&1
    # The peers' script has no channels-last (128, 256, 14, 14); ours times it the same way.
    GLIBC_TUNABLES=$HEAP_REUSE "$PY" "$ROOT/scripts/torch_bn_channels_last_128.py" --threads "$THREADS" \
      --min-run-time 0.5 --out "$OUT/torch.jsonl" >> "$OUT/torch-kernels-$rep.log" 2>&1
  fi
  if has mlp; then
    log "NormKit seed MLP ($EPOCHS epochs)"
    NORMKIT_THREADS=$THREADS "$NORMKIT" train --data "$DATA" --epochs "$EPOCHS" > "$OUT/normkit-mlp-$rep.log" 2>&1
    log "PyTorch seed MLP"
    "$PY" "$PEER_SCRIPTS/torch_seed_mlp.py" --threads "$THREADS" --epochs "$EPOCHS" --seed "$rep" --out "$OUT/torch.jsonl" \
      > "$OUT/torch-mlp-$rep.log" 2>&1
    if [ "$HAVE_KERAS" = 1 ]; then
      log "Keras+JAX seed MLP"
      KERAS_BACKEND=jax "$PY" "$PEER_SCRIPTS/keras_seed_mlp.py" --backend jax --threads "$THREADS" --epochs "$EPOCHS" \
        --seed "$rep" --out "$OUT/keras.jsonl" > "$OUT/keras-mlp-$rep.log" 2>&1
    fi
  fi
done

python3 "$ROOT/scripts/compare_summary.py" "$OUT" | tee "$OUT/summary.md"
