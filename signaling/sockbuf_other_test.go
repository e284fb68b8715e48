//go:build !linux

package signaling

import "github.com/gorilla/websocket"

func smallBufferDialer() *websocket.Dialer { return websocket.DefaultDialer }
