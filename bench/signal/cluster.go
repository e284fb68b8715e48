//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rtcsuite/rtcsuite/internal/rediscfg"
	"github.com/rtcsuite/rtcsuite/signaling"
)

// The multi-node runs (cluster.sh): hub nodes on one Redis, the load spread
// so that the members of a room sit on different nodes, and the CPU time
// summed over every node and redis-server.

// newClients returns one client per comma-separated address, each waited
// for. Member j of room i dials node (i+j) mod n: with rooms of 2 and two
// or more nodes, every signal crosses nodes.
func newClients(ctx context.Context, target, addrs, srcBase string, srcCount int) ([]*client, error) {
	var out []*client
	for _, a := range strings.Split(addrs, ",") {
		cl, err := newClient(target, a, srcBase, srcCount)
		if err != nil {
			return nil, err
		}
		if err := waitListening(ctx, a, 20*time.Second); err != nil {
			return nil, err
		}
		out = append(out, cl)
	}
	return out, nil
}

func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-pid %q: want process ids", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// procCPUSum is procCPU summed over pids.
func procCPUSum(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, p := range pids {
		d, err := procCPU(p)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// redisStore makes the hub a cluster node on redisURL (hub -redis).
func redisStore(ctx context.Context, redisURL, node string, log *slog.Logger) (signaling.Store, func(), error) {
	if redisURL == "" {
		return nil, func() {}, nil
	}
	rdb, err := rediscfg.NewClient(redisURL)
	if err != nil {
		return nil, nil, err
	}
	st, err := signaling.NewRedisStore(ctx, signaling.RedisConfig{Client: rdb, NodeID: node, Prefix: "bench:", Logger: log})
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return st, func() { st.Close(); rdb.Close() }, nil
}

// runClusterReport prints the cluster runs of a results file as a
// Markdown table: per node count and offered rate, the median and range of
// CPU per message (summed over nodes and Redis) and of one-way latency.
func runClusterReport(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: signal cluster-report results.jsonl")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	type key struct {
		label   string
		offered float64
	}
	groups := map[key][]result{}
	var order []key
	dec := json.NewDecoder(f)
	for {
		var r result
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if r.Bench != "relay" || !strings.HasPrefix(r.Label, "nodes=") {
			continue
		}
		k := key{r.Label, r.Offered}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].offered != order[j].offered {
			return order[i].offered < order[j].offered
		}
		return order[i].label < order[j].label
	})
	fmt.Fprintln(stdout, "| offered msgs/s | hub | runs | CPU µs/msg (nodes + Redis) | one-way p50 µs | one-way p99 µs | delivered msgs/s | load avg | errors |")
	fmt.Fprintln(stdout, "|---:|---|---:|---|---|---|---|---|---:|")
	for _, k := range order {
		rs := groups[k]
		stat := func(f func(result) float64) string {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			sort.Float64s(v)
			return fmt.Sprintf("%.1f (%.1f–%.1f)", v[len(v)/2], v[0], v[len(v)-1])
		}
		errs := int64(0)
		for _, r := range rs {
			errs += r.Errors
		}
		fmt.Fprintf(stdout, "| %.0f | %s | %d | %s | %s | %s | %s | %s | %d |\n", k.offered, k.label, len(rs),
			stat(func(r result) float64 { return r.CPUusPerMsg }),
			stat(func(r result) float64 { return r.P50us }),
			stat(func(r result) float64 { return r.P99us }),
			stat(func(r result) float64 { return r.MsgsPerSec }),
			stat(func(r result) float64 { return r.Load1 }), errs)
	}
	return nil
}
