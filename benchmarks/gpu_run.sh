#!/usr/bin/env bash
# One whole experiment on the GPU machine (packages its image lacks come as wheels in .whl/):
#   bash benchmarks/gpu_run.sh calib     # memory calibration: 3 architectures x CALIB set
#   bash benchmarks/gpu_run.sh backends  # Llama-3.1-8B backends x checkpointing x batch
#   bash benchmarks/gpu_run.sh panel     # the live panel's cost: headless vs TUI on a pty
#   bash benchmarks/gpu_run.sh moe       # mixture-of-experts memory, layer-cut architectures
#   bash benchmarks/gpu_run.sh nvml      # one GPU poll: fresh NVML session vs kept open
#   bash benchmarks/gpu_run.sh screenshot  # screenshots/6-train-gpu.svg from a real run
#   bash benchmarks/gpu_run.sh launched  # ZeRO-3 / FSDP on one GPU through the product
#     (CASES="zero3-offload-full zero3-lora", INTERRUPT=1: SIGINT at the first epoch, resume,
#      LAUNCH_ARCH=qwen2.5-1.5b: the cases on another architecture; on a 2-GPU kind,
#      CASES="2gpu-ddp-qlora-8b 2gpu-fsdp-qlora-70b 2gpu-fsdp-lora-70b 2gpu-zero3-offload-full"
#      with EXPORTED=1: then the exported script under its printed accelerate launch)
#   bash benchmarks/gpu_run.sh families  # family x backend x quantisation matrix (FAMILY_ARGS,
#     several invocations separated by '|')
#   bash benchmarks/gpu_run.sh unplanned  # families with no memory model: trained or refused
#   bash benchmarks/gpu_run.sh run_time  # held-out tokens/s and wall time against the plan
#     (RT_CASES="qwen7b-liger-2048": records cut to an RT_BUDGET=420 s plan; several cases,
#      comma-separated, where they fit the call; each row carries host_pace.py's reading
#      taken just before it)
#   bash benchmarks/gpu_run.sh merge     # merge of a trained QLoRA run: plan vs measured, parity
#     (MERGE_MODEL=meta-llama/Llama-3.1-8B, MERGE_LAYERS: keep this many layers, MERGE_ROOT:
#      a roomier work folder such as /dev/shm, MERGE_SHIP=f16,q8_0: then to GGUF, run in
#      llama.cpp; carry .whl-gguf (llama-cpp-python) and .llama_cpp (its converter))
#   bash benchmarks/gpu_run.sh measure   # plan --measure: predicted vs measured candidates, the pick
#     (MEASURE_MODELS="Qwen/Qwen2.5-1.5B google/gemma-2-2b", MEASURE_SEQ)
#   bash benchmarks/gpu_run.sh calib backends panel   # several stages in one call
#   PEAK_TRACE=1 bash benchmarks/gpu_run.sh launched  # + where each process's peak allocation came from
# Installs the carried wheels, exposes the repo as the finetune_tui package, writes JSON
# lines and logs to $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl $(ls .whl-gguf/*.whl 2>/dev/null) || exit 1
[ -d .llama_cpp ] && export LLAMA_CPP_DIR="$PWD/.llama_cpp"  # llama.cpp's converter, carried
mkdir -p /tmp/pkg && rm -rf /tmp/pkg/finetune_tui && cp -r cli /tmp/pkg/finetune_tui
for part in engine tui presets; do ln -s "$PWD/$part" "/tmp/pkg/finetune_tui/$part"; done
export PYTHONPATH=/tmp/site:/tmp/pkg PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export PATH=/tmp/site/bin:$PATH  # ninja (DeepSpeed compiles its CPU Adam on first use)
export FINETUNE_TUI_CACHE_DIR=/tmp/ftcache FINETUNE_TUI_DATA_DIR=/tmp/ftdata
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ -n "${PEAK_TRACE:-}" ]; then  # every GPU process writes where its peak allocation came from
  export PYTHONPATH="$PWD/benchmarks/trace_site:$PYTHONPATH" FT_PEAK_TRACE="$OUT/traces"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
