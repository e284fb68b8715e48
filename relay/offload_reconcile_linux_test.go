package relay

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/rtcsuite/rtcsuite/relay/internal/offload"
)

// TestDiffOffload: the reconciliation's diff finds kernel entries nobody
// wants, wanted ones the kernel lacks and ones whose forwarding values
// differ, and nothing else (routes and v4-mapped spellings are not drift).
func TestDiffOffload(t *testing.T) {
	dl := monoTime(int64(10 * time.Minute))
	b := func(peerPort uint16) offload.Binding {
		return offload.Binding{
			Client:   netip.MustParseAddrPort("198.51.100.2:5000"),
			Listener: netip.MustParseAddrPort("198.51.100.1:3478"),
			Relay:    netip.MustParseAddrPort("198.51.100.1:20000"),
			Peer:     netip.AddrPortFrom(netip.MustParseAddr("198.51.100.3"), peerPort),
			Channel:  0x4001, ChannelExpiry: dl, PermissionExpiry: dl,
		}
	}
	routed := b(1)
	routed.ToPeer, routed.ToClient = offload.Route{Ifindex: 2, MTU: 1500}, offload.Route{Local: true}
	mapped := b(1)
	mapped.Client = netip.AddrPortFrom(netip.AddrFrom16(mapped.Client.Addr().As16()), mapped.Client.Port())
	with := func(f func(*offload.Binding)) offload.Binding { x := b(1); f(&x); return x }
	ids := func(bs ...offload.Binding) []offload.BindingID {
		var out []offload.BindingID
		for _, x := range bs {
			out = append(out, x.ID())
		}
		return out
	}
	tests := []struct {
		name             string
		want, have       []offload.Binding
		stale            []offload.BindingID
		missing, changed []offload.Binding
	}{
		{name: "in step", want: []offload.Binding{b(1), b(2)}, have: []offload.Binding{b(2), b(1)}},
		{name: "routes resolved", want: []offload.Binding{b(1)}, have: []offload.Binding{routed}},
		{name: "v4-mapped client", want: []offload.Binding{b(1)}, have: []offload.Binding{mapped}},
		{name: "empty"},
		{name: "stale", want: []offload.Binding{b(1)}, have: []offload.Binding{b(1), b(2)}, stale: ids(b(2))},
		{name: "missing", want: []offload.Binding{b(1), b(2)}, have: []offload.Binding{b(1)}, missing: []offload.Binding{b(2)}},
		{name: "channel", want: []offload.Binding{b(1)}, have: []offload.Binding{with(func(x *offload.Binding) { x.Channel++ })}, changed: []offload.Binding{b(1)}},
		{name: "client", want: []offload.Binding{b(1)}, have: []offload.Binding{with(func(x *offload.Binding) { x.Client = netip.MustParseAddrPort("198.51.100.2:5001") })}, changed: []offload.Binding{b(1)}},
		{name: "throttled", want: []offload.Binding{b(1)}, have: []offload.Binding{with(func(x *offload.Binding) { x.Throttled = true })}, changed: []offload.Binding{b(1)}},
		{name: "deadline", want: []offload.Binding{b(1)}, have: []offload.Binding{with(func(x *offload.Binding) { x.PermissionExpiry = x.PermissionExpiry.Add(time.Second) })}, changed: []offload.Binding{b(1)}},
		{name: "all three", want: []offload.Binding{b(1), b(2)}, have: []offload.Binding{with(func(x *offload.Binding) { x.ChannelExpiry = time.Time{} }), b(3)},
			stale: ids(b(3)), missing: []offload.Binding{b(2)}, changed: []offload.Binding{b(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := map[offload.BindingID]offload.Binding{}
			for _, w := range tt.want {
				want[w.ID()] = w
			}
			d := diffOffload(want, tt.have)
			if !slices.Equal(d.stale, tt.stale) || !slices.EqualFunc(d.missing, tt.missing, sameForwarding) ||
				!slices.EqualFunc(d.changed, tt.changed, sameForwarding) {
				t.Errorf("diff = stale %v, missing %v, changed %v; want stale %v, missing %v, changed %v",
					d.stale, d.missing, d.changed, tt.stale, tt.missing, tt.changed)
			}
			if d.empty() != (len(tt.stale)+len(tt.missing)+len(tt.changed) == 0) {
				t.Errorf("empty() = %v", d.empty())
			}
		})
	}
}

// reconcileCounts reads turnd_offload_reconciled_total by kind.
func reconcileCounts(t *testing.T, srv *Server) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, k := range reconcileKinds {
		out[k] = metricLabel(t, srv, "turnd_offload_reconciled_total", k)
	}
	return out
}

