package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// echoer sends one fixed message on a connection and checks that what comes
// back is the same message, of the same type.
type echoer struct {
	conn    *websocket.Conn
	kind    int
	payload []byte
	buf     []byte // one byte longer than payload, to notice a longer echo
	timeout time.Duration
}

func dial(opt options) (*echoer, error) {
	dialer := websocket.Dialer{
		HandshakeTimeout: opt.timeout,
		// A write buffer that holds the whole message makes gorilla send each
		// message as one frame, as browsers do; with a smaller one it cuts a
		// client's message into frames of the buffer's size.
		WriteBufferSize: max(opt.size, 4096),
		ReadBufferSize:  min(max(opt.size, 4096), 65536),
	}
	if opt.rcvbuf > 0 {
		// Before connect, or the window the kernel advertises in the
		// handshake (and its scaling) is already set by the default size.
		size := opt.rcvbuf
		netDialer := net.Dialer{Timeout: opt.timeout, Control: func(network, address string, raw syscall.RawConn) error {
			var err error
			raw.Control(func(fd uintptr) {
				err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
			})
			return err
		}}
		dialer.NetDial = netDialer.Dial
	}
	conn, response, err := dialer.Dial(opt.url, nil)
	if response != nil && response.Body != nil {
		response.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", opt.url, err)
	}
	kind := websocket.TextMessage
	if opt.binary {
		kind = websocket.BinaryMessage
	}
	payload := bytes.Repeat([]byte("x"), opt.size)
	return &echoer{conn, kind, payload, make([]byte, opt.size+1), opt.timeout}, nil
}

func (e *echoer) send() error {
	e.conn.SetWriteDeadline(time.Now().Add(e.timeout))
	return e.conn.WriteMessage(e.kind, e.payload)
}

func (e *echoer) receive() error {
	e.conn.SetReadDeadline(time.Now().Add(e.timeout))
	kind, reader, err := e.conn.NextReader()
	if err != nil {
		return fmt.Errorf("waiting for an echo: %w", err)
	}
	n := 0
	for n < len(e.buf) {
		read, err := reader.Read(e.buf[n:])
		n += read
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading an echo: %w", err)
		}
	}
	if kind != e.kind || !bytes.Equal(e.buf[:n], e.payload) {
		return fmt.Errorf("the echo differs: type %d, %d bytes for type %d, %d bytes", kind, n, e.kind, len(e.payload))
	}
	return nil
}

func (e *echoer) roundTrip() error {
	if err := e.send(); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	return e.receive()
}

// close runs the closing handshake from the client's side: send Close, read
// until the server's Close arrives, then drop the TCP connection.
func (e *echoer) close() error {
	defer e.conn.Close()
	deadline := time.Now().Add(e.timeout)
	message := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := e.conn.WriteControl(websocket.CloseMessage, message, deadline); err != nil {
		return fmt.Errorf("sending Close: %w", err)
	}
	e.conn.SetReadDeadline(deadline)
	for {
		if _, _, err := e.conn.NextReader(); err != nil {
			if _, isClose := err.(*websocket.CloseError); isClose {
				return nil
			}
			return fmt.Errorf("waiting for the server's Close: %w", err)
		}
	}
}

// cpuSeconds is the user and system CPU time this process has used so far.
func cpuSeconds() float64 {
	var usage syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	seconds := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return seconds(usage.Utime) + seconds(usage.Stime)
}

func max(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}
