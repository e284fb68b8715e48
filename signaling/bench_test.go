package signaling

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Benchmarks print figures; they check nothing about speed.

// BenchmarkIdleConnMemory reports heap and stack per idle, joined
// connection. Clients (raw gorilla sockets, about 10 KB of heap each) live
// in the same process, so the heap figure includes them.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 2000
	th := newTestHub(b, Config{MaxConns: -1, MaxConnsPerIP: -1, RoomCapacity: n})
	for range b.N {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		conns := make([]*websocket.Conn, 0, n)
		for i := range n {
			ws, _, err := websocket.DefaultDialer.Dial(th.url, nil)
			if err != nil {
				b.Fatalf("dial %d: %v", i, err)
			}
			if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","room":"idle`+strconv.Itoa(i%100)+`"}`)); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, ws)
		}
		for _, ws := range conns { // every join answered
			_ = ws.SetReadDeadline(time.Now().Add(waitFor))
			if _, _, err := ws.ReadMessage(); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/n, "heap-B/conn(hub+client)")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stack-B/conn")
		b.ReportMetric(float64(runtime.NumGoroutine())/n, "goroutines/conn")
		for _, ws := range conns {
			ws.Close()
		}
	}
}

// BenchmarkSignalRelay sends b.N signals from one peer to another through
// the hub and reports messages per second.
func BenchmarkSignalRelay(b *testing.B) {
	th := newTestHub(b, Config{MessageRate: 1e9, MessageBurst: 1 << 30, SendQueueBytes: 1 << 30})
	a, _ := th.join(b, "bench")
	c, wc := th.join(b, "bench", WithBuffer(1024))
	expect(b, a, TypePeerJoined)
	data := []byte(`{"candidate":{"candidate":"candidate:1 1 udp 2130706431 192.0.2.1 54321 typ host","sdpMid":"0","sdpMLineIndex":0}}`)
	b.ResetTimer()
	start := time.Now()
	go func() {
		for range b.N {
			if err := a.Send(ClientMessage{Type: TypeSignal, To: wc.ID, Data: data}); err != nil {
				return
			}
		}
	}()
	for range b.N {
		next(b, c)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