for stage in "${@:-calib}"; do
case "$stage" in
  calib)
    for arch in ${ARCHS:-llama-3.2-1b gemma-2-2b}; do
      python3 benchmarks/backends.py matrix --arch "$arch" --set calib --cards 0 --steps 6 \
        --out "$OUT/calib.jsonl" --timeout 150 >> "$OUT/calib.log" 2>&1
    done ;;
  moe)  # mixture-of-experts memory: predicted vs measured, layer-cut architectures
    for arch in ${MOE_ARCHS:-olmoe-1b-7b mixtral-8x7b-4l qwen3-30b-a3b-8l deepseek-v2-lite-6l}; do
      python3 benchmarks/backends.py matrix --arch "$arch" --set calib --cards 0 --steps 5 \
        --only "${ONLY:-nf4 ckpt b2|nf4 nockpt b2|bf16 ckpt b2|nf4 nockpt b4 s512}" \
        --out "$OUT/moe.jsonl" --timeout 200 >> "$OUT/moe.log" 2>&1
    done ;;
  backends)
    python3 benchmarks/backends.py matrix --arch "${ARCH:-llama-3.1-8b}" --set hand --cards "${CARDS:-80}" \
      --steps "${STEPS:-8}" --only "${ONLY:-}" --out "$OUT/backends.jsonl" --timeout "${TIMEOUT:-240}" \
      --seq "${SEQ:-0}" ${REAL_CONTEXT:+--real-context} --lengths "${LENGTHS:-full}" \
      >> "$OUT/backends.log" 2>&1 ;;
  screenshot)  # the Train panel mid-run on this GPU: measured VRAM against the predicted line
    python3 screenshots/gpu_train.py --arch "${ARCH:-llama-3.1-8b}" --steps "${SHOT_STEPS:-30}" \
      --out "$OUT" ${SHOT_SET:-} >> "$OUT/screenshot.log" 2>&1 ;;
  launched)
    for case in ${CASES:-zero3-offload-full}; do
      python3 benchmarks/launched_one_gpu.py --case "$case" ${LAUNCH_ARCH:+--arch "$LAUNCH_ARCH"} ${INTERRUPT:+--interrupt} ${EXPORTED:+--exported} --samples "${SAMPLES:-64}" \
        --out "$OUT/launched.jsonl" ${LAUNCH_SET:-} >> "$OUT/launched.out" 2>&1
    done ;;
  families)  # FAMILY_ARGS: one invocation's arguments; several separated by '|'
    IFS='|' read -ra invocations <<< "${FAMILY_ARGS:-}"
    for family_args in "${invocations[@]:-}"; do
      python3 benchmarks/families.py --out "$OUT/families.jsonl" $family_args \
        >> "$OUT/families.log" 2>&1
    done ;;
  unplanned)  # families with no memory model yet: trained unplanned or refused, never failed
    python3 benchmarks/unplanned_families.py --out "$OUT/unplanned.jsonl" --quant "${UNPLANNED_QUANT:-none,nf4}" \
      >> "$OUT/unplanned.log" 2>&1 ;;
  run_time)  # held-out tokens/s and whole-run time, predicted vs measured (RT_CASES, RT_SAMPLES)
    python3 benchmarks/run_time.py --out "$OUT/run_time.jsonl" --samples "${RT_SAMPLES:-20000}" --logs "$OUT" \
      ${RT_CASES:+--cases "$RT_CASES"} --budget "${RT_BUDGET:-420}" --timeout "${RT_TIMEOUT:-480}" \
      >> "$OUT/run_time.log" 2>&1 ;;
  merge)  # a QLoRA run merged through the product: host / GPU memory and time vs the plan
    python3 benchmarks/merge_bench.py --model "${MERGE_MODEL:-meta-llama/Llama-3.1-8B}" \
      ${MERGE_LAYERS:+--layers "$MERGE_LAYERS"} --root "${MERGE_ROOT:-/tmp}" --out "$OUT/merge.jsonl" \
      ${MERGE_SHIP:+--ship "$MERGE_SHIP"} \
      >> "$OUT/merge.log" 2>&1 ;;
  measure)  # plan --measure as a user runs it, on two families
    for model in ${MEASURE_MODELS:-Qwen/Qwen2.5-1.5B google/gemma-2-2b}; do
      python3 benchmarks/measure_pick.py --model "$model" --seq "${MEASURE_SEQ:-1024}" \
        --out "$OUT/measure.jsonl" >> "$OUT/measure.log" 2>&1
    done ;;
  nvml)
    python3 benchmarks/nvml_poll.py --polls 50 | tee -a "$OUT/nvml.jsonl" ;;
  panel)
    for arch in ${PANEL_ARCHS:-llama-3.2-1b}; do
      python3 benchmarks/panel_overhead.py --arch "$arch" \
        --repeats "${REPEATS:-2}" --set training.max_steps="${PANEL_STEPS:-40}" \
        --set training.micro_batch_size=4 --out "$OUT/panel-$arch.jsonl" \
        >> "$OUT/panel.log" 2>&1
    done ;;
esac
done
for log in "$OUT"/*.log "$OUT"/*.out; do  # logs are written as they come (a call stopped at
  [ -f "$log" ] && tail -c 2000000 "$log" > "$log.tmp" && mv "$log.tmp" "$log"  # its limit
done                                       # still brings them back); kept under 2 MB each
if [ -n "${PEAK_TRACE:-}" ]; then
  python3 benchmarks/peak_trace.py "$OUT"/traces/peak-*.json > "$OUT/peak_trace.txt" 2>&1
fi
ls -la "$OUT"
