package signaling

import (
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readLoop is the hub's read loop (loop.go): an edge-triggered epoll set of
// the sockets of connections the loop reads, and the goroutine that serves
// it. That goroutine waits in Go's netpoller on the epoll descriptor itself
// (an epoll descriptor is readable while it has events to report), so the
// loop sleeps and wakes like any socket reader, one wake-up for however
// many connections became readable together.
type readLoop struct {
	ep   *os.File
	epfd int // ep's descriptor; used under mu while !closed
	rc   syscall.RawConn
	done chan struct{} // closed when the loop's goroutine has returned

	mu     sync.Mutex
	conns  map[int32]*conn // by socket descriptor
	closed bool

	// The loop goroutine's own.
	evs   [128]unix.EpollEvent
	ready []*conn
	wait  func(fd uintptr) bool // l.poll, bound once
}

// newReadLoop starts a read loop; nil when the system offers none.
func newReadLoop() (*readLoop, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, os.NewFile registers it with the netpoller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	ep := os.NewFile(uintptr(fd), "signaling-read-loop")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, err
	}
	l := &readLoop{ep: ep, epfd: fd, rc: rc, done: make(chan struct{}), conns: make(map[int32]*conn)}
	l.wait = l.poll
	go l.run()
	return l, nil
}

func (l *readLoop) run() {
	defer close(l.done)
	// Returns once the descriptor is closed (stop); poll never ends it.
	_ = l.rc.Read(l.wait)
}

// poll takes the ready connections off the epoll set without waiting and
// serves each. false: nothing more is ready, wait in the netpoller.
// RawConn.Read clears the descriptor's readiness only when it begins, not
// between calls of poll, so readiness that comes while poll runs is not
// lost: the netpoller wakes the loop at once.
func (l *readLoop) poll(epfd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, epfd, uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), 0, 0, 0) //nolint:gosec // G103: epoll_pwait into evs, timeout 0
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0 || r == 0:
			return false
		}
		n := int(r)
		l.mu.Lock()
		for i := range l.evs[:n] {
			if c := l.conns[l.evs[i].Fd]; c != nil {
				l.ready = append(l.ready, c)
			}
		}
		l.mu.Unlock()
		for i, c := range l.ready {
			c.loopEvent()
			l.ready[i] = nil
		}
		l.ready = l.ready[:0]
		if n < len(l.evs) {
			return false
		}
	}
}

// add puts c's socket in the epoll set; false when it cannot (the loop has
// stopped, the socket is closed). The socket stays in the set until it is
// closed; readiness while a reader goroutine owns c is only recorded.
func (l *readLoop) add(c *conn) bool {
	ok := false
	err := c.sock.rc.Control(func(s uintptr) {
		fd := int32(s) // descriptors fit in int32 (epoll_event's field)
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed {
			return
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: fd}
		if unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev) != nil {
			return
		}
		l.conns[fd] = c
		c.loopFD = fd
		ok = true
	})
	return err == nil && ok
}

// remove forgets c once its socket is closed (which took it out of the
// epoll set). Its descriptor may serve a newer connection by then.
func (l *readLoop) remove(c *conn) {
	l.mu.Lock()
	if l.conns[c.loopFD] == c {
		delete(l.conns, c.loopFD)
	}
	l.mu.Unlock()
}

// stop ends the loop and waits for its goroutine. Connections still owned
// by the loop must have been handed to reader goroutines first.
func (l *readLoop) stop() {
	l.mu.Lock()
	closed := l.closed
	l.closed = true
	l.mu.Unlock()
	if !closed {
		l.ep.Close()
	}
	<-l.done
}
