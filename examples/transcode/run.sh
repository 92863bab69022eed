#!/bin/sh
# Transcode a folder of files through the data store: upload the inputs,
# run one task per file (each fetches its input and uploads its result),
# bring the results back. Needs a running `lote up`.
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/in"
for i in $(seq 0 19); do
	printf 'frame %d of the film\n' "$i" >"$work/in/$i.txt"
done

lote data put "$work/in" data://inputs/
job=transcode-$$
lote job create "$job" --pool local -q
# "Transcode" = upper-case each file; a real job would run ffmpeg or a renderer.
lote submit --job "$job" --array 0-19 --wait \
	--input 'data://inputs/{index}.txt=in.txt' \
	--output 'out.txt=data://results/{job}/{index}.txt' \
	--shell -- 'tr a-z A-Z < in.txt > out.txt'
lote data get "data://results/$job/" "$work/out" -q >/dev/null
cat "$work/out/7.txt"      # FRAME 7 OF THE FILM
ls "$work/out" | wc -l     # 20
