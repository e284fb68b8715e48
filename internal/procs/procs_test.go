package procs

import (
	"context"
	"runtime"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Setting
		ok   bool
	}{
		{"auto", Setting{Auto: true}, true},
		{"AUTO", Setting{Auto: true}, true},
		{"0", Setting{}, true},
		{"3", Setting{Fixed: 3}, true},
		{"-1", Setting{}, false},
		{"two", Setting{}, false},
		{"", Setting{}, false},
	} {
		got, err := Parse(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok {
			if again, err := Parse(got.String()); err != nil || again != got {
				t.Errorf("Parse(%q.String()) = %+v, %v", tc.in, again, err)
			}
		}
	}
}

// The controller, sample by sample: it goes down only after the load has
// stayed low for holdSamples samples, to what carries the load at 40% per
// P; it goes up (doubling) at the first sample above 60% per P.
func TestControllerSteps(t *testing.T) {
	type step struct {
		busy float64 // CPU seconds per second
		want int
	}
	low := func(n int, busy float64, want int) []step {
		var s []step
		for range n {
			s = append(s, step{busy, want})
		}
		return s
	}
	cat := func(parts ...[]step) []step {
		var s []step
		for _, p := range parts {
			s = append(s, p...)
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		max   int
		steps []step
	}{
		{"idle server drops to one P after the hold", 4,
			cat(low(holdSamples-1, 0.05, 4), low(1, 0.05, 1))},
		{"a busy sample restarts the hold", 2,
			cat(low(holdSamples-1, 0.1, 2), low(1, 1.5, 2), low(holdSamples-1, 0.1, 2), low(1, 0.1, 1))},
		{"one busy P doubles at once", 8,
			cat(low(holdSamples-1, 0.1, 8), low(1, 0.1, 1), low(1, 0.7, 2), low(1, 1.3, 4), low(1, 2.5, 8), low(1, 8, 8))},
		{"between the thresholds nothing moves", 2,
			cat(low(holdSamples-1, 0.1, 2), low(1, 0.1, 1), low(1, 0.65, 2), low(3*holdSamples, 0.5, 2))},
		{"down to what the load needs, not to one", 8,
			cat(low(holdSamples-1, 1.0, 8), low(1, 1.0, 3))},
		{"one CPU stays at one", 1,
			cat(low(3, 0.9, 1), low(holdSamples, 0, 1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &controller{max: tc.max, n: tc.max}
			for i, s := range tc.steps {
				if got := c.step(s.busy); got != s.want {
					t.Fatalf("sample %d (busy %.2f): %d Ps, want %d", i, s.busy, got, s.want)
				}
			}
		})
	}
}

// A fixed setting is applied at once; auto leaves an explicit GOMAXPROCS
// in the environment alone.
func TestApplyFixedAndEnvironment(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	noEnv := func(string) string { return "" }
	if err := Apply(ctx, Setting{Fixed: 1}, noEnv, nil); err != nil || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("fixed 1: GOMAXPROCS %d, err %v", runtime.GOMAXPROCS(0), err)
	}
	runtime.GOMAXPROCS(prev)
	if err := Apply(ctx, Setting{Fixed: 0}, noEnv, nil); err != nil || runtime.GOMAXPROCS(0) != prev {
		t.Fatalf("fixed 0: GOMAXPROCS %d, want the default %d (err %v)", runtime.GOMAXPROCS(0), prev, err)
	}
	env := func(k string) string {
		if k == "GOMAXPROCS" {
			return "1"
		}
		return ""
	}
	if err := Apply(ctx, Setting{Auto: true}, env, nil); err != nil {
		t.Fatal(err)
	}
	if runtime.GOMAXPROCS(0) != prev {
		t.Fatalf("auto with GOMAXPROCS set: GOMAXPROCS changed to %d", runtime.GOMAXPROCS(0))
	}
}