// assertReconciled checks that the kernel holds exactly ids and that the
// reconciliation counter grew by want since before.
func (r *offRig) assertReconciled(ids []offload.BindingID, before, want map[string]float64) {
	r.t.Helper()
	got := r.engine().Bindings()
	slices.SortFunc(got, cmpID)
	ids = slices.Clone(ids)
	slices.SortFunc(ids, cmpID)
	if !slices.Equal(got, ids) {
		if len(got) > 4 {
			got = got[:4]
		}
		r.t.Errorf("after reconciling the kernel holds %d bindings (%v...), want %v", len(r.engine().Bindings()), got, ids)
	}
	after := reconcileCounts(r.t, r.srv)
	for _, k := range reconcileKinds {
		if d := after[k] - before[k]; d != want[k] {
			r.t.Errorf("turnd_offload_reconciled_total{kind=%q} grew by %v, want %v", k, d, want[k])
		}
	}
}

func cmpID(a, b offload.BindingID) int {
	if c := a.Relay.Compare(b.Relay); c != 0 {
		return c
	}
	return a.Peer.Compare(b.Peer)
}

// installed returns the kernel's binding id.
func (r *offRig) installed(id offload.BindingID) offload.Binding {
	r.t.Helper()
	for _, b := range r.engine().Installed() {
		if b.ID() == id {
			return b
		}
	}
	r.t.Fatalf("binding %v not installed", id)
	return offload.Binding{}
}

// TestOffloadReconcileDrift: drift injected straight into the engine — a
// binding user space does not have, the wanted one rewritten with another
// channel, then the wanted one removed — is undone by one reconciliation
// pass each, counted by kind, and the restored binding forwards in the
// kernel again with its counters accounted from zero.
func TestOffloadReconcileDrift(t *testing.T) {
	if !inOffloadLab(t) {
		return
	}
	r := newOffRig(t, nil)
	k := r.observer()
	eng := r.engine()
	const n = 5
	r.exchangeInKernel(n)
	r.poll()

	want := r.installed(r.id())
	alt := want
	alt.Channel = labChan + 1
	alt.Throttled = true
	stale := want
	stale.Channel = labChan + 2
	stale.Peer = netip.AddrPortFrom(labPeer, r.peerAP().Port()+1)
	for _, b := range []offload.Binding{alt, stale} {
		if err := eng.Upsert(b); err != nil {
			t.Fatalf("inject drift: %v", err)
		}
	}
	before := reconcileCounts(t, r.srv)
	k.reconcile()
	r.assertReconciled([]offload.BindingID{r.id()}, before, map[string]float64{reconcileStale: 1, reconcileChanged: 1})
	if got := r.installed(r.id()); !sameForwarding(got, want) {
		t.Errorf("reconciled binding %+v, want %+v", got, want)
	}
	r.exchangeInKernel(n)
	r.poll()

	if _, err := eng.Remove(r.id()); err != nil {
		t.Fatal(err)
	}
	before = reconcileCounts(t, r.srv)
	k.reconcile()
	r.assertReconciled([]offload.BindingID{r.id()}, before, map[string]float64{reconcileMissing: 1})
	r.exchangeInKernel(n)
	r.poll()
	b := r.srv.fast.find(c2pKey{listener: unmapAP(toAddrPort(r.srv.Addr("udp"))), client: r.client.LocalAddr().(*net.UDPAddr).AddrPort(), channel: labChan})
	if b == nil {
		t.Fatal("binding not in the fast-path table")
	}
	if c2p, _, p2c, _ := b.counters(); c2p != 3*n || p2c != 3*n {
		t.Errorf("binding totals %d to the peer, %d to the client; want %d each (the reinstalled binding's counters from zero)", c2p, p2c, 3*n)
	}

	before = reconcileCounts(t, r.srv)
	k.reconcile()
	r.assertReconciled([]offload.BindingID{r.id()}, before, nil)
}

