# Sourced by the benchmarks that compare this tree with an earlier commit of netbootd:
#   baseline_build REV DIR   builds REV in a temporary worktree under DIR; sets OLD to its
#                            binary, or leaves OLD empty when REV is not in this repository
#   baseline_remove DIR      removes that worktree
baseline_build() {
  OLD=
  git rev-parse -q --verify "$1^{commit}" >/dev/null || return 0
  git worktree add -q --detach "$2/baseline" "$1"
  (cd "$2/baseline" && CARGO_TARGET_DIR="$PWD/../baseline-target" cargo build --release --locked -q)
  OLD=$2/baseline-target/release/netbootd
}

baseline_remove() {
  if [ -d "$1/baseline" ]; then git worktree remove --force "$1/baseline"; fi
}
