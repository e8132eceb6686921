#!/usr/bin/env bash
# libipc.so exports its public API and nothing of lib/src/detail: every ipc::detail symbol in the
# dynamic symbol table must be one that a public header's inline or template code calls (listed
# below with the header that needs it). A new export outside the list fails this test.
set -euo pipefail
lib=$1
# Allowed: ipc::detail names that public templates and inline functions reach.
allowed=(
  'ipc::detail::type_tag_of('           # shared_value.hpp: shared_value<T> names its element type
  'ipc::detail::shared_array_base::'    # shared_value.hpp: the untyped base of shared_value<T>/shared_array<T>
  'ipc::detail::pool_task'              # process_pool.hpp: the pool's task behind apply/map<T>
  'ipc::detail::pool_job'               # process_pool.hpp: one travelling call behind apply_async<F, Args...>
  'ipc::detail::record_exception('      # process_pool.hpp: a task's exception, recorded in the worker
  'ipc::detail::rebuild_exception('     # process_pool.hpp: ... and re-thrown by type in the caller
  'ipc::detail::queue_transport'        # queue.hpp: the untyped transport behind queue<T>
  'ipc::detail::wait_readable('         # pipe_pair.hpp: pipe_pair<T>::poll
  'ipc::detail::named_segment'          # named_sync.hpp: the segment behind shared_object<T>
)
# Symbols *named* in ipc::detail (std:: instantiations that merely take a detail type as an argument
# are the weak copies every user of the header makes, not exports of ours).
syms=$(nm -D --defined-only -C "$lib" | cut -d' ' -f3- |
       grep -E '^((vtable|typeinfo|typeinfo name|VTT|construction vtable) for )?ipc::detail::' || true)
bad=0
while IFS= read -r s; do
  [ -z "$s" ] && continue
  ok=0
  for a in "${allowed[@]}"; do
    case "$s" in *"$a"*) ok=1 ;; esac
  done
  if [ $ok -eq 0 ]; then
    echo "exported internal symbol: $s"
    bad=1
  fi
done <<< "$syms"
total=$(nm -D --defined-only -C "$lib" | grep -c ' ipc::' || true)
echo "$total ipc:: symbols exported; ipc::detail ones: $(printf '%s\n' "$syms" | grep -c . || true)"
exit $bad