// TestOffloadReconcileRetriesFull: a channel bound while the kernel's
// table is full is counted as skipped (full) and relayed in user space;
// the next reconciliation pass removes the entries user space does not
// want and installs it, after which the kernel carries it.
func TestOffloadReconcileRetriesFull(t *testing.T) {
	if !inOffloadLab(t) {
		return
	}
	r := newOffRig(t, nil)
	k := r.observer()
	eng := r.engine()
	fillers := offload.MaxBindings - len(eng.Bindings())
	local := offload.Route{Local: true} // no route lookups: fast to fill
	for i := range fillers {
		f := offload.Binding{
			Client:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i/60000)}), uint16(1+i%60000)),
			Listener: r.turnd, Relay: r.relay,
			Peer:    netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(101 + i/60000)}), uint16(1+i%60000)),
			Channel: labChan, ToPeer: local, ToClient: local,
		}
		if err := eng.Upsert(f); err != nil {
			t.Fatalf("filler %d of %d: %v", i, fillers, err)
		}
	}

	peer2 := listenUDPIn(t, r.ns, netip.AddrPortFrom(labPeer, 0))
	id2 := offload.BindingID{Relay: r.relay, Peer: peer2.LocalAddr().(*net.UDPAddr).AddrPort()}
	full := metricLabel(t, r.srv, "turnd_offload_skipped_bindings_total", skipFull)
	if code := errorCode(t, r.cl.do(stun.MethodChannelBind, channelNumber(labChan+1),
		peerAddr{net.UDPAddrFromAddrPort(id2.Peer)})); code != 0 {
		t.Fatalf("channel bind: %d", code)
	}
	awaitMetric(t, r.srv, "turnd_offload_skipped_bindings_total", skipFull, full+1)
	if slices.Contains(eng.Bindings(), id2) {
		t.Fatal("a binding was installed in a full table")
	}
	k.mu.Lock()
	_, retried := k.retry[id2]
	k.mu.Unlock()
	if !retried {
		t.Fatal("the binding that did not fit is not kept for a retry")
	}
	send2 := func() {
		t.Helper()
		p := r.payload()
		if _, err := r.client.WriteToUDPAddrPort(channelData(labChan+1, p), r.turnd); err != nil {
			t.Fatal(err)
		}
		if got, err := recv(peer2, 5*time.Second); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("client→second peer: got %d bytes, %v", len(got), err)
		}
	}
	send2() // user space carries it meanwhile

	before := reconcileCounts(t, r.srv)
	k.reconcile()
	r.assertReconciled([]offload.BindingID{r.id(), id2}, before,
		map[string]float64{reconcileStale: float64(fillers), reconcileMissing: 1})
	k.mu.Lock()
	left := len(k.retry)
	k.mu.Unlock()
	if left != 0 {
		t.Errorf("%d bindings still wait for a retry after the pass installed them", left)
	}
	send2()
	if c, err := eng.Counters(); err != nil || c.Bindings[id2].ToPeerPackets != 1 {
		t.Errorf("the kernel carried %d datagrams of the reinstalled binding (%v), want 1", c.Bindings[id2].ToPeerPackets, err)
	}
}
