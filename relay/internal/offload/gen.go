package offload

// The committed offload_bpf{el,eb}.{go,o} come from offload.c through bpf2go;
// gen_check.sh regenerates them with Debian's clang and fails on any
// difference. -I for Debian's multiarch asm headers.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -type c2p_key -type p2c_key -type fwd -type counters -type cfg -type reason offload offload.c
