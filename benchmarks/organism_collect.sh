#!/usr/bin/env bash
# Brings a spirit-smollm2 training run back from the GPU host (organism_stage.sh stages it), within one call.
# On the host, as the last command of a call (or in a call of its own), for each run:
#   bash benchmarks/organism_collect.sh pack RUN_DIR WAIT_SECONDS [WEIGHTS]
# waits at most WAIT_SECONDS for the run's training.json to say "finished": true, then copies what is there into
# $OUT whatever it says: training.json, a small tar of WEIGHTS/adapter_config.json and the adapter's sha256, and
# WEIGHTS/adapter_model.safetensors in parts of 15 MiB (a file over 16 MiB does not come back from $OUT). WEIGHTS: delta-last (default; with --keep-last the
# run leaves it, and training.json, at each evaluation, so a run that is still going or was cut short gives its
# last checkpoint) or delta. Four files a run: two runs fill $OUT's eight. Choose WAIT_SECONDS below the call's
# limit: nothing comes back from a call that is killed while it waits.
# Here, from the folder the files came back to:
#   bash benchmarks/organism_collect.sh unpack FILES_AT RUN_NAME DEST
# rebuilds DEST/RUN_NAME/{training.json,WEIGHTS/} (the sha256 of the whole adapter checked against the host's),
# which package_organism and --init-from take.
set -euo pipefail
mode=${1:?pack or unpack}
case "$mode" in
pack)
    run=${2:?the run folder}; wait_s=${3:?seconds to wait at most}; weights=${4:-delta-last}
    name=$(basename "$run")
    deadline=$((SECONDS + wait_s))
    finished() { python3 -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1])).get("finished") else 1)' \
        "$run/training.json" 2>/dev/null; }
    until finished || [ "$SECONDS" -ge "$deadline" ]; do sleep 5; done
    finished && echo "$name: finished" || echo "$name: not finished; its last checkpoint"
    [ -f "$run/$weights/adapter_model.safetensors" ] || { echo "$name: no $weights/ yet"; exit 1; }
    snapshot=$(mktemp -d)  # the trainer may replace the folder meanwhile: one copy is hashed, split and sent
    cp "$run/training.json" "$OUT/$name.training.json" && cp -r "$run/$weights/." "$snapshot"
    (cd "$snapshot" && sha256sum adapter_model.safetensors > adapter_model.sha256 \
        && tar -cf "$OUT/$name.$weights.meta.tar" adapter_config.json adapter_model.sha256 \
        && split -b 15M -d adapter_model.safetensors "$OUT/$name.$weights.part")
    rm -rf "$snapshot"
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print("steps", r["last_step"], "evaluations",
        [(e["step"], round(e["held_out_ce"], 4)) for e in r["evaluations"]][-3:])' "$run/training.json"
    ;;
unpack)
    from=${2:?the folder the files came back to}; name=${3:?the run name}; dest=${4:?where the run folder goes}
    mkdir -p "$dest/$name"
    cp "$from/$name.training.json" "$dest/$name/training.json"
    for meta in "$from/$name".*.meta.tar; do
        weights=$(basename "$meta" .meta.tar); weights=${weights#"$name".}
        mkdir -p "$dest/$name/$weights"
        tar -xf "$meta" -C "$dest/$name/$weights"
        cat "$from/$name.$weights".part* > "$dest/$name/$weights/adapter_model.safetensors"
        (cd "$dest/$name/$weights" && sha256sum -c adapter_model.sha256 && rm adapter_model.sha256)
    done
    ;;
*) echo "organism_collect.sh: pack or unpack, not $mode" >&2; exit 2 ;;
esac
