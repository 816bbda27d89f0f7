#!/usr/bin/env bash
# The HD step that made weights/hayao.onnx from the Hayao student made at 256 (cute and shinkai are
# made whole by python -m livefilter.train.recipe recipes/<style>.toml; so will hayao be, by
# recipes/hayao.toml, once that has run):
#   1. the teacher at short side 480 on every training picture brought to 720 (the HD look), cached;
#   2. the style's student, run at short side 320 for a 720 picture, fine-tuned end to end with a
#      new gain head against that look (faces first, shifted-twin temporal loss); the file records
#      320 as the size the commands run it at, and also runs as a plain student.
# Usage, from the repository root with ../shared beside it:  bash scripts/recipe_hd.sh hayao
# MINUTES sets the training budget (the shipped file: 70). Both steps resume where
# they stopped. The shipped files were made with one thread per step while another job ran.
set -euo pipefail
style=${1:-hayao}
case "$style" in
    hayao) teacher=animeganv2_hayao; minutes=${MINUTES:-70} ;;
    shinkai|cute) echo "recipe_hd: error: $style is made by: python -m livefilter.train.recipe recipes/$style.toml" >&2; exit 2 ;;
    *) echo "recipe_hd: error: unknown style '$style' (hayao)" >&2; exit 2 ;;
esac
shared=../shared
data=(--photos "$shared/data/photos/faces" "$shared/data/photos/scenes" --clips "$shared/data/clips")
python -m livefilter.train.hdcache --teacher "$shared/teachers/$teacher.onnx" "${data[@]}" --cache runs/cache \
    --threads 1
python -m livefilter.train.hdtrain --teacher "$shared/teachers/$teacher.onnx" "${data[@]}" --cache runs/cache \
    --faces "$shared/models/face_detection_yunet_2026may.onnx" \
    --init "weights/$style.onnx" --out "weights/$style.onnx" --work "runs/hd/$style" \
    --resolution 320 --crop 270 --minutes "$minutes" --threads 1 --min-pairs 20
