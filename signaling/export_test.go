package signaling

// drop closes the socket without a close frame, like a network failure
// (tests).
func (c *Client) drop() {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.ws.NetConn().Close()
	})
	<-c.done
}

// withoutPongs makes the client ignore the hub's pings (tests).
func withoutPongs() DialOption { return func(o *dialOptions) { o.noPongs = true } }
