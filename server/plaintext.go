package server

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"time"
)

// h2cPreface opens every cleartext HTTP/2 connection made with prior
// knowledge (gRPC over http://).
const h2cPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// tlsOnlyMessage is the GOAWAY debug data an h2c client gets; gRPC
// clients show it in their error.
const tlsOnlyMessage = "kvd: this port serves only TLS: use https:// (gRPC: TLS credentials) with the cluster CA"

// h2cRefuser answers a cleartext HTTP/2 client on the TLS port (the
// router wraps every connection in one before the handshake) with HTTP/2
// SETTINGS and GOAWAY(PROTOCOL_ERROR) carrying tlsOnlyMessage, instead of
// only closing the connection. A plaintext HTTP/1.1 client gets a 400
// "Client sent an HTTP request to an HTTPS server" (router.open).
// Everything else passes untouched.
type h2cRefuser struct {
	net.Conn
	seen bool // the first read was examined
}

func (c *h2cRefuser) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.seen || n == 0 {
		return n, err
	}
	c.seen = true
	m := min(n, len(h2cPreface))
	if m >= 3 && string(p[:m]) == h2cPreface[:m] {
		c.refuse()
	}
	return n, err
}

// refuse writes SETTINGS and GOAWAY, then drains what the client sent
// (briefly) so that closing does not reset the connection before the
// client has read the GOAWAY.
func (c *h2cRefuser) refuse() {
	var b bytes.Buffer
	frame := func(typ byte, payload []byte) {
		var h [9]byte
		h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
		h[3] = typ // flags 0, stream 0
		b.Write(h[:])
		b.Write(payload)
	}
	frame(0x4, nil) // SETTINGS
	goaway := make([]byte, 8, 8+len(tlsOnlyMessage))
	binary.BigEndian.PutUint32(goaway[0:], 0) // last stream ID
	binary.BigEndian.PutUint32(goaway[4:], 1) // PROTOCOL_ERROR
	frame(0x7, append(goaway, tlsOnlyMessage...))
	c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.Conn.Write(b.Bytes()); err != nil {
		return
	}
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	c.Conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	io.Copy(io.Discard, io.LimitReader(c.Conn, 1<<16))
}
