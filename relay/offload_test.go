package relay

import (
	"testing"
	"time"
)

func TestOffloadModeValidate(t *testing.T) {
	for _, m := range []OffloadMode{OffloadAuto, OffloadTC, OffloadOff} {
		if err := m.validate(); err != nil {
			t.Errorf("%q: %v", m, err)
		}
	}
	for _, m := range []OffloadMode{"", "xdp", "TC", "on"} {
		if err := m.validate(); err == nil {
			t.Errorf("%q accepted", m)
		}
	}
	if c := (Config{}).withDefaults(); c.Offload != OffloadAuto {
		t.Errorf("default offload %q, want auto", c.Offload)
	}
}

// TestChargeOffloaded: bytes the kernel relayed are drawn from every
// limiter user space answers to, into debt past the burst; a binding is
// over while any is in debt and rested once each has half its burst back.
func TestChargeOffloaded(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	for _, tc := range []struct {
		name            string
		allocBPS, user  int64
		toPeer, toCli   uint64
		over            bool
		restedAfter     time.Duration // 0: not checked
		notRestedBefore time.Duration
	}{
		{name: "within the burst", allocBPS: 20000, toPeer: 30000, toCli: 1000},
		{name: "allocation over, client→peer", allocBPS: 20000, toPeer: 70000, over: true, notRestedBefore: time.Second, restedAfter: 3 * time.Second},
		{name: "allocation over, peer→client", allocBPS: 20000, toCli: 70000, over: true},
		{name: "several bursts at once", allocBPS: 20000, toPeer: 500000, over: true, notRestedBefore: 20 * time.Second, restedAfter: 30 * time.Second},
		{name: "user limit over", user: 100000, toPeer: 150000, over: true, notRestedBefore: 500 * time.Millisecond, restedAfter: 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bw := newUserLimits(tc.user).forAllocation("u", tc.allocBPS)
			if over := bw.chargeOffloaded(tc.toPeer, tc.toCli, t0); over != tc.over {
				t.Fatalf("over = %v, want %v", over, tc.over)
			}
			if tc.notRestedBefore > 0 && bw.rested(t0.Add(tc.notRestedBefore)) {
				t.Errorf("rested after %v", tc.notRestedBefore)
			}
			if tc.restedAfter > 0 && !bw.rested(t0.Add(tc.restedAfter)) {
				t.Errorf("not rested after %v", tc.restedAfter)
			}
			if !tc.over && !bw.rested(t0) {
				t.Error("not rested although never over")
			}
		})
	}
}
