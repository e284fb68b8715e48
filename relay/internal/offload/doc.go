// Package offload is turnd's kernel data plane: an eBPF program at tcx
// ingress that forwards established TURN ChannelData over UDP in both
// directions (client→peer: strip the 4-byte channel header and send from the
// relayed address; peer→client: add it and send from the listener), and a
// small Go engine that loads, self-tests, attaches and feeds it.
//
// The kernel path is an accelerator, never an authority. pion stays the
// control plane and user space the only writer of every map: the relay tells
// the engine about channel bindings (Upsert), their lifetimes (SetDeadlines,
// SetPermission), bandwidth throttling (SetThrottled) and their end
// (Remove, RemoveRelay). Every packet the program does not forward — a miss,
// a fragment, IP options, a GSO packet, an expired or throttled binding, ... —
// continues up the stack exactly as it arrived (TCX_NEXT), so a miss is only
// slower, never wrong. Each such reason has its own counter (Counters).
//
// Lifecycle: Load (probe, load, self-test through BPF_PROG_TEST_RUN), Attach
// (tcx ingress on the interfaces packets arrive on), Upsert/Remove as
// bindings come and go, Counters about once a second, Close. Load fails with
// an error wrapping ErrUnsupported or ErrPermission when the kernel or the
// process cannot run the program; callers in "auto" mode fall back to the
// user-space path on any Load error. Nothing is pinned: programs, maps and
// links end with the Engine (or the process).
//
// docs/offload.md describes the program, maps, verdicts and limits.
//
// The engine is Linux-only (eBPF, tcx, rtnetlink): on other systems the
// package holds only the generated bindings and turnd relays in user space.
package offload
