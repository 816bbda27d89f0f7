#!/usr/bin/env bash
# The recipe for an HD style file, from the teacher and the data folders to weights/<style>.onnx:
#   1. the teacher at short side 480 on every training picture brought to 720 (the HD look), cached;
#   2. the style's student, run at short side 320 for a 720 picture, fine-tuned end to end with a
#      new gain head against that look (faces first, shifted-twin temporal loss); the file records
#      320 as the size the commands run it at, and also runs as a plain student.
# Usage, from the repository root with ../shared beside it:  bash scripts/recipe_hd.sh hayao
# MINUTES sets the training budget (the shipped files: hayao 70, cute 32). Both steps resume where
# they stopped. The shipped files were made with one thread per step while another job ran.
set -euo pipefail
style=${1:-hayao}
case "$style" in
    hayao) teacher=animeganv2_hayao; minutes=${MINUTES:-70} ;;
    shinkai) teacher=animeganv3_shinkai; minutes=${MINUTES:-70} ;;
    cute) teacher=animeganv3_tiny_cute; minutes=${MINUTES:-32} ;;
    *) echo "recipe_hd: error: unknown style '$style' (hayao, shinkai or cute)" >&2; exit 2 ;;
esac
shared=../shared
data=(--photos "$shared/data/photos/faces" "$shared/data/photos/scenes" --clips "$shared/data/clips")
python -m livefilter.train.hdcache --teacher "$shared/teachers/$teacher.onnx" "${data[@]}" --cache runs/cache \
    --threads 1
python -m livefilter.train.hdtrain --teacher "$shared/teachers/$teacher.onnx" "${data[@]}" --cache runs/cache \
    --faces "$shared/models/face_detection_yunet_2026may.onnx" \
    --init "weights/$style.onnx" --out "weights/$style.onnx" --work "runs/hd/$style" \
    --resolution 320 --crop 270 --minutes "$minutes" --threads 1 --min-pairs 20
