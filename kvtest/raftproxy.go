package kvtest

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/kvd-project/kvd/internal/freeport"
	"github.com/kvd-project/kvd/server"
)

// raftProxy forwards TCP connections from a loopback address (the node's
// advertised Raft address) to the node's Raft listener. Cut closes every
// connection and refuses new ones: the node then hears nothing on its Raft
// port while its API still answers (a firewall on the Raft port).
type raftProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newRaftProxy(t testing.TB, target string) *raftProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &raftProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p
}

func (p *raftProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go p.pipe(c)
	}
}

// track registers c, or closes it when the proxy is cut.
func (p *raftProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *raftProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *raftProxy) pipe(in net.Conn) {
	defer p.wg.Done()
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		p.untrack(in)
		return
	}
	if !p.track(out) {
		p.untrack(in)
		return
	}
	done := make(chan struct{})
	go func() {
		io.Copy(out, in)
		close(done)
	}()
	io.Copy(in, out)
	p.untrack(in, out)
	<-done
}

func (p *raftProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
			delete(p.conns, c)
		}
	}
}

func (p *raftProxy) close() {
	p.ln.Close()
	p.setCut(true)
	p.wg.Wait()
}

// RaftProxy is an option for Join (not NewCluster: its members are fixed before options run): the node's
// advertised Raft address becomes a proxy in front of its Raft listener,
// which CutRaft and HealRaft control.
func (c *Cluster) RaftProxy() func(*server.Config) {
	return func(cfg *server.Config) {
		listen := freeport.Addr(c.t)
		p := newRaftProxy(c.t, listen)
		cfg.Node.RaftListen = listen
		cfg.Node.RaftAddr = p.ln.Addr().String()
		c.mu.Lock()
		c.proxies[cfg.Node.RaftAddr] = p
		c.mu.Unlock()
	}
}

func (c *Cluster) proxy(i int) *raftProxy {
	c.t.Helper()
	c.mu.Lock()
	p := c.proxies[c.cfgs[i].Node.RaftAddr]
	c.mu.Unlock()
	if p == nil {
		c.t.Fatalf("node %d has no Raft proxy: start it with the RaftProxy option", i+1)
	}
	return p
}

// CutRaft cuts node i off on its Raft port only (incoming connections are
// closed and refused); its API keeps answering.
func (c *Cluster) CutRaft(i int) { c.proxy(i).setCut(true) }

// HealRaft undoes CutRaft.
func (c *Cluster) HealRaft(i int) { c.proxy(i).setCut(false) }
